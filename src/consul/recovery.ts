// Watches that fail together recover together. While Consul is down, every
// watch backs off on its own schedule, up to consul.backoffMax (30 s by
// default). Left alone, each would find Consul back only when its own backoff
// ends, so after a long outage the table would catch up watch by watch over
// many seconds, and a cutover written right after Consul returns would be
// followed that much later. The group shortens this in two ways:
//   - as soon as one watch gets an answer after failing, every watch that is
//     backing off retries, each after a random delay of up to `spreadMs` so a
//     thousand watches do not reach Consul in the same millisecond; a retry
//     still in flight is cut and sent again the same way (a Consul coming back
//     holds reads until it has a leader, in steps of up to half a second, and
//     may still be holding one that it would now answer at once);
//   - while every watch of the group is failing (Consul looks down, not one
//     watch refused), one of them is woken every `probeIntervalMs`, the one
//     that has waited longest, so Consul's return is noticed within that time
//     however long the backoffs have grown. A probe is that watch's ordinary
//     read; the others keep backing off, so an outage costs Consul one extra
//     request per probe interval, not one per watch.
// A watch that fails alone (a key the token may not read) keeps its backoff:
// the others answering shows that Consul is there.

import { type Clock, systemClock } from '../clock.js'

export interface RecoveryOptions {
  /** How often one failing watch retries early while all of them fail. */
  readonly probeIntervalMs: number
  /** Woken watches retry within this many milliseconds, spread at random. */
  readonly spreadMs: number
  readonly clock?: Clock
  readonly random?: () => number
}

/** A member: anything with an identity; the group only tracks whether it is failing. */
type Member = object

interface Sleeper {
  readonly member: Member
  /** Ends the sleep early; `spread` adds the random delay. */
  readonly wake: (spread: boolean) => void
}

export class RecoveryGroup {
  private readonly options: RecoveryOptions
  private readonly clock: Clock
  private readonly random: () => number
  private readonly members = new Set<Member>()
  private readonly failing = new Set<Member>()
  /** Watches in their error backoff, longest waiting first (a Set keeps insertion order). */
  private readonly sleepers = new Set<Sleeper>()
  /** Retries in flight of failing watches, and how to cut each. */
  private readonly retries = new Map<Member, () => void>()
  private probe: AbortController | null = null

  constructor(options: RecoveryOptions) {
    this.options = options
    this.clock = options.clock ?? systemClock
    this.random = options.random ?? Math.random
  }

  join(member: Member): void {
    this.members.add(member)
    this.updateProbe()
  }

  leave(member: Member): void {
    this.members.delete(member)
    this.failing.delete(member)
    this.retries.delete(member)
    this.updateProbe()
  }

  /** `member` failed a request; its backoff follows with `backoff()`. */
  failed(member: Member): void {
    this.failing.add(member)
    this.updateProbe()
  }

  /** `member` got an answer: if it was failing, wake every watch that is backing off. */
  answered(member: Member): void {
    if (!this.failing.delete(member)) return
    for (const sleeper of [...this.sleepers]) sleeper.wake(true)
    for (const [other, cut] of [...this.retries]) if (other !== member) cut()
    this.updateProbe()
  }

  /**
   * `member`, failing, sent a request; `cut` aborts it so that it can be sent
   * again (after `spread()`). Returns what to call once the request ended.
   */
  inFlight(member: Member, cut: () => void): () => void {
    this.retries.set(member, cut)
    return () => {
      if (this.retries.get(member) === cut) this.retries.delete(member)
    }
  }

  /** The random delay of a woken watch, so that woken watches do not all ask at once. */
  async spread(signal: AbortSignal): Promise<void> {
    await this.clock.sleep(Math.round(this.random() * this.options.spreadMs), signal)
  }

  /**
   * Sleeps `ms` of error backoff for `member`, or less when the group wakes it.
   * Rejects, as Clock.sleep does, when `signal` aborts.
   */
  async backoff(member: Member, ms: number, signal: AbortSignal): Promise<void> {
    const woken = new AbortController()
    let spread = false
    const sleeper: Sleeper = {
      member,
      wake: (withSpread) => {
        spread = withSpread
        woken.abort()
      },
    }
    this.sleepers.add(sleeper)
    this.updateProbe()
    try {
      await this.clock.sleep(ms, AbortSignal.any([signal, woken.signal]))
    } catch (err) {
      if (signal.aborted || !woken.signal.aborted) throw err
    } finally {
      this.sleepers.delete(sleeper)
      this.updateProbe()
    }
    if (spread) await this.spread(signal)
  }

  /** Probing runs only while every member fails and at least one is backing off. */
  private updateProbe(): void {
    const wanted = this.sleepers.size > 0 && this.members.size > 0 && this.failing.size >= this.members.size
    if (wanted && this.probe === null) {
      const controller = new AbortController()
      this.probe = controller
      void this.probeLoop(controller.signal)
    } else if (!wanted && this.probe !== null) {
      this.probe.abort()
      this.probe = null
    }
  }

  private async probeLoop(signal: AbortSignal): Promise<void> {
    try {
      while (!signal.aborted) {
        await this.clock.sleep(this.options.probeIntervalMs, signal)
        const longest = this.sleepers.values().next()
        if (!longest.done) longest.value.wake(false)
      }
    } catch {
      // Aborted: probing is no longer needed.
    }
  }
}
