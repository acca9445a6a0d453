// The backend every contender forwards to, run in its own process:
//   node --import tsx bench/backend.ts [name]
// Answers any path; a path containing `64k` gets a 64 KiB body, anything else a
// short one. Says who it is in `x-upstream`. Prints `listening <port>` once up.

import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'

const name = process.argv[2] ?? 'backend'
const SMALL = Buffer.from('hello from the benchmark backend\n')
const LARGE = Buffer.alloc(64 * 1024, 'x')

const server = createServer((req, res) => {
  const body = req.url?.includes('64k') ? LARGE : SMALL
  req.resume()
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length, 'x-upstream': name })
  res.end(body)
})
// Longer than any proxy's idle timeout towards it, so the proxies decide.
server.keepAliveTimeout = 65_000
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`listening ${(server.address() as AddressInfo).port}\n`)
})
process.on('SIGTERM', () => {
  server.closeAllConnections()
  server.close(() => process.exit(0))
})
