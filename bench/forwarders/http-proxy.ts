// The forwarding engine the product card named: a minimal reverse proxy on the
// `http-proxy` package, for the engine comparison only (http-proxy is a
// devDependency, never shipped). No routing: every request goes to one origin,
// over a keep-alive agent, with X-Forwarded-* added as Switchyard adds them.
//   node --import tsx bench/forwarders/http-proxy.ts http://127.0.0.1:<port>
// Prints `listening <port>` once up.

import { Agent, createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import httpProxy from 'http-proxy'

const origin = process.argv[2]
if (!origin) throw new Error('usage: http-proxy.ts <origin>')

const agent = new Agent({ keepAlive: true, maxSockets: 256 })
const proxy = httpProxy.createProxyServer({ target: origin, agent, xfwd: true })
proxy.on('error', (_err, _req, res) => {
  if ('writeHead' in res && !res.headersSent) res.writeHead(502)
  res.end()
})

const server = createServer((req, res) => proxy.web(req, res))
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`listening ${(server.address() as AddressInfo).port}\n`)
})
process.on('SIGTERM', () => {
  server.closeAllConnections()
  server.close(() => process.exit(0))
})
