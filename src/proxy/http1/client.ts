// The client side of HTTP/1.1: one ClientConnection per accepted socket (plain
// or TLS), one ClientExchange per request on it. Each request head is parsed
// once by Node's llhttp, checked against the limits, and handed to the attempt
// path as a Downstream; the response is written straight to the socket.
//
// Pipelined requests are answered in order: a request whose head arrives
// while an earlier one is being answered waits (its body, if any, buffered up
// to the request buffer, then the socket stops being read). After a request
// that closes the connection (Connection: close, HTTP/1.0 without keep-alive,
// an upgrade, a refused request) nothing more is parsed: bytes after it are
// discarded, never executed.
//
// Every phase has a deadline, checked by the listener's sweeper: the request
// head (408), the idle keep-alive time, the request body's idle time (408),
// and a client that does not read its response.

import type { Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import type { Duplex } from 'node:stream'
import { type ErrorCode, type HttpErrorCode, httpStatus } from '../../errors.js'
import {
  closeParser,
  createParser,
  METHODS,
  NO_RESOURCE,
  type ParseError,
  type Parser,
  REQUEST,
  SocketReader,
  STRICT,
} from '../../llhttp.js'
import { clientConnectionChannel, clientRequestChannel } from '../diagnostics.js'
import type { BodySink, ClientInfo, Downstream, RequestHead, ResponseFraming } from '../exchange.js'
import { clientAddress, fieldLines } from '../headers.js'
import type { ProxyObserver } from '../observer.js'
import { errorBody } from '../outcome.js'
import { RequestBody } from '../request-body.js'
import type { RejectReason } from '../resolve.js'
import { NEVER, type Sweepable, type Sweeper } from '../sweeper.js'

const { STATUS_CODES } = process.getBuiltinModule('node:http')

export interface ClientLimits {
  /** Request line and header fields, in bytes (431 above). */
  readonly maxHeaderSize: number
  /** Header fields (431 above). */
  readonly maxHeaderCount: number
  /** Request body bytes; 0 for no limit (413 above). */
  readonly maxBodySize: number
  /** Body bytes read before an instance is connected to (and buffered while it is not). */
  readonly requestBuffer: number
  /** From the first byte of a request head (or the connection) to its end (408). */
  readonly headersTimeoutMs: number
  /** Longest silence inside a request body (408). */
  readonly bodyTimeoutMs: number
  /** An idle keep-alive connection is closed after this long. */
  readonly keepAliveTimeoutMs: number
  /** Longest time a client may leave a response unread (then the connection is cut). */
  readonly sendTimeoutMs: number
}

/** What all connections of one listener share. */
export interface ClientContext {
  readonly limits: ClientLimits
  readonly sweeper: Sweeper
  readonly proto: 'http' | 'https'
  readonly observer: ProxyObserver
  readonly handle: (down: Downstream) => void
  /** Set on shutdown: every response closes its connection; idle ones are closed. */
  draining: boolean
  readonly connections: Set<ClientConnection>
  /** Client sockets of live tunnels (WebSocket), cut at the end of a drain. */
  readonly tunnels: Set<Duplex>
  /**
   * Takes a connection that opens with the HTTP/2 preface (cleartext HTTP/2
   * with prior knowledge, as gRPC clients without TLS speak it); null to
   * refuse it like any malformed request.
   */
  readonly h2c: ((socket: Socket, head: Buffer) => void) | null
}

/** The HTTP/2 connection preface, which llhttp recognises whole (HPE_PAUSED_H2_UPGRADE). */
const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1')

/** How long a closing connection keeps reading (and discarding) so the client sees its answer. */
const LINGER_MS = 2_000

/** `null` when the request needs none of the checks below. */
interface HeadFacts {
  host: string
  hostCount: number
  userAgent: string
  forwardedFor: string | null
  authorization: string
  cookie: string
  contentLength: number
  chunked: boolean
  upgrade: string
  expectContinue: boolean
}

export class ClientConnection implements Sweepable {
  readonly socket: Socket
  readonly ctx: ClientContext
  private readonly parser: Parser
  private readonly reader: SocketReader
  private readonly info: ClientInfo
  /** Header fields flushed before the head completed (long or split heads), then trailers. */
  private fields: string[] = []
  private url = ''
  /** The exchange whose body is being received. */
  private receiving: ClientExchange | null = null
  /** The exchange being answered, and those waiting behind it (pipelining). */
  private current: ClientExchange | null = null
  private readonly queue: ClientExchange[] = []
  /** No further request is parsed (after one that closes the connection). */
  private stopped = false
  /** Input is read and thrown away (closing, or after a refused request). */
  private discarding = false
  /** A WebSocket request waiting for the instance's 101: bytes after its head go to it. */
  private upgrading: ClientExchange | null = null
  private headDeadline: number
  private idleDeadline = NEVER
  private lingerDeadline = NEVER
  private writeBlockedAt = 0
  private headStarted = false
  /** No request head yet: the HTTP/2 preface may still open it. */
  private fresh = true

  constructor(socket: Socket, ctx: ClientContext) {
    this.socket = socket
    this.ctx = ctx
    this.info = {
      address: clientAddress(socket.remoteAddress),
      localPort: socket.localPort ?? 0,
      proto: ctx.proto,
    }
    this.parser = createParser(REQUEST_CALLBACKS, this)
    this.parser.initialize(REQUEST, NO_RESOURCE, ctx.limits.maxHeaderSize, STRICT)
    this.headDeadline = performance.now() + ctx.limits.headersTimeoutMs
    socket.setNoDelay(true)
    this.reader = new SocketReader(this.parser, socket)
    socket.on('data', this.onData)
    socket.on('end', this.onEnd)
    socket.on('error', noop)
    socket.on('close', this.onClose)
    socket.on('drain', this.onDrain)
    ctx.connections.add(this)
    ctx.sweeper.add(this)
    if (clientConnectionChannel.hasSubscribers)
      clientConnectionChannel.publish({ socket, localPort: this.info.localPort })
  }

  /** No request in progress: safe to close at once. */
  get idle(): boolean {
    return this.current === null && this.queue.length === 0 && !this.headStarted
  }

  /** Closes the connection if idle; otherwise it closes after the current response. */
  closeIfIdle(): void {
    if (this.idle) this.socket.destroy()
  }

  sweep(now: number): void {
    if (now >= this.lingerDeadline) {
      this.socket.destroy()
      return
    }
    if (this.writeBlockedAt > 0 && now - this.writeBlockedAt >= this.ctx.limits.sendTimeoutMs) {
      this.socket.destroy()
      return
    }
    if (now >= this.idleDeadline) {
      this.socket.destroy()
      return
    }
    if (now >= this.headDeadline) {
      this.headDeadline = NEVER
      this.ctx.observer.timeout?.('client-headers', null)
      this.refuse('SWY_ERR_CLIENT_TIMEOUT', 'request headers not received in time', null)
      return
    }
    const receiving = this.receiving
    if (
      receiving !== null &&
      !this.reader.paused &&
      now - receiving.lastBodyAt >= this.ctx.limits.bodyTimeoutMs
    ) {
      this.receiving = null
      this.stopped = true
      receiving.bodyTimedOut()
    }
  }

  // ---- socket events

  /** Bytes the parser does not read itself (see SocketReader). */
  private readonly onData = (chunk: Buffer): void => {
    if (this.discarding) return
    const upgrading = this.upgrading
    if (upgrading !== null) {
      // Early bytes of the new protocol: they go upstream with the tunnel.
      upgrading.upgradeHead = Buffer.concat([upgrading.upgradeHead, chunk])
      return
    }
    this.executed(this.parser.execute(chunk), chunk)
  }

  /** After the parser went through one read; `chunk` is that read, when at hand. */
  executed(result: number | ParseError, chunk: Buffer | null): void {
    if (typeof result !== 'number') {
      if (result.code === 'HPE_PAUSED_H2_UPGRADE' && this.fresh && this.ctx.h2c !== null) {
        // Cleartext HTTP/2 with prior knowledge: the session reads from the preface on.
        const read = chunk ?? this.parser.getCurrentBuffer()
        const h2c = this.ctx.h2c
        this.detachSocket()
        h2c(this.socket, Buffer.concat([H2_PREFACE, read.subarray(result.bytesParsed)]))
        return
      }
      if (!this.stopped || this.receiving !== null) this.parseFailed(result)
      return
    }
    const upgrading = this.upgrading
    if (upgrading !== null && upgrading.upgradeHead === EMPTY) {
      // llhttp stops at the end of the upgrade's head: what follows is the new protocol's.
      upgrading.upgradeHead = (chunk ?? this.parser.getCurrentBuffer()).subarray(result)
      this.reader.release()
    }
  }

  /**
   * The client closed its side. Like NGINX, take that as the client having
   * gone: a request in flight is aborted (499) rather than answered into a
   * connection nobody may read.
   */
  private readonly onEnd = (): void => {
    this.socket.destroy()
  }

  private readonly onClose = (): void => {
    this.ctx.connections.delete(this)
    this.ctx.sweeper.delete(this)
    this.reader.release()
    closeParser(this.parser)
    const current = this.current
    this.current = null
    current?.connectionClosed(499)
    for (const ex of this.queue.splice(0)) ex.connectionClosed(499)
  }

  private readonly onDrain = (): void => {
    this.writeBlockedAt = 0
    this.current?.onDrain?.()
  }

  // ---- parser callbacks (called through REQUEST_CALLBACKS)

  messageBegin(): void {
    this.headStarted = true
    this.idleDeadline = NEVER
    this.headDeadline = performance.now() + this.ctx.limits.headersTimeoutMs
  }

  headers(fields: string[], url: string): void {
    // Long heads arrive in pieces; maxHeaderSize bounds what accumulates.
    for (const f of fields) this.fields.push(f)
    this.url += url
  }

  headersComplete(
    minor: number,
    headers: string[] | undefined,
    method: number,
    url: string | undefined,
    upgrade: boolean,
    keepAlive: boolean,
  ): number {
    const fields = headers ?? this.fields
    const target = url || this.url
    this.fields = []
    this.url = ''
    this.fresh = false
    this.headStarted = false
    this.headDeadline = NEVER
    if (this.stopped) return 1
    const limits = this.ctx.limits
    if (fields.length / 2 > limits.maxHeaderCount) {
      this.refuse(
        'SWY_ERR_HEADERS_TOO_LARGE',
        `more than ${limits.maxHeaderCount} header fields (proxy.limits.maxHeaderCount)`,
        'headers-too-large',
      )
      return 1
    }
    const methodName = METHODS[method] ?? 'GET'
    if (methodName === 'CONNECT') {
      this.refuse('SWY_ERR_METHOD_NOT_ALLOWED', 'CONNECT is not supported by this reverse proxy', 'method')
      return 1
    }
    const facts = scan(fields)
    const bodyLength = facts.chunked ? -1 : facts.contentLength
    if (limits.maxBodySize > 0 && bodyLength > limits.maxBodySize) {
      this.refuse(
        'SWY_ERR_BODY_TOO_LARGE',
        `request body of ${bodyLength} bytes is above the limit of ${limits.maxBodySize} (proxy.limits.maxBodySize)`,
        'body-too-large',
      )
      return 1
    }
    let websocket: string | null = null
    if (upgrade) {
      if (facts.upgrade.toLowerCase() === 'websocket' && bodyLength === 0) {
        websocket = facts.upgrade
      } else if (bodyLength !== 0) {
        // Only WebSocket is tunnelled. llhttp stops at the head of any upgrade,
        // so a body after it would not be parsed: answer and close.
        this.refuse(
          'SWY_ERR_UPGRADE_UNSUPPORTED',
          `Upgrade: ${facts.upgrade || '(none)'} with a request body is not supported; only websocket is tunnelled`,
          'upgrade',
        )
        return 1
      }
      // Any other upgrade (h2c from `curl --http2` on plain HTTP) is answered
      // as the plain HTTP/1.1 request it also is, and the connection closes.
    }
    const head: RequestHead = {
      method: methodName,
      url: target,
      httpMinor: minor,
      headers: fields,
      host: facts.host,
      hostCount: facts.hostCount,
      userAgent: facts.userAgent,
      forwardedFor: facts.forwardedFor,
      authorization: facts.authorization,
      cookie: facts.cookie,
      client: this.info,
      upgrade: websocket,
      bodyLength,
    }
    // HTTP/1.0 has no chunked coding: such a message's end is in doubt (RFC 9112 §6.1).
    const close = !keepAlive || upgrade || (minor === 0 && facts.chunked)
    if (close) this.stopped = true
    const ex = new ClientExchange(this, head, close, facts.expectContinue)
    if (bodyLength !== 0) this.receiving = ex
    if (websocket !== null) this.upgrading = ex
    if (this.current === null) this.activate(ex)
    else this.queue.push(ex)
    return 0
  }

  body(chunk: Buffer): void {
    this.receiving?.bodyChunk(chunk)
  }

  messageComplete(): void {
    const receiving = this.receiving
    if (receiving === null) return
    this.receiving = null
    const trailers = this.fields
    this.fields = []
    receiving.bodyEnd(trailers)
  }

  // ---- exchanges

  private activate(ex: ClientExchange): void {
    this.current = ex
    this.idleDeadline = NEVER
    if (ex.refusal !== null) {
      ex.sendRefusal()
      return
    }
    this.ctx.handle(ex)
  }

  /** The exchange's response is complete. */
  exchangeDone(ex: ClientExchange, close: boolean): void {
    if (this.current !== ex) return
    this.current = null
    if (close || this.ctx.draining) {
      this.close()
      return
    }
    const next = this.queue.shift()
    if (next !== undefined) {
      this.activate(next)
      return
    }
    if (this.stopped) {
      this.close()
      return
    }
    if (!this.headStarted) this.idleDeadline = performance.now() + this.ctx.limits.keepAliveTimeoutMs
    // A pipelined body may have stopped the reading.
    this.resumeReading()
  }

  /**
   * Ends the connection after what is written. The client may still be
   * sending (a body nobody read): keep reading and discarding for a moment,
   * so the close does not turn into a reset that destroys the answer.
   */
  private close(): void {
    this.stopped = true
    this.discard()
    this.receiving = null
    this.upgrading = null
    for (const ex of this.queue.splice(0)) ex.connectionClosed(499)
    this.socket.end()
    this.lingerDeadline = performance.now() + LINGER_MS
    this.resumeReading()
  }

  /** A request refused at the head: answered in its turn, then the connection closes. */
  private refuse(code: HttpErrorCode, message: string, reject: RejectReason | null): void {
    const status = httpStatus(code)
    this.stopped = true
    this.discard()
    this.receiving = null
    if (reject !== null) this.ctx.observer.rejected?.(reject, status)
    const ex = ClientExchange.refusal(this, { status, code, message })
    if (this.current === null) this.activate(ex)
    else this.queue.push(ex)
  }

  private parseFailed(error: ParseError): void {
    const answer = parseErrorAnswer(error.code)
    if (answer === null) {
      // The client is gone or cut its message short.
      this.stopped = true
      if (this.idle) this.socket.destroy()
      return
    }
    const receiving = this.receiving
    if (receiving !== null) {
      // A broken body (bad chunk size): the request cannot be completed.
      this.receiving = null
      this.stopped = true
      this.ctx.observer.rejected?.(answer.reject, answer.status)
      receiving.bodyBroken(answer.status, answer.code, error.reason)
      return
    }
    this.refuse(answer.code, error.reason || error.message, answer.reject)
  }

  // ---- writing and flow control (for ClientExchange)

  write(data: string | Buffer): boolean {
    const ok = typeof data === 'string' ? this.socket.write(data, 'latin1') : this.socket.write(data)
    if (!ok && this.writeBlockedAt === 0) this.writeBlockedAt = performance.now()
    return ok
  }

  /** Text (latin1) then bytes, in one system call (writev) rather than two. */
  writeBoth(text: string, data: Buffer): boolean {
    const socket = this.socket
    socket.cork()
    socket.write(text, 'latin1')
    const ok = socket.write(data)
    socket.uncork()
    if (!ok && this.writeBlockedAt === 0) this.writeBlockedAt = performance.now()
    return ok
  }

  /** Input from here on is read and thrown away, never parsed. */
  private discard(): void {
    this.discarding = true
    this.reader.release()
  }

  pauseReading(): void {
    this.reader.pause()
  }

  resumeReading(): void {
    if (!this.reader.paused) return
    if (this.receiving !== null) this.receiving.lastBodyAt = performance.now()
    this.reader.resume()
  }

  isCurrent(ex: ClientExchange): boolean {
    return this.current === ex
  }

  /** The socket leaves HTTP: a tunnel takes it. */
  detachSocket(): void {
    this.upgrading = null
    this.discard()
    const socket = this.socket
    socket.removeListener('data', this.onData)
    socket.removeListener('end', this.onEnd)
    socket.removeListener('close', this.onClose)
    socket.removeListener('drain', this.onDrain)
    this.ctx.connections.delete(this)
    this.ctx.sweeper.delete(this)
    closeParser(this.parser)
    this.current = null
    this.reader.resume()
  }
}

const REQUEST_CALLBACKS = {
  onHeaders(this: Parser, fields: string[], url: string): void {
    ;(this.owner as ClientConnection).headers(fields, url)
  },
  onHeadersComplete(
    this: Parser,
    _major: number,
    minor: number,
    headers: string[] | undefined,
    method: number | undefined,
    url: string | undefined,
    _status: number | undefined,
    _reason: string | undefined,
    upgrade: boolean,
    keepAlive: boolean,
  ): number {
    return (this.owner as ClientConnection).headersComplete(
      minor,
      headers,
      method ?? 1,
      url,
      upgrade,
      keepAlive,
    )
  },
  onBody(this: Parser, chunk: Buffer): void {
    ;(this.owner as ClientConnection).body(chunk)
  },
  onMessageComplete(this: Parser): void {
    ;(this.owner as ClientConnection).messageComplete()
  },
  onMessageBegin(this: Parser): void {
    ;(this.owner as ClientConnection).messageBegin()
  },
  onExecute(this: Parser, result: number | ParseError): void {
    ;(this.owner as ClientConnection).executed(result, null)
  },
}

/** The fields the proxy itself needs, found in one pass. */
function scan(fields: readonly string[]): HeadFacts {
  const facts: HeadFacts = {
    host: '',
    hostCount: 0,
    userAgent: '',
    forwardedFor: null,
    authorization: '',
    cookie: '',
    contentLength: 0,
    chunked: false,
    upgrade: '',
    expectContinue: false,
  }
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i] as string
    switch (name.length) {
      case 4:
        if (name.toLowerCase() === 'host') {
          if (facts.hostCount++ === 0) facts.host = fields[i + 1] as string
        }
        break
      case 6:
        if (name.toLowerCase() === 'expect')
          facts.expectContinue = (fields[i + 1] as string).toLowerCase() === '100-continue'
        else if (name.toLowerCase() === 'cookie')
          facts.cookie = facts.cookie === '' ? (fields[i + 1] as string) : `${facts.cookie}; ${fields[i + 1]}`
        break
      case 7:
        if (name.toLowerCase() === 'upgrade') facts.upgrade = fields[i + 1] as string
        break
      case 10:
        if (name.toLowerCase() === 'user-agent') facts.userAgent = fields[i + 1] as string
        break
      case 13:
        if (name.toLowerCase() === 'authorization') facts.authorization = fields[i + 1] as string
        break
      case 15:
        if (name.toLowerCase() === 'x-forwarded-for') {
          const value = fields[i + 1] as string
          facts.forwardedFor = facts.forwardedFor === null ? value : `${facts.forwardedFor},${value}`
        }
        break
      case 14:
        // llhttp refused a second, different or malformed Content-Length.
        if (name.toLowerCase() === 'content-length') facts.contentLength = Number(fields[i + 1])
        break
      case 17:
        // llhttp refused any coding but a final `chunked`, and chunked with a length.
        if (name.toLowerCase() === 'transfer-encoding') facts.chunked = true
        break
    }
  }
  return facts
}

interface Refusal {
  readonly status: number
  readonly code: ErrorCode
  readonly message: string
}

type BodyMode = 'none' | 'raw' | 'chunked'

/** One request on a ClientConnection, as the attempt path sees it. */
export class ClientExchange implements Downstream {
  readonly head: RequestHead
  readonly startedAt: number
  private readonly conn: ClientConnection
  /** The client asked to close after this request (or it must be). */
  private closeAfter: boolean
  private readonly expectContinue: boolean
  readonly refusal: Refusal | null = null
  /** Bytes the client sent after a WebSocket upgrade's head. */
  upgradeHead: Buffer = EMPTY
  onDrain: (() => void) | null = null
  onGone: ((status: number) => void) | null = null

  private isGone = false
  private done = false
  private batching = false
  private pending = ''
  private headSent = false
  private bodyMode: BodyMode = 'none'
  // request body
  lastBodyAt = 0
  private readonly body: RequestBody
  private continueSent = false

  constructor(conn: ClientConnection, head: RequestHead, closeAfter: boolean, expectContinue: boolean) {
    this.conn = conn
    this.head = head
    this.startedAt = performance.now()
    this.closeAfter = closeAfter
    this.expectContinue = expectContinue
    this.body = new RequestBody(
      conn.ctx.limits.requestBuffer,
      { pause: () => conn.pauseReading(), resume: () => conn.resumeReading() },
      head.bodyLength === 0,
    )
    this.lastBodyAt = this.startedAt
    if (clientRequestChannel.hasSubscribers)
      clientRequestChannel.publish({ exchange: this, localPort: head.client.localPort })
  }

  static refusal(conn: ClientConnection, refusal: Refusal): ClientExchange {
    const ex = new ClientExchange(conn, REFUSED_HEAD, true, false)
    ;(ex as { refusal: Refusal | null }).refusal = refusal
    return ex
  }

  sendRefusal(): void {
    const r = this.refusal as Refusal
    this.reply(
      r.status,
      [
        'content-type',
        'text/plain; charset=utf-8',
        'cache-control',
        'no-store',
        'x-switchyard-error',
        r.code,
      ],
      errorBody(r.status, r.code, r.message.replace(/[\r\n]/g, ' ')),
    )
  }

  get gone(): boolean {
    return this.isGone
  }

  get responded(): boolean {
    return this.headSent
  }

  get closing(): boolean {
    return this.closeAfter || this.conn.ctx.draining
  }

  get bodyComplete(): boolean {
    return this.body.complete
  }

  // ---- request body

  bodyChunk(chunk: Buffer): void {
    this.lastBodyAt = performance.now()
    const max = this.conn.ctx.limits.maxBodySize
    if (max > 0 && this.body.received + chunk.length > max) {
      this.conn.ctx.observer.rejected?.('body-too-large', 413)
      this.bodyBroken(
        413,
        'SWY_ERR_BODY_TOO_LARGE',
        `request body above the limit of ${max} bytes (proxy.limits.maxBodySize)`,
      )
      return
    }
    this.body.push(chunk)
  }

  bodyEnd(trailers: readonly string[]): void {
    this.body.end(trailers)
  }

  /** The client stalled its body: 408 if nothing was answered yet, and the attempt gives up. */
  bodyTimedOut(): void {
    this.bodyBroken(
      408,
      'SWY_ERR_CLIENT_TIMEOUT',
      'request body not received in time (proxy.timeouts.clientBody)',
    )
  }

  /** The body cannot be completed (too large, bad chunked framing). */
  bodyBroken(status: number, code: ErrorCode, message: string): void {
    this.closeAfter = true
    if (this.done) return
    if (this.headSent) {
      this.abort()
      return
    }
    if (!this.conn.isCurrent(this)) {
      // Not started yet: it answers in its turn.
      ;(this as { refusal: Refusal | null }).refusal = { status, code, message }
      return
    }
    this.writeError(status, code, message)
    this.end(status)
  }

  private end(status: number): void {
    if (this.done) return
    this.done = true
    this.isGone = true
    const onGone = this.onGone
    this.onGone = null
    onGone?.(status)
    this.conn.exchangeDone(this, true)
  }

  whenBodyReady(ready: () => void): void {
    if (this.body.whenReady(ready)) return
    if (this.expectContinue && !this.continueSent && this.head.httpMinor >= 1) {
      // The client waits for this before sending its body (RFC 9110 §10.1.1).
      this.continueSent = true
      this.conn.write('HTTP/1.1 100 Continue\r\n\r\n')
    }
  }

  readBody(sink: BodySink): void {
    this.body.read(sink)
  }

  resumeBody(): void {
    this.body.resume()
  }

  // ---- response

  /**
   * While the bytes of one upstream read are relayed, what they produce (the
   * head, small body pieces, chunk framing) is gathered into one string and
   * written once: for a typical small response that is a single write of
   * head and body, without the per-write cost of cork/uncork and writev.
   */
  cork(): void {
    this.batching = true
  }

  uncork(): boolean {
    this.batching = false
    return this.flush()
  }

  private flush(): boolean {
    if (this.pending === '') return true
    const data = this.pending
    this.pending = ''
    return this.conn.write(data)
  }

  /** Writes, or gathers while batching. Bytes as latin1 characters, one per byte. */
  private out(data: string): boolean {
    if (this.batching) {
      this.pending += data
      return true
    }
    this.flush()
    return this.conn.write(data)
  }

  private outBytes(chunk: Buffer): boolean {
    if (this.batching && chunk.length <= GATHER_LIMIT) {
      this.pending += chunk.toString('latin1')
      return true
    }
    const pending = this.pending
    if (pending === '') return this.conn.write(chunk)
    // The head (and any framing) gathered so far goes out with these bytes.
    this.pending = ''
    return this.conn.writeBoth(pending, chunk)
  }

  sendInformational(status: number, headers: readonly string[]): void {
    if (this.isGone || this.headSent || this.head.httpMinor === 0) return
    this.conn.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Informational'}\r\n${fieldLines(headers)}\r\n`,
    )
  }

  sendHead(status: number, reason: string, headers: readonly string[], framing: ResponseFraming): void {
    if (this.isGone || this.headSent) return
    this.headSent = true
    // A request body not read to its end leaves the connection's framing in doubt.
    if (!this.body.complete) this.closeAfter = true
    let framingLine = ''
    if (framing.noBody) {
      this.bodyMode = 'none'
      if (framing.length >= 0) framingLine = `content-length: ${framing.length}\r\n`
      else if (framing.chunked && this.head.httpMinor >= 1) framingLine = 'transfer-encoding: chunked\r\n'
    } else if (framing.length >= 0) {
      this.bodyMode = 'raw'
      framingLine = `content-length: ${framing.length}\r\n`
    } else if (this.head.httpMinor >= 1) {
      this.bodyMode = 'chunked'
      framingLine = 'transfer-encoding: chunked\r\n'
    } else {
      // An HTTP/1.0 client: the body ends when the connection does.
      this.bodyMode = 'raw'
      this.closeAfter = true
    }
    this.out(
      `HTTP/1.1 ${status} ${reason}\r\n${fieldLines(headers)}${framingLine}${this.connectionLine()}\r\n`,
    )
  }

  private connectionLine(): string {
    if (this.closing) {
      this.closeAfter = true
      return 'connection: close\r\n'
    }
    return this.head.httpMinor === 0 ? 'connection: keep-alive\r\n' : ''
  }

  sendData(chunk: Buffer): boolean {
    if (this.isGone || chunk.length === 0) return true
    if (this.bodyMode === 'raw') return this.outBytes(chunk)
    if (this.bodyMode === 'none') return true
    this.out(`${chunk.length.toString(16)}\r\n`)
    this.outBytes(chunk)
    return this.out('\r\n')
  }

  sendEnd(trailers: readonly string[]): void {
    if (this.isGone || this.done) return
    if (this.bodyMode === 'chunked') this.out(`0\r\n${fieldLines(trailers)}\r\n`)
    this.finish()
  }

  closeAfterResponse(): void {
    this.closeAfter = true
  }

  reply(status: number, headers: readonly string[], body: string): void {
    if (this.isGone || this.done) return
    if (this.headSent) {
      this.abort()
      return
    }
    if (!this.body.complete) this.closeAfter = true
    this.headSent = true
    const length = Buffer.byteLength(body)
    const text = this.head.method === 'HEAD' ? '' : body
    this.conn.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}\r\n${fieldLines(headers)}content-length: ${length}\r\n${this.connectionLine()}\r\n${text}`,
    )
    this.finish()
  }

  private writeError(status: number, code: ErrorCode, message: string): void {
    this.headSent = true
    const body = errorBody(status, code, message)
    this.conn.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: text/plain; charset=utf-8\r\ncache-control: no-store\r\nx-switchyard-error: ${code}\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    )
  }

  abort(): void {
    if (this.done) return
    this.pending = ''
    this.done = true
    this.isGone = true
    this.onGone = null
    this.conn.socket.destroy()
  }

  tunnel(
    status: number,
    reason: string,
    headers: readonly string[],
    upstream: Duplex,
    upstreamHead: Buffer,
    closed: () => void,
  ): void {
    if (this.isGone || this.done) {
      upstream.destroy()
      closed()
      return
    }
    this.batching = false
    this.flush()
    this.done = true
    this.headSent = true
    this.onGone = null
    const conn = this.conn
    const client = conn.socket
    conn.detachSocket()
    client.write(`HTTP/1.1 ${status} ${reason}\r\n${fieldLines(headers)}\r\n`, 'latin1')
    if (upstreamHead.length > 0) client.write(upstreamHead)
    if (this.upgradeHead.length > 0) upstream.write(this.upgradeHead)
    ;(upstream as Socket).setNoDelay?.(true)
    upstream.on('error', noop)
    const tunnels = conn.ctx.tunnels
    tunnels.add(client)
    // pipe() carries data with backpressure and passes a clean end (FIN) on;
    // a close or error of either side tears down both.
    client.pipe(upstream)
    upstream.pipe(client)
    const teardown = () => {
      client.destroy()
      upstream.destroy()
      if (tunnels.delete(client)) closed()
    }
    client.once('close', teardown)
    upstream.once('close', teardown)
  }

  private finish(): void {
    if (this.done) return
    this.batching = false
    this.flush()
    this.done = true
    this.onGone = null
    this.conn.exchangeDone(this, this.closeAfter)
  }

  /** The connection closed under this exchange. */
  connectionClosed(status: number): void {
    if (this.isGone) return
    this.isGone = true
    if (this.done) return
    this.done = true
    const onGone = this.onGone
    this.onGone = null
    onGone?.(status)
  }
}

const EMPTY = Buffer.alloc(0)

/** Body pieces up to this size are gathered with the head into one write; larger ones are written as they are. */
const GATHER_LIMIT = 4 * 1024

const REFUSED_HEAD: RequestHead = {
  method: 'GET',
  url: '/',
  httpMinor: 1,
  headers: [],
  host: '',
  hostCount: 0,
  userAgent: '',
  forwardedFor: null,
  authorization: '',
  cookie: '',
  client: { address: '', localPort: 0, proto: 'http' },
  upgrade: null,
  bodyLength: 0,
}

interface ParseErrorAnswer {
  readonly status: number
  readonly code: HttpErrorCode
  readonly reject: RejectReason
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

/** The answer to a request the parser refused; null when there is none to give. */
function parseErrorAnswer(code: string): ParseErrorAnswer | null {
  if (code === 'HPE_HEADER_OVERFLOW')
    return { status: 431, code: 'SWY_ERR_HEADERS_TOO_LARGE', reject: 'headers-too-large' }
  if (code === 'HPE_INVALID_METHOD') return { status: 400, code: 'SWY_ERR_BAD_REQUEST', reject: 'method' }
  if (!code.startsWith('HPE_') || code === 'HPE_INVALID_EOF_STATE' || code === 'HPE_CLOSED_CONNECTION')
    return null
  const reject: RejectReason = FRAMING_ERRORS.has(code)
    ? 'framing'
    : HEADER_ERRORS.has(code)
      ? 'header'
      : REQUEST_LINE_ERRORS.has(code)
        ? 'request-line'
        : 'malformed'
  return { status: 400, code: 'SWY_ERR_BAD_REQUEST', reject }
}

function noop(): void {}
