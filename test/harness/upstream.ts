// Real HTTP servers on loopback that say who they are, for routing assertions.

import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface Upstream {
  readonly name: string
  readonly port: number
  readonly server: Server
  /** Requests seen, newest last: method, url and headers. */
  readonly seen: { method: string; url: string; headers: IncomingMessage['headers'] }[]
  close(): Promise<void>
}

export type Handler = (req: IncomingMessage, res: ServerResponse) => void

/** Answers `<name>` in the body and `x-upstream: <name>` unless a handler is given. */
export async function startUpstream(name: string, handler?: Handler, port = 0): Promise<Upstream> {
  const seen: Upstream['seen'] = []
  const server = createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers })
    if (handler) return handler(req, res)
    req.resume()
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/plain', 'x-upstream': name })
      res.end(name)
    })
  })
  server.listen(port, '127.0.0.1')
  await once(server, 'listening')
  return {
    name,
    port: (server.address() as AddressInfo).port,
    server,
    seen,
    close: async () => {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}

/**
 * Starts an upstream per instance (answering `answer`) and registers it in
 * Consul as an instance of `service` on `tag`, with its version in meta:
 * the usual blue/green setup of a test.
 */
export async function registerVersions(
  api: {
    register(spec: {
      id: string
      name: string
      port: number
      tags: string[]
      meta: Record<string, string>
    }): Promise<void>
  },
  service: string,
  tag: string,
  instances: readonly { readonly id: string; readonly answer: string; readonly version: string }[],
): Promise<Upstream[]> {
  const upstreams: Upstream[] = []
  for (const instance of instances) {
    const upstream = await startUpstream(instance.answer)
    upstreams.push(upstream)
    await api.register({
      id: instance.id,
      name: service,
      port: upstream.port,
      tags: [tag],
      meta: { version: instance.version },
    })
  }
  return upstreams
}
