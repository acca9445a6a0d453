// The one attempt path. Every request, whatever the listener and protocol it
// came on (plain HTTP/1.1, a WebSocket upgrade, HTTP/2), goes through here:
// resolve (validate, route, pick), wait for the body to be ready, get a
// connection to the instance, forward, relay the answer; on failure classify,
// feed passive health, retry on another instance when nothing can have
// reached the application, else answer with the error. The end of a request
// (success, error, a client that left: 499, a client that stalled its body:
// 408) is recorded once, in finish().

import { type ErrorCode, type HttpErrorCode, httpStatus } from '../errors.js'
import type { Logger } from '../log.js'
import type { StickySigner } from '../routing/sticky.js'
import type { Backend, Route } from '../routing/types.js'
import type { TableStore } from '../table/store.js'
import type { BasicAuth } from './auth.js'
import type { TrustedProxies } from './client-address.js'
import { upstreamRequestChannel } from './diagnostics.js'
import type { BodySink, Downstream } from './exchange.js'
import { clientResponseFields, relayedTrailers } from './headers.js'
import type { PassiveHealth } from './health.js'
import type { ProxyObserver, TimeoutKind, UpstreamErrorReason } from './observer.js'
import { errorBody, upstreamPath } from './outcome.js'
import type { Balancer } from './pickers.js'
import { createResolver, type Resolution } from './resolve.js'
import type { UpstreamChannel, UpstreamFailure, UpstreamHandler } from './upstream.js'
import type { Upstreams } from './upstreams.js'

export interface AttemptDeps {
  readonly store: TableStore
  readonly balancer: Balancer
  readonly upstreams: Upstreams
  readonly log: Logger
  readonly observer: ProxyObserver
  /**
   * Extra attempts after a failure that cannot have reached the application
   * (no connection; a reused connection closed before any answer), for
   * idempotent requests without a body only.
   */
  readonly retries: number
  /** Passive health; null turns it off. */
  readonly health: PassiveHealth | null
  readonly trustedProxies?: TrustedProxies
  readonly auth?: BasicAuth | null
  readonly sticky?: StickySigner | null
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'])

/** The handler every listener calls with each request. */
export function createRequestHandler(deps: AttemptDeps): (down: Downstream) => void {
  const resolve = createResolver({
    store: deps.store,
    balancer: deps.balancer,
    health: deps.health,
    trustedProxies: deps.trustedProxies,
    auth: deps.auth,
    sticky: deps.sticky,
  })
  const { observer, log } = deps
  return (down) => {
    let resolved: Resolution
    try {
      resolved = resolve(down.head)
    } catch (err) {
      log.error({ err, path: down.head.url.split('?')[0] }, 'request handler failed')
      replyError(down, 500, 'SWY_ERR_BAD_REQUEST', 'internal error while routing')
      return
    }
    if (resolved.kind === 'reply') {
      if (resolved.reject !== null) {
        observer.rejected?.(resolved.reject, resolved.status)
        down.closeAfterResponse()
      }
      if (resolved.html !== undefined) {
        // The no-route page an operator put in KV (Fabio's noroute.html).
        down.reply(
          resolved.status,
          [
            'content-type',
            'text/html; charset=utf-8',
            'cache-control',
            'no-store',
            'x-switchyard-error',
            resolved.code,
          ],
          resolved.html,
        )
      } else replyError(down, resolved.status, resolved.code, resolved.message, resolved.headers)
      observer.request(resolved.route, null, resolved.status, seconds(down), down.head)
      return
    }
    if (resolved.kind === 'redirect') {
      const status = resolved.backend.redirect?.status ?? 302
      down.reply(status, ['location', resolved.location], '')
      observer.request(resolved.route, resolved.backend, status, seconds(down), down.head)
      return
    }
    new Attempt(deps, down, resolved).start(resolved.backend)
  }
}

type Forward = Extract<Resolution, { kind: 'forward' }>

class Attempt implements UpstreamHandler, BodySink {
  private readonly deps: AttemptDeps
  private readonly down: Downstream
  private readonly resolved: Forward
  private readonly route: Route
  private backend: Backend
  private tries = 0
  private connection: UpstreamChannel | null = null
  /** A channel being opened for this attempt, not yet handed over. */
  private opening: UpstreamChannel | null = null
  private queued = false
  private status = 0
  private grpcStatus: string | null = null
  private requestComplete = false
  private finished = false

  constructor(deps: AttemptDeps, down: Downstream, resolved: Forward) {
    this.deps = deps
    this.down = down
    this.resolved = resolved
    this.route = resolved.route
    this.backend = resolved.backend
    down.onGone = this.onGone
    down.onDrain = this.onClientDrain
  }

  start(backend: Backend): void {
    this.backend = backend
    if (upstreamRequestChannel.hasSubscribers)
      upstreamRequestChannel.publish({ attempt: this, origin: backend.origin })
    this.deps.balancer.begin(backend)
    // gRPC streams both ways: a client may wait for answers before it sends
    // more, so its body is never held back to fill the request buffer.
    if (this.down.bodyComplete || this.down.head.bodyLength === 0 || backend.origin.startsWith('grpc'))
      this.connect()
    else this.down.whenBodyReady(this.connect)
  }

  private readonly connect = (): void => {
    if (this.finished) return
    let pool: ReturnType<Upstreams['pool']>
    try {
      pool = this.deps.upstreams.pool(this.backend)
    } catch (err) {
      this.fail(502, 'SWY_ERR_UPSTREAM_CONNECT', `instance ${this.backend.key}: ${(err as Error).message}`)
      return
    }
    this.queued = true
    const opening = pool.acquire(this)
    if (this.connection === null && !this.finished) this.opening = opening
  }

  // ---- UpstreamHandler

  onConnection(connection: UpstreamChannel): void {
    this.queued = false
    this.opening = null
    if (this.finished) {
      connection.abandon()
      return
    }
    this.connection = connection
    const head = this.down.head
    const backend = this.backend
    const { path, prefix } = upstreamPath(backend, this.resolved.path)
    const bodyLength = head.bodyLength === 0 ? null : head.bodyLength
    connection.sendRequest({
      method: head.method,
      target: path + this.resolved.query,
      headers: head.headers,
      facts: {
        clientIp: head.client.address,
        proto: head.client.proto,
        host: this.resolved.host,
        port: head.client.localPort,
        prefix,
        upstreamHost: backend.hostHeader ?? this.resolved.host,
        forwardedFor: this.resolved.client.chain,
      },
      bodyLength,
      upgrade: head.upgrade,
    })
    if (bodyLength === null) this.requestComplete = true
    else this.down.readBody(this)
  }

  onInformational(status: number, headers: string[]): void {
    this.down.sendInformational(status, relayedTrailers(headers))
  }

  onResponseHead(
    status: number,
    reason: string,
    headers: string[],
    _keepAlive: boolean,
    complete = false,
  ): boolean {
    const method = this.down.head.method
    const fields = clientResponseFields(headers)
    if (this.resolved.setCookie !== null) fields.headers.push('set-cookie', this.resolved.setCookie)
    this.status = status
    // A trailers-only gRPC answer (an error at once) carries its status in the head.
    if (this.backend.origin.startsWith('grpc')) this.grpcStatus = fieldValue(headers, 'grpc-status')
    this.down.sendHead(status, reason, fields.headers, {
      length: complete ? 0 : fields.length,
      chunked: fields.chunked,
      noBody: complete || method === 'HEAD' || status === 204 || status === 304,
    })
    return method === 'HEAD'
  }

  onResponseData(chunk: Buffer): void {
    if (!this.down.sendData(chunk)) this.connection?.pause()
  }

  onResponseEnd(trailers: string[]): void {
    this.down.sendEnd(trailers.length > 0 ? relayedTrailers(trailers) : trailers)
    if (this.backend.origin.startsWith('grpc')) {
      const status = fieldValue(trailers, 'grpc-status') ?? this.grpcStatus
      if (status !== null) this.deps.observer.grpcStatus?.(this.route, this.backend, status)
    }
    // The instance answered before the whole request body went out (an early
    // 413, say): that connection is in an unknown state.
    if (!this.requestComplete) this.connection?.abandon()
    this.connection = null
    this.finish(this.status)
  }

  onUpgrade(
    status: number,
    reason: string,
    headers: string[],
    socket: import('node:net').Socket,
    head: Buffer,
  ): void {
    this.connection = null
    this.status = status
    const fields = clientResponseFields(headers).headers
    fields.push('connection', 'upgrade', 'upgrade', this.down.head.upgrade ?? 'websocket')
    this.down.tunnel(status, reason, fields, socket, head, () => this.finish(status))
  }

  onReadStart(): void {
    this.down.cork()
  }

  onReadEnd(): void {
    if (!this.down.uncork()) this.connection?.pause()
  }

  onDrain(): void {
    this.down.resumeBody()
  }

  onFailure(failure: UpstreamFailure): void {
    this.connection = null
    this.opening = null
    this.queued = false
    if (this.finished) return
    const { deps, backend, down } = this
    const kind = failure.kind
    const timeout = TIMEOUT_OF[kind]
    if (timeout !== undefined) deps.observer.timeout?.(timeout, backend)
    deps.observer.upstreamError(backend, REASON_OF[kind], failure)
    const noConnection = kind === 'connect' || kind === 'connect-timeout'
    if (noConnection) deps.health?.connectFailed(backend)
    else if (
      kind === 'reset' ||
      kind === 'bad-response' ||
      kind === 'headers-timeout' ||
      kind === 'idle-timeout'
    )
      deps.health?.succeeded(backend)
    if (down.responded) {
      // Headers are out; the only honest signal left is a cut connection.
      down.abort()
      this.finish(this.status)
      return
    }
    const next = this.retryTarget(failure)
    if (next !== null) {
      deps.log.debug(
        { route: this.route.id, from: backend.key, to: next.key, err: describe(failure) },
        'retrying on another instance',
      )
      deps.balancer.end(backend)
      this.tries++
      // On the next turn: a connection that just failed is cleaned up by then,
      // so the pool does not count it, and any other idle connection the
      // instance closed meanwhile is seen as closed.
      setImmediate(() => {
        if (this.finished) return
        this.start(next)
      })
      return
    }
    const code = CODE_OF[kind]
    this.fail(httpStatus(code), code, `instance ${backend.key} of ${backend.service}: ${describe(failure)}`)
  }

  // ---- BodySink: the client's body, on its way to the instance

  data(chunk: Buffer): boolean {
    return this.connection === null ? true : this.connection.writeBody(chunk)
  }

  end(trailers: readonly string[]): void {
    if (this.connection === null) return
    this.requestComplete = true
    this.connection.endBody(trailers)
  }

  // ----

  /**
   * Where to retry: another usable instance. After a failure to connect there
   * is no point in the same one. After a connection closed before any answer
   * (typically a keep-alive connection the instance closed as the request
   * went out) the same instance on a fresh connection is the fallback when it
   * is the only one. A request with a body is never replayed.
   */
  private retryTarget(failure: UpstreamFailure): Backend | null {
    const { deps, backend, down } = this
    if (this.tries >= deps.retries || down.head.bodyLength !== 0 || !IDEMPOTENT.has(down.head.method))
      return null
    const kind = failure.kind
    const noConnection =
      kind === 'connect' || kind === 'connect-timeout' || kind === 'tls' || kind === 'queue-full'
    if (!noConnection && kind !== 'reset') return null
    const health = deps.health
    const usable = (b: Backend) => b.key !== backend.key && (health === null || health.usable(b))
    // A matched or pinned request stays on its version while it can, then takes the default selection.
    const pool = this.resolved.pool
    let next =
      deps.balancer.pick(pool, usable) ??
      (pool === this.route ? null : deps.balancer.pick(this.route, usable))
    if (next === null && kind === 'reset') next = backend
    return next !== null && next.redirect === null ? next : null
  }

  private fail(status: number, code: ErrorCode, message: string): void {
    replyError(this.down, status, code, message)
    this.finish(status)
  }

  private readonly onClientDrain = (): void => {
    this.connection?.resume()
  }

  /** The client went away (499) or stalled its body past the timeout (408, already answered). */
  private readonly onGone = (status: number): void => {
    if (this.finished) return
    if (status === 408) this.deps.observer.timeout?.('client-body', this.backend)
    if (this.connection !== null) this.connection.abandon()
    else if (this.opening !== null) this.opening.detach(this)
    else if (this.queued) this.deps.upstreams.pool(this.backend).cancel(this)
    this.connection = null
    this.finish(status)
  }

  private finish(status: number): void {
    if (this.finished) return
    this.finished = true
    const { deps, backend } = this
    deps.balancer.end(backend)
    if (status > 0 && status < 500) deps.health?.succeeded(backend)
    deps.observer.request(this.route, backend, status, seconds(this.down), this.down.head)
  }
}

/** The value of the first field named `name` (lower case) in flat pairs, or null. */
function fieldValue(fields: readonly string[], name: string): string | null {
  for (let i = 0; i < fields.length; i += 2)
    if ((fields[i] as string).toLowerCase() === name) return fields[i + 1] as string
  return null
}

function seconds(down: Downstream): number {
  return (performance.now() - down.startedAt) / 1000
}

/** Answers with Switchyard's plain-text error body and `x-switchyard-error` (and any `extra` fields). */
export function replyError(
  down: Downstream,
  status: number,
  code: ErrorCode,
  message: string,
  extra: readonly string[] = [],
): void {
  down.reply(
    status,
    [
      'content-type',
      'text/plain; charset=utf-8',
      'cache-control',
      'no-store',
      'x-switchyard-error',
      code,
      ...extra,
    ],
    errorBody(status, code, message),
  )
}

function describe(failure: UpstreamFailure): string {
  return failure.code ? `${failure.code} ${failure.message}` : failure.message
}

const TIMEOUT_OF: Partial<Record<UpstreamFailure['kind'], TimeoutKind>> = {
  'connect-timeout': 'connect',
  'headers-timeout': 'response-headers',
  'idle-timeout': 'idle',
  'queue-timeout': 'queue',
}

const REASON_OF: Record<UpstreamFailure['kind'], UpstreamErrorReason> = {
  connect: 'connect',
  'connect-timeout': 'timeout',
  tls: 'connect',
  'queue-full': 'busy',
  'queue-timeout': 'busy',
  reset: 'reset',
  'headers-timeout': 'timeout',
  'idle-timeout': 'timeout',
  'bad-response': 'reset',
}

/** The answer to a failure no retry saves; its status comes with the code (src/errors.ts). */
const CODE_OF: Record<UpstreamFailure['kind'], HttpErrorCode> = {
  connect: 'SWY_ERR_UPSTREAM_CONNECT',
  'connect-timeout': 'SWY_ERR_UPSTREAM_TIMEOUT',
  tls: 'SWY_ERR_UPSTREAM_TLS',
  'queue-full': 'SWY_ERR_UPSTREAM_BUSY',
  'queue-timeout': 'SWY_ERR_UPSTREAM_BUSY',
  reset: 'SWY_ERR_UPSTREAM_RESET',
  'headers-timeout': 'SWY_ERR_UPSTREAM_TIMEOUT',
  'idle-timeout': 'SWY_ERR_UPSTREAM_TIMEOUT',
  'bad-response': 'SWY_ERR_UPSTREAM_RESET',
}
