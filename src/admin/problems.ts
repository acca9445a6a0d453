// Problems with the time each was first seen. Tables and sync status list
// problems without history; an operator asks "since when?", so the tracker
// remembers when each problem appeared and forgets it when it goes away (a
// problem that comes back starts a new "since").
//
// Table problems change only on a swap, and the tracker looks at every swap, so
// their time is the swap's. A failing watch knows when it began failing. Other
// Consul-side problems (answers filtered by ACL) count from when the tracker
// first saw them: at a swap or when someone asked.

import { type Clock, systemClock } from '../clock.js'
import type { Logger } from '../log.js'
import type { Problem } from '../routing/types.js'
import type { TableStore } from '../table/store.js'
import type { SyncStatus } from '../table/sync.js'

export interface ProblemView extends Problem {
  /**
   * `consul` for problems reading Consul, `table` for what the table builder
   * rejected, `certificates` for TLS certificates set aside or not readable.
   */
  readonly source: 'consul' | 'table' | 'certificates'
  /** ISO time the problem was first seen. */
  readonly since: string
}

export class ProblemTracker {
  private readonly store: TableStore
  private readonly status: () => SyncStatus
  private readonly clock: Clock
  private readonly log: Logger | null
  private readonly certificates: () => readonly Problem[]
  private seen = new Map<string, number>()

  constructor(
    store: TableStore,
    status: () => SyncStatus,
    options: { clock?: Clock; log?: Logger; certificates?: () => readonly Problem[] } = {},
  ) {
    this.store = store
    this.status = status
    this.clock = options.clock ?? systemClock
    this.log = options.log ?? null
    // Logged where they arise (the certificate store and sources).
    this.certificates = options.certificates ?? (() => [])
    store.onSwap(() => this.current())
  }

  /** Every current problem, Consul-side first, each with its since-time. */
  current(): ProblemView[] {
    const now = this.clock.now()
    const status = this.status()
    const failingSince = new Map<string, number>()
    for (const w of status.watches) {
      if (w.failingSince > 0 && w.lastError)
        failingSince.set(`watch ${w.name}\0${w.lastError.message}`, w.failingSince)
    }
    const next = new Map<string, number>()
    const views: ProblemView[] = []
    const add = (p: Problem, source: ProblemView['source']) => {
      const key = `${source}\0${p.code}\0${p.subject}\0${p.message}`
      const watchStart = source === 'consul' ? failingSince.get(`${p.subject}\0${p.message}`) : undefined
      let since = next.get(key) ?? this.seen.get(key)
      if (since === undefined) {
        since = watchStart ?? now
        // Failing watches and table problems are logged where they arise (sync.ts); the rest here, once.
        if (source === 'consul' && watchStart === undefined)
          this.log?.warn({ code: p.code, subject: p.subject }, p.message)
      }
      next.set(key, since)
      views.push({ ...p, source, since: new Date(since).toISOString() })
    }
    for (const p of status.problems) add(p, 'consul')
    for (const p of this.store.current.problems) add(p, 'table')
    for (const p of this.certificates()) add(p, 'certificates')
    this.seen = next
    return views
  }
}
