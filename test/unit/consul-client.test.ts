// The Consul client's transport on loopback HTTP servers (what Consul answers
// is tested against the real agent in test/integration): a kept-alive
// connection the server dropped is retried for a read and not for a write,
// a server that does not answer times out with a message that says so, an
// abort is the caller's, and Consul's headers are read.

import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { type AddressInfo, createServer as createNetServer, type Socket } from 'node:net'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { ConsulClient } from '../../src/consul/client.js'
import * as llhttp from '../../src/llhttp.js'

// Counts the parsers the client makes (the module itself, only observed).
vi.mock('../../src/llhttp.js', async (original) => {
  const actual = await original<typeof import('../../src/llhttp.js')>()
  return { ...actual, createParser: vi.fn(actual.createParser) }
})

import { ConsulUnreachableError } from '../../src/errors.js'

const servers: Server[] = []
const clients: ConsulClient[] = []

afterEach(async () => {
  for (const client of clients.splice(0)) await client.close()
  for (const server of servers.splice(0)) {
    server.closeAllConnections()
    server.close()
  }
})

async function serve(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<ConsulClient> {
  const server = createServer(handler)
  servers.push(server)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  const client = new ConsulClient({
    address: `http://127.0.0.1:${port}`,
    token: 't0k',
    datacenter: '',
    tls: null,
  })
  clients.push(client)
  return client
}

/** Answers the first request on each connection; resets the connection when a second one comes. */
function dropsKeptAliveConnections() {
  const seen = new WeakSet<Socket>()
  let requests = 0
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    requests++
    if (seen.has(req.socket)) {
      req.socket.resetAndDestroy()
      return
    }
    seen.add(req.socket)
    req.resume()
    res.writeHead(200, { 'x-consul-index': String(requests) }).end('[]')
  }
  return { handler, requests: () => requests }
}

describe('ConsulClient', () => {
  it('sends a read again on a new connection when the kept-alive one was dropped', async () => {
    const server = dropsKeptAliveConnections()
    const client = await serve(server.handler)
    const first = await client.get('/v1/kv/a', {}, { timeoutMs: 2_000 })
    const second = await client.get('/v1/kv/a', {}, { timeoutMs: 2_000 })
    expect([first.status, second.status]).toEqual([200, 200])
    // One answered, one dropped on the reused connection, one answered on a new one.
    expect(server.requests()).toBe(3)
    expect(second.index).toBe(3)
  })

  it('does not send a write again: the caller learns Consul could not be reached', async () => {
    const server = dropsKeptAliveConnections()
    const client = await serve(server.handler)
    await client.get('/v1/kv/a', {}, { timeoutMs: 2_000 })
    const put = client.put('/v1/kv/a', { cas: 3 }, 'v', { timeoutMs: 2_000 })
    await expect(put).rejects.toThrow(ConsulUnreachableError)
    await expect(put).rejects.toThrow(/unreachable: ECONNRESET/)
    expect(server.requests()).toBe(2)
  })

  it('gives up on a response head that does not come in time, and says so', async () => {
    const client = await serve(() => {})
    const started = performance.now()
    await expect(client.get('/v1/health/service/web', {}, { timeoutMs: 150 })).rejects.toThrow(
      /^Consul at http:\/\/127\.0\.0\.1:\d+ unreachable: no response head within 150 ms$/,
    )
    expect(performance.now() - started).toBeLessThan(2_000)
  })

  it('gives up on a body that stops coming', async () => {
    const client = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': '100' }).write('[')
    })
    await expect(client.get('/v1/catalog/services', {}, { timeoutMs: 150 })).rejects.toThrow(
      /no more of the response body within 150 ms/,
    )
  })

  it('rejects with the abort reason, not as unreachable, when the caller aborts', async () => {
    const client = await serve(() => {})
    const controller = new AbortController()
    const read = client.get(
      '/v1/catalog/services',
      { index: 7 },
      { signal: controller.signal, timeoutMs: 60_000 },
    )
    setTimeout(() => controller.abort(new Error('stopping')), 20)
    await expect(read).rejects.toThrow(/^stopping$/)
  })

  it('sends the token, the datacenter and flags as Consul spells them, and reads its headers', async () => {
    let seen: IncomingMessage | undefined
    const server = createServer((req, res) => {
      seen = req
      res
        .writeHead(200, { 'x-consul-index': '42', 'x-consul-results-filtered-by-acls': 'true' })
        .end('[{"Key":"k"}]')
    })
    servers.push(server)
    server.listen(0, '::1')
    await once(server, 'listening')
    const { port } = server.address() as AddressInfo
    const client = new ConsulClient({
      address: `http://[::1]:${port}`,
      token: 's3cret',
      datacenter: 'dc2',
      tls: null,
    })
    clients.push(client)
    const res = await client.get(
      '/v1/kv/switchyard/targets',
      { recurse: true, stale: false, index: 9 },
      { timeoutMs: 2_000 },
    )
    expect(res).toEqual({ status: 200, index: 42, body: '[{"Key":"k"}]', filteredByAcl: true })
    expect(seen?.url).toBe('/v1/kv/switchyard/targets?dc=dc2&recurse&index=9')
    expect(seen?.headers['x-consul-token']).toBe('s3cret')
  })

  it('keeps one connection for requests in turn, and a kept one does not hold the process open', async () => {
    const connections: Socket[] = []
    const client = await serve((req, res) => {
      if (!connections.includes(req.socket)) connections.push(req.socket)
      // Chunked: no length, two writes.
      res.writeHead(200, { 'x-consul-index': '5' })
      res.write('[{"Key":')
      res.end('"k"}]')
    })
    const opened: Socket[] = []
    const onSocket = (message: unknown) => opened.push((message as { socket: Socket }).socket)
    subscribe('net.client.socket', onSocket)
    try {
      for (let i = 0; i < 3; i++) {
        const res = await client.get('/v1/kv/k', {}, { timeoutMs: 2_000 })
        expect([res.status, res.index, res.body]).toEqual([200, 5, '[{"Key":"k"}]'])
      }
    } finally {
      unsubscribe('net.client.socket', onSocket)
    }
    expect(connections).toHaveLength(1)
    expect(opened).toHaveLength(1)
    // Kept but unreferenced, as node:http's agent keeps its free sockets: a
    // CLI command exits when its work is done. (No public accessor for this.)
    const handle = (opened[0] as unknown as { _handle: { hasRef(): boolean } })._handle
    expect(handle.hasRef()).toBe(false)
  })

  it('opens a new connection after Consul answers Connection: close', async () => {
    const connections = new Set<Socket>()
    const client = await serve((req, res) => {
      connections.add(req.socket)
      res.writeHead(200, { connection: 'close', 'content-length': '2' }).end('[]')
    })
    await client.get('/v1/kv/k', {}, { timeoutMs: 2_000 })
    await client.get('/v1/kv/k', {}, { timeoutMs: 2_000 })
    expect(connections.size).toBe(2)
  })

  it('says what was wrong with a malformed answer and drops the connection', async () => {
    const server = createNetServer((socket) => {
      socket.on('error', () => {})
      socket.once('data', () =>
        socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n[]'),
      )
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const { port } = server.address() as AddressInfo
    const client = new ConsulClient({
      address: `http://127.0.0.1:${port}`,
      token: '',
      datacenter: '',
      tls: null,
    })
    clients.push(client)
    try {
      await expect(client.get('/v1/kv/k', {}, { timeoutMs: 2_000 })).rejects.toThrow(
        /unreachable: malformed HTTP response: HPE_UNEXPECTED_CONTENT_LENGTH \(Duplicate Content-Length\)$/,
      )
    } finally {
      server.close()
    }
  })

  it('fails a read cut short by close(), even when the body had no length', async () => {
    const client = await serve((_req, res) => {
      res.useChunkedEncodingByDefault = false
      res.writeHead(200, { 'x-consul-index': '9', connection: 'close' })
      res.write('[{"Key":"a"},{"Ke')
    })
    const read = client.get('/v1/kv/a', { recurse: true }, { timeoutMs: 5_000 })
    setTimeout(() => void client.close(), 100)
    await expect(read).rejects.toThrow(/connection closed before the end of the response/)
  })

  it('holds no parser while queries wait: 200 blocking reads answered at once take a few', async () => {
    const waiting: ServerResponse[] = []
    const client = await serve((_req, res) => {
      waiting.push(res)
    })
    const made = vi.mocked(llhttp.createParser).mock.calls.length
    const reads = Array.from({ length: 200 }, (_, i) =>
      client.get(`/v1/health/service/s${i}`, { index: 5, wait: '5m' }, { timeoutMs: 10_000 }),
    )
    await vi.waitFor(() => expect(waiting).toHaveLength(200))
    expect(vi.mocked(llhttp.createParser).mock.calls.length - made).toBe(0)
    for (const [i, res] of waiting.entries()) {
      res.writeHead(200, { 'x-consul-index': String(6 + i) }).end(`[${'{"Node":"n"},'.repeat(50)}{}]`)
    }
    const answers = await Promise.all(reads)
    expect(answers.map((a) => a.index)).toEqual(waiting.map((_, i) => 6 + i))
    // One per answer being read at the same moment, not one per request in flight.
    expect(vi.mocked(llhttp.createParser).mock.calls.length - made).toBeLessThanOrEqual(8)
  })
})
