// Switchyard's request path before the socket-level engine, kept in the
// benchmark so "new engine vs old path vs http-proxy" stays one run after
// src/proxy/ is rewritten: a node:http server (Switchyard's server options)
// forwarding through an undici Pool (its pool options) with a dispatch
// handler that streams both ways with backpressure, and the same header
// rewriting (hop-by-hop headers dropped, X-Forwarded-* and Forwarded added).
// No table, lookup or pick: against the full proxy it shows what routing adds.
// It imports nothing from src/, on purpose: it must keep measuring the old
// path whatever src/proxy/ becomes.
//   node --import tsx bench/forwarders/undici.ts http://127.0.0.1:<port>
// Prints `listening <port>` once up.

import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { type Dispatcher, Pool } from 'undici'

const origin = process.argv[2]
if (!origin) throw new Error('usage: undici.ts <origin>')

// Switchyard's defaults as of the old path (config/switchyard.yaml then):
// 256 connections per instance, no pipelining, 60 s header and idle
// timeouts, 4 s upstream keep-alive, 5 s connect timeout.
const pool = new Pool(origin, {
  connections: 256,
  pipelining: 1,
  headersTimeout: 60_000,
  bodyTimeout: 60_000,
  keepAliveTimeout: 4_000,
  keepAliveMaxTimeout: 60_000,
  connect: { timeout: 5_000 },
})

const DROP_REQUEST = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
  'expect',
  'host',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-forwarded-port',
  'x-forwarded-prefix',
])
const DROP_RESPONSE = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
])

/** The same walk over rawHeaders the old path made, so its cost is in the figures. */
function upstreamHeaders(raw: readonly string[], clientIp: string, host: string, port: number): string[] {
  let named: Set<string> | null = null
  for (let i = 0; i < raw.length; i += 2) {
    if ((raw[i] as string).toLowerCase() === 'connection') {
      named ??= new Set()
      for (const token of (raw[i + 1] as string).split(',')) named.add(token.trim().toLowerCase())
    }
  }
  const out: string[] = []
  let xff = ''
  let forwarded = ''
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string
    const lower = name.toLowerCase()
    if (DROP_REQUEST.has(lower) || named?.has(lower)) continue
    const value = raw[i + 1] as string
    if (lower === 'x-forwarded-for') xff = xff ? `${xff}, ${value}` : value
    else if (lower === 'forwarded') forwarded = forwarded ? `${forwarded}, ${value}` : value
    else out.push(name, value)
  }
  const element = `for=${clientIp}${host ? `;host="${host.replace(/["\\]/g, '')}"` : ''};proto=http`
  out.push(
    'host',
    host,
    'x-forwarded-for',
    xff ? `${xff}, ${clientIp}` : clientIp,
    'x-forwarded-proto',
    'http',
    'x-forwarded-port',
    String(port),
    'forwarded',
    forwarded ? `${forwarded}, ${element}` : element,
  )
  if (host) out.push('x-forwarded-host', host)
  return out
}

function clientHeaders(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {}
  for (const name in headers) if (!DROP_RESPONSE.has(name)) out[name] = headers[name]
  return out
}

/** Streams the answer to the client; pauses the upstream while the client's socket is full. */
class Relay implements Dispatcher.DispatchHandler {
  private readonly res: ServerResponse
  private controller: Dispatcher.DispatchController | null = null
  private done = false

  constructor(res: ServerResponse) {
    this.res = res
    res.on('drain', this.onDrain)
    res.on('close', this.onClose)
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller
    // A request that waited in the pool's queue while its client left: never
    // sent, or its answer would be written nowhere and its connection, paused
    // for a 'drain' that cannot come, lost to the pool for good.
    if (this.res.destroyed) controller.abort(new Error('client gone'))
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    status: number,
    headers: Record<string, string | string[] | undefined>,
    message?: string,
  ): void {
    if (status < 200) return
    try {
      this.res.writeHead(status, message || undefined, clientHeaders(headers))
    } catch (err) {
      controller.abort(err as Error)
      return
    }
    // As the old path did: with a known length the head leaves with the first body bytes.
    if (headers['content-length'] === undefined) this.res.flushHeaders()
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (!this.res.write(chunk)) controller.pause()
  }

  onResponseEnd(): void {
    this.res.end()
    this.finish()
  }

  onResponseError(_controller: Dispatcher.DispatchController, _error: Error): void {
    if (!this.res.headersSent) this.res.writeHead(502).end()
    else this.res.destroy()
    this.finish()
  }

  private readonly onDrain = (): void => this.controller?.resume()

  private readonly onClose = (): void => {
    if (!this.done && !this.res.writableFinished) this.controller?.abort(new Error('client gone'))
  }

  private finish(): void {
    this.done = true
    this.res.off('drain', this.onDrain)
    this.res.off('close', this.onClose)
  }
}

// The old path's server options (src/proxy/server.ts then): 16 KiB heads,
// 10 s header timeout checked every second, no request timeout, 5 s client
// keep-alive, 64 KiB socket buffers.
const server = createServer(
  {
    maxHeaderSize: 16_384,
    headersTimeout: 10_000,
    connectionsCheckingInterval: 1_000,
    requestTimeout: 0,
    keepAliveTimeout: 5_000,
    requireHostHeader: false,
    highWaterMark: 65_536,
  },
  (req, res) => {
    const hasBody =
      req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] ?? '0') !== '0'
    const remote = req.socket.remoteAddress ?? ''
    const clientIp = remote.startsWith('::ffff:') ? remote.slice(7) : remote
    pool.dispatch(
      {
        method: (req.method ?? 'GET') as Dispatcher.HttpMethod,
        path: req.url ?? '/',
        headers: upstreamHeaders(req.rawHeaders, clientIp, req.headers.host ?? '', req.socket.localPort ?? 0),
        body: hasBody ? req : null,
      },
      new Relay(res),
    )
  },
)
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`listening ${(server.address() as AddressInfo).port}\n`)
})
process.on('SIGTERM', () => {
  server.closeAllConnections()
  server.close(() => void pool.close().then(() => process.exit(0)))
})
