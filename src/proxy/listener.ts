// A proxy listener: a node:net server whose connections are HTTP/1.1
// ClientConnections answering through the attempt path. Returned with its
// drain handle, so shutdown needs no lookup on the side.

import { createServer, type Server, type Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { Logger } from '../log.js'
import type { TableStore } from '../table/store.js'
import { createRequestHandler } from './attempt.js'
import type { PassiveHealth } from './health.js'
import {
  type ClientConnection,
  type ClientContext,
  type ClientLimits,
  ClientConnection as Connection,
} from './http1/client.js'
import { assertParserAvailable } from './http1/llhttp.js'
import type { Upstreams } from './http1/upstream.js'
import { NO_OBSERVER, type ProxyObserver } from './observer.js'
import type { Balancer } from './pickers.js'
import type { Sweeper } from './sweeper.js'

export interface ProxyOptions {
  readonly store: TableStore
  readonly balancer: Balancer
  readonly upstreams: Upstreams
  readonly log: Logger
  readonly observer?: ProxyObserver
  /** Extra attempts after a failure that cannot have reached the application. */
  readonly retries: number
  /** Passive health; null to turn it off. */
  readonly health?: PassiveHealth | null
  readonly limits: ClientLimits
  readonly sweeper: Sweeper
}

export interface ProxyListener {
  readonly server: Server
  /** Live client connections (for tests and status). */
  readonly connections: ReadonlySet<ClientConnection>
  /**
   * Graceful stop: stop accepting, close idle keep-alive connections at once
   * and the others as soon as their response is done (responses sent
   * meanwhile say `Connection: close`); cut whatever is left (slow requests,
   * WebSockets) at `graceMs`. Resolves when every connection is gone, with the
   * number that had to be cut.
   */
  drain(graceMs: number): Promise<{ cut: number }>
}

export function createProxyListener(options: ProxyOptions): ProxyListener {
  assertParserAvailable()
  const observer = options.observer ?? NO_OBSERVER
  const handle = createRequestHandler({
    store: options.store,
    balancer: options.balancer,
    upstreams: options.upstreams,
    log: options.log,
    observer,
    retries: options.retries,
    health: options.health ?? null,
  })
  const connections = new Set<ClientConnection>()
  const tunnels = new Set<Duplex>()
  const ctx: ClientContext = {
    limits: options.limits,
    sweeper: options.sweeper,
    proto: 'http',
    observer,
    handle,
    draining: false,
    connections,
    tunnels,
  }
  const server = createServer({ noDelay: true }, (socket: Socket) => {
    if (ctx.draining) {
      socket.destroy()
      return
    }
    new Connection(socket, ctx)
  })

  const drain = async (graceMs: number): Promise<{ cut: number }> => {
    ctx.draining = true
    const closed = new Promise<void>((resolve) => server.close(() => resolve()))
    for (const c of connections) c.closeIfIdle()
    let cut = 0
    const deadline = setTimeout(() => {
      cut = connections.size + tunnels.size
      for (const c of connections) c.socket.destroy()
      for (const t of tunnels) t.destroy()
    }, graceMs)
    try {
      // Tunnels' sockets still count as the server's connections.
      await closed
    } finally {
      clearTimeout(deadline)
    }
    return { cut }
  }

  return { server, connections, drain }
}
