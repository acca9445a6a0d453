// One blocking-query loop, shared by every watch, following Consul's rules for
// clients (api-docs/features/blocking):
//   - pass the last X-Consul-Index back as `index` with an explicit `wait`;
//     the client timeout is set above wait + Consul's wait/16 jitter;
//   - an index that goes backwards (agent restart, snapshot restore, leader
//     change) resets the loop to index 0, a fresh non-blocking read;
//   - an index below 1 is raised to 1, and while answers keep carrying no
//     usable index (X-Consul-Index missing or 0) the loop polls with the error
//     backoff: such answers come back at once, so minIntervalMs alone would
//     let every watch send Consul dozens of requests per second;
//   - requests are rate-limited per loop (minIntervalMs), so even a Consul that
//     answers instantly forever costs a bounded number of requests per second;
//   - errors back off exponentially with jitter and the loop never gives up: it
//     ends only when stopped. Loops that share a RecoveryGroup also end their
//     backoff early when another loop of the group gets an answer, so they all
//     catch up together once Consul is back (see recovery.ts).
// A response whose body did not change is not passed on (Consul wakes blocking
// queries for writes that do not affect the result).

import { type Clock, systemClock } from '../clock.js'
import type { RecoveryGroup } from './recovery.js'

const { createHash } = process.getBuiltinModule('node:crypto')

export interface BlockingQueryOptions<T> {
  /** For logs and metrics, e.g. `health:web`. */
  readonly name: string
  /** One request at `index` (0 = non-blocking). Throws on transport or HTTP errors. */
  readonly fetch: (index: number, signal: AbortSignal) => Promise<{ index: number; body: string }>
  /** Turns a body into a value; may throw, which counts as an error of the loop. */
  readonly parse: (body: string) => T
  readonly onValue: (value: T) => void
  readonly onError?: (error: Error, consecutive: number, retryInMs: number) => void
  /** Called on the first success after one or more errors. */
  readonly onRecover?: (failedForMs: number) => void
  readonly minIntervalMs: number
  readonly backoffInitialMs: number
  readonly backoffMaxMs: number
  /** The other loops that recover with this one (one per Switchyard: all its watches). */
  readonly recovery?: RecoveryGroup
  readonly clock?: Clock
  readonly random?: () => number
}

export interface BlockingQueryState {
  readonly name: string
  readonly index: number
  readonly requests: number
  readonly errors: number
  readonly consecutiveErrors: number
  /** When the last successful response arrived (0 = never). */
  readonly lastSuccessAt: number
  /** When the current run of errors began (0 = not failing). */
  readonly failingSince: number
  readonly lastError: Error | null
}

export class BlockingQuery<T> {
  private readonly options: BlockingQueryOptions<T>
  private readonly clock: Clock
  private readonly random: () => number
  private readonly controller = new AbortController()
  private running: Promise<void> | null = null
  /** Digest of the last body passed on: a whole body per watch would cost megabytes in a large fleet. */
  private lastDigest: string | null = null
  /** Answers in a row without a usable X-Consul-Index. */
  private badIndexes = 0
  private firstValue!: () => void
  private firstOutcome!: () => void
  /** Resolves with the first value passed on (never rejects; errors keep retrying). */
  readonly ready: Promise<void>
  /** Resolves at the first value or the first error, whichever comes first. */
  readonly settled: Promise<void>

  private s = {
    index: 0,
    requests: 0,
    errors: 0,
    consecutiveErrors: 0,
    lastSuccessAt: 0,
    failingSince: 0,
    lastError: null as Error | null,
  }

  constructor(options: BlockingQueryOptions<T>) {
    this.options = options
    this.clock = options.clock ?? systemClock
    this.random = options.random ?? Math.random
    this.ready = new Promise((resolve) => {
      this.firstValue = resolve
    })
    this.settled = new Promise((resolve) => {
      this.firstOutcome = resolve
    })
  }

  get state(): BlockingQueryState {
    return { name: this.options.name, ...this.s }
  }

  start(): this {
    if (this.running === null) {
      this.options.recovery?.join(this)
      this.running = this.loop().catch(() => {
        // Only an abort ends the loop; anything else is handled inside.
      })
    }
    return this
  }

  async stop(): Promise<void> {
    this.controller.abort()
    this.options.recovery?.leave(this)
    await this.running
  }

  private async loop(): Promise<void> {
    const signal = this.controller.signal
    let lastRequestAt = Number.NEGATIVE_INFINITY
    while (!signal.aborted) {
      const waitForRate = lastRequestAt + this.options.minIntervalMs - this.clock.now()
      if (waitForRate > 0) await this.clock.sleep(waitForRate, signal)
      lastRequestAt = this.clock.now()
      this.s.requests++
      // A retry while failing may hang in a Consul that is coming back (it
      // holds reads until it has a leader, in steps of up to half a second):
      // the recovery group cuts it once another watch gets an answer, and it
      // is sent again at once.
      const recovery = this.options.recovery
      const retry = recovery && this.s.consecutiveErrors > 0 ? new AbortController() : null
      const released = retry ? recovery?.inFlight(this, () => retry.abort()) : undefined
      try {
        await this.read(retry ? AbortSignal.any([signal, retry.signal]) : signal)
        if (this.badIndexes > 0) await this.clock.sleep(this.backoff(this.badIndexes), signal)
      } catch (err) {
        if (signal.aborted) return
        if (retry?.signal.aborted) {
          await recovery?.spread(signal)
          continue
        }
        const error = err instanceof Error ? err : new Error(String(err))
        this.s.errors++
        this.s.consecutiveErrors++
        this.s.failingSince ||= this.clock.now()
        this.s.lastError = error
        // After an error the next read starts over: the index may be meaningless
        // (a different agent, a restarted one), and a fresh read is cheap.
        this.s.index = 0
        const retryIn = this.backoff(this.s.consecutiveErrors)
        this.options.onError?.(error, this.s.consecutiveErrors, retryIn)
        this.firstOutcome()
        if (recovery) {
          recovery.failed(this)
          await recovery.backoff(this, retryIn, signal)
        } else {
          await this.clock.sleep(retryIn, signal)
        }
      } finally {
        released?.()
      }
    }
  }

  /**
   * One request and what follows from its answer. A function of its own so
   * that the answer's body is dropped when it returns: the loop's frame stays
   * suspended for the whole next blocking query (minutes), and V8 keeps a
   * suspended frame's old values, so a body read there would stay in memory
   * (1,000 watches: about 17 MB of Consul JSON, measured).
   */
  private async read(signal: AbortSignal): Promise<void> {
    const res = await this.options.fetch(this.s.index, signal)
    const digest = createHash('sha256').update(res.body).digest('base64')
    const value = digest === this.lastDigest ? undefined : { parsed: this.options.parse(res.body) }
    this.s.index = res.index < 1 ? 1 : res.index < this.s.index ? 0 : res.index
    if (this.s.consecutiveErrors > 0) {
      this.options.onRecover?.(this.clock.now() - this.s.failingSince)
      this.options.recovery?.answered(this)
    }
    this.s.consecutiveErrors = 0
    this.s.failingSince = 0
    this.s.lastError = null
    this.s.lastSuccessAt = this.clock.now()
    if (value !== undefined) {
      this.lastDigest = digest
      this.options.onValue(value.parsed)
      this.firstValue()
    }
    this.firstOutcome()
    this.badIndexes = res.index < 1 ? this.badIndexes + 1 : 0
  }

  /** Exponential with "equal jitter": half fixed, half random, capped. */
  private backoff(attempt: number): number {
    const ceiling = Math.min(
      this.options.backoffMaxMs,
      this.options.backoffInitialMs * 2 ** Math.min(attempt - 1, 30),
    )
    return Math.round(ceiling / 2 + (this.random() * ceiling) / 2)
  }
}
