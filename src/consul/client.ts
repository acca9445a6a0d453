// A thin typed HTTP client for the few Consul endpoints Switchyard reads (and the
// one the operator CLI writes). The `consul` npm package's watch has no rate
// limit and stops on some errors; blocking queries here go through
// blocking-query.ts, which owns index rules, rate limit and backoff.
//
// Its own HTTP/1.1 requests over kept-alive sockets rather than node:http or
// undici: a proxy holds one blocking query open per routed service, and
// node:http gives each request in flight a native parser of about 10 KiB while
// undici's WebAssembly parser holds about 15 MiB per process
// (bench/results/memory.md). Answers are read by Node's own parser, taken only
// while an answer arrives (response-reader.ts).

import type { Socket } from 'node:net'
import { ConfigError, ConsulHttpError, ConsulPermissionError, ConsulUnreachableError } from '../errors.js'
import { type ResponseHead, ResponseReader } from './response-reader.js'

const { readFileSync } = process.getBuiltinModule('node:fs')
const { connect: connectTcp, isIP } = process.getBuiltinModule('node:net')

export interface ConsulTls {
  /** PEM file paths, as CONSUL_CACERT / CONSUL_CLIENT_CERT / CONSUL_CLIENT_KEY name them. */
  readonly caFile: string
  readonly certFile: string
  readonly keyFile: string
  readonly serverName: string
  readonly verify: boolean
}

export interface ConsulClientOptions {
  /** `http://host:port` or `https://host:port`. */
  readonly address: string
  readonly token: string
  readonly datacenter: string
  readonly tls: ConsulTls | null
}

export interface ConsulResponse {
  readonly status: number
  /** X-Consul-Index, 0 when absent or not a number. */
  readonly index: number
  readonly body: string
  /** Consul removed entries the token may not read (X-Consul-Results-Filtered-By-ACLs). */
  readonly filteredByAcl: boolean
}

export type Query = Readonly<Record<string, string | number | boolean | undefined>>

/** How long a kept-alive connection may sit unused, and how many are kept. */
const IDLE_MS = 60_000
const MAX_IDLE = 1024
/** A request target is sent as written: visible ASCII only. */
const TARGET = /^\/[\x21-\x7e]*$/
/** What a header value may carry (no CR, LF or NUL): the token is sent as X-Consul-Token. */
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/

/** A token Consul can be sent; the CLI checks it where it comes from, to name the source. */
export function isSendableToken(token: string): boolean {
  return HEADER_VALUE.test(token)
}

type Exchange = ResponseHead & { readonly text: string }

export class ConsulClient {
  readonly address: string
  private readonly datacenter: string
  private readonly pool: ConnectionPool
  /** Host and token lines, written once. */
  private readonly fixedHeaders: string

  constructor(options: ConsulClientOptions) {
    this.address = options.address
    this.datacenter = options.datacenter
    const url = new URL(options.address)
    if (!isSendableToken(options.token)) throw new ConfigError('consul.token', 'has a control character')
    this.fixedHeaders = `Host: ${url.host}\r\n${options.token ? `X-Consul-Token: ${options.token}\r\n` : ''}`
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1')
    const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80))
    this.pool = new ConnectionPool(
      url.protocol === 'https:' ? tlsOpener(host, port, options.tls) : tcpOpener(host, port),
    )
  }

  /** GET, any status; throws only when Consul cannot be reached or times out. */
  async get(
    path: string,
    query: Query,
    options: { signal?: AbortSignal; timeoutMs: number },
  ): Promise<ConsulResponse> {
    return this.send('GET', path, query, undefined, options)
  }

  async put(
    path: string,
    query: Query,
    body: string,
    options: { timeoutMs: number },
  ): Promise<ConsulResponse> {
    return this.send('PUT', path, query, body, options)
  }

  /** Closes every connection, the ones in use too (their requests fail). */
  async close(): Promise<void> {
    this.pool.close()
  }

  async send(
    method: 'GET' | 'PUT' | 'DELETE',
    path: string,
    query: Query,
    body: string | undefined,
    options: { signal?: AbortSignal; timeoutMs: number },
  ): Promise<ConsulResponse> {
    const params = new URLSearchParams()
    if (this.datacenter) params.set('dc', this.datacenter)
    for (const [k, v] of Object.entries(query)) {
      if (v === undefined || v === false) continue
      // Consul's flags (`stale`, `cached`, `recurse`) are present-without-value.
      params.set(k, v === true ? '' : String(v))
    }
    const qs = params.toString().replace(/=(&|$)/g, '$1')
    const target = qs ? `${path}?${qs}` : path
    if (!TARGET.test(target))
      throw new TypeError(`request target ${JSON.stringify(target)} is not visible ASCII`)
    const length = body === undefined ? '' : `Content-Length: ${Buffer.byteLength(body)}\r\n`
    const request = `${method} ${target} HTTP/1.1\r\n${this.fixedHeaders}${length}\r\n${body ?? ''}`
    try {
      // A kept-alive connection Consul closed while it sat idle fails the
      // next request on it before any answer; a read is safe to send again.
      const exchange = () => this.exchange(request, options)
      const {
        status,
        headers: h,
        text,
      } = await exchange().catch((err: unknown) => {
        if (err instanceof StaleConnectionError && method === 'GET') return exchange()
        throw err
      })
      const index = Number(h.get('x-consul-index'))
      return {
        status,
        index: Number.isSafeInteger(index) && index > 0 ? index : 0,
        body: text,
        filteredByAcl: h.get('x-consul-results-filtered-by-acls') === 'true',
      }
    } catch (err) {
      if (options.signal?.aborted) throw err
      throw new ConsulUnreachableError(this.address, err instanceof StaleConnectionError ? err.cause : err)
    }
  }

  /**
   * One request and its whole response. `timeoutMs` bounds the wait for the
   * response head, then each wait for more of the body; `signal` aborts it with
   * the signal's reason.
   */
  private exchange(request: string, options: { signal?: AbortSignal; timeoutMs: number }): Promise<Exchange> {
    const { signal, timeoutMs } = options
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason)
      const { connection, reused } = this.pool.take()
      const socket = connection.socket
      const reader = new ResponseReader()
      let received = false
      let settled = false
      let timer: NodeJS.Timeout | undefined
      const detach = () => {
        settled = true
        clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
        connection.receive = ignore
        reader.release()
        socket.off('end', onEnd)
        socket.off('close', onClose)
        socket.off('error', onError)
      }
      const fail = (err: unknown) => {
        if (settled) return
        detach()
        this.pool.discard(connection)
        reject(err)
      }
      const finish = () => {
        detach()
        if (reader.reusable) this.pool.give(connection)
        else this.pool.discard(connection)
        const head = reader.head as ResponseHead
        resolve({ status: head.status, headers: head.headers, text: reader.bodyText() })
      }
      const arm = (what: string) => {
        clearTimeout(timer)
        timer = setTimeout(() => fail(new Error(`no ${what} within ${timeoutMs} ms`)), timeoutMs)
      }
      const onAbort = () => fail(signal?.reason ?? new Error('aborted'))
      const onData = (chunk: Buffer) => {
        received = true
        const hadHead = reader.head !== null
        let complete: boolean
        try {
          complete = reader.push(chunk)
        } catch (err) {
          return fail(err)
        }
        if (complete) return finish()
        if (hadHead) timer?.refresh()
        else if (reader.head !== null) arm('more of the response body')
      }
      // Only Consul ending the connection completes a body without a length; a
      // close without that end (close() destroyed it) cuts the response short.
      const onEnd = () => {
        if (settled) return
        if (reader.end()) return finish()
        onClose()
      }
      const onClose = () => {
        if (settled) return
        if (received) return fail(new Error('connection closed before the end of the response'))
        const closed = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })
        fail(reused ? new StaleConnectionError(closed) : closed)
      }
      const onError = (err: Error) => fail(reused && !received ? new StaleConnectionError(err) : err)
      connection.receive = onData
      socket.on('end', onEnd)
      socket.on('close', onClose)
      socket.on('error', onError)
      signal?.addEventListener('abort', onAbort, { once: true })
      arm('response head')
      socket.write(request)
    })
  }
}

/**
 * Every plain connection reads into this one buffer: a read is handled before
 * the next one (the reader copies what it keeps). Node's own reads allocate
 * 64 KiB each and shrink it to what came; a burst of 1,000 first answers
 * left the C heap fragmented that way.
 */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024)

function ignore(): void {}

/** TCP keep-alive probes after 1 s idle, as node:http's keep-alive agent sets them. */
const TCP_KEEPALIVE = { keepAlive: true, keepAliveInitialDelay: 1_000 }

/** A socket to Consul and where its bytes go: the exchange in progress, or the pool while it is idle. */
class Connection {
  receive: (bytes: Buffer) => void = ignore
  readonly socket: Socket

  constructor(open: (deliver: (bytes: Buffer) => void) => Socket) {
    this.socket = open((bytes) => this.receive(bytes))
  }
}

type Opener = (deliver: (bytes: Buffer) => void) => Socket

function tcpOpener(host: string, port: number): Opener {
  return (deliver) =>
    connectTcp({
      host,
      port,
      noDelay: true,
      ...TCP_KEEPALIVE,
      onread: {
        buffer: READ_BUFFER,
        callback: (length) => {
          deliver(READ_BUFFER.subarray(0, length))
          return true
        },
      },
    })
}

function tlsOpener(host: string, port: number, tls: ConsulTls | null): Opener {
  const { connect } = process.getBuiltinModule('node:tls')
  const options = {
    host,
    port,
    noDelay: true,
    ...TCP_KEEPALIVE,
    ALPNProtocols: ['http/1.1'],
    ca: tls?.caFile ? readFileSync(tls.caFile) : undefined,
    cert: tls?.certFile ? readFileSync(tls.certFile) : undefined,
    key: tls?.keyFile ? readFileSync(tls.keyFile) : undefined,
    // SNI and the name the certificate must carry: the configured one, else the host.
    servername: tls?.serverName || (isIP(host) ? undefined : host),
    rejectUnauthorized: tls?.verify ?? true,
  }
  return (deliver) => connect(options).on('data', deliver)
}

/**
 * Kept-alive connections to one Consul address. One connection per request in
 * flight (blocking queries hang for minutes); an idle one is kept a minute for
 * the next request and does not keep the process alive.
 */
class ConnectionPool {
  /** Most recently used last: it is the least likely to have been closed by Consul. */
  private readonly idle: { readonly connection: Connection; readonly stopWatching: () => void }[] = []
  private readonly busy = new Set<Connection>()
  private closed = false

  constructor(private readonly open: Opener) {}

  take(): { connection: Connection; reused: boolean } {
    const kept = this.idle.pop()
    kept?.stopWatching()
    const connection = kept?.connection ?? new Connection(this.open)
    connection.socket.ref()
    this.busy.add(connection)
    if (this.closed) connection.socket.destroy()
    return { connection, reused: kept !== undefined }
  }

  give(connection: Connection): void {
    const socket = connection.socket
    this.busy.delete(connection)
    if (this.closed || this.idle.length >= MAX_IDLE || socket.destroyed) {
      socket.destroy()
      return
    }
    // Consul closing it, sending anything unasked, or a minute unused ends it.
    const drop = () => {
      const at = this.idle.findIndex((entry) => entry.connection === connection)
      if (at >= 0) this.idle.splice(at, 1)
      stopWatching()
      socket.destroy()
    }
    const stopWatching = () => {
      connection.receive = ignore
      socket.setTimeout(0)
      socket.off('timeout', drop)
      socket.off('end', drop)
      socket.off('close', drop)
      socket.off('error', drop)
    }
    connection.receive = drop
    socket.setTimeout(IDLE_MS)
    socket.on('timeout', drop)
    socket.on('end', drop)
    socket.on('close', drop)
    socket.on('error', drop)
    socket.unref()
    this.idle.push({ connection, stopWatching })
  }

  discard(connection: Connection): void {
    this.busy.delete(connection)
    connection.socket.destroy()
  }

  close(): void {
    this.closed = true
    for (const { connection, stopWatching } of this.idle.splice(0)) {
      stopWatching()
      connection.socket.destroy()
    }
    for (const { socket } of this.busy) socket.destroy()
    this.busy.clear()
  }
}

/** A request that failed on a reused keep-alive connection before any answer came. */
class StaleConnectionError extends Error {
  constructor(cause: Error) {
    super(cause.message, { cause })
  }
}

/**
 * Throws ConsulPermissionError when the token may not read the KV prefix.
 * Needed because Consul answers a recursive read of a denied prefix with 404
 * (nothing readable) rather than 403; only an exact read of `<prefix>/` says 403.
 */
export async function assertPrefixReadable(
  client: ConsulClient,
  prefix: string,
  signal?: AbortSignal,
): Promise<void> {
  const path = `/v1/kv/${prefix.split('/').map(encodeURIComponent).join('/')}/`
  const res = await client.get(path, {}, { signal, timeoutMs: 10_000 })
  if (res.status === 403) throw new ConsulPermissionError(path, res.body, `key prefix ${prefix}/`)
}

/**
 * The body of a read, or the error its status stands for. A 403 names what the
 * token cannot read; a KV 404 (no key under the prefix) is an empty list.
 */
export function readBody(path: string, res: ConsulResponse, what: string): string {
  if (res.status === 200) return res.body
  if (res.status === 403) throw new ConsulPermissionError(path, res.body, what)
  if (res.status === 404 && path.startsWith('/v1/kv/')) return '[]'
  throw new ConsulHttpError(path, res.status, res.body)
}
