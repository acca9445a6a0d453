// `switchyard serve` on several cores. The primary process is the control
// plane: it alone watches Consul, builds each table once and hands it to every
// worker (structured clone over IPC: the current table whole when a worker
// starts, then each change as a delta from the table before, table/delta.ts),
// so Consul's load does not grow with the number of workers. It also runs the admin listener, and its /metrics adds
// the workers' request counts to its own table and watch metrics. Workers are
// data planes, each with its own listening socket on the proxy address
// (SO_REUSEPORT: the kernel spreads new connections over them), their own
// pools, picker state and passive health.

import cluster, { type Worker } from 'node:cluster'
import type { Server } from 'node:http'
import { availableParallelism } from 'node:os'
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue } from 'prom-client'
import { createAdminServer } from '../admin/server.js'
import { proxyListeners } from '../config/listeners.js'
import type { ResolvedConfig } from '../config/load.js'
import { SwitchyardError } from '../errors.js'
import { createLogger, type Logger } from '../log.js'
import { accessLogObserver } from '../metrics/access-log.js'
import { SwitchyardMetrics } from '../metrics/metrics.js'
import { combineObservers } from '../metrics/observers.js'
import type { RouteTable } from '../routing/types.js'
import { applyTableDelta, encodeTableDelta, type TableDelta } from '../table/delta.js'
import { TableStore } from '../table/store.js'
import type { SyncStatus } from '../table/sync.js'
import type { CertificateEntry } from '../tls/certificates.js'
import { tlsSettingsOf } from '../tls/server-options.js'
import { CertificateStore } from '../tls/store.js'
import { collectStartupGarbage, createControlPlane, createDataPlane, listen, probePort } from './serve.js'

type Metrics = MetricObjectWithValues<MetricValue<string>>[]

/** Primary → worker. */
type ToWorker =
  /** The table to use; `null` in answer to `hello` while the primary has none yet. */
  | { readonly t: 'table'; readonly table: RouteTable | null }
  /** Every later table, as the change from the one before (the size of the change, not of the table). */
  | { readonly t: 'delta'; readonly delta: TableDelta }
  | { readonly t: 'metrics'; readonly id: number }
  /**
   * Every TLS certificate entry (chain and key) the primary read, and the
   * session ticket keys all processes share; sent on each change.
   */
  | {
      readonly t: 'certificates'
      readonly entries: readonly CertificateEntry[]
      readonly ticketKeys: Uint8Array
    }
  | { readonly t: 'stop' }

/** Worker → primary. */
type ToPrimary =
  /** Ready for tables: the primary answers with the current one (or null). */
  | { readonly t: 'hello' }
  | { readonly t: 'listening'; readonly url: string }
  | { readonly t: 'cannot-listen'; readonly message: string }
  | { readonly t: 'metrics'; readonly id: number; readonly metrics: Metrics }

/** Environment variable through which a worker receives the primary's resolved config. */
export const WORKER_CONFIG_ENV = 'SWITCHYARD_WORKER_CONFIG'

/** The config a worker was started with (see WORKER_CONFIG_ENV). */
export function workerConfigFrom(env: Readonly<Record<string, string | undefined>>): ResolvedConfig {
  const text = env[WORKER_CONFIG_ENV]
  if (text === undefined)
    throw new Error(`${WORKER_CONFIG_ENV} is not set: a worker is started by the primary`)
  return JSON.parse(text) as ResolvedConfig
}

/** How many workers `proxy.workers` asks for on this machine. */
export function workerCount(setting: 'auto' | number): number {
  return setting === 'auto' ? availableParallelism() : setting
}

export interface Primary {
  readonly adminUrl: string
  /** Resolves with the proxy's URL once the first worker listens. */
  readonly proxyUrl: Promise<string>
  readonly loaded: Promise<void>
  /** Resolves with the reason if a worker cannot listen at all (then nothing could serve). */
  readonly failed: Promise<Error>
  stop(): Promise<void>
}

export async function startPrimary(
  config: ResolvedConfig,
  log: Logger,
  token: string,
  workers: number,
): Promise<Primary> {
  cluster.setupPrimary({ serialization: 'advanced' })
  const control = createControlPlane(config, log, token)
  const { store, sync, metrics } = control
  // Every worker binds the same addresses: port 0 ("any free port") must be
  // made one port before they start.
  const listeners = await Promise.all(
    proxyListeners(config).map(async (l) => ({
      ...l,
      address: { ...l.address, port: await concretePort(l.address) },
    })),
  )
  const workerConfig: ResolvedConfig = {
    ...config,
    proxy: { ...config.proxy, listeners },
    consul: { ...config.consul, token: '', tokenFile: '' },
  }
  /** Workers that asked for tables, and those that also carry traffic. */
  const fed = new Set<Worker>()
  const listening = new Set<Worker>()
  let stopping = false
  let resolveUrl!: (url: string) => void
  const proxyUrl = new Promise<string>((resolve) => {
    resolveUrl = resolve
  })
  let fail!: (error: Error) => void
  const failed = new Promise<Error>((resolve) => {
    fail = resolve
  })

  const pending = new Map<number, { resolve: (m: Metrics) => void; left: number; parts: Metrics[] }>()
  let nextId = 1
  // A worker can go away between the check and the write: the error then
  // belongs to the callback (its exit is handled elsewhere), not to a crash.
  const send = (worker: Worker, message: ToWorker) => {
    if (worker.isConnected()) worker.send(message, () => {})
  }

  const fork = (): Worker => {
    // The config the primary validated, not a second read of the file (which
    // may have changed since): workers need no token, so none is passed.
    const worker = cluster.fork({ [WORKER_CONFIG_ENV]: JSON.stringify(workerConfig) })
    worker.on('error', (err) =>
      log.debug({ worker: worker.id, err: err.message }, 'proxy worker channel error'),
    )
    worker.on('message', (message: ToPrimary) => {
      if (message.t === 'cannot-listen') {
        // Restarting would fail the same way (address in use, no permission).
        stopping = true
        fail(new SwitchyardError('SWY_ERR_LISTEN', `proxy worker: ${message.message}`))
      } else if (message.t === 'hello') {
        // From now on it gets every table; it listens only once it has this one.
        fed.add(worker)
        send(worker, certificatesMessage())
        send(worker, { t: 'table', table: store.loaded ? store.current : null })
      } else if (message.t === 'listening') {
        listening.add(worker)
        resolveUrl(message.url)
      } else if (message.t === 'metrics') {
        const request = pending.get(message.id)
        if (request === undefined) return
        request.parts.push(message.metrics)
        lastMetrics.set(worker, message.metrics)
        if (--request.left === 0) {
          pending.delete(message.id)
          request.resolve(request.parts.flat())
        }
      }
    })
    worker.on('exit', (code, signal) => {
      listening.delete(worker)
      fed.delete(worker)
      retire(worker)
      if (stopping) return
      // A crashed worker is replaced; the others carry traffic meanwhile.
      log.error({ worker: worker.id, code, signal }, 'proxy worker exited; starting a new one')
      setTimeout(() => {
        if (!stopping) fork()
      }, 1_000).unref()
    })
    return worker
  }

  store.onSwap((table, previous) => {
    if (fed.size === 0) return
    const delta = encodeTableDelta(previous, table)
    for (const worker of fed) send(worker, { t: 'delta', delta })
  })
  // Plain data: each worker builds its own TLS contexts from the same entries.
  const certificatesMessage = (): ToWorker => ({
    t: 'certificates',
    entries: control.certificates.entries,
    ticketKeys: control.certificates.sessionTicketKeys,
  })
  control.certificates.onChange(() => {
    for (const worker of fed) send(worker, certificatesMessage())
  })

  // Counters of workers that exited, as last scraped, so that a replaced
  // worker starting from 0 does not make the summed counters fall (Prometheus
  // would read that as a reset and rate() would spike).
  const lastMetrics = new Map<Worker, Metrics>()
  let retired: Metrics = []
  let retiring = Promise.resolve()
  const retire = (worker: Worker) => {
    const last = lastMetrics.get(worker)
    lastMetrics.delete(worker)
    if (last === undefined) return
    const counts = last.filter((m) => ['counter', 'histogram'].includes(String(m.type)))
    retiring = retiring.then(async () => {
      const merged = AggregatorRegistry.aggregate([retired, counts] as Parameters<
        typeof AggregatorRegistry.aggregate
      >[0])
      retired = (await merged.getMetricsAsJSON()) as Metrics
    })
  }

  /** Every worker's metrics (those that answer within 2 s), to add to the primary's. */
  const workerMetrics = (): Promise<Metrics[]> => {
    const targets = [...listening]
    if (targets.length === 0) return Promise.resolve([])
    const id = nextId++
    return new Promise((resolve) => {
      const parts: Metrics[] = []
      const timer = setTimeout(() => {
        pending.delete(id)
        resolve(parts)
      }, 2_000)
      pending.set(id, {
        left: targets.length,
        parts,
        resolve: () => {
          clearTimeout(timer)
          resolve(parts)
        },
      })
      for (const worker of targets) send(worker, { t: 'metrics', id })
    })
  }

  const admin: Server = createAdminServer({
    ...control.adminOptions,
    // Ready also needs a worker that carries traffic.
    status: () => {
      const status = sync.status()
      return listening.size > 0 ? status : { ...status, loaded: false }
    },
    metrics: async () => {
      // The primary first: its table and watch gauges win ('first'), request counts add up.
      const live = await workerMetrics()
      await retiring
      const all = [await metrics.json(), retired, ...live]
      const registry = AggregatorRegistry.aggregate(all as Parameters<typeof AggregatorRegistry.aggregate>[0])
      return { contentType: registry.contentType, body: await registry.metrics() }
    },
  })
  // The admin address first: when it is taken, start-up fails before any worker exists.
  const adminUrl = await listen(admin, config.admin.listen).catch(async (err) => {
    await control.stop(admin)
    throw err
  })
  // Workers start with the certificates there are (a failing source is a problem, not a wait).
  await control.certificateSources.start().ready
  for (let i = 0; i < workers; i++) fork()
  void proxyUrl.then((proxy) =>
    log.info({ proxy, admin: adminUrl, workers, consul: config.consul.origin }, 'switchyard listening'),
  )

  const loaded = sync.start()
  loaded.then(collectStartupGarbage, (err) => log.error({ err }, 'consul sync failed to start'))

  let stopped: Promise<void> | null = null
  const stop = () => {
    stopped ??= (async () => {
      stopping = true
      const all = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined)
      const exits = all.map(
        (w) => new Promise<void>((resolve) => (w.isDead() ? resolve() : w.once('exit', () => resolve()))),
      )
      for (const worker of all) send(worker, { t: 'stop' })
      // Workers drain up to the shutdown timeout themselves; this is the backstop.
      const backstop = setTimeout(() => {
        for (const worker of all) worker.process.kill('SIGKILL')
      }, config.proxy.timeouts.shutdown + 5_000)
      await Promise.all(exits)
      clearTimeout(backstop)
      await control.stop(admin)
      log.info('stopped')
    })()
    return stopped
  }

  return { adminUrl, proxyUrl, loaded, failed, stop }
}

/**
 * The port to give every worker: `at.port`, checked free (workers bind with
 * SO_REUSEPORT, which would share a port another proxy holds), or a free one
 * when it is 0.
 */
const concretePort = probePort

/** To the primary, unless it is gone (then the 'disconnect' handler stops this worker). */
function toPrimary(message: ToPrimary): void {
  if (process.connected) process.send?.(message, undefined, undefined, () => {})
}

/** A worker: waits for tables from the primary and proxies with them until told to stop. */
/**
 * A proxy worker forked by `serve`'s primary. Its config comes from the
 * primary, it has no Consul access (so no token), tables arrive over IPC. Its
 * command line is not looked at: in the single executable, cluster.fork()
 * passes the executable's own path where a script would be.
 */
export async function serveAsWorker(env: Readonly<Record<string, string | undefined>>): Promise<number> {
  const config = workerConfigFrom(env)
  await runWorker(
    config,
    createLogger(config.log.level).child({ worker: cluster.worker?.id, pid: process.pid }),
  )
  return 0
}

export async function runWorker(config: ResolvedConfig, log: Logger): Promise<void> {
  const store = new TableStore()
  // Fed by the primary; what this worker's https listeners serve.
  const certificates = new CertificateStore(tlsSettingsOf(config.tls))
  const noSync: SyncStatus = { loaded: true, staleForMs: 0, lastSyncAt: 0, watches: [], problems: [] }
  const metrics = new SwitchyardMetrics({ store, status: () => noSync })
  const observer = combineObservers([
    metrics.observer,
    config.proxy.accessLog ? accessLogObserver(log) : null,
  ])
  const https = proxyListeners(config).some((l) => l.protocol === 'https')
  const data = createDataPlane(config, store, log, observer, https ? certificates : null)

  let done!: () => void
  const finished = new Promise<void>((resolve) => {
    done = resolve
  })
  // The first answer to `hello` is the current table (or null before there is
  // one): listening only after it means no request meets an empty table while
  // the primary has a full one.
  let gotFirst!: () => void
  const firstTable = new Promise<void>((resolve) => {
    gotFirst = resolve
  })
  let stopping = false
  const listening = firstTable.then(() =>
    stopping ? null : data.listen(true).then((urls) => urls[0] as string),
  )
  const stop = () => {
    if (stopping) return
    stopping = true
    // Stopped before the first table came (the primary is gone): never listen.
    gotFirst()
    // A stop may come while the listener is still opening: drain it once open.
    void listening
      .catch(() => {})
      .then(() => data.stop())
      .then(() => certificates.close())
      .then(done, done)
  }
  process.on('message', (message: ToWorker) => {
    if (message.t === 'table') {
      if (message.table !== null) store.swap(message.table)
      gotFirst()
    } else if (message.t === 'delta') {
      let next: RouteTable
      try {
        next = applyTableDelta(store.current, message.delta)
      } catch (err) {
        // Not the table it was made from (cannot happen over one ordered
        // channel, but if it did): ask for the whole current table again.
        log.warn({ err: (err as Error).message }, 'table delta did not apply; asking for the whole table')
        toPrimary({ t: 'hello' })
        return
      }
      store.swap(next)
    } else if (message.t === 'metrics') {
      void metrics.json().then((m) => {
        // Plain data only: some metric objects carry functions, which IPC cannot clone.
        const reply: ToPrimary = { t: 'metrics', id: message.id, metrics: JSON.parse(JSON.stringify(m)) }
        toPrimary(reply)
      })
    } else if (message.t === 'certificates') {
      certificates.setSessionTicketKeys(Buffer.from(message.ticketKeys))
      certificates.update(message.entries)
    } else if (message.t === 'stop') stop()
  })
  // Ctrl-C reaches every process of the group: drain like on the primary's word.
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
  // The primary died without a word (killed): nobody will send tables or stop.
  process.on('disconnect', stop)
  const hello: ToPrimary = { t: 'hello' }
  toPrimary(hello)

  let url: string | null
  try {
    url = await listening
  } catch (err) {
    const reply: ToPrimary = { t: 'cannot-listen', message: (err as Error).message }
    toPrimary(reply)
    process.exitCode = 1
    if (process.connected) process.disconnect()
    return
  }
  if (url !== null) {
    log.info({ proxy: url }, 'proxy worker listening')
    const ready: ToPrimary = { t: 'listening', url }
    toPrimary(ready)
  }
  await finished
  // The IPC channel would keep the process alive.
  if (process.connected) process.disconnect()
}
