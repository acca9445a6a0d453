// Wiring for `switchyard serve`: Consul client → sync → store → proxy and
// admin listeners. Also used in-process by the tests, so what they start is
// exactly what the CLI starts.

import { once } from 'node:events'
import type { Server } from 'node:http'
import { type AddressInfo, createServer as createNetServer, type Server as NetServer } from 'node:net'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { createAdminServer } from '../admin/server.js'
import { proxyListeners } from '../config/listeners.js'
import type { ResolvedConfig } from '../config/load.js'
import { ConsulClient } from '../consul/client.js'
import { ConfigError, SwitchyardError } from '../errors.js'
import type { Logger } from '../log.js'
import { accessLogObserver } from '../metrics/access-log.js'
import { SwitchyardMetrics } from '../metrics/metrics.js'
import { combineObservers } from '../metrics/observers.js'
import { BasicAuth } from '../proxy/auth.js'
import { compileTrustedProxies } from '../proxy/client-address.js'
import { PassiveHealth } from '../proxy/health.js'
import {
  createHandler,
  createProxyListener,
  type ProxyListener,
  type ProxyOptions,
  type TlsSource,
} from '../proxy/listener.js'
import type { ProxyObserver } from '../proxy/observer.js'
import { Balancer } from '../proxy/pickers.js'
import { Sweeper } from '../proxy/sweeper.js'
import { Upstreams } from '../proxy/upstreams.js'
import type { BuildConfig } from '../routing/build.js'
import { StickyKeys } from '../routing/sticky.js'
import type { BackendPool, Route } from '../routing/types.js'
import { TableStore } from '../table/store.js'
import { TableSync } from '../table/sync.js'
import { tlsSettingsOf } from '../tls/server-options.js'
import { CertificateSources, certificateReport } from '../tls/sources.js'
import { CertificateStore } from '../tls/store.js'

export interface Switchyard {
  readonly store: TableStore
  readonly sync: TableSync
  readonly proxy: NetServer
  readonly admin: Server
  readonly metrics: SwitchyardMetrics
  /** Per-request state outside the table (in-flight counts, ejected instances, pools), for tests and status. */
  readonly balancer: Balancer
  readonly health: PassiveHealth
  readonly upstreams: Upstreams
  /** `http://host:port` of the proxy listener. */
  readonly proxyUrl: string
  /** Every listener's URL (`http://…` or `https://…`), in the order configured. */
  readonly proxyUrls: readonly string[]
  readonly adminUrl: string
  /** Resolves when the first table built from Consul is serving. */
  readonly loaded: Promise<void>
  /** Stops accepting, lets in-flight requests finish (up to the shutdown timeout), closes everything. */
  stop(): Promise<void>
}

export async function startSwitchyard(
  config: ResolvedConfig,
  deps: { log: Logger; token: string; observer?: ProxyObserver; tls?: TlsSource },
): Promise<Switchyard> {
  const { log } = deps
  // Certificates given by the caller (tests) replace those of the config.
  const control = createControlPlane(config, log, deps.token, { certificates: deps.tls === undefined })
  const { store, sync, metrics } = control
  const observer = combineObservers([
    metrics.observer,
    config.proxy.accessLog ? accessLogObserver(log) : null,
    deps.observer,
  ])
  const data = createDataPlane(config, store, log, observer, deps.tls ?? control.tls)
  const admin = createAdminServer({ ...control.adminOptions, metrics: () => metrics.text() })

  const adminUrl = await listen(admin, config.admin.listen)
  // The first handshakes get the certificates there are (a source that fails is a problem, not a wait).
  await control.certificateSources.start().ready
  const proxyUrls = await data.listen(false).catch(async (err) => {
    await data.stop()
    await control.stop(admin)
    throw err
  })
  const proxyUrl = proxyUrls[0] as string
  log.info({ proxy: proxyUrls, admin: adminUrl, consul: config.consul.origin }, 'switchyard listening')

  const loaded = sync.start()
  loaded.then(collectStartupGarbage, (err) => log.error({ err }, 'consul sync failed to start'))

  let stopping: Promise<void> | null = null
  const stop = () => {
    stopping ??= (async () => {
      await data.stop()
      await control.stop(admin)
      log.info('stopped')
    })()
    return stopping
  }

  return { store, sync, admin, metrics, ...data, proxyUrl, proxyUrls, adminUrl, loaded, stop }
}

/**
 * What reads Consul and decides: client, sync, store, metrics, and the admin
 * listener's sources. One per host, whatever the number of workers.
 *
 * With an https listener, it also reads the TLS certificates (files and KV,
 * `tls.certificates`) into `certificates`, the store those listeners serve
 * from (`tls`; null without https). `options.certificates: false` leaves them
 * unread, for a caller that brings its own.
 */
export function createControlPlane(
  config: ResolvedConfig,
  log: Logger,
  token: string,
  options: { readonly certificates?: boolean } = {},
) {
  // Every htpasswd file must be readable before anything starts (exit code 2
  // otherwise), also in the primary process, which serves no request itself.
  basicAuthOf(config, null, false)
  stickyKeysOf(config, null, false)?.close()
  const https = options.certificates !== false && proxyListeners(config).some((l) => l.protocol === 'https')
  const client = consulClientFor(config, token)
  const store = new TableStore()
  const watch = {
    waitMs: config.consul.wait,
    stale: config.consul.stale,
    cached: config.consul.cached,
    minIntervalMs: config.consul.minInterval,
    backoffInitialMs: config.consul.backoffInitial,
    backoffMaxMs: config.consul.backoffMax,
  }
  const sync: TableSync = new TableSync({
    client,
    store,
    log,
    watch,
    build: buildConfigOf(config),
    onBuild: (ms, changed) => metrics.observeBuild(ms, changed),
  })
  const certificates = new CertificateStore(tlsSettingsOf(config.tls), { log })
  const certificateSources = new CertificateSources({
    dir: config.tls.certificates.dir,
    consulPrefix: config.tls.certificates.consulPrefix,
    enabled: https,
    client,
    watch,
    log,
    onChange: (entries) => certificates.update(entries),
  })
  const certificatesView = () => certificateReport(certificates, certificateSources)
  const metrics = new SwitchyardMetrics({
    store,
    status: () => sync.status(),
    certificates: certificatesView,
  })
  const adminOptions = {
    store,
    status: () => sync.status(),
    readinessMaxStaleMs: config.readiness.maxStale,
    config: redactConfig(config),
    log,
    certificates: certificatesView,
  }
  const stop = async (admin: Server) => {
    admin.closeAllConnections()
    await Promise.all([
      new Promise<void>((resolve) => admin.close(() => resolve())),
      sync.stop(),
      certificateSources.stop(),
    ])
    certificates.close()
    await client.close()
  }
  const tls: TlsSource | null = https ? certificates : null
  return { client, store, sync, metrics, adminOptions, certificates, certificateSources, tls, stop }
}

/**
 * What carries traffic: the proxy listener with its pools, picker state and
 * passive health, reading whatever table `store` holds. One per worker.
 */
export function createDataPlane(
  config: ResolvedConfig,
  store: TableStore,
  log: Logger,
  observer: ProxyObserver,
  tls: TlsSource | null,
) {
  const t = config.proxy.timeouts
  const sweeper = new Sweeper(
    Math.min(t.connect, t.responseHeaders, t.idle, t.clientHeaders, t.clientBody, t.clientKeepAlive, t.queue),
  )
  const upstreams = new Upstreams(
    {
      connectTimeoutMs: t.connect,
      responseHeadersTimeoutMs: t.responseHeaders,
      idleTimeoutMs: t.idle,
      keepAliveTimeoutMs: t.upstreamKeepAlive,
      maxConnections: config.proxy.connectionsPerUpstream,
      maxQueue: config.proxy.upstreamQueue,
      queueTimeoutMs: t.queue,
      maxHeaderSize: Math.max(config.proxy.maxHeaderSize, 65_536),
    },
    sweeper,
  )
  const balancer = new Balancer(config.proxy.strategy)
  const passive = config.proxy.passiveHealth
  const health = new PassiveHealth({
    failures: passive.failures,
    ejectMs: passive.ejectFor,
    ejectMaxMs: passive.ejectForMax,
    probeTimeoutMs: t.connect,
    onChange: (target, ejected, forMs) => {
      if (ejected)
        log.warn({ instance: target.key, forMs }, 'instance ejected after repeated connect failures')
      else log.info({ instance: target.key }, 'ejected instance accepts connections again')
      observer.passiveHealth?.(target, ejected, forMs)
    },
  })
  store.onSwap((table) => {
    balancer.retain(new Set(table.routes.flatMap((r) => [r.id, ...variantPools(r).map((p) => p.id)])))
    health.retain(
      new Set(
        table.routes.flatMap((r) =>
          [...r.backends, ...variantPools(r).flatMap((p) => p.backends)].map((x) => x.key),
        ),
      ),
    )
    upstreams.retain(new Set(table.routes.flatMap((r) => [...r.backends, ...r.idle].map((x) => x.origin))))
  })

  const auth = basicAuthOf(config, log)
  const sticky = stickyKeysOf(config, log)
  const options: ProxyOptions = {
    store,
    balancer,
    upstreams,
    log,
    observer,
    retries: config.proxy.retries,
    health,
    trustedProxies: compileTrustedProxies(config.proxy.trustedProxies),
    auth,
    sticky,
    sweeper,
    limits: {
      maxHeaderSize: config.proxy.maxHeaderSize,
      maxHeaderCount: config.proxy.limits.maxHeaderCount,
      maxBodySize: config.proxy.limits.maxBodySize,
      requestBuffer: config.proxy.limits.requestBuffer,
      headersTimeoutMs: t.clientHeaders,
      bodyTimeoutMs: t.clientBody,
      keepAliveTimeoutMs: t.clientKeepAlive,
      sendTimeoutMs: t.idle,
    },
  }
  const handle = createHandler(options)
  const h2 = config.proxy.http2
  const http2 = {
    maxConcurrentStreams: h2.maxConcurrentStreams,
    maxHeaderListSize: h2.maxHeaderListSize,
    maxResetsPerSecond: h2.maxResetsPerSecond,
    idleTimeoutMs: t.idle,
  }
  const listeners = proxyListeners(config).map((l) => {
    if (l.protocol === 'https' && tls === null)
      throw new ConfigError(
        'proxy.listeners',
        `${l.address.host}:${l.address.port} is https but no certificates are configured`,
      )
    const listener = createProxyListener(options, { tls: l.protocol === 'https' ? tls : null, http2 }, handle)
    return { config: l, listener }
  })
  const proxy = (listeners[0] as (typeof listeners)[number]).listener.server
  /** Opens every listener; `shared` for worker processes (SO_REUSEPORT). Resolves with their URLs. */
  const open = async (shared: boolean): Promise<string[]> => {
    const urls: string[] = []
    for (const { config: l, listener } of listeners) {
      const url = await openProxyListener(listener, l.address, shared)
      urls.push(l.protocol === 'https' ? url.replace(/^http:/, 'https:') : url)
    }
    return urls
  }
  /** Stops accepting, drains in-flight requests up to the shutdown timeout, closes the pools. */
  const stop = async () => {
    log.info({ graceMs: t.shutdown }, 'shutting down: draining in-flight requests')
    const results = await Promise.all(listeners.map(({ listener }) => listener.drain(t.shutdown)))
    const cut = results.reduce((n, r) => n + r.cut, 0)
    if (cut > 0) log.warn({ connections: cut, graceMs: t.shutdown }, 'shutdown deadline: connections cut')
    auth.close()
    sticky?.close()
    upstreams.close()
  }
  return { proxy, balancer, health, upstreams, listen: open, stop }
}

/** The pools of a route's match rules and sticky split, whose picker positions and health must survive a swap too. */
function variantPools(route: Route): BackendPool[] {
  const v = route.variants
  if (v === null) return []
  return [...v.rules.map((r) => r.pool), ...(v.sticky?.versions.map((s) => s.pool) ?? [])]
}

export function consulClientFor(config: ResolvedConfig, token: string): ConsulClient {
  return new ConsulClient({
    address: config.consul.origin,
    token,
    datacenter: config.consul.datacenter,
    tls: config.consul.tls.enabled || config.consul.origin.startsWith('https:') ? config.consul.tls : null,
  })
}

export function buildConfigOf(config: ResolvedConfig): BuildConfig {
  return {
    tagPrefix: config.routing.tagPrefix,
    healthyStatuses: config.routing.healthyStatuses,
    targetPrefix: config.routing.targetPrefix,
    fallthrough: config.routing.fallthrough,
    matcher: config.routing.matcher,
    checksRequired: config.routing.checksRequired,
    authSchemes: config.proxy.auth.map((a) => a.name),
    fabioKvPath: config.routing.fabio.kvPath,
    noRouteHtmlPath: config.routing.fabio.noRouteHtmlPath,
    stickyKeys: config.routing.stickyKeyFile !== '',
  }
}

/** routing.stickyKeyFile's keys, or null when none is configured; throws a ConfigError when it cannot be read. */
export function stickyKeysOf(config: ResolvedConfig, log: Logger | null, watch = true): StickyKeys | null {
  const file = config.routing.stickyKeyFile
  return file === '' ? null : new StickyKeys(file, config.routing.stickyMaxAge, log, watch)
}

/** proxy.auth as the data plane's basic auth; throws a ConfigError when a file cannot be read. */
export function basicAuthOf(config: ResolvedConfig, log: Logger | null, watch = true): BasicAuth {
  return new BasicAuth(config.proxy.auth, log, watch)
}

/**
 * Node has `reusePort` from 22.12 (and 23.1), where the kernel spreads
 * connections over the sockets (Linux, FreeBSD; libuv refuses it elsewhere,
 * macOS included). Without it, one listening socket per address, and workers
 * share it through node:cluster's primary (connections handed over one at a
 * time, those in transit lost when a worker dies).
 */
const REUSE_PORT = (() => {
  if (process.platform !== 'linux' && process.platform !== 'freebsd') return false
  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number)
  return major > 23 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12)
})()

/**
 * Connections the kernel completes and queues before Switchyard accepts them
 * (capped by net.core.somaxconn, 4096 on current kernels). Node's default,
 * 511, overflows when a thousand clients connect at once: the kernel then
 * drops handshakes, and those clients wait a 1 s SYN retransmit (measured:
 * p99 0.85–1.6 s at 1,000 connections with 511; see bench/results/).
 */
export const LISTEN_BACKLOG = 4_096

/**
 * Listening sockets per proxy address and process (see ProxyListener.addAcceptor).
 * Measured with wrk, 1,000 connections opened while the previous 1,000 were
 * still being served (p99, two runs each): 1 socket 0.97–1.04 s with 230–344
 * requests timed out, 16 sockets 366–406 ms, 64 sockets 107–113 ms, 128
 * sockets 64–92 ms, 256 no better.
 */
export const ACCEPT_SOCKETS = 64

/**
 * Opens a proxy listener on `at`: ACCEPT_SOCKETS sockets bound with
 * SO_REUSEPORT, among which the kernel spreads new connections. `shared`:
 * worker processes each bind the address themselves the same way (no
 * hand-over through the primary, which serialises accepts and loses the
 * connections in transit when a worker dies).
 */
async function openProxyListener(
  listener: ProxyListener,
  at: { host: string; port: number },
  shared: boolean,
): Promise<string> {
  if (!REUSE_PORT) return listen(listener.server, at)
  // With SO_REUSEPORT a second proxy started on a port in use would share it
  // silently: one process on its own must find the port free.
  if (!shared && at.port !== 0) await probePort(at)
  const url = await listen(listener.server, at, true)
  const port = Number(new URL(url).port)
  for (let i = 1; i < ACCEPT_SOCKETS; i++) await listen(listener.addAcceptor(), { host: at.host, port }, true)
  return url
}

/**
 * Binds `at` once and lets go: the port that was bound (a free one for port 0),
 * or SWY_ERR_LISTEN when any socket, SO_REUSEPORT or not, holds it.
 */
export async function probePort(at: { host: string; port: number }): Promise<number> {
  const probe = createNetServer()
  const url = await listen(probe, at)
  await new Promise((resolve) => probe.close(resolve))
  return Number(new URL(url).port)
}

/**
 * Opens `server` on `at`. `reusePort`: bound with SO_REUSEPORT, beside the
 * other sockets of this process or of the other workers on that address.
 */
export async function listen(
  server: Server | NetServer,
  at: { host: string; port: number },
  reusePort = false,
): Promise<string> {
  if (reusePort && REUSE_PORT)
    server.listen({ port: at.port, host: at.host, backlog: LISTEN_BACKLOG, reusePort: true, exclusive: true })
  else server.listen({ port: at.port, host: at.host, backlog: LISTEN_BACKLOG })
  try {
    await once(server, 'listening')
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message
    throw new SwitchyardError('SWY_ERR_LISTEN', `cannot listen on ${at.host}:${at.port}: ${reason}`)
  }
  const address = server.address() as AddressInfo
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
  return `http://${host}:${address.port}`
}

/**
 * One full collection once the first table is served. Reading and building
 * it (at 1,000 services, a thousand Consul answers parsed and a table of
 * 10,000 instances) leaves garbage that V8 otherwise keeps resident for as
 * long as the proxy stays quiet. V8 offers this only as the `gc` function of
 * a context created with --expose-gc, which can be set this late.
 */
export function collectStartupGarbage(): void {
  try {
    setFlagsFromString('--expose-gc')
    const gc = runInNewContext('gc') as unknown
    if (typeof gc === 'function') gc()
  } catch {
    // Only memory is at stake.
  }
}

/** The config as the admin API and logs may show it. */
function redactConfig(config: ResolvedConfig): unknown {
  return { ...config, consul: { ...config.consul, token: config.consul.token ? '[redacted]' : '' } }
}
