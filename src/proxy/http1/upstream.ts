// Connections to instances: keep-alive pools per instance, each connection
// carrying one exchange at a time (no upstream pipelining), its response
// parsed by Node's llhttp for framing while the body bytes pass through.
//
// A pool has a connection limit and a bounded wait queue with a timeout, so
// one population of slow clients cannot take every connection to an instance
// and leave the others waiting forever: the request that cannot get a
// connection in time is answered 503.

import { connect as netConnect, type Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import { connect as tlsConnect } from 'node:tls'
import {
  closeParser,
  createParser,
  NO_RESOURCE,
  type ParseError,
  type Parser,
  RESPONSE,
  SocketReader,
  STRICT,
} from '../../llhttp.js'
import type { Backend } from '../../routing/types.js'
import { fieldLines, upstreamRequestHead } from '../headers.js'
import { NEVER, type Sweepable, type Sweeper } from '../sweeper.js'
import {
  type UpstreamChannel,
  UpstreamFailure,
  type UpstreamHandler,
  type UpstreamPool,
  type UpstreamRequest,
} from '../upstream.js'

export interface UpstreamOptions {
  readonly connectTimeoutMs: number
  /** From the request's last byte to the response head. */
  readonly responseHeadersTimeoutMs: number
  /** Longest silence while reading a response body. */
  readonly idleTimeoutMs: number
  /** Idle keep-alive connections are closed after this long. */
  readonly keepAliveTimeoutMs: number
  /** Connections per instance. */
  readonly maxConnections: number
  /** Requests that may wait for a connection to an instance; more get 503 at once. */
  readonly maxQueue: number
  /** Longest wait for a connection (503 after). */
  readonly queueTimeoutMs: number
  readonly maxHeaderSize: number
}

const CONNECT_CODES = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EADDRNOTAVAIL',
  'ECONNRESET',
])

/** Node's TLS verification failures are OpenSSL codes or ERR_TLS_*. */
function isTlsError(code: string): boolean {
  return (
    code.startsWith('ERR_TLS_') ||
    code.startsWith('ERR_SSL_') ||
    code.includes('CERT') ||
    code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' ||
    code === 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY'
  )
}

type ConnectionState = 'connecting' | 'busy' | 'idle' | 'closed'

export class UpstreamConnection implements Sweepable, UpstreamChannel {
  readonly pool: Http1Pool
  readonly socket: Socket
  private readonly parser: Parser
  private readonly reader: SocketReader
  private state: ConnectionState = 'connecting'
  private handler: UpstreamHandler | null
  /** The handler the current read is for, told when the read is through (onReadEnd). */
  private reading: UpstreamHandler | null = null
  /** Fields flushed before the head completed, or trailers. */
  private fields: string[] = []
  private inHead = true
  private status = 0
  private skipBody = false
  private keepAlive = false
  private upgraded = false
  private requestDone = false
  private responseDone = false
  /** The request body goes out chunked (the client's was). */
  private chunkedBody = false
  private connectDeadline: number
  private headersDeadline = NEVER
  private idleSince = 0
  private lastReadAt = 0
  private error: UpstreamFailure | null = null

  constructor(pool: Http1Pool, handler: UpstreamHandler) {
    this.pool = pool
    this.handler = handler
    const o = pool.options
    this.connectDeadline = performance.now() + o.connectTimeoutMs
    this.parser = createParser(RESPONSE_CALLBACKS, this)
    this.parser.initialize(RESPONSE, NO_RESOURCE, o.maxHeaderSize, STRICT)
    const t = pool.target
    this.socket = t.tls
      ? tlsConnect({
          host: t.address,
          port: t.port,
          servername: t.serverName || undefined,
          rejectUnauthorized: t.verify,
          ALPNProtocols: ['http/1.1'],
        })
      : netConnect({ host: t.address, port: t.port })
    this.socket.setNoDelay(true)
    this.reader = new SocketReader(this.parser, this.socket, false)
    this.socket.on(t.tls ? 'secureConnect' : 'connect', this.onConnect)
    this.socket.on('data', this.onData)
    this.socket.on('end', this.onEnd)
    this.socket.on('error', this.onError)
    this.socket.on('close', this.onClose)
    this.socket.on('drain', this.onSocketDrain)
  }

  sendRequest(request: UpstreamRequest): void {
    this.chunkedBody = request.bodyLength === -1
    if (request.bodyLength !== null) {
      // The head waits for the body bytes at hand (a small upload arrives
      // whole) and goes out with them in one system call, as node:http's
      // client does: corked until the end of this tick.
      this.socket.cork()
      process.nextTick(uncork, this.socket)
    }
    this.socket.write(
      upstreamRequestHead(
        request.method,
        request.target,
        request.headers,
        request.facts,
        request.bodyLength,
        request.upgrade,
      ),
      'latin1',
    )
    if (request.bodyLength === null) this.requestSent()
  }

  writeBody(chunk: Buffer): boolean {
    if (chunk.length === 0) return true
    const socket = this.socket
    if (!this.chunkedBody) return socket.write(chunk)
    // Size line, data and CRLF in one system call.
    socket.cork()
    socket.write(`${chunk.length.toString(16)}\r\n`, 'latin1')
    socket.write(chunk)
    const ok = socket.write('\r\n', 'latin1')
    socket.uncork()
    return ok
  }

  endBody(trailers: readonly string[]): void {
    if (this.chunkedBody) this.socket.write(`0\r\n${fieldLines(trailers)}\r\n`, 'latin1')
    this.requestSent()
  }

  /** The whole request is written: the response head is due within the headers timeout. */
  private requestSent(): void {
    this.requestDone = true
    if (this.inHead) this.headersDeadline = performance.now() + this.pool.options.responseHeadersTimeoutMs
    if (this.responseDone) this.release()
  }

  pause(): void {
    this.reader.pause()
  }

  resume(): void {
    if (!this.reader.paused) return
    this.lastReadAt = performance.now()
    this.reader.resume()
  }

  /** Drops the exchange: the connection cannot be reused (the request or response is cut). */
  abandon(): void {
    this.handler = null
    this.destroy()
  }

  /**
   * The handler no longer wants this connection. One still connecting stays
   * and joins the pool when it connects; one carrying the exchange is closed.
   */
  detach(handler: UpstreamHandler): void {
    if (this.handler !== handler) return
    if (this.state === 'connecting') this.handler = null
    else this.abandon()
  }

  /** Starts an exchange on an idle connection. */
  assign(handler: UpstreamHandler): void {
    this.state = 'busy'
    this.handler = handler
    this.inHead = true
    this.status = 0
    this.skipBody = false
    this.requestDone = false
    this.responseDone = false
    this.headersDeadline = NEVER
    this.lastReadAt = performance.now()
    handler.onConnection(this)
  }

  get idle(): boolean {
    return this.state === 'idle'
  }

  idleFor(now: number): number {
    return now - this.idleSince
  }

  destroy(): void {
    if (this.state === 'closed') return
    this.socket.destroy()
  }

  sweep(now: number): void {
    const o = this.pool.options
    if (this.state === 'connecting') {
      if (now >= this.connectDeadline)
        this.fail(new UpstreamFailure('connect-timeout', `connect timed out after ${o.connectTimeoutMs} ms`))
    } else if (this.state === 'idle') {
      if (now - this.idleSince >= o.keepAliveTimeoutMs) this.destroy()
    } else if (this.state === 'busy' && !this.upgraded) {
      if (now >= this.headersDeadline) {
        this.fail(
          new UpstreamFailure('headers-timeout', `no response head within ${o.responseHeadersTimeoutMs} ms`),
        )
      } else if (
        !this.inHead &&
        !this.reader.paused &&
        !this.responseDone &&
        now - this.lastReadAt >= o.idleTimeoutMs
      ) {
        this.fail(new UpstreamFailure('idle-timeout', `response body idle for ${o.idleTimeoutMs} ms`))
      }
    }
  }

  private fail(failure: UpstreamFailure): void {
    if (this.error === null) this.error = failure
    this.destroy()
  }

  private readonly onConnect = (): void => {
    if (this.state !== 'connecting') return
    // The handle is final now (a name's addresses are tried on new ones).
    this.reader.readDirectly()
    this.state = 'busy'
    this.lastReadAt = performance.now()
    const handler = this.handler
    if (handler === null) {
      // Its request went away while connecting: keep the connection for the next.
      this.state = 'idle'
      this.idleSince = performance.now()
      this.pool.release(this)
      return
    }
    handler.onConnection(this)
  }

  /** Bytes the parser does not read itself (see SocketReader). */
  private readonly onData = (chunk: Buffer): void => {
    if (this.handler === null) {
      // Bytes on an idle connection: the instance broke the protocol. Never reuse it.
      this.destroy()
      return
    }
    this.executed(this.parser.execute(chunk), chunk)
  }

  /** After the parser went through one read; `chunk` is that read, when at hand. */
  executed(result: number | ParseError, chunk: Buffer | null): void {
    this.lastReadAt = performance.now()
    const reading = this.reading
    this.reading = null
    if (typeof result !== 'number') {
      this.fail(new UpstreamFailure('bad-response', `invalid response: ${result.reason}`, result.code))
    } else if (this.upgraded && reading !== null && this.handler === reading) {
      this.upgrade(reading, (chunk ?? this.parser.getCurrentBuffer()).subarray(result))
    } else if (reading === null && this.state === 'idle') {
      // Bytes on an idle connection: the instance broke the protocol. Never reuse it.
      this.destroy()
    }
    reading?.onReadEnd()
  }

  /** The first callback of a read: what the handler writes until the read is through goes out at once. */
  private beginRead(handler: UpstreamHandler): void {
    if (this.reading !== null) return
    this.reading = handler
    handler.onReadStart()
  }

  private upgrade(handler: UpstreamHandler, head: Buffer): void {
    // The socket leaves the pool for good: the handler pipes it.
    this.handler = null
    this.state = 'closed'
    this.pool.forget(this)
    this.reader.release()
    // A handle stopped for backpressure would not restart for the tunnel's pipe.
    this.reader.resume()
    const socket = this.socket
    socket.removeListener('data', this.onData)
    socket.removeListener('end', this.onEnd)
    socket.removeListener('error', this.onError)
    socket.removeListener('close', this.onClose)
    socket.removeListener('drain', this.onSocketDrain)
    closeParser(this.parser)
    const fields = this.fields
    this.fields = []
    handler.onUpgrade(this.status, this.upgradeReason, this.upgradeHeaders ?? fields, socket, head)
  }

  private upgradeReason = ''
  private upgradeHeaders: string[] | null = null

  private readonly onEnd = (): void => {
    // A close-delimited body ends here; anything else cut short is an error.
    if (this.state === 'busy' && !this.inHead && !this.responseDone) {
      const result = this.parser.finish()
      if (result !== undefined && this.error === null)
        this.error = new UpstreamFailure('reset', 'connection closed mid-response', result.code)
    }
    this.socket.end()
  }

  private readonly onError = (err: NodeJS.ErrnoException): void => {
    if (this.error !== null) return
    const code = err.code ?? ''
    if (this.state === 'connecting') {
      this.error = isTlsError(code)
        ? new UpstreamFailure('tls', err.message, code)
        : new UpstreamFailure(CONNECT_CODES.has(code) ? 'connect' : 'reset', err.message, code)
    } else {
      this.error = new UpstreamFailure('reset', err.message, code)
    }
  }

  private readonly onClose = (): void => {
    const was = this.state
    this.state = 'closed'
    this.pool.forget(this)
    this.reader.release()
    closeParser(this.parser)
    const handler = this.handler
    this.handler = null
    if (handler === null || this.responseDone) return
    if (was === 'connecting') {
      handler.onFailure(this.error ?? new UpstreamFailure('connect', 'connection closed while connecting'))
    } else {
      handler.onFailure(
        this.error ?? new UpstreamFailure('reset', 'connection closed before the response was complete'),
      )
    }
  }

  private readonly onSocketDrain = (): void => {
    this.handler?.onDrain()
  }

  /** Back to the pool once both the request and the response are complete. */
  private release(): void {
    this.handler = null
    if (!this.keepAlive || !this.requestDone || this.error !== null || this.socket.destroyed) {
      this.destroy()
      return
    }
    this.state = 'idle'
    this.idleSince = performance.now()
    this.headersDeadline = NEVER
    this.resume()
    this.pool.release(this)
  }

  // ---- parser callbacks (called with `this` = the parser)

  headersComplete(
    headers: string[] | undefined,
    status: number,
    reason: string,
    upgrade: boolean,
    keepAlive: boolean,
  ): number {
    const fields = headers ?? this.fields
    this.fields = []
    const handler = this.handler
    if (handler === null) return 1
    this.beginRead(handler)
    if (status < 200) {
      if (status === 101 && upgrade) {
        this.upgraded = true
        this.status = status
        this.upgradeReason = reason
        this.upgradeHeaders = fields
        this.headersDeadline = NEVER
        return 0
      }
      if (status !== 100) handler.onInformational(status, fields)
      return 0
    }
    this.inHead = false
    this.headersDeadline = NEVER
    this.status = status
    this.keepAlive = keepAlive
    this.skipBody = handler.onResponseHead(status, reason, fields, keepAlive)
    return this.skipBody ? 1 : 0
  }

  headers(fields: string[]): void {
    for (const f of fields) this.fields.push(f)
  }

  body(chunk: Buffer): void {
    const handler = this.handler
    if (handler === null) return
    this.beginRead(handler)
    handler.onResponseData(chunk)
  }

  messageComplete(): void {
    if (this.inHead) {
      // The end of a 1xx: the real response follows on the same connection.
      this.fields = []
      return
    }
    const trailers = this.fields
    this.fields = []
    this.responseDone = true
    const handler = this.handler
    if (handler !== null) {
      this.beginRead(handler)
      handler.onResponseEnd(trailers)
    }
    if (this.requestDone && this.state === 'busy') this.release()
  }
}

function uncork(socket: Socket): void {
  socket.uncork()
}

const RESPONSE_CALLBACKS = {
  onHeaders(this: Parser, fields: string[]): void {
    ;(this.owner as UpstreamConnection).headers(fields)
  },
  onHeadersComplete(
    this: Parser,
    _major: number,
    _minor: number,
    headers: string[] | undefined,
    _method: number | undefined,
    _url: string | undefined,
    status: number | undefined,
    reason: string | undefined,
    upgrade: boolean,
    keepAlive: boolean,
  ): number {
    return (this.owner as UpstreamConnection).headersComplete(
      headers,
      status ?? 0,
      reason ?? '',
      upgrade,
      keepAlive,
    )
  },
  onBody(this: Parser, chunk: Buffer): void {
    ;(this.owner as UpstreamConnection).body(chunk)
  },
  onMessageComplete(this: Parser): void {
    ;(this.owner as UpstreamConnection).messageComplete()
  },
  onExecute(this: Parser, result: number | ParseError): void {
    ;(this.owner as UpstreamConnection).executed(result, null)
  },
}

/** How to reach one instance. */
export interface UpstreamTarget {
  readonly address: string
  readonly port: number
  readonly tls: boolean
  /** Verify the instance's certificate. */
  readonly verify: boolean
  /** SNI and the name its certificate must carry; '' verifies against the address. */
  readonly serverName: string
}

interface Waiter {
  readonly handler: UpstreamHandler
  readonly deadline: number
}

export class Http1Pool implements Sweepable, UpstreamPool {
  readonly target: UpstreamTarget
  readonly options: UpstreamOptions
  private readonly sweeper: Sweeper
  private readonly idle: UpstreamConnection[] = []
  private readonly all = new Set<UpstreamConnection>()
  private readonly waiting: Waiter[] = []
  private retired = false

  constructor(target: UpstreamTarget, options: UpstreamOptions, sweeper: Sweeper) {
    this.target = target
    this.options = options
    this.sweeper = sweeper
    sweeper.add(this)
  }

  get size(): number {
    return this.all.size
  }

  /**
   * Gives `handler` a connection now, after a wait, or a failure (queue full
   * or timed out). Returns the connection being opened for it, if one is, so
   * the handler can let go of it (detach) should its client leave meanwhile.
   */
  acquire(handler: UpstreamHandler): UpstreamConnection | null {
    // Most recently used first: the others reach their idle timeout and close.
    let connection = this.idle.pop()
    while (connection?.socket.destroyed) connection = this.idle.pop()
    if (connection !== undefined) {
      connection.assign(handler)
      return null
    }
    if (this.all.size < this.options.maxConnections) return this.open(handler)
    if (this.waiting.length >= this.options.maxQueue) {
      handler.onFailure(
        new UpstreamFailure(
          'queue-full',
          `all ${this.options.maxConnections} connections busy and ${this.options.maxQueue} requests waiting`,
        ),
      )
      return null
    }
    this.waiting.push({ handler, deadline: performance.now() + this.options.queueTimeoutMs })
    return null
  }

  /** Takes a request out of the wait queue (its client went away). */
  cancel(handler: UpstreamHandler): void {
    const i = this.waiting.findIndex((w) => w.handler === handler)
    if (i >= 0) this.waiting.splice(i, 1)
  }

  release(connection: UpstreamConnection): void {
    if (this.retired) {
      connection.destroy()
      return
    }
    const next = this.waiting.shift()
    if (next !== undefined) connection.assign(next.handler)
    else this.idle.push(connection)
  }

  /** A connection closed or left (upgrade): a waiting request may open a new one. */
  forget(connection: UpstreamConnection): void {
    if (!this.all.delete(connection)) return
    const i = this.idle.indexOf(connection)
    if (i >= 0) this.idle.splice(i, 1)
    const next = this.waiting.shift()
    if (next !== undefined) this.open(next.handler)
    else if (this.retired && this.all.size === 0) this.sweeper.delete(this)
  }

  sweep(now: number): void {
    while (this.waiting.length > 0 && (this.waiting[0] as Waiter).deadline <= now) {
      const w = this.waiting.shift() as Waiter
      w.handler.onFailure(
        new UpstreamFailure(
          'queue-timeout',
          `no free connection within ${this.options.queueTimeoutMs} ms (all ${this.options.maxConnections} busy)`,
        ),
      )
    }
    for (const connection of this.all) connection.sweep(now)
  }

  /** Closes idle connections now and busy ones when their exchange ends. */
  retire(): void {
    this.retired = true
    for (const c of this.idle.splice(0)) c.destroy()
    for (const w of this.waiting.splice(0))
      w.handler.onFailure(new UpstreamFailure('connect', 'instance left the routing table'))
    if (this.all.size === 0) this.sweeper.delete(this)
  }

  private open(handler: UpstreamHandler): UpstreamConnection | null {
    let connection: UpstreamConnection
    try {
      connection = new UpstreamConnection(this, handler)
    } catch (err) {
      // An address net.connect refuses synchronously (the builder screens most).
      handler.onFailure(
        new UpstreamFailure('connect', (err as Error).message, (err as NodeJS.ErrnoException).code),
      )
      return null
    }
    this.all.add(connection)
    return connection
  }
}

/**
 * How to reach a backend. For HTTPS instances the certificate is checked
 * against `tlsservername=`, else the name `host=<name>` sends (the name the
 * instance serves), else the instance's address, as Fabio does — never
 * against the client's Host header, which names the proxy's site, not the
 * instance.
 */
export function upstreamTarget(backend: Backend): UpstreamTarget {
  const tls = backend.origin.startsWith('https:') || backend.origin.startsWith('grpcs:')
  const named = backend.hostHeader !== null && backend.hostHeader !== `${backend.address}:${backend.port}`
  const serverName = !tls
    ? ''
    : backend.tlsServerName !== null
      ? backend.tlsServerName
      : named
        ? (backend.hostHeader as string).replace(/:\d+$/, '')
        : ''
  return { address: backend.address, port: backend.port, tls, verify: !backend.tlsSkipVerify, serverName }
}
