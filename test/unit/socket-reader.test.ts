// The engine's parsers read their sockets' handles themselves (SocketReader):
// on real loopback sockets, reads reach the parser and not the socket's
// 'data' events, pause() stops them until resume(), and release() gives the
// bytes back to 'data' events (what an upgrade or a closing connection needs).

import { once } from 'node:events'
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import {
  createParser,
  NO_RESOURCE,
  type ParseError,
  REQUEST,
  RESPONSE,
  SocketReader,
  STRICT,
} from '../../src/llhttp.js'

interface Seen {
  readonly urls: string[]
  readonly data: Buffer[]
  readonly results: (number | string)[]
}

/** A connected loopback pair, closed after the test. */
async function pair(): Promise<{ accepted: Socket; client: Socket }> {
  const server = createServer()
  servers.push(server)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const client = connect((server.address() as AddressInfo).port, '127.0.0.1')
  const [accepted] = (await once(server, 'connection')) as [Socket]
  await once(client, 'connect')
  sockets.push(accepted, client)
  return { accepted, client }
}

/** A request parser reading `socket` through a SocketReader; what it sees is recorded. */
function reading(socket: Socket): { reader: SocketReader; seen: Seen } {
  const seen: Seen = { urls: [], data: [], results: [] }
  const parser = createParser(
    {
      onHeaders() {},
      onHeadersComplete(_major, _minor, _headers, _method, url) {
        seen.urls.push(url ?? '')
        return 0
      },
      onBody() {},
      onMessageComplete() {},
      onExecute(result: number | ParseError) {
        seen.results.push(typeof result === 'number' ? result : result.code)
      },
    },
    null,
  )
  parser.initialize(REQUEST, NO_RESOURCE, 16 * 1024, STRICT)
  const reader = new SocketReader(parser, socket)
  socket.on('data', (chunk: Buffer) => seen.data.push(chunk))
  return { reader, seen }
}

async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5_000
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

const sockets: Socket[] = []
const servers: Server[] = []
afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy()
  for (const s of servers.splice(0)) s.close()
})

describe('SocketReader: the parser reads the socket itself', () => {
  it('parses what arrives without a single data event', async () => {
    const { accepted, client } = await pair()
    const { reader, seen } = reading(accepted)
    expect(reader.direct).toBe(true)
    client.write('GET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: a\r\n\r\n')
    await until(() => seen.urls.length === 2, 'both requests')
    expect(seen.urls).toEqual(['/one', '/two'])
    expect(seen.data).toEqual([])
    // Each read is reported with the bytes parsed.
    expect(seen.results.every((r) => typeof r === 'number' && r > 0)).toBe(true)
  })

  it('stops reading while paused and goes on after resume', async () => {
    const { accepted, client } = await pair()
    const { reader, seen } = reading(accepted)
    reader.pause()
    expect(reader.paused).toBe(true)
    client.write('GET /held HTTP/1.1\r\nHost: a\r\n\r\n')
    // Unpaused, the request is parsed within a millisecond; paused, it waits.
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(seen.urls).toEqual([])
    reader.resume()
    expect(reader.paused).toBe(false)
    await until(() => seen.urls.length === 1, 'the held request')
    expect(seen.urls).toEqual(['/held'])
  })

  it('after release, bytes come as data events and the parser sees none', async () => {
    const { accepted, client } = await pair()
    const { reader, seen } = reading(accepted)
    client.write('GET /first HTTP/1.1\r\nHost: a\r\n\r\n')
    await until(() => seen.urls.length === 1, 'the first request')
    reader.release()
    expect(reader.direct).toBe(false)
    client.write('GET /second HTTP/1.1\r\nHost: a\r\n\r\n')
    await until(() => seen.data.length > 0, 'a data event')
    expect(Buffer.concat(seen.data).toString('latin1')).toBe('GET /second HTTP/1.1\r\nHost: a\r\n\r\n')
    expect(seen.urls).toEqual(['/first'])
  })

  it('released while paused, reading restarts on resume', async () => {
    const { accepted, client } = await pair()
    const { reader, seen } = reading(accepted)
    reader.pause()
    reader.release()
    client.write('bytes for the tunnel')
    reader.resume()
    await until(() => Buffer.concat(seen.data).length === 20, 'the tunnel bytes')
    expect(Buffer.concat(seen.data).toString()).toBe('bytes for the tunnel')
    expect(seen.urls).toEqual([])
  })

  it('a connecting socket reads its final handle directly, and a pause holds on it', async () => {
    // A name with two addresses, the first refused: Node tries them on new handles.
    const BODY = 4 * 1024 * 1024
    const server = createServer((socket) => {
      socket.on('error', () => {})
      socket.write(`HTTP/1.1 200 OK\r\ncontent-length: ${BODY}\r\n\r\n`)
      socket.end(Buffer.alloc(BODY))
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    servers.push(server)
    const lookup = (_host: string, _options: unknown, callback: (...args: unknown[]) => void) =>
      callback(null, [
        { address: '::1', family: 6 },
        { address: '127.0.0.1', family: 4 },
      ])
    const client = connect({
      host: 'two.test',
      port: (server.address() as AddressInfo).port,
      lookup: lookup as never,
      autoSelectFamily: true,
    })
    sockets.push(client)
    client.on('error', () => {})
    let body = 0
    const parser = createParser(
      {
        onHeaders() {},
        onHeadersComplete: () => 0,
        onBody(chunk: Buffer) {
          body += chunk.length
        },
        onMessageComplete() {},
        onExecute() {},
      },
      null,
    )
    parser.initialize(RESPONSE, NO_RESOURCE, 16 * 1024, STRICT)
    const reader = new SocketReader(parser, client, false)
    client.on('data', (chunk: Buffer) => {
      body += chunk.length
    })
    await once(client, 'connect')
    reader.readDirectly()
    expect(reader.direct).toBe(true)
    reader.pause()
    await new Promise((resolve) => setTimeout(resolve, 300))
    // Stopped: what the kernel buffers, not the 4 MiB.
    expect(body).toBeLessThan(BODY / 2)
    reader.resume()
    await until(() => body === BODY, 'the whole body after resume')
  })

  it('reports the end of input as the socket end event', async () => {
    const { accepted, client } = await pair()
    const { seen } = reading(accepted)
    const ended = once(accepted, 'end')
    client.end('GET /last HTTP/1.1\r\nHost: a\r\n\r\n')
    await ended
    expect(seen.urls).toEqual(['/last'])
  })
})
