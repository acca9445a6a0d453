// The proxy listener. Per request: read the current table once, normalise the
// path, look up the route, check access, pick an instance, forward (resolve.ts
// does all but the last). Everything else (indexes, weights, origins, Host
// headers) was computed when the table was built. Malformed and hostile input
// is answered here with a clean 4xx and counted; Node's parser catches most of
// it ('clientError'), resolve.ts the rest.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { performance } from 'node:perf_hooks'
import type { Duplex } from 'node:stream'
import { type ErrorCode, type HttpErrorCode, httpStatus } from '../errors.js'
import type { Logger } from '../log.js'
import type { Backend, Route } from '../routing/types.js'
import type { TableStore } from '../table/store.js'
import { type ForwardOptions, forward } from './forward.js'
import { clientAddress, upstreamRequestHeaders } from './headers.js'
import type { PassiveHealth } from './health.js'
import { NO_OBSERVER, type ProxyObserver } from './observer.js'
import {
  classifyUpstreamError,
  describe,
  errorBody,
  failureStatus,
  rawResponse,
  type UpstreamFailure,
  upstreamPath,
} from './outcome.js'
import type { Balancer } from './pickers.js'
import { createResolver, type RejectReason, type Resolution } from './resolve.js'
import { createUpgradeHandler } from './upgrade.js'
import type { Upstreams } from './upstreams.js'

export { NO_OBSERVER, type ProxyObserver, type TimeoutKind, type UpstreamErrorReason } from './observer.js'
export { classifyUpstreamError, type UpstreamFailure } from './outcome.js'
export type { RejectReason } from './resolve.js'

export interface ProxyOptions {
  readonly store: TableStore
  readonly balancer: Balancer
  readonly upstreams: Upstreams
  readonly log: Logger
  readonly observer?: ProxyObserver
  /**
   * Extra attempts after a failure that cannot have reached the application
   * (connect failure; connection closed before any answer), for idempotent
   * requests without a body only.
   */
  readonly retries: number
  /** Passive health (consecutive connect failures eject an instance); null to turn it off. */
  readonly health?: PassiveHealth | null
}

export interface ProxyServerOptions {
  readonly maxHeaderSize: number
  /** Time a client has to send the request headers (slowloris guard). */
  readonly clientHeadersTimeoutMs: number
  /** Idle time before a client keep-alive connection is closed. */
  readonly keepAliveTimeoutMs: number
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'])

/** Shared between the listener and drainProxyServer. */
interface ProxyState {
  /** Set on shutdown: every response closes its connection. */
  draining: boolean
  /** Client sockets of live WebSocket (upgraded) connections; the HTTP server no longer tracks them. */
  readonly tunnels: Set<Duplex>
}

export function createProxyHandler(
  options: ProxyOptions,
  state: ProxyState = { draining: false, tunnels: new Set() },
): (req: IncomingMessage, res: ServerResponse) => void {
  const { balancer, upstreams, log, retries } = options
  const health = options.health ?? null
  const observer = options.observer ?? NO_OBSERVER
  const resolve = createResolver({ store: options.store, balancer, health })

  // Returns undefined so that `return reply(...)` ends a branch in one line.
  function handle(req: IncomingMessage, res: ServerResponse): undefined {
    const started = performance.now()
    if (state.draining) res.shouldKeepAlive = false
    const resolved = resolve(req)
    if (resolved.kind === 'reply') {
      if (resolved.reject !== null) {
        // The connection's framing or identity is in doubt: do not reuse it.
        res.shouldKeepAlive = false
        observer.rejected?.(resolved.reject, resolved.status)
      }
      return reply(req, res, started, resolved.route, resolved.status, resolved.code, resolved.message)
    }
    if (resolved.kind === 'redirect') {
      const status = resolved.target.redirect?.status ?? 302
      res.writeHead(status, { location: resolved.location, 'content-length': 0 })
      res.end()
      observer.request(resolved.route, resolved.target, status, (performance.now() - started) / 1000, req)
      return
    }
    return send(req, res, started, resolved, resolved.target, 0)
  }

  function send(
    req: IncomingMessage,
    res: ServerResponse,
    started: number,
    resolved: Extract<Resolution, { kind: 'forward' }>,
    chosen: Backend,
    attempt: number,
  ): undefined {
    const { route, host } = resolved
    const hasBody =
      req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] ?? '0') !== '0'
    const { path, prefix } = upstreamPath(chosen, resolved.path)
    const forwardOptions: ForwardOptions = {
      method: req.method ?? 'GET',
      path: path + resolved.query,
      body: hasBody ? req : null,
      drain: state,
      headers: upstreamRequestHeaders(req.rawHeaders, {
        clientIp: clientAddress(req.socket.remoteAddress),
        proto: 'http',
        host,
        port: req.socket.localPort ?? 0,
        prefix,
        upstreamHost: chosen.hostHeader ?? host,
      }),
    }
    let pool: ReturnType<typeof upstreams.pool>
    try {
      pool = upstreams.pool(chosen)
    } catch (err) {
      // The table builder refuses addresses no connection can be made to; this is the backstop.
      return reply(
        req,
        res,
        started,
        route,
        httpStatus('SWY_ERR_UPSTREAM_CONNECT'),
        'SWY_ERR_UPSTREAM_CONNECT',
        `instance ${chosen.key}: ${describe(err as Error)}`,
        chosen,
      )
    }
    balancer.begin(chosen)
    forward(pool, res, forwardOptions, (error, responded, status) => {
      balancer.end(chosen)
      const seconds = (performance.now() - started) / 1000
      if (error === null) {
        health?.succeeded(chosen)
        observer.request(route, chosen, status, seconds, req)
        return
      }
      if ((error as { code?: string }).code === 'SWY_CLIENT_GONE') {
        // 499 as NGINX logs it: the client closed the connection first.
        observer.request(route, chosen, 499, seconds, req)
        return
      }
      const failure = classifyUpstreamError(error)
      if (failure.invalidRequest) {
        // undici refused to send what the client sent (a header value Node let through).
        res.shouldKeepAlive = false
        observer.rejected?.('header', 400)
        return reply(
          req,
          res,
          started,
          route,
          httpStatus('SWY_ERR_BAD_REQUEST'),
          'SWY_ERR_BAD_REQUEST',
          `cannot forward: ${error.message}`,
        )
      }
      if (failure.timeout !== null) observer.timeout?.(failure.timeout, chosen)
      observer.upstreamError(chosen, failure.reason, error)
      if (failure.connect) health?.connectFailed(chosen)
      else health?.succeeded(chosen)
      if (responded) {
        // Headers are out; the only honest signal left is a cut connection.
        res.destroy(error)
        observer.request(route, chosen, status, seconds, req)
        return
      }
      if (attempt < retries && !hasBody && IDEMPOTENT.has(req.method ?? '')) {
        const next = retryTarget(route, chosen, failure)
        if (next !== null) {
          log.debug(
            { route: route.id, from: chosen.key, to: next.key, err: describe(error) },
            'retrying on another instance',
          )
          // On the next turn: the failed connection is cleaned up by then, so
          // the pool does not open a second one beside it, and any other idle
          // connection the instance closed meanwhile is seen as closed.
          setImmediate(() => {
            if (res.destroyed) return void observer.request(route, next, 499, seconds, req)
            send(req, res, started, resolved, next, attempt + 1)
          })
          return
        }
      }
      const [statusCode, code] = failureStatus(failure)
      reply(
        req,
        res,
        started,
        route,
        statusCode,
        code,
        `instance ${chosen.key} of ${chosen.service}: ${describe(error)}`,
        chosen,
      )
    })
  }

  /**
   * Where to retry: another usable instance. After a connect failure there is
   * no point in the same one. After a connection closed before any answer
   * (typically a keep-alive connection the instance closed as the request
   * went out, or an instance that just died) the same instance on a fresh
   * connection is the fallback when it is the only one.
   */
  function retryTarget(route: Route, failed: Backend, failure: UpstreamFailure): Backend | null {
    if (!failure.connect && failure.reason !== 'reset') return null
    let next = balancer.pick(route, (t) => t.key !== failed.key && (health === null || health.usable(t)))
    if (next === null && !failure.connect) next = failed
    return next !== null && next.redirect === null ? next : null
  }

  function reply(
    req: IncomingMessage,
    res: ServerResponse,
    started: number,
    route: Route | null,
    status: number,
    code: ErrorCode,
    message: string,
    target: Backend | null = null,
  ): undefined {
    const body = errorBody(status, code, message)
    if (!res.headersSent) {
      res.writeHead(status, {
        'content-type': 'text/plain; charset=utf-8',
        'content-length': Buffer.byteLength(body),
        'cache-control': 'no-store',
        'x-switchyard-error': code,
      })
    }
    res.end(req.method === 'HEAD' ? undefined : body)
    observer.request(route, target, status, (performance.now() - started) / 1000, req)
    return undefined
  }

  return (req, res) => {
    try {
      handle(req, res)
    } catch (err) {
      // The path only: query strings carry tokens.
      log.error({ err, path: (req.url ?? '').split('?')[0] }, 'request handler failed')
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' })
      res.end('500 Internal Server Error\n')
    }
  }
}

const drainStates = new WeakMap<Server, ProxyState>()

export function createProxyServer(options: ProxyOptions, serverOptions: ProxyServerOptions): Server {
  const state: ProxyState = { draining: false, tunnels: new Set() }
  const observer = options.observer ?? NO_OBSERVER
  const server = createServer(
    {
      maxHeaderSize: serverOptions.maxHeaderSize,
      headersTimeout: serverOptions.clientHeadersTimeoutMs,
      // Node checks header timeouts on this interval (30 s by default, which
      // would let a slowloris client hold a socket 30 s past the timeout).
      connectionsCheckingInterval: Math.max(
        50,
        Math.min(1000, Math.floor(serverOptions.clientHeadersTimeoutMs / 4)),
      ),
      // Bodies may stream for as long as they need; idle sockets are handled by keepAliveTimeout.
      requestTimeout: 0,
      keepAliveTimeout: serverOptions.keepAliveTimeoutMs,
      // Checked (and counted) by the resolver instead, which also refuses duplicates.
      requireHostHeader: false,
      // Client sockets buffer up to 64 KiB before pushing back (Node's default
      // is 16 KiB): a typical response body then passes without pausing the
      // upstream read and resuming it on 'drain' several times over.
      highWaterMark: 65_536,
    },
    createProxyHandler(options, state),
  )
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    const answer = clientErrorAnswer(err.code)
    // A response already under way on this connection (a pipelined request
    // failed to parse): no clean answer is possible any more.
    const current = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage
    if (answer === null || !socket.writable || current?.headersSent) {
      socket.destroy()
      return
    }
    if (answer.reject === null) observer.timeout?.('client-headers', null)
    else observer.rejected?.(answer.reject, answer.status)
    socket.end(rawResponse(answer.status, answer.code, err.message))
  })
  server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
    socket.on('error', () => {})
    observer.rejected?.('method', httpStatus('SWY_ERR_METHOD_NOT_ALLOWED'))
    socket.end(
      rawResponse(
        httpStatus('SWY_ERR_METHOD_NOT_ALLOWED'),
        'SWY_ERR_METHOD_NOT_ALLOWED',
        'CONNECT is not supported by this reverse proxy',
      ),
    )
  })
  server.on(
    'upgrade',
    createUpgradeHandler({
      resolve: createResolver({
        store: options.store,
        balancer: options.balancer,
        health: options.health ?? null,
      }),
      balancer: options.balancer,
      upstreams: options.upstreams,
      health: options.health ?? null,
      observer,
      log: options.log,
      retries: options.retries,
      tunnels: state.tunnels,
    }),
  )
  drainStates.set(server, state)
  return server
}

/**
 * Graceful stop of a proxy listener: stop accepting, let in-flight requests
 * finish, close keep-alive connections as soon as they are idle (responses
 * sent meanwhile say `Connection: close`), and cut whatever is left (slow
 * requests, WebSockets) at `graceMs`. Resolves when every connection is gone,
 * with the number of connections that had to be cut.
 */
export async function drainProxyServer(server: Server, graceMs: number): Promise<{ cut: number }> {
  const state = drainStates.get(server)
  if (state) state.draining = true
  const closed = new Promise<void>((resolve) => server.close(() => resolve()))
  server.closeIdleConnections()
  // A connection whose last response began before the drain goes idle later.
  const sweep = setInterval(() => server.closeIdleConnections(), 50)
  let cut = 0
  const deadline = setTimeout(() => {
    server.getConnections((_err, n) => {
      cut = n
    })
    server.closeAllConnections()
    for (const socket of state?.tunnels ?? []) socket.destroy()
  }, graceMs)
  try {
    await closed
  } finally {
    clearInterval(sweep)
    clearTimeout(deadline)
  }
  return { cut }
}

interface ClientErrorAnswer {
  readonly status: number
  readonly code: ErrorCode
  /** null for the client header timeout, which is counted as a timeout. */
  readonly reject: RejectReason | null
}

const FRAMING_ERRORS = new Set([
  'HPE_INVALID_TRANSFER_ENCODING',
  'HPE_UNEXPECTED_CONTENT_LENGTH',
  'HPE_INVALID_CONTENT_LENGTH',
  'HPE_INVALID_CHUNK_SIZE',
])
const HEADER_ERRORS = new Set([
  'HPE_INVALID_HEADER_TOKEN',
  'HPE_LF_EXPECTED',
  'HPE_CR_EXPECTED',
  'HPE_INVALID_CHUNK_EXTENSIONS',
])
const REQUEST_LINE_ERRORS = new Set(['HPE_INVALID_URL', 'HPE_INVALID_VERSION', 'HPE_INVALID_CONSTANT'])

/** The answer to a request Node's parser refused; null when the client is gone (reset, early EOF). */
function clientErrorAnswer(code: string | undefined): ClientErrorAnswer | null {
  const answer = (error: HttpErrorCode, reject: RejectReason | null) => ({
    status: httpStatus(error),
    code: error,
    reject,
  })
  if (code === 'HPE_HEADER_OVERFLOW') return answer('SWY_ERR_HEADERS_TOO_LARGE', 'headers-too-large')
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return answer('SWY_ERR_CLIENT_TIMEOUT', null)
  if (code === 'HPE_INVALID_METHOD') return answer('SWY_ERR_BAD_REQUEST', 'method')
  if (code === undefined || !code.startsWith('HPE_') || code === 'HPE_INVALID_EOF_STATE') return null
  const reject: RejectReason = FRAMING_ERRORS.has(code)
    ? 'framing'
    : HEADER_ERRORS.has(code)
      ? 'header'
      : REQUEST_LINE_ERRORS.has(code)
        ? 'request-line'
        : 'malformed'
  return answer('SWY_ERR_BAD_REQUEST', reject)
}
