// A proxy listener: plain HTTP (node:net) or HTTPS (node:tls, certificate by
// SNI, HTTP/2 and HTTP/1.1 on the same port by ALPN). Every connection answers
// through the one attempt path. Returned with its drain handle, so shutdown
// needs no lookup on the side.

import { createServer as createNetServer, type Server, type Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import type { Duplex } from 'node:stream'
import {
  createServer as createTlsServer,
  type SecureContext,
  type TLSSocket,
  type TlsOptions,
} from 'node:tls'
import { assertParserAvailable } from '../llhttp.js'
import type { Logger } from '../log.js'
import type { StickySigner } from '../routing/sticky.js'
import type { TableStore } from '../table/store.js'
import { createRequestHandler } from './attempt.js'
import type { BasicAuth } from './auth.js'
import type { TrustedProxies } from './client-address.js'
import type { Downstream } from './exchange.js'
import type { PassiveHealth } from './health.js'
import { ClientConnection, type ClientContext, type ClientLimits } from './http1/client.js'
import { Http2Front, type Http2Limits } from './http2/client.js'
import { NO_OBSERVER, type ProxyObserver } from './observer.js'
import type { Balancer } from './pickers.js'
import type { Sweeper } from './sweeper.js'
import type { Upstreams } from './upstreams.js'

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
  /** proxy.trustedProxies: who may tell the client's address in X-Forwarded-For. */
  readonly trustedProxies?: TrustedProxies
  /** proxy.auth: basic auth for routes tagged auth=. */
  readonly auth?: BasicAuth | null
  /** routing.stickyKeyFile: signs and checks sticky version cookies. */
  readonly sticky?: StickySigner | null
}

/** Certificates for a TLS listener. */
export interface TlsSource {
  /** Server-wide options: versions, ciphers, session resumption, and the default certificate. */
  serverOptions(): TlsOptions
  /** The context for an SNI name; null when no certificate serves it (the default one then does). */
  secureContextFor(servername: string): SecureContext | null
  /** Calls `listener` whenever the certificates change. */
  onChange(listener: () => void): void
}

export type Http2Settings = Omit<Http2Limits, 'requestBuffer' | 'maxBodySize'>

export interface ListenerOptions {
  /** Certificates: an https listener; null: plain HTTP (and cleartext HTTP/2 with prior knowledge). */
  readonly tls: TlsSource | null
  readonly http2: Http2Settings
}

/** HTTP/2 settings when the caller gives none (tests and benchmarks): proxy.http2's defaults. */
export const DEFAULT_HTTP2: Http2Settings = {
  maxConcurrentStreams: 100,
  maxHeaderListSize: 32 * 1024,
  maxResetsPerSecond: 200,
  idleTimeoutMs: 60_000,
}

const PLAIN: ListenerOptions = { tls: null, http2: DEFAULT_HTTP2 }

/**
 * A drain keeps accepting and reading at least this long, answering with
 * `Connection: close`, before it closes the listening sockets and the idle
 * keep-alive connections: a request a client sent just before the stop — on a
 * kept-alive connection, or on a new one still in an accept queue — may reach
 * the process some turns later, and closing under it resets it.
 */
const SETTLE_MS = 250
/** Longest it goes on after that while connections keep arriving (under steady load they keep coming). */
const BACKLOG_MS = 500
/** How often a drain looks whether connections still arrive. */
const SETTLE_CHECK_MS = 5

export interface ProxyListener {
  readonly server: Server
  /**
   * A further listening socket for the server's address (bound with
   * SO_REUSEPORT by the caller), whose connections the server takes as its
   * own. libuv accepts one connection per listening socket per turn of the
   * event loop, so under load — a turn that serves a thousand connections
   * takes ~100 ms — one socket admits about ten new clients a second; each
   * acceptor adds as many. Closed by drain.
   */
  addAcceptor(): Server
  /** Live HTTP/1.1 client connections (for tests and status). */
  readonly connections: ReadonlySet<ClientConnection>
  /**
   * Graceful stop: stop accepting, close idle keep-alive connections at once
   * and the others as soon as their response is done (responses sent
   * meanwhile say `Connection: close`; HTTP/2 sessions get GOAWAY); cut
   * whatever is left (slow requests, WebSockets) at `graceMs`. Resolves when
   * every connection is gone, with the number that had to be cut.
   */
  drain(graceMs: number): Promise<{ cut: number }>
}

/** The handler a set of listeners shares (one per data plane). */
export function createHandler(options: ProxyOptions): (down: Downstream) => void {
  return createRequestHandler({
    store: options.store,
    balancer: options.balancer,
    upstreams: options.upstreams,
    log: options.log,
    observer: options.observer ?? NO_OBSERVER,
    retries: options.retries,
    health: options.health ?? null,
    trustedProxies: options.trustedProxies,
    auth: options.auth ?? null,
    sticky: options.sticky ?? null,
  })
}

export function createProxyListener(
  options: ProxyOptions,
  listener: ListenerOptions = PLAIN,
  handle: (down: Downstream) => void = createHandler(options),
): ProxyListener {
  const tls = listener.tls
  assertParserAvailable()
  const observer = options.observer ?? NO_OBSERVER
  const connections = new Set<ClientConnection>()
  const tunnels = new Set<Duplex>()
  const ctx: ClientContext = {
    limits: options.limits,
    sweeper: options.sweeper,
    proto: tls === null ? 'http' : 'https',
    observer,
    handle,
    draining: false,
    connections,
    tunnels,
    h2c: (socket, head) => h2.accept(socket, head),
  }
  const h2 = new Http2Front({
    proto: tls === null ? 'http' : 'https',
    limits: {
      ...listener.http2,
      requestBuffer: options.limits.requestBuffer,
      maxBodySize: options.limits.maxBodySize,
    },
    observer,
    handle,
    draining: false,
  })

  let server: Server
  if (tls === null) {
    server = createNetServer({ noDelay: true }, (socket: Socket) => {
      if (refusing) socket.destroy()
      else new ClientConnection(socket, ctx)
    })
  } else {
    const source = tls
    const tlsServer = createTlsServer({
      ...source.serverOptions(),
      ALPNProtocols: ['h2', 'http/1.1'],
      SNICallback: (servername, done) => done(null, source.secureContextFor(servername) ?? undefined),
    })
    // New and rotated certificates serve new handshakes; open connections keep theirs.
    source.onChange(() => tlsServer.setSecureContext(source.serverOptions()))
    tlsServer.on('secureConnection', (socket: TLSSocket) => {
      socket.setNoDelay(true)
      if (refusing) socket.destroy()
      else if (socket.alpnProtocol === 'h2') h2.accept(socket)
      else new ClientConnection(socket, ctx)
    })
    // A failed handshake (no certificate, a scanner): nothing to answer.
    tlsServer.on('tlsClientError', (_err, socket) => socket.destroy())
    server = tlsServer
  }

  const acceptors: Server[] = []
  const addAcceptor = (): Server => {
    // A TLS server wraps raw sockets given to its 'connection' event (documented for that use).
    const acceptor = createNetServer({ noDelay: true }, (socket: Socket) => server.emit('connection', socket))
    acceptors.push(acceptor)
    return acceptor
  }

  let accepted = 0
  /** Set once a drain closes the listening sockets: a connection that still arrives is cut. */
  let refusing = false
  server.on('connection', () => {
    accepted++
  })

  const drain = async (graceMs: number): Promise<{ cut: number }> => {
    // From here every response closes its connection; HTTP/2 sessions get GOAWAY.
    ctx.draining = true
    h2.drain()
    // What clients sent just before the stop still reaches the process for a
    // while: keep accepting and reading for SETTLE_MS, then until a check
    // finds no new connection (libuv takes one per listening socket per turn;
    // closing a listening socket resets what is queued on it), for at most
    // BACKLOG_MS more. Those requests are served rather than reset.
    const start = performance.now()
    // The deadline counts from the stop, settling included.
    let cut = 0
    let deadlinePassed = false
    const cutAll = () => {
      cut += connections.size + tunnels.size + h2.sessions.size
      for (const c of connections) c.socket.destroy()
      for (const t of tunnels) t.destroy()
      h2.destroyAll()
    }
    const deadline = setTimeout(() => {
      deadlinePassed = true
      cutAll()
    }, graceMs)
    let seen = -1
    while (!deadlinePassed) {
      const elapsed = performance.now() - start
      if (elapsed >= SETTLE_MS + BACKLOG_MS || (elapsed >= SETTLE_MS && seen === accepted)) break
      seen = accepted
      await new Promise<void>((resolve) => setTimeout(resolve, SETTLE_CHECK_MS))
    }
    // Timers run before reads in an event-loop turn: one more turn's reads, so
    // a request that arrived while the process waited for the CPU is not cut.
    await new Promise<void>((resolve) => setImmediate(resolve))
    refusing = true
    const closed = Promise.all(
      [server, ...acceptors].map((s) => new Promise<void>((resolve) => s.close(() => resolve()))),
    )
    for (const c of connections) c.closeIfIdle()
    // A deadline shorter than the settling: what was accepted since goes too.
    if (deadlinePassed) cutAll()
    try {
      // Tunnels' and HTTP/2 sessions' sockets still count as the server's connections.
      await closed
    } finally {
      clearTimeout(deadline)
    }
    return { cut }
  }

  return { server, addAcceptor, connections, drain }
}
