// The client side of HTTP/2 (on TLS listeners, negotiated by ALPN): node:http2
// sessions, one StreamExchange per request stream, answered through the same
// attempt path as HTTP/1.1. Upstreams stay HTTP/1.1 (or HTTP/2 for gRPC
// routes): the request head is turned into HTTP/1.1 fields (cookies joined,
// pseudo-headers dropped, :authority as the host) and the response fields
// back into an HTTP/2 head.
//
// Limits: concurrent streams and header list size are HTTP/2 settings; a
// client that resets streams faster than proxy.http2.maxResetsPerSecond (the
// "rapid reset" attack, CVE-2023-44487) gets GOAWAY ENHANCE_YOUR_CALM and is
// disconnected.

import {
  constants,
  createServer,
  type Http2Server,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from 'node:http2'
import type { Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import type { Duplex } from 'node:stream'
import { clientRequestChannel } from '../diagnostics.js'
import type { BodySink, ClientInfo, Downstream, RequestHead, ResponseFraming } from '../exchange.js'
import { clientAddress } from '../headers.js'
import type { ProxyObserver } from '../observer.js'
import { RequestBody } from '../request-body.js'

export interface Http2Limits {
  readonly maxConcurrentStreams: number
  readonly maxHeaderListSize: number
  /** Stream resets a client may cause per second before it is disconnected. */
  readonly maxResetsPerSecond: number
  /** A session with no open stream for this long is closed. */
  readonly idleTimeoutMs: number
  readonly requestBuffer: number
  readonly maxBodySize: number
}

export interface Http2Context {
  /** https on TLS listeners; http for cleartext HTTP/2 (prior knowledge) on plain ones. */
  readonly proto: 'http' | 'https'
  readonly limits: Http2Limits
  readonly observer: ProxyObserver
  readonly handle: (down: Downstream) => void
  draining: boolean
}

/** Accepts HTTP/2 connections (sockets whose ALPN said h2) and answers their streams. */
export class Http2Front {
  private readonly ctx: Http2Context
  private readonly server: Http2Server
  readonly sessions = new Set<ServerHttp2Session>()

  constructor(ctx: Http2Context) {
    this.ctx = ctx
    const limits = ctx.limits
    this.server = createServer({
      settings: {
        maxConcurrentStreams: limits.maxConcurrentStreams,
        maxHeaderListSize: limits.maxHeaderListSize,
        enablePush: false,
      },
      maxHeaderListPairs: 256,
    })
    this.server.on('session', (session: ServerHttp2Session) => this.onSession(session))
    this.server.on(
      'stream',
      (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, _flags: number, raw?: string[]) =>
        this.onStream(stream, headers, raw),
    )
  }

  /** Takes a TLS socket whose ALPN protocol is h2, or a plain one that sent the preface (`head`). */
  accept(socket: Socket, head?: Buffer): void {
    if (head !== undefined) {
      // Paused, the bytes stay in the socket's buffer, where the session reads them first.
      socket.pause()
      socket.unshift(head)
    }
    this.server.emit('connection', socket)
  }

  /** Graceful: GOAWAY to every session (and to new ones); streams in flight finish. */
  drain(): void {
    this.ctx.draining = true
    for (const session of this.sessions) session.close()
  }

  destroyAll(): void {
    for (const session of this.sessions) session.destroy()
  }

  private onSession(session: ServerHttp2Session): void {
    this.sessions.add(session)
    session.on('close', () => this.sessions.delete(session))
    session.on('error', () => {})
    if (this.ctx.draining) {
      session.close()
      return
    }
    // Rapid reset: count streams the client resets, per second.
    let windowStart = performance.now()
    let resets = 0
    let open = 0
    session.on('stream', (stream: ServerHttp2Stream) => {
      open++
      stream.once('close', () => open--)
      stream.on('aborted', () => {
        const now = performance.now()
        if (now - windowStart >= 1000) {
          windowStart = now
          resets = 0
        }
        if (++resets > this.ctx.limits.maxResetsPerSecond && !session.destroyed) {
          this.ctx.observer.rejected?.('h2-rapid-reset', 400)
          session.goaway(constants.NGHTTP2_ENHANCE_YOUR_CALM)
          session.destroy()
        }
      })
    })
    session.setTimeout(this.ctx.limits.idleTimeoutMs, () => {
      // No frame for that long. A session with streams open (a quiet gRPC
      // stream, say) is left alone: their own timeouts apply.
      if (open === 0) session.close()
    })
  }

  private onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, raw: string[] | undefined): void {
    stream.on('error', () => {})
    const socket = stream.session?.socket as Socket | undefined
    const info: ClientInfo = {
      address: clientAddress(socket?.remoteAddress),
      localPort: socket?.localPort ?? 0,
      proto: this.ctx.proto,
    }
    const exchange = new StreamExchange(stream, headers, raw ?? flatFields(headers, true), info, this.ctx)
    if (exchange.refused) return
    this.ctx.handle(exchange)
  }
}

/** Flat pairs of a received header object; pseudo-headers (`:path`...) only when asked. */
export function flatFields(headers: IncomingHttpHeaders, withPseudo = false): string[] {
  const out: string[] = []
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || (!withPseudo && name.charCodeAt(0) === 58)) continue
    for (const v of Array.isArray(value) ? value : [value]) out.push(name, String(v))
  }
  return out
}

/**
 * HTTP/1.1 fields for the request: pseudo-headers dropped, cookie fields
 * joined into one (RFC 9113 §8.2.3), and what the proxy needs found on the way.
 */
function requestFields(raw: readonly string[]): {
  fields: string[]
  contentLength: number
  userAgent: string
  host: string
  forwardedFor: string | null
  authorization: string
  cookie: string
} {
  const fields: string[] = []
  const cookies: string[] = []
  let contentLength = -1
  let userAgent = ''
  let host = ''
  let forwardedFor: string | null = null
  let authorization = ''
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string
    const value = raw[i + 1] as string
    if (name.charCodeAt(0) === 58 /* : */) continue
    if (name === 'cookie') {
      cookies.push(value)
      continue
    }
    if (name === 'content-length') contentLength = Number(value)
    else if (name === 'user-agent') userAgent = value
    else if (name === 'host') host = value
    else if (name === 'authorization') authorization = value
    else if (name === 'x-forwarded-for')
      forwardedFor = forwardedFor === null ? value : `${forwardedFor},${value}`
    fields.push(name, value)
  }
  const cookie = cookies.join('; ')
  if (cookies.length > 0) fields.push('cookie', cookie)
  return { fields, contentLength, userAgent, host, forwardedFor, authorization, cookie }
}

/** One request stream, as the attempt path sees it. */
export class StreamExchange implements Downstream {
  readonly head: RequestHead
  readonly startedAt = performance.now()
  onDrain: (() => void) | null = null
  onGone: ((status: number) => void) | null = null
  /** Answered already while the head was checked (body too large). */
  readonly refused: boolean = false

  private readonly stream: ServerHttp2Stream
  private readonly ctx: Http2Context
  private isGone = false
  private done = false
  private headSent = false
  private noBody = false
  private trailers: readonly string[] = []
  // request body
  private readonly body: RequestBody
  private requestTrailers: string[] = []

  constructor(
    stream: ServerHttp2Stream,
    headers: IncomingHttpHeaders,
    raw: readonly string[],
    client: ClientInfo,
    ctx: Http2Context,
  ) {
    this.stream = stream
    this.ctx = ctx
    const { fields, contentLength, userAgent, host, forwardedFor, authorization, cookie } = requestFields(raw)
    const authority = headers[':authority']
    const bodyLength = stream.endAfterHeaders ? 0 : contentLength >= 0 ? contentLength : -1
    this.head = {
      method: String(headers[':method'] ?? 'GET'),
      url: String(headers[':path'] ?? '/'),
      httpMinor: 1,
      headers: fields,
      host: typeof authority === 'string' ? authority : host,
      hostCount: typeof authority === 'string' || host !== '' ? 1 : 0,
      userAgent,
      forwardedFor,
      authorization,
      cookie,
      client,
      upgrade: null,
      bodyLength,
    }
    this.body = new RequestBody(ctx.limits.requestBuffer, stream, bodyLength === 0)
    if (clientRequestChannel.hasSubscribers)
      clientRequestChannel.publish({ exchange: this, localPort: client.localPort })
    const max = ctx.limits.maxBodySize
    if (max > 0 && bodyLength > max) {
      ctx.observer.rejected?.('body-too-large', 413)
      this.refused = true
      this.reply(413, ['x-switchyard-error', 'SWY_ERR_BODY_TOO_LARGE'], '413 Payload Too Large\n')
      return
    }
    stream.on('data', this.onData)
    stream.on('trailers', (t: IncomingHttpHeaders) => {
      this.requestTrailers = flatFields(t)
    })
    stream.on('end', this.onEnd)
    stream.on('drain', () => this.onDrain?.())
    stream.on('close', this.onClose)
    stream.on('wantTrailers', this.onWantTrailers)
  }

  get gone(): boolean {
    return this.isGone
  }

  get responded(): boolean {
    return this.headSent
  }

  get closing(): boolean {
    return this.ctx.draining
  }

  get bodyComplete(): boolean {
    return this.body.complete
  }

  // ---- request body

  private readonly onData = (chunk: Buffer): void => {
    const max = this.ctx.limits.maxBodySize
    if (max > 0 && this.body.received + chunk.length > max) {
      this.ctx.observer.rejected?.('body-too-large', 413)
      if (!this.headSent) {
        this.reply(413, ['x-switchyard-error', 'SWY_ERR_BODY_TOO_LARGE'], '413 Payload Too Large\n')
        this.gone413()
      } else this.abort()
      return
    }
    this.body.push(chunk)
  }

  private gone413(): void {
    const onGone = this.onGone
    this.onGone = null
    onGone?.(413)
  }

  private readonly onEnd = (): void => {
    this.body.end(this.requestTrailers)
  }

  whenBodyReady(ready: () => void): void {
    this.body.whenReady(ready)
  }

  readBody(sink: BodySink): void {
    this.body.read(sink)
  }

  resumeBody(): void {
    this.body.resume()
  }

  // ---- response

  cork(): void {}

  uncork(): boolean {
    return true
  }

  closeAfterResponse(): void {}

  sendInformational(status: number, headers: readonly string[]): void {
    if (this.isGone || this.headSent || this.stream.destroyed) return
    try {
      this.stream.additionalHeaders({ ...headerObject(headers), ':status': status })
    } catch {
      // A field HTTP/2 cannot carry: the hint is optional.
    }
  }

  sendHead(status: number, _reason: string, headers: readonly string[], framing: ResponseFraming): void {
    if (this.isGone || this.headSent) return
    this.headSent = true
    this.noBody = framing.noBody
    const out = headerObject(headers)
    out[':status'] = status
    if (framing.length >= 0) out['content-length'] = framing.length
    try {
      this.stream.respond(out, { waitForTrailers: !framing.noBody, endStream: framing.noBody })
    } catch {
      // Fields HTTP/2 refuses (connection-specific ones an instance sent).
      this.abort()
      return
    }
    if (framing.noBody) this.finish()
  }

  sendData(chunk: Buffer): boolean {
    if (this.isGone || this.noBody || chunk.length === 0) return true
    return this.stream.write(chunk)
  }

  sendEnd(trailers: readonly string[]): void {
    if (this.isGone || this.done) return
    if (!this.noBody) {
      this.trailers = trailers
      this.stream.end()
    }
    this.finish()
  }

  /** Every response is sent ready for trailers (gRPC needs them); none is an empty set. */
  private readonly onWantTrailers = (): void => {
    try {
      this.stream.sendTrailers(headerObject(this.trailers))
    } catch {
      // A trailer field HTTP/2 refuses: end the stream without them.
      this.stream.sendTrailers({})
    }
  }

  reply(status: number, headers: readonly string[], body: string): void {
    if (this.isGone || this.done) return
    if (this.headSent) {
      this.abort()
      return
    }
    this.headSent = true
    const out = headerObject(headers)
    out[':status'] = status
    out['content-length'] = Buffer.byteLength(body)
    const head = this.head.method === 'HEAD'
    try {
      this.stream.respond(out, { endStream: head })
      if (!head) this.stream.end(body)
    } catch {
      this.stream.close(constants.NGHTTP2_INTERNAL_ERROR)
    }
    this.finish()
  }

  abort(): void {
    if (this.done) return
    this.done = true
    this.isGone = true
    this.onGone = null
    if (!this.stream.destroyed) this.stream.close(constants.NGHTTP2_INTERNAL_ERROR)
  }

  tunnel(
    _s: number,
    _r: string,
    _h: readonly string[],
    upstream: Duplex,
    _head: Buffer,
    closed: () => void,
  ): void {
    // Upgrades never start on HTTP/2 (extended CONNECT is not offered).
    upstream.destroy()
    this.abort()
    closed()
  }

  private finish(): void {
    if (this.done) return
    this.done = true
    this.onGone = null
  }

  private readonly onClose = (): void => {
    if (this.done) return
    this.done = true
    this.isGone = true
    const onGone = this.onGone
    this.onGone = null
    onGone?.(499)
  }
}

/** An HTTP/2 header object from flat pairs: names lower-cased, repeated names as lists. */
function headerObject(fields: readonly string[]): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {}
  for (let i = 0; i < fields.length; i += 2) {
    const name = (fields[i] as string).toLowerCase()
    const value = fields[i + 1] as string
    const prior = out[name]
    if (prior === undefined) out[name] = value
    else out[name] = Array.isArray(prior) ? [...prior, value] : [String(prior), value]
  }
  return out
}
