// The request path Switchyard had before its own HTTP/1.1 engine (node:http
// server + undici pool), kept only so the benchmark can compare engines.

// Keep-alive connection pools, one per upstream origin. Pools of instances that
// left the table are closed gracefully (in-flight requests finish) so instance
// churn does not leak sockets.

import { Pool } from 'undici'
import type { Backend } from '../../../src/routing/types.js'

export interface UpstreamOptions {
  readonly connectTimeoutMs: number
  /** Time to wait for the response headers. */
  readonly responseHeadersTimeoutMs: number
  /** Longest silence while reading a response body. */
  readonly idleTimeoutMs: number
  /** Idle keep-alive sockets are closed after this long (or the upstream's hint). */
  readonly keepAliveTimeoutMs: number
  /** Concurrent connections per upstream; more requests wait in the pool's queue. */
  readonly connections: number
}

export class Upstreams {
  private readonly options: UpstreamOptions
  private readonly pools = new Map<string, Pool>()

  constructor(options: UpstreamOptions) {
    this.options = options
  }

  pool(backend: Backend): Pool {
    const key = backend.tlsSkipVerify ? `${backend.origin}#insecure` : backend.origin
    let pool = this.pools.get(key)
    if (pool === undefined) {
      const o = this.options
      pool = new Pool(backend.origin, {
        connections: o.connections,
        pipelining: 1,
        headersTimeout: o.responseHeadersTimeoutMs,
        bodyTimeout: o.idleTimeoutMs,
        keepAliveTimeout: o.keepAliveTimeoutMs,
        keepAliveMaxTimeout: Math.max(o.keepAliveTimeoutMs, 60_000),
        connect: { timeout: o.connectTimeoutMs, rejectUnauthorized: !backend.tlsSkipVerify },
      })
      this.pools.set(key, pool)
    }
    return pool
  }

  /** Closes pools whose origin no longer appears in `origins`. */
  retain(origins: ReadonlySet<string>): void {
    for (const [key, pool] of this.pools) {
      const origin = key.endsWith('#insecure') ? key.slice(0, -9) : key
      if (origins.has(origin)) continue
      this.pools.delete(key)
      void pool.close().catch(() => {})
    }
  }

  async close(): Promise<void> {
    const pools = [...this.pools.values()]
    this.pools.clear()
    await Promise.all(pools.map((p) => p.close().catch(() => {})))
  }
}
