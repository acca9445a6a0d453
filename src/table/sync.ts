// Keeps the table store in step with Consul: watchers signal, changes are
// coalesced into one rebuild per event-loop turn, the pure builder makes a new
// table and the store swaps it in. When Consul fails, nothing is rebuilt and
// the last good table keeps serving; `status()` says how stale it is.

import { performance } from 'node:perf_hooks'
import { type Clock, systemClock } from '../clock.js'
import type { BlockingQueryState } from '../consul/blocking-query.js'
import type { ConsulClient } from '../consul/client.js'
import { RecoveryGroup } from '../consul/recovery.js'
import { CatalogWatcher, KvPrefixWatcher, TargetWatcher, type WatchSettings } from '../consul/watchers.js'
import type { Logger } from '../log.js'
import { type BuildConfig, buildRouteTable } from '../routing/build.js'
import { diffTables } from '../routing/canonical.js'
import type { Problem, RouteTable } from '../routing/types.js'
import type { TableStore } from './store.js'

/**
 * While every watch fails, one of them retries this often, so Consul's return
 * is noticed within it whatever the backoffs have grown to (see recovery.ts).
 */
const OUTAGE_PROBE_MS = 250
/** Once one watch gets an answer after an outage, the others retry within this. */
const RECOVERY_SPREAD_MS = 100

export interface SyncOptions {
  readonly client: ConsulClient
  readonly watch: WatchSettings
  readonly build: BuildConfig
  readonly store: TableStore
  readonly log: Logger
  readonly clock?: Clock
  /** Called after each build with its duration, whether or not it changed the table. */
  readonly onBuild?: (durationMs: number, changed: boolean) => void
}

export interface SyncStatus {
  /** A first table built from Consul is serving. */
  readonly loaded: boolean
  /** 0 while every watch is healthy; else how long the oldest failing watch has failed. */
  readonly staleForMs: number
  /** Last time every watch was known good (now, while none is failing). */
  readonly lastSyncAt: number
  readonly watches: readonly BlockingQueryState[]
  /** Consul-side problems: unreachable, permission denied, results filtered by ACLs. */
  readonly problems: readonly Problem[]
  /** When watching began (0 before start()), so readiness can say since when it waits. */
  readonly startedAt?: number
}

export class TableSync {
  private readonly options: SyncOptions
  private readonly clock: Clock
  private readonly catalog: CatalogWatcher
  private readonly targets: TargetWatcher
  /** Fabio's route overrides and no-route page in KV (routing.fabio), when configured. */
  private readonly fabio: KvPrefixWatcher[]
  private initialised = false
  private scheduled = false
  private stopped = false
  private startedAt = 0

  constructor(options: SyncOptions) {
    this.options = options
    this.clock = options.clock ?? systemClock
    const listener = {
      onError: (watch: string, error: Error, consecutive: number, retryInMs: number) => {
        // One line when a watch starts failing, then one every 10 failures: an
        // outage of minutes must not write thousands of lines.
        if (consecutive === 1 || consecutive % 10 === 0) {
          // A permission error needs an operator; an outage may heal by itself.
          const code = codeOf(error)
          const level = code === 'SWY_ERR_CONSUL_PERMISSION' ? 'error' : 'warn'
          options.log[level](
            { watch, code, err: error.message, consecutive, retryInMs },
            'consul watch failing',
          )
        }
      },
      onRecover: (watch: string, failedForMs: number) =>
        options.log.info({ watch, failedForMs }, 'consul watch recovered'),
    }
    // One group for all the watches: they fail together when Consul goes away
    // and should come back together.
    const watch: WatchSettings = {
      ...options.watch,
      recovery:
        options.watch.recovery ??
        new RecoveryGroup({
          probeIntervalMs: OUTAGE_PROBE_MS,
          spreadMs: RECOVERY_SPREAD_MS,
          clock: options.watch.clock,
        }),
    }
    this.catalog = new CatalogWatcher(options.client, watch, options.build.tagPrefix, listener, () =>
      this.schedule(),
    )
    this.targets = new TargetWatcher(options.client, watch, options.build.targetPrefix, listener, () =>
      this.schedule(),
    )
    // Fabio's two keys share a parent (`fabio/` by default): one recursive
    // watch of it serves both, one blocking query fewer per proxy.
    const fabioKeys = [options.build.fabioKvPath ?? '', options.build.noRouteHtmlPath ?? ''].filter(
      (k) => k !== '',
    )
    const watched = fabioWatchPrefixes(fabioKeys)
    this.fabio = watched.map(
      ({ prefix, exact }, i) =>
        new KvPrefixWatcher(options.client, watch, prefix, listener, () => this.schedule(), {
          name: watched.length === 1 ? 'fabio' : `fabio-${i + 1}`,
          exact,
        }),
    )
  }

  /** Starts watching; resolves when the first table is serving. */
  async start(): Promise<void> {
    this.startedAt = this.clock.now()
    this.catalog.start()
    this.targets.start()
    for (const w of this.fabio) w.start()
    await Promise.all([this.catalog.ready(), this.targets.ready, ...this.fabio.map((w) => w.ready)])
    if (this.stopped) return
    this.initialised = true
    this.rebuild()
  }

  async stop(): Promise<void> {
    this.stopped = true
    await Promise.all([this.catalog.stop(), this.targets.stop(), ...this.fabio.map((w) => w.stop())])
  }

  status(): SyncStatus {
    const now = this.clock.now()
    const watches = [...this.catalog.states(), this.targets.state(), ...this.fabio.map((w) => w.state())]
    const failing = watches.filter((w) => w.failingSince > 0)
    // A healthy blocking query is current while it hangs, so staleness counts
    // from the first failure, not from the last answer.
    const oldest = failing.reduce((min, w) => Math.min(min, w.failingSince), now)
    const problems: Problem[] = failing.map((w) => ({
      code: codeOf(w.lastError),
      subject: `watch ${w.name}`,
      message: w.lastError?.message ?? 'failing',
    }))
    for (const watch of this.catalog.aclFiltered()) {
      problems.push({
        code: 'SWY_ERR_CONSUL_PERMISSION',
        subject: `watch ${watch}`,
        message: 'Consul filtered the answer by ACL: the token cannot read every service or node',
      })
    }
    return {
      loaded: this.options.store.loaded,
      staleForMs: failing.length === 0 ? 0 : now - oldest,
      lastSyncAt: failing.length === 0 ? now : oldest,
      watches,
      problems,
      startedAt: this.startedAt,
    }
  }

  private schedule(): void {
    if (!this.initialised || this.scheduled || this.stopped) return
    this.scheduled = true
    // Every watcher event of this turn lands in one build.
    setImmediate(() => {
      this.scheduled = false
      if (!this.stopped) this.rebuild()
    })
  }

  private rebuild(): void {
    const { store, build, log } = this.options
    const previous = store.current
    const started = performance.now()
    let next: RouteTable
    try {
      const kv = [...this.targets.current(), ...this.fabio.flatMap((w) => w.current())]
      next = buildRouteTable(this.catalog.snapshot(), kv, build, previous).table
    } catch (err) {
      // The builder is pure and tested; if it ever throws, the old table serves.
      log.error({ err }, 'building the routing table failed; keeping the previous table')
      return
    }
    const durationMs = performance.now() - started
    const diff = diffTables(previous, next)
    const routingChanged = previous.generation === 0 || diff.added.length > 0 || diff.removed.length > 0
    this.options.onBuild?.(durationMs, routingChanged)
    // Every build follows a change in Consul, so every build is swapped in,
    // even when no traffic moves: an instance that turned unhealthy while idle,
    // a target rewritten with the same value (a new modify index) must show in
    // the admin API, the status page and the metrics. The log line is kept for
    // changes that move traffic.
    store.swap(next)
    const fields = {
      generation: next.generation,
      routes: next.routes.length,
      buildMs: Number(durationMs.toFixed(3)),
      added: diff.added,
      removed: diff.removed,
    }
    if (previous.generation === 0) log.info(fields, 'first routing table')
    else if (routingChanged) log.info(fields, 'routing table changed')
    else log.debug(fields, 'routing table updated; no traffic moves')
    const before = new Set(previous.problems.map(problemKey))
    for (const p of next.problems) {
      if (!before.has(problemKey(p))) log.warn({ code: p.code, subject: p.subject }, p.message)
    }
  }
}

/** The KV prefixes to watch for Fabio's keys: their common parent directory, else each key. */
function fabioWatchPrefixes(keys: readonly string[]): { prefix: string; exact: boolean }[] {
  if (keys.length === 0) return []
  const parents = keys.map((k) => (k.includes('/') ? k.slice(0, k.lastIndexOf('/')) : ''))
  if (parents.every((p) => p !== '' && p === parents[0]))
    return [{ prefix: parents[0] as string, exact: false }]
  return keys.map((k) => ({ prefix: k, exact: true }))
}

function problemKey(p: Problem): string {
  return `${p.code} ${p.subject} ${p.message}`
}

function codeOf(error: Error | null): Problem['code'] {
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === 'string' && code.startsWith('SWY_ERR_')
    ? (code as Problem['code'])
    : 'SWY_ERR_CONSUL_UNREACHABLE'
}
