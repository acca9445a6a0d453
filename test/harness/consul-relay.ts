// A fault-injecting relay in front of a real Consul agent: it forwards every
// request as is, or answers the way a sick Consul does (connection refused,
// 500s, "No cluster leader", no answer at all, X-Consul-Index 0), and counts
// the requests it gets so a test can tell a well-behaved watcher from a busy
// loop. It also lets a test restore a restarted dev agent's state before the
// proxy can see the agent again.

import { once } from 'node:events'
import { createServer, request, type Server } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'

export type ConsulFault = 'none' | 'refuse' | 'error-500' | 'no-leader' | 'hang' | 'index-zero'

export class ConsulRelay {
  readonly server: Server
  private readonly target: URL
  private readonly sockets = new Set<Socket>()
  /** Arrival time of every request. */
  readonly arrivals: number[] = []
  fault: ConsulFault = 'none'
  /** Requests whose path matches get a 500 whatever `fault` says (one sick endpoint). */
  failPaths: RegExp | null = null

  private constructor(server: Server, target: string) {
    this.server = server
    this.target = new URL(target)
  }

  static async start(target: string): Promise<ConsulRelay> {
    const server = createServer()
    const relay = new ConsulRelay(server, target)
    server.on('connection', (socket) => {
      relay.sockets.add(socket)
      socket.on('close', () => relay.sockets.delete(socket))
    })
    server.on('request', (req, res) => {
      relay.arrivals.push(Date.now())
      if (relay.failPaths?.test(req.url ?? '')) {
        res.writeHead(500, { 'content-type': 'text/plain' }).end('rpc error making call: internal error')
        return
      }
      switch (relay.fault) {
        case 'refuse': // as an agent that is down
          req.socket.destroy()
          return
        case 'hang':
          return // the client's own timeout has to fire
        case 'error-500':
          res.writeHead(500, { 'content-type': 'text/plain' }).end('rpc error making call: internal error')
          return
        case 'no-leader':
          res.writeHead(500, { 'content-type': 'text/plain' }).end('No cluster leader')
          return
      }
      const zeroIndex = relay.fault === 'index-zero'
      const upstream = request(
        {
          host: relay.target.hostname,
          port: relay.target.port,
          method: req.method,
          path: req.url,
          headers: req.headers,
        },
        (answer) => {
          const headers = { ...answer.headers }
          if (zeroIndex) headers['x-consul-index'] = '0'
          res.writeHead(answer.statusCode ?? 502, headers)
          answer.pipe(res)
        },
      )
      upstream.on('error', () => res.destroy())
      res.on('close', () => upstream.destroy())
      req.pipe(upstream)
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    return relay
  }

  get address(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`
  }

  /**
   * Switches the fault. Connections in flight (blocking queries hanging for
   * their wait time) are cut, as a leader change or an agent restart cuts
   * them, so the watcher meets the new behaviour at once.
   */
  setFault(fault: ConsulFault): void {
    this.fault = fault
    for (const socket of this.sockets) socket.destroy()
  }

  /** Requests received from `from` to `to` (ms timestamps). */
  count(from: number, to = Date.now()): number {
    return this.arrivals.filter((t) => t >= from && t <= to).length
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy()
    await new Promise((resolve) => this.server.close(resolve))
  }
}
