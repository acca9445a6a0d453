// The pools of every instance a data plane talks to: HTTP/1.1 for http and
// https routes, HTTP/2 for grpc and grpcs ones.

import type { Backend } from '../routing/types.js'
import { Http1Pool, type UpstreamOptions, upstreamTarget } from './http1/upstream.js'
import { Http2Pool } from './http2/upstream.js'
import type { Sweeper } from './sweeper.js'

/** Pools by instance, created on first use, retired when their instance leaves the table. */
export class Upstreams {
  private readonly options: UpstreamOptions
  private readonly sweeper: Sweeper
  private readonly pools = new Map<string, Http1Pool | Http2Pool>()
  private readonly byBackend = new WeakMap<Backend, Http1Pool | Http2Pool>()

  constructor(options: UpstreamOptions, sweeper: Sweeper) {
    this.options = options
    this.sweeper = sweeper
  }

  pool(backend: Backend): Http1Pool | Http2Pool {
    const known = this.byBackend.get(backend)
    if (known !== undefined) return known
    const target = upstreamTarget(backend)
    const key = `${backend.origin}|${target.verify}|${target.serverName}`
    let pool = this.pools.get(key)
    if (pool === undefined) {
      pool = backend.origin.startsWith('grpc')
        ? new Http2Pool(target, this.options, this.sweeper)
        : new Http1Pool(target, this.options, this.sweeper)
      this.pools.set(key, pool)
    }
    this.byBackend.set(backend, pool)
    return pool
  }

  /** Retires pools whose origin no longer appears in `origins`. */
  retain(origins: ReadonlySet<string>): void {
    for (const [key, pool] of this.pools) {
      if (origins.has(key.slice(0, key.indexOf('|')))) continue
      this.pools.delete(key)
      pool.retire()
    }
  }

  close(): void {
    for (const pool of this.pools.values()) pool.retire()
    this.pools.clear()
  }
}
