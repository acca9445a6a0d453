// The proxy listener. Per request: read the current table once, normalise the
// path, look up the route, check access, pick an instance, forward. Everything
// else (indexes, weights, origins, Host headers) was computed when the table
// was built.

import { createServer, type IncomingMessage, type Server, type ServerResponse, STATUS_CODES } from 'node:http'
import { BlockList } from 'node:net'
import { performance } from 'node:perf_hooks'
import type { ErrorCode } from '../errors.js'
import type { Logger } from '../log.js'
import { lookupRoute } from '../routing/lookup.js'
import { normalizePath, splitRequestTarget } from '../routing/path.js'
import type { AccessRules, Route, Target } from '../routing/types.js'
import type { TableStore } from '../table/store.js'
import { type ForwardOptions, forward } from './forward.js'
import { clientAddress, upstreamRequestHeaders } from './headers.js'
import type { Balancer } from './pickers.js'
import type { Upstreams } from './upstreams.js'

export type UpstreamErrorReason = 'connect' | 'timeout' | 'reset'

/** Hooks for metrics and logs; the default does nothing, so a disabled feature costs a call. */
export interface ProxyObserver {
  /** Every finished request, routed or not. `route` and `target` are null when none was chosen. */
  request(
    route: Route | null,
    target: Target | null,
    status: number,
    seconds: number,
    req: IncomingMessage,
  ): void
  upstreamError(target: Target, reason: UpstreamErrorReason, error: Error): void
}

export const NO_OBSERVER: ProxyObserver = {
  request() {},
  upstreamError() {},
}

export interface ProxyOptions {
  readonly store: TableStore
  readonly balancer: Balancer
  readonly upstreams: Upstreams
  readonly log: Logger
  readonly observer?: ProxyObserver
  /** Extra attempts on another instance after a connect failure (idempotent requests only). */
  readonly retries: number
}

export interface ProxyServerOptions {
  readonly maxHeaderSize: number
  /** Time a client has to send the request headers (slowloris guard). */
  readonly clientHeadersTimeoutMs: number
  /** Idle time before a client keep-alive connection is closed. */
  readonly keepAliveTimeoutMs: number
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'])
const VALID_HOST = /^[A-Za-z0-9.\-_:[\]]*$/

export function createProxyHandler(
  options: ProxyOptions,
): (req: IncomingMessage, res: ServerResponse) => void {
  const { store, balancer, upstreams, log, retries } = options
  const observer = options.observer ?? NO_OBSERVER
  const accessLists = new WeakMap<AccessRules, { allow: BlockList | null; deny: BlockList | null }>()

  // Returns undefined so that `return reply(...)` ends a branch in one line.
  function handle(req: IncomingMessage, res: ServerResponse): undefined {
    const started = performance.now()
    const table = store.current
    const target = splitRequestTarget(req.url ?? '/')
    const host = target.host ?? req.headers.host ?? ''
    const path = normalizePath(target.path)
    if (path === null || !VALID_HOST.test(host)) {
      return reply(
        req,
        res,
        started,
        null,
        400,
        'SWY_ERR_BAD_REQUEST',
        'malformed request path or Host header',
      )
    }
    if (table.generation === 0) {
      return reply(
        req,
        res,
        started,
        null,
        503,
        'SWY_ERR_NO_HEALTHY_INSTANCE',
        'no routing table yet: Switchyard is still reading Consul',
      )
    }
    const route = lookupRoute(table, host, path)
    if (route === null) {
      return reply(req, res, started, null, 404, 'SWY_ERR_NO_ROUTE', `no route for ${host}${path}`)
    }
    const ip = clientAddress(req.socket.remoteAddress)
    if (route.access.length > 0 && !allowed(route, ip)) {
      return reply(
        req,
        res,
        started,
        route,
        403,
        'SWY_ERR_ACCESS_DENIED',
        `${ip} may not use route ${route.id}`,
      )
    }
    const chosen = balancer.pick(route)
    if (chosen === null) {
      const services = route.services.join(', ')
      return reply(
        req,
        res,
        started,
        route,
        503,
        'SWY_ERR_NO_HEALTHY_INSTANCE',
        `no healthy instance for route ${route.id} (service ${services})`,
      )
    }
    if (chosen.redirect !== null) {
      const location = chosen.redirect.url.replaceAll('$path', path + target.query)
      res.writeHead(chosen.redirect.status, { location, 'content-length': 0 })
      res.end()
      observer.request(route, chosen, chosen.redirect.status, (performance.now() - started) / 1000, req)
      return
    }
    return send(req, res, started, route, chosen, host, path, target.query, 0)
  }

  function send(
    req: IncomingMessage,
    res: ServerResponse,
    started: number,
    route: Route,
    chosen: Target,
    host: string,
    path: string,
    query: string,
    attempt: number,
  ): undefined {
    const hasBody =
      req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] ?? '0') !== '0'
    let upstreamPath = path
    let prefix = ''
    if (chosen.strip && upstreamPath.startsWith(chosen.strip)) {
      prefix = chosen.strip
      upstreamPath = upstreamPath.slice(chosen.strip.length)
      if (!upstreamPath.startsWith('/')) upstreamPath = `/${upstreamPath}`
    }
    if (chosen.prepend) {
      upstreamPath = chosen.prepend.endsWith('/')
        ? chosen.prepend + upstreamPath.slice(1)
        : chosen.prepend + upstreamPath
    }
    const forwardOptions: ForwardOptions = {
      method: req.method ?? 'GET',
      path: upstreamPath + query,
      body: hasBody ? req : null,
      headers: upstreamRequestHeaders(req.rawHeaders, {
        clientIp: clientAddress(req.socket.remoteAddress),
        proto: 'http',
        host,
        port: req.socket.localPort ?? 0,
        prefix,
        upstreamHost: chosen.hostHeader ?? host,
      }),
    }
    balancer.begin(chosen)
    forward(upstreams.pool(chosen), res, forwardOptions, (error, responded, status) => {
      balancer.end(chosen)
      const seconds = (performance.now() - started) / 1000
      if (error === null) {
        observer.request(route, chosen, status, seconds, req)
        return
      }
      if ((error as { code?: string }).code === 'SWY_CLIENT_GONE') {
        // 499 as NGINX logs it: the client closed the connection first.
        observer.request(route, chosen, 499, seconds, req)
        return
      }
      const reason = upstreamErrorReason(error)
      observer.upstreamError(chosen, reason, error)
      if (responded) {
        // Headers are out; the only honest signal left is a cut connection.
        res.destroy(error)
        observer.request(route, chosen, status, seconds, req)
        return
      }
      if (reason === 'connect' && attempt < retries && !hasBody && IDEMPOTENT.has(req.method ?? '')) {
        const next = balancer.pick(route, (t) => t.key !== chosen.key)
        if (next !== null && next.redirect === null) {
          log.debug(
            { route: route.id, from: chosen.key, to: next.key, err: error.message },
            'retrying on another instance',
          )
          return send(req, res, started, route, next, host, path, query, attempt + 1)
        }
      }
      const [statusCode, code]: [number, ErrorCode] =
        reason === 'timeout'
          ? [504, 'SWY_ERR_UPSTREAM_TIMEOUT']
          : reason === 'connect'
            ? [502, 'SWY_ERR_UPSTREAM_CONNECT']
            : [502, 'SWY_ERR_UPSTREAM_RESET']
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

  function allowed(route: Route, ip: string): boolean {
    const family = ip.includes(':') ? 'ipv6' : 'ipv4'
    for (const rules of route.access) {
      let lists = accessLists.get(rules)
      if (lists === undefined) {
        lists = { allow: toBlockList(rules.allow), deny: toBlockList(rules.deny) }
        accessLists.set(rules, lists)
      }
      if (lists.allow && !lists.allow.check(ip, family)) return false
      if (lists.deny?.check(ip, family)) return false
    }
    return true
  }

  function reply(
    req: IncomingMessage,
    res: ServerResponse,
    started: number,
    route: Route | null,
    status: number,
    code: ErrorCode,
    message: string,
    target: Target | null = null,
  ): undefined {
    const body = `${status} ${STATUS_CODES[status]}: ${message} [${code}]\n`
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
      log.error({ err, url: req.url }, 'request handler failed')
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' })
      res.end('500 Internal Server Error\n')
    }
  }
}

export function createProxyServer(options: ProxyOptions, serverOptions: ProxyServerOptions): Server {
  const server = createServer(
    {
      maxHeaderSize: serverOptions.maxHeaderSize,
      headersTimeout: serverOptions.clientHeadersTimeoutMs,
      // Bodies may stream for as long as they need; idle sockets are handled by keepAliveTimeout.
      requestTimeout: 0,
      keepAliveTimeout: serverOptions.keepAliveTimeoutMs,
      requireHostHeader: true,
    },
    createProxyHandler(options),
  )
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (!socket.writable) return socket.destroy()
    const status =
      err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400
    socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`)
  })
  return server
}

function toBlockList(cidrs: AccessRules['allow']): BlockList | null {
  if (cidrs.length === 0) return null
  const list = new BlockList()
  for (const c of cidrs) list.addSubnet(c.address, c.prefix, c.family === 4 ? 'ipv4' : 'ipv6')
  return list
}

export function upstreamErrorReason(error: Error): UpstreamErrorReason {
  const code = (error as { code?: string }).code ?? ''
  if (
    code === 'UND_ERR_CONNECT_TIMEOUT' ||
    code === 'UND_ERR_HEADERS_TIMEOUT' ||
    code === 'UND_ERR_BODY_TIMEOUT'
  ) {
    return 'timeout'
  }
  if (
    ['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EADDRNOTAVAIL'].includes(code)
  ) {
    return 'connect'
  }
  return 'reset'
}

function describe(error: Error): string {
  const code = (error as { code?: string }).code
  return code ? `${code} ${error.message}` : error.message
}
