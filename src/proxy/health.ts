// Passive health: an instance that fails to connect several times in a row is
// taken out of rotation for a while, before Consul's checks notice. After the
// ejection period a TCP connect probe decides: success lets it back in, failure
// ejects it again for twice as long (up to a cap). Live requests are never the
// probe, so once ejected, an instance gets no client traffic until it answers.
//
// State is keyed by backend key and lives outside the immutable table (like the
// Balancer's), so it survives table swaps. Per request it costs one boolean
// read while nothing is ejected.

import { connect } from 'node:net'
import { type Clock, systemClock } from '../clock.js'
import type { Backend } from '../routing/types.js'

export interface PassiveHealthOptions {
  /** Consecutive connect failures that eject an instance; 0 turns passive health off. */
  readonly failures: number
  /** First ejection period; it doubles for each failed probe. */
  readonly ejectMs: number
  /** Longest ejection period. */
  readonly ejectMaxMs: number
  /** How long a probe may take to connect. */
  readonly probeTimeoutMs: number
  /** Replaces the TCP connect probe (tests). Resolves true when the instance accepts connections. */
  readonly probe?: (backend: Backend) => Promise<boolean>
  readonly clock?: Clock
  /** Called when an instance is ejected (for `forMs`) or let back in. */
  readonly onChange?: (backend: Backend, ejected: boolean, forMs: number) => void
}

interface Ejection {
  backend: Backend
  until: number
  periodMs: number
  probing: boolean
}

export class PassiveHealth {
  private readonly options: PassiveHealthOptions
  private readonly clock: Clock
  private readonly probe: (backend: Backend) => Promise<boolean>
  private readonly failures = new Map<string, number>()
  private readonly ejections = new Map<string, Ejection>()
  /** True while at least one instance is ejected; the only check on the hot path otherwise. */
  anyEjected = false

  constructor(options: PassiveHealthOptions) {
    this.options = options
    this.clock = options.clock ?? systemClock
    this.probe = options.probe ?? ((backend) => tcpProbe(backend, options.probeTimeoutMs))
  }

  /** Filter for Balancer.pick: false for ejected instances. */
  readonly usable = (backend: Backend): boolean => !this.isEjected(backend)

  isEjected(backend: Backend): boolean {
    if (!this.anyEjected) return false
    const ejection = this.ejections.get(backend.key)
    if (ejection === undefined) return false
    if (!ejection.probing && this.clock.now() >= ejection.until) this.startProbe(ejection)
    return true
  }

  /** A connection to the instance could not be made (refused, unreachable, connect timeout). */
  connectFailed(backend: Backend): void {
    if (this.options.failures <= 0 || this.ejections.has(backend.key)) return
    const n = (this.failures.get(backend.key) ?? 0) + 1
    if (n < this.options.failures) {
      this.failures.set(backend.key, n)
      return
    }
    this.failures.delete(backend.key)
    this.eject(backend, this.options.ejectMs)
  }

  /** The instance answered; its run of failures is over. */
  succeeded(backend: Backend): void {
    if (this.failures.size > 0) this.failures.delete(backend.key)
  }

  /** Keys of ejected instances, for status and tests. */
  ejected(): string[] {
    return [...this.ejections.keys()].sort()
  }

  /** Forgets instances that left the table, so churn cannot grow the maps. */
  retain(keys: ReadonlySet<string>): void {
    for (const key of this.failures.keys()) if (!keys.has(key)) this.failures.delete(key)
    for (const key of this.ejections.keys()) if (!keys.has(key)) this.ejections.delete(key)
    this.anyEjected = this.ejections.size > 0
  }

  private eject(backend: Backend, periodMs: number): void {
    this.ejections.set(backend.key, {
      backend,
      until: this.clock.now() + periodMs,
      periodMs,
      probing: false,
    })
    this.anyEjected = true
    this.options.onChange?.(backend, true, periodMs)
  }

  private startProbe(ejection: Ejection): void {
    ejection.probing = true
    const { backend } = ejection
    this.probe(backend).then(
      (ok) => this.probed(ejection, ok),
      () => this.probed(ejection, false),
    )
  }

  private probed(ejection: Ejection, ok: boolean): void {
    const key = ejection.backend.key
    // The instance may have left the table (retain) while the probe ran.
    if (this.ejections.get(key) !== ejection) return
    if (ok) {
      this.ejections.delete(key)
      this.anyEjected = this.ejections.size > 0
      this.options.onChange?.(ejection.backend, false, 0)
      return
    }
    this.eject(ejection.backend, Math.min(ejection.periodMs * 2, this.options.ejectMaxMs))
  }
}

/** Resolves true when a TCP connection to the instance opens within `timeoutMs`. */
export function tcpProbe(backend: Backend, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: backend.address, port: backend.port, timeout: timeoutMs })
    const done = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.once('connect', () => done(true))
    socket.once('timeout', () => done(false))
    socket.once('error', () => done(false))
  })
}
