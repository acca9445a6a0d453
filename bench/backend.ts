// The fallback backend, used only when NGINX is not installed (see
// bench/backends.ts): a Node.js server costs several times NGINX's CPU per
// request and competes with the proxy for the same cores, so ratios measured
// with it understate the proxy's share. Run in its own process:
//   node --import tsx bench/backend.ts <small body> [name]
// Same answers as the NGINX backend: GET of a path containing `64k` gets a
// 64 KiB body, POST reads the whole body and answers `ok\n`, anything else
// gets the small body. Prints `listening <port>` once up.

import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'

const SMALL = Buffer.from(process.argv[2] ?? 'small\n')
const name = process.argv[3] ?? 'backend'
const LARGE = Buffer.alloc(64 * 1024, 'x')
const OK = Buffer.from('ok\n')

const server = createServer((req, res) => {
  const send = (body: Buffer) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length, 'x-upstream': name })
    res.end(body)
  }
  if (req.method === 'POST') {
    // Answer once the body is in, as the NGINX backend does: the proxy must
    // have forwarded all of it before the response can start.
    req.on('end', () => send(OK))
    req.resume()
    return
  }
  req.resume()
  send(req.url?.includes('64k') ? LARGE : SMALL)
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
