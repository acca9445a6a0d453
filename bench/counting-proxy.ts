// A plain HTTP proxy on loopback in front of Consul that notes every request
// (when, which endpoint) before passing it on untouched. Switchyard and Fabio
// are pointed at it, so the scale section can count exactly what one change in
// Consul costs Consul, without instrumenting either program.

import { once } from 'node:events'
import { Agent, createServer, request, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface Noted {
  /** Date.now() at arrival. */
  readonly at: number
  /** Endpoint without query: `/v1/health/service/svc-0001`. */
  readonly path: string
  /** A blocking read (carries `index=`). */
  readonly blocking: boolean
  /** The query string, for debugging. */
  readonly query: string
}

export class CountingProxy {
  readonly noted: Noted[] = []
  private readonly target: URL
  private readonly agent = new Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY })
  private server: Server | null = null

  constructor(target: string) {
    this.target = new URL(target)
  }

  async start(): Promise<string> {
    const server = createServer((req, res) => {
      const url = req.url ?? '/'
      const q = url.indexOf('?')
      this.noted.push({
        at: Date.now(),
        path: q === -1 ? url : url.slice(0, q),
        blocking: q !== -1 && /[?&]index=/.test(url.slice(q)),
        query: q === -1 ? '' : url.slice(q + 1),
      })
      const upstream = request(
        {
          host: this.target.hostname,
          port: this.target.port,
          method: req.method,
          path: url,
          headers: req.headers,
          agent: this.agent,
        },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers)
          answer.pipe(res)
        },
      )
      upstream.on('error', () => {
        if (!res.headersSent) res.writeHead(502)
        res.end()
      })
      // A client that gives up (a watcher stopping) ends its blocking read too.
      res.on('close', () => {
        if (!res.writableFinished) upstream.destroy()
      })
      req.pipe(upstream)
    })
    server.keepAliveTimeout = 120_000
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    this.server = server
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  }

  /** Requests that arrived at or after `since` (Date.now() time). */
  since(since: number): Noted[] {
    return this.noted.filter((n) => n.at >= since)
  }

  /** Time of the most recent request, 0 before any. */
  get lastAt(): number {
    return this.noted[this.noted.length - 1]?.at ?? 0
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections()
    await new Promise((resolve) => this.server?.close(resolve))
    this.agent.destroy()
  }
}

/** Groups requests by endpoint kind: `health/service/*`, `catalog/services`, `kv/*`, ... */
export function byEndpoint(noted: readonly Noted[]): Record<string, number> {
  const out: Record<string, number> = {}
  for (const n of noted) {
    const kind = n.path
      .replace(/^\/v1\//, '')
      .replace(/^(health\/service|catalog\/service|health\/state|kv)\/.*$/, '$1/*')
    out[kind] = (out[kind] ?? 0) + 1
  }
  return out
}
