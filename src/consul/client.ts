// A thin typed HTTP client for the few Consul endpoints Switchyard reads (and the
// one the operator CLI writes), over node:http with a keep-alive agent. The
// `consul` npm package's watch has no rate limit and stops on some errors;
// blocking queries here go through blocking-query.ts, which owns index rules,
// rate limit and backoff.
//
// Not undici: its WebAssembly HTTP parser costs about 15 MiB of resident memory
// per process once used, for a few requests a second; node:http's parser is
// already in the binary (bench/results/memory.md).

import type { IncomingMessage } from 'node:http'
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'
import { ConsulHttpError, ConsulPermissionError, ConsulUnreachableError } from '../errors.js'

const { readFileSync } = process.getBuiltinModule('node:fs')
const { Agent: HttpAgent, request: httpRequest } = process.getBuiltinModule('node:http')

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

export class ConsulClient {
  readonly address: string
  private readonly token: string
  private readonly datacenter: string
  private readonly url: URL
  private readonly agent: InstanceType<typeof HttpAgent>
  private readonly request: typeof httpRequest

  constructor(options: ConsulClientOptions) {
    this.address = options.address
    this.token = options.token
    this.datacenter = options.datacenter
    this.url = new URL(options.address)
    // One connection per concurrent blocking query (they hang for minutes),
    // idle ones kept a minute for the next read.
    const agentOptions = { keepAlive: true, maxFreeSockets: 1024, timeout: 60_000 }
    const tls = options.tls
    if (this.url.protocol === 'https:') {
      this.request = httpsRequest as typeof httpRequest
      this.agent = new HttpsAgent({
        ...agentOptions,
        ca: tls?.caFile ? readFileSync(tls.caFile) : undefined,
        cert: tls?.certFile ? readFileSync(tls.certFile) : undefined,
        key: tls?.keyFile ? readFileSync(tls.keyFile) : undefined,
        servername: tls?.serverName || undefined,
        rejectUnauthorized: tls?.verify ?? true,
      })
    } else {
      this.request = httpRequest
      this.agent = new HttpAgent(agentOptions)
    }
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

  async close(): Promise<void> {
    this.agent.destroy()
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
    const headers: Record<string, string | number> = {}
    if (this.token) headers['x-consul-token'] = this.token
    if (body !== undefined) headers['content-length'] = Buffer.byteLength(body)
    try {
      const target = qs ? `${path}?${qs}` : path
      // A kept-alive connection Consul closed while it sat idle fails the
      // next request on it before any answer; a read is safe to send again.
      const exchange = () => this.exchange(method, target, headers, body, options)
      const {
        status,
        headers: h,
        text,
      } = await exchange().catch((err: unknown) => {
        if (err instanceof StaleConnectionError && method === 'GET') return exchange()
        throw err
      })
      const index = Number(h['x-consul-index'])
      return {
        status,
        index: Number.isSafeInteger(index) && index > 0 ? index : 0,
        body: text,
        filteredByAcl: h['x-consul-results-filtered-by-acls'] === 'true',
      }
    } catch (err) {
      if (options.signal?.aborted) throw err
      throw new ConsulUnreachableError(this.address, err instanceof StaleConnectionError ? err.cause : err)
    }
  }

  /**
   * One request and its whole body. `timeoutMs` bounds the wait for the
   * response head, then each wait for more of the body; `signal` aborts it with
   * the signal's reason.
   */
  private exchange(
    method: string,
    path: string,
    headers: Record<string, string | number>,
    body: string | undefined,
    options: { signal?: AbortSignal; timeoutMs: number },
  ): Promise<{ status: number; headers: IncomingMessage['headers']; text: string }> {
    const { signal, timeoutMs } = options
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason)
      const req = this.request({
        agent: this.agent,
        protocol: this.url.protocol,
        hostname: this.url.hostname.replace(/^\[(.*)\]$/, '$1'),
        port: this.url.port,
        method,
        path,
        headers,
      })
      let timer: NodeJS.Timeout | undefined
      const fail = (err: Error) => {
        clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
        req.destroy(err)
        reject(err)
      }
      const arm = (what: string) => {
        clearTimeout(timer)
        timer = setTimeout(() => fail(new Error(`no ${what} within ${timeoutMs} ms`)), timeoutMs)
      }
      const onAbort = () => fail(signal?.reason ?? new Error('aborted'))
      signal?.addEventListener('abort', onAbort, { once: true })
      arm('response head')
      let answered = false
      req.on('error', (err) => fail(req.reusedSocket && !answered ? new StaleConnectionError(err) : err))
      req.once('response', (res) => {
        answered = true
        const chunks: Buffer[] = []
        arm('more of the response body')
        res.on('data', (chunk: Buffer) => {
          chunks.push(chunk)
          timer?.refresh()
        })
        res.on('error', fail)
        res.once('close', () => {
          if (!res.complete) fail(new Error('connection closed before the end of the response'))
        })
        res.once('end', () => {
          clearTimeout(timer)
          signal?.removeEventListener('abort', onAbort)
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text: Buffer.concat(chunks).toString('utf8'),
          })
        })
      })
      req.end(body)
    })
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
