// Wiring for `switchyard serve`: Consul client → sync → store → proxy and
// admin listeners. Also used in-process by the tests, so what they start is
// exactly what the CLI starts.

import { once } from 'node:events'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createAdminServer } from '../admin/server.js'
import type { ResolvedConfig } from '../config/load.js'
import { ConsulClient } from '../consul/client.js'
import type { Logger } from '../log.js'
import { accessLogObserver } from '../metrics/access-log.js'
import { SwitchyardMetrics } from '../metrics/metrics.js'
import { combineObservers } from '../metrics/observers.js'
import { PassiveHealth } from '../proxy/health.js'
import { Balancer } from '../proxy/pickers.js'
import { createProxyServer, drainProxyServer, type ProxyObserver } from '../proxy/server.js'
import { Upstreams } from '../proxy/upstreams.js'
import type { BuildConfig } from '../routing/build.js'
import { TableStore } from '../table/store.js'
import { TableSync } from '../table/sync.js'
import { redactConfig } from './token.js'

export interface Switchyard {
  readonly store: TableStore
  readonly sync: TableSync
  readonly proxy: Server
  readonly admin: Server
  readonly metrics: SwitchyardMetrics
  /** Per-request state outside the table (in-flight counts, ejected instances, pools), for tests and status. */
  readonly balancer: Balancer
  readonly health: PassiveHealth
  readonly upstreams: Upstreams
  /** `http://host:port` of the proxy listener. */
  readonly proxyUrl: string
  readonly adminUrl: string
  /** Resolves when the first table built from Consul is serving. */
  readonly loaded: Promise<void>
  /** Stops accepting, lets in-flight requests finish (up to the shutdown timeout), closes everything. */
  stop(): Promise<void>
}

export async function startSwitchyard(
  config: ResolvedConfig,
  deps: { log: Logger; token: string; observer?: ProxyObserver },
): Promise<Switchyard> {
  const { log } = deps
  const client = consulClientFor(config, deps.token)
  const store = new TableStore()
  const sync = new TableSync({
    client,
    store,
    log,
    watch: {
      waitMs: config.consul.wait,
      stale: config.consul.stale,
      cached: config.consul.cached,
      minIntervalMs: config.consul.minInterval,
      backoffInitialMs: config.consul.backoffInitial,
      backoffMaxMs: config.consul.backoffMax,
    },
    build: buildConfigOf(config),
    onBuild: (ms, changed) => metrics.observeBuild(ms, changed),
  })
  const metrics = new SwitchyardMetrics({ store, status: () => sync.status() })
  const observer = combineObservers([
    metrics.observer,
    config.proxy.accessLog ? accessLogObserver(log) : null,
    deps.observer,
  ])

  const t = config.proxy.timeouts
  const upstreams = new Upstreams({
    connectTimeoutMs: t.connect,
    responseHeadersTimeoutMs: t.responseHeaders,
    idleTimeoutMs: t.idle,
    keepAliveTimeoutMs: t.upstreamKeepAlive,
    connections: config.proxy.connectionsPerUpstream,
  })
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
    balancer.retain(new Set(table.routes.map((r) => r.id)))
    health.retain(new Set(table.routes.flatMap((r) => r.targets.map((x) => x.key))))
    upstreams.retain(new Set(table.routes.flatMap((r) => [...r.targets, ...r.idle].map((x) => x.origin))))
  })

  const proxy = createProxyServer(
    { store, balancer, upstreams, log, observer, retries: config.proxy.retries, health },
    {
      maxHeaderSize: config.proxy.maxHeaderSize,
      clientHeadersTimeoutMs: t.clientHeaders,
      keepAliveTimeoutMs: t.clientKeepAlive,
    },
  )
  const admin = createAdminServer({
    store,
    status: () => sync.status(),
    readinessMaxStaleMs: config.readiness.maxStale,
    config: redactConfig(config),
    metrics: () => metrics.text(),
    log,
  })

  const adminUrl = await listen(admin, config.admin.listen)
  const proxyUrl = await listen(proxy, config.proxy.listen)
  log.info({ proxy: proxyUrl, admin: adminUrl, consul: config.consul.origin }, 'switchyard listening')

  const loaded = sync.start()
  loaded.catch((err) => log.error({ err }, 'consul sync failed to start'))

  let stopping: Promise<void> | null = null
  const stop = () => {
    stopping ??= (async () => {
      log.info({ graceMs: t.shutdown }, 'shutting down: draining in-flight requests')
      const { cut } = await drainProxyServer(proxy, t.shutdown)
      if (cut > 0) log.warn({ connections: cut, graceMs: t.shutdown }, 'shutdown deadline: connections cut')
      admin.closeAllConnections()
      await Promise.all([new Promise<void>((resolve) => admin.close(() => resolve())), sync.stop()])
      await upstreams.close()
      await client.close()
      log.info('stopped')
    })()
    return stopping
  }

  return {
    store,
    sync,
    proxy,
    admin,
    metrics,
    balancer,
    health,
    upstreams,
    proxyUrl,
    adminUrl,
    loaded,
    stop,
  }
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
  }
}

async function listen(server: Server, at: { host: string; port: number }): Promise<string> {
  server.listen(at.port, at.host)
  await once(server, 'listening')
  const address = server.address() as AddressInfo
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
  return `http://${host}:${address.port}`
}
