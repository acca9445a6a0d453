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
import { Balancer } from '../proxy/pickers.js'
import { createProxyServer, type ProxyObserver } from '../proxy/server.js'
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
  })

  const t = config.proxy.timeouts
  const upstreams = new Upstreams({
    connectTimeoutMs: t.connect,
    responseHeadersTimeoutMs: t.responseHeaders,
    idleTimeoutMs: t.idle,
    keepAliveTimeoutMs: t.upstreamKeepAlive,
    connections: config.proxy.connectionsPerUpstream,
  })
  const balancer = new Balancer(config.proxy.strategy)
  store.onSwap((table) => {
    balancer.retain(new Set(table.routes.map((r) => r.id)))
    upstreams.retain(new Set(table.routes.flatMap((r) => [...r.targets, ...r.idle].map((x) => x.origin))))
  })

  const proxy = createProxyServer(
    { store, balancer, upstreams, log, observer: deps.observer, retries: config.proxy.retries },
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
      const closed = new Promise<void>((resolve) => proxy.close(() => resolve()))
      proxy.closeIdleConnections()
      const deadline = setTimeout(() => proxy.closeAllConnections(), t.shutdown)
      await closed
      clearTimeout(deadline)
      admin.closeAllConnections()
      await Promise.all([new Promise<void>((resolve) => admin.close(() => resolve())), sync.stop()])
      await upstreams.close()
      await client.close()
      log.info('stopped')
    })()
    return stopping
  }

  return { store, sync, proxy, admin, proxyUrl, adminUrl, loaded, stop }
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
