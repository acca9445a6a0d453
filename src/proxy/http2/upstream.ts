// HTTP/2 to instances, for routes tagged proto=grpc (cleartext, prior
// knowledge) or proto=grpcs (TLS, ALPN h2): one multiplexed session per
// instance, one stream per request. Both directions stream; trailers
// (grpc-status, grpc-message) come back to the attempt path; a client that
// cancels resets the stream (the server sees CANCEL), and grpc-timeout travels
// as an ordinary field so the server enforces the deadline.

import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  connect,
  constants,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
} from 'node:http2'
import { performance } from 'node:perf_hooks'
import { forwardedFields } from '../headers.js'
import type { UpstreamOptions, UpstreamTarget } from '../http1/upstream.js'
import { NEVER, type Sweepable, type Sweeper } from '../sweeper.js'
import {
  type UpstreamChannel,
  UpstreamFailure,
  type UpstreamHandler,
  type UpstreamPool,
  type UpstreamRequest,
} from '../upstream.js'
import { flatFields } from './client.js'

const TLS_CODES = /CERT|ERR_TLS_|ERR_SSL_|UNABLE_TO_VERIFY/

export class Http2Pool implements UpstreamPool, Sweepable {
  readonly target: UpstreamTarget
  readonly options: UpstreamOptions
  private readonly sweeper: Sweeper
  private session: ClientHttp2Session | null = null
  private connected = false
  private connectDeadline = NEVER
  /** Channels waiting for the session to connect. */
  private waiting: Http2Channel[] = []
  /** Channels with a stream open (for their timeouts). */
  readonly open = new Set<Http2Channel>()
  private retired = false

  constructor(target: UpstreamTarget, options: UpstreamOptions, sweeper: Sweeper) {
    this.target = target
    this.options = options
    this.sweeper = sweeper
    sweeper.add(this)
  }

  acquire(handler: UpstreamHandler): UpstreamChannel | null {
    const channel = new Http2Channel(this, handler)
    if (this.connected && this.session !== null && !this.session.closed && !this.session.destroyed) {
      handler.onConnection(channel)
      return null
    }
    this.waiting.push(channel)
    this.ensureSession()
    return channel
  }

  cancel(handler: UpstreamHandler): void {
    this.waiting = this.waiting.filter((c) => c.handler !== handler)
  }

  forget(channel: Http2Channel): void {
    this.waiting = this.waiting.filter((c) => c !== channel)
    this.open.delete(channel)
  }

  /** The session requests go on; only valid once connected. */
  get current(): ClientHttp2Session {
    return this.session as ClientHttp2Session
  }

  sweep(now: number): void {
    if (!this.connected && this.session !== null && now >= this.connectDeadline) {
      this.failWaiting(
        new UpstreamFailure('connect-timeout', `connect timed out after ${this.options.connectTimeoutMs} ms`),
      )
      this.session.destroy()
      this.session = null
    }
    for (const channel of this.open) channel.sweep(now)
  }

  retire(): void {
    this.retired = true
    this.failWaiting(new UpstreamFailure('connect', 'instance left the routing table'))
    // Streams in flight finish; the session closes after them.
    this.session?.close()
    this.sweeper.delete(this)
  }

  private ensureSession(): void {
    if (this.session !== null || this.retired) return
    const t = this.target
    const authority = `${t.tls ? 'https' : 'http'}://${t.address.includes(':') ? `[${t.address}]` : t.address}:${t.port}`
    this.connected = false
    this.connectDeadline = performance.now() + this.options.connectTimeoutMs
    const session = connect(authority, {
      ...(t.tls
        ? {
            servername: t.serverName || undefined,
            rejectUnauthorized: t.verify,
            ALPNProtocols: ['h2'],
          }
        : {}),
      maxHeaderListPairs: 256,
    })
    this.session = session
    session.on('connect', () => {
      this.connected = true
      const waiting = this.waiting
      this.waiting = []
      for (const channel of waiting) channel.handler.onConnection(channel)
    })
    session.on('error', (err: NodeJS.ErrnoException) => {
      const code = err.code ?? ''
      if (!this.connected) {
        this.failWaiting(
          TLS_CODES.test(code)
            ? new UpstreamFailure('tls', err.message, code)
            : new UpstreamFailure('connect', err.message, code),
        )
      }
    })
    const drop = () => {
      if (this.session === session) {
        this.session = null
        this.connected = false
      }
    }
    // A GOAWAY or a close: new requests open a new session, streams in flight end on their own.
    session.on('goaway', drop)
    session.on('close', () => {
      drop()
      if (this.waiting.length > 0 && !this.retired) this.ensureSession()
    })
  }

  private failWaiting(failure: UpstreamFailure): void {
    const waiting = this.waiting
    this.waiting = []
    for (const channel of waiting) channel.handler.onFailure(failure)
  }
}

/** One request on an HTTP/2 session. */
export class Http2Channel implements UpstreamChannel {
  readonly handler: UpstreamHandler
  private readonly pool: Http2Pool
  private stream: ClientHttp2Stream | null = null
  private trailers: string[] = []
  private ended = false
  private headersDeadline = NEVER
  private lastReadAt = 0
  private paused = false
  private responded = false

  constructor(pool: Http2Pool, handler: UpstreamHandler) {
    this.pool = pool
    this.handler = handler
  }

  sendRequest(request: UpstreamRequest): void {
    const t = this.pool.target
    const headers: OutgoingHttpHeaders = {
      ':method': request.method,
      ':path': request.target,
      ':scheme': t.tls ? 'https' : 'http',
    }
    const fields = forwardedFields(request.headers, request.facts, true)
    for (let i = 0; i < fields.length; i += 2) {
      const name = (fields[i] as string).toLowerCase()
      const value = fields[i + 1] as string
      if (name === 'host') headers[':authority'] = value
      else {
        const prior = headers[name]
        headers[name] =
          prior === undefined ? value : Array.isArray(prior) ? [...prior, value] : [String(prior), value]
      }
    }
    if (request.bodyLength !== null && request.bodyLength >= 0) headers['content-length'] = request.bodyLength
    let stream: ClientHttp2Stream
    try {
      stream = this.pool.current.request(headers, { endStream: request.bodyLength === null })
    } catch (err) {
      this.handler.onFailure(
        new UpstreamFailure('reset', (err as Error).message, (err as NodeJS.ErrnoException).code),
      )
      return
    }
    this.stream = stream
    this.pool.open.add(this)
    this.lastReadAt = performance.now()
    if (request.bodyLength === null)
      this.headersDeadline = this.lastReadAt + this.pool.options.responseHeadersTimeoutMs
    stream.on('response', this.onResponse)
    stream.on('data', this.onData)
    stream.on('trailers', (t: IncomingHttpHeaders) => {
      this.trailers = flatFields(t)
    })
    stream.on('end', this.onEnd)
    stream.on('error', () => {})
    stream.on('close', this.onClose)
    stream.on('drain', () => this.handler.onDrain())
  }

  writeBody(chunk: Buffer): boolean {
    return this.stream === null || this.stream.destroyed ? true : this.stream.write(chunk)
  }

  endBody(): void {
    if (this.stream === null || this.stream.destroyed) return
    this.stream.end()
    this.headersDeadline = performance.now() + this.pool.options.responseHeadersTimeoutMs
  }

  pause(): void {
    this.paused = true
    this.stream?.pause()
  }

  resume(): void {
    this.paused = false
    this.lastReadAt = performance.now()
    this.stream?.resume()
  }

  abandon(): void {
    this.ended = true
    this.pool.forget(this)
    // The instance sees the cancellation (gRPC: CANCELLED).
    if (this.stream !== null && !this.stream.destroyed) this.stream.close(constants.NGHTTP2_CANCEL)
  }

  detach(handler: UpstreamHandler): void {
    if (handler === this.handler) this.abandon()
  }

  sweep(now: number): void {
    if (this.ended) return
    const o = this.pool.options
    if (!this.responded && now >= this.headersDeadline) {
      this.fail(
        new UpstreamFailure('headers-timeout', `no response head within ${o.responseHeadersTimeoutMs} ms`),
      )
    } else if (this.responded && !this.paused && now - this.lastReadAt >= o.idleTimeoutMs) {
      this.fail(new UpstreamFailure('idle-timeout', `response body idle for ${o.idleTimeoutMs} ms`))
    }
  }

  private fail(failure: UpstreamFailure): void {
    if (this.ended) return
    this.ended = true
    this.pool.forget(this)
    if (this.stream !== null && !this.stream.destroyed) this.stream.close(constants.NGHTTP2_CANCEL)
    this.handler.onFailure(failure)
  }

  private readonly onResponse = (headers: IncomingHttpHeaders, flags: number): void => {
    const status = Number(headers[':status'] ?? 0)
    if (status < 200) return
    this.responded = true
    this.headersDeadline = NEVER
    this.lastReadAt = performance.now()
    const complete = (flags & constants.NGHTTP2_FLAG_END_STREAM) !== 0
    this.handler.onResponseHead(status, '', flatFields(headers), true, complete)
  }

  private readonly onData = (chunk: Buffer): void => {
    this.lastReadAt = performance.now()
    this.handler.onReadStart()
    this.handler.onResponseData(chunk)
    this.handler.onReadEnd()
  }

  private readonly onEnd = (): void => {
    if (this.ended) return
    this.ended = true
    this.pool.forget(this)
    this.handler.onResponseEnd(this.trailers)
  }

  private readonly onClose = (): void => {
    if (this.ended) return
    this.ended = true
    this.pool.forget(this)
    const code = this.stream?.rstCode ?? 0
    this.handler.onFailure(
      new UpstreamFailure('reset', `stream closed before the response ended (HTTP/2 error ${code})`),
    )
  }
}
