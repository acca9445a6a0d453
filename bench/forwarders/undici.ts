// Switchyard's forwarding engine without the rest of Switchyard: the same
// undici dispatch handler (src/proxy/forward.ts), keep-alive pool
// (src/proxy/upstreams.ts) and header rewriting (src/proxy/headers.ts), with
// no table, lookup or pick. Against bench/forwarders/http-proxy.ts it compares
// engines alone; against the full proxy it shows what routing adds.
//   node --import tsx bench/forwarders/undici.ts http://127.0.0.1:<port>
// Prints `listening <port>` once up.

import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { forward } from '../../src/proxy/forward.js'
import { clientAddress, upstreamRequestHeaders } from '../../src/proxy/headers.js'
import { Upstreams } from '../../src/proxy/upstreams.js'
import type { Backend } from '../../src/routing/types.js'

const origin = process.argv[2]
if (!origin) throw new Error('usage: undici.ts <origin>')
const url = new URL(origin)

const target: Backend = {
  key: 'bench/backend',
  service: 'backend',
  instanceId: 'backend',
  node: 'bench',
  address: url.hostname,
  port: Number(url.port),
  version: '',
  slice: '',
  origin: url.origin,
  tlsSkipVerify: false,
  tlsServerName: null,
  strip: '',
  prepend: '',
  hostHeader: null,
  redirect: null,
  weight: 1,
  state: 'serving',
  optionsText: '',
}
// Switchyard's defaults (config/switchyard.yaml).
const upstreams = new Upstreams({
  connectTimeoutMs: 5_000,
  responseHeadersTimeoutMs: 60_000,
  idleTimeoutMs: 60_000,
  keepAliveTimeoutMs: 4_000,
  connections: 256,
})

const server = createServer((req, res) => {
  const hasBody =
    req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] ?? '0') !== '0'
  const host = req.headers.host ?? ''
  forward(
    upstreams.pool(target),
    res,
    {
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      body: hasBody ? req : null,
      headers: upstreamRequestHeaders(req.rawHeaders, {
        clientIp: clientAddress(req.socket.remoteAddress),
        proto: 'http',
        host,
        port: req.socket.localPort ?? 0,
        prefix: '',
        upstreamHost: host,
      }),
    },
    (error, responded) => {
      if (error === null) return
      if (responded) res.destroy(error)
      else res.writeHead(502).end()
    },
  )
})
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`listening ${(server.address() as AddressInfo).port}\n`)
})
process.on('SIGTERM', () => {
  server.closeAllConnections()
  server.close(() => void upstreams.close().then(() => process.exit(0)))
})
