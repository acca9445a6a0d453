// A thin typed HTTP client for the few Consul endpoints Switchyard reads (and the
// one the operator CLI writes), over an undici pool. The `consul` npm package's
// watch has no rate limit and stops on some errors; blocking queries here go
// through blocking-query.ts, which owns index rules, rate limit and backoff.

import { readFileSync } from 'node:fs'
import { Pool } from 'undici'
import { ConsulHttpError, ConsulPermissionError, ConsulUnreachableError } from '../errors.js'

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
  private readonly pool: Pool
  private readonly token: string
  private readonly datacenter: string

  constructor(options: ConsulClientOptions) {
    this.address = options.address
    this.token = options.token
    this.datacenter = options.datacenter
    const tls = options.tls
    this.pool = new Pool(options.address, {
      // One connection per concurrent blocking query: they hang for minutes.
      connections: null,
      pipelining: 1,
      keepAliveTimeout: 60_000,
      connect: tls
        ? {
            ca: tls.caFile ? readFileSync(tls.caFile) : undefined,
            cert: tls.certFile ? readFileSync(tls.certFile) : undefined,
            key: tls.keyFile ? readFileSync(tls.keyFile) : undefined,
            servername: tls.serverName || undefined,
            rejectUnauthorized: tls.verify,
          }
        : undefined,
    })
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
    await this.pool.destroy()
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
    const headers: Record<string, string> = {}
    if (this.token) headers['x-consul-token'] = this.token
    try {
      const res = await this.pool.request({
        method,
        path: qs ? `${path}?${qs}` : path,
        headers,
        body,
        signal: options.signal,
        headersTimeout: options.timeoutMs,
        bodyTimeout: options.timeoutMs,
      })
      const text = await res.body.text()
      const indexHeader = res.headers['x-consul-index']
      const index = Number(Array.isArray(indexHeader) ? indexHeader[0] : indexHeader)
      return {
        status: res.statusCode,
        index: Number.isSafeInteger(index) && index > 0 ? index : 0,
        body: text,
        filteredByAcl: res.headers['x-consul-results-filtered-by-acls'] === 'true',
      }
    } catch (err) {
      if (options.signal?.aborted) throw err
      throw new ConsulUnreachableError(this.address, err)
    }
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
