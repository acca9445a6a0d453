// The HTTP/1.1 engine against the defects node:http's defaults caused, each
// answered the way NGINX and HAProxy answer it: stalled uploads time out and
// cannot starve other clients, a head with too many fields gets 431 (never a
// truncated request), a body over the limit 413, a request that closes the
// connection is answered and nothing after it is executed, pipelined requests
// are answered in order, 103 Early Hints and trailers are relayed, and a
// full instance queue answers 503.

import { connect, type Socket } from 'node:net'
import { Readable } from 'node:stream'
import { request } from 'undici'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { ConsulApi } from '../harness/consul-api.js'
import { describeWithConsul } from '../harness/context.js'
import { countingObserver, rawRequest, sleep } from '../harness/proxy-tools.js'
import { startTestProxy, type TestProxy } from '../harness/switchyard.js'
import { startUpstream, type Upstream } from '../harness/upstream.js'
import { eventually, uniqueName } from '../harness/wait.js'

/** Reads from a socket until `done(text)` says enough, or `waitMs` passes. */
function readUntil(socket: Socket, done: (text: string) => boolean, waitMs = 5_000): Promise<string> {
  return new Promise((resolve) => {
    let text = ''
    const finish = () => {
      clearTimeout(timer)
      socket.off('data', onData)
      resolve(text)
    }
    const onData = (chunk: Buffer) => {
      text += chunk.toString('latin1')
      if (done(text)) finish()
    }
    const timer = setTimeout(finish, waitMs)
    socket.on('data', onData)
    socket.once('close', finish)
  })
}

async function open(port: number): Promise<Socket> {
  const socket = connect(port, '127.0.0.1')
  socket.on('error', () => {})
  await new Promise((resolve) => socket.once('connect', resolve))
  return socket
}

const statuses = (text: string) => [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]))

describeWithConsul('HTTP/1.1 engine: limits, framing and relaying', (consul) => {
  const api = new ConsulApi(consul)
  const prefix = `${uniqueName('engine')}-`
  const service = uniqueName('engine')
  const narrow = uniqueName('narrow')
  const { observer, counts } = countingObserver()
  let app: Upstream
  let narrowApp: Upstream
  let proxy: TestProxy
  let port: number
  const releases: (() => void)[] = []

  beforeAll(async () => {
    app = await startUpstream('engine', (req, res) => {
      const url = req.url ?? ''
      if (url.startsWith('/e/hints')) {
        res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' })
        setTimeout(() => res.end('after hints'), 20)
        return
      }
      if (url.startsWith('/e/trailers')) {
        res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' })
        res.write('part one;')
        res.addTrailers({ 'x-checksum': 'abc123' })
        res.end('part two')
        return
      }
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        const body = Buffer.concat(chunks)
        res.writeHead(200, { 'content-type': 'text/plain', 'x-body-bytes': String(body.length) })
        res.end(`${req.method} ${url} ${body.length}`)
      })
    })
    // One connection per instance and room for one waiting request.
    narrowApp = await startUpstream('narrow', (req, res) => {
      req.resume()
      releases.push(() => res.end('narrow'))
    })
    await api.register({ id: service, name: service, port: app.port, tags: [`${prefix}/e`] })
    await api.register({ id: narrow, name: narrow, port: narrowApp.port, tags: [`${prefix}/narrow`] })
    proxy = await startTestProxy(
      consul,
      {
        routing: { tagPrefix: prefix },
        proxy: {
          connectionsPerUpstream: 1,
          upstreamQueue: 1,
          limits: { maxHeaderCount: 100, maxBodySize: '1MiB', requestBuffer: '16KiB' },
          timeouts: { clientBody: '600ms', queue: '400ms' },
        },
        log: { level: 'warn' },
      },
      { observer },
    )
    port = Number(new URL(proxy.app.proxyUrl).port)
  })

  afterAll(async () => {
    for (const release of releases.splice(0)) release()
    await proxy?.stop()
    for (const id of [service, narrow]) await api.deregister(id).catch(() => {})
    await Promise.all([app?.close(), narrowApp?.close()])
  })

  it('times out stalled uploads with 408, and they never hold back other clients', async () => {
    const seen = app.seen.length
    const stalled = await Promise.all(
      Array.from({ length: 30 }, async () => {
        const socket = await open(port)
        socket.write('POST /e/upload HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n0123456789')
        return socket
      }),
    )
    // A normal request meanwhile: answered at once, not after the stalled ones.
    const started = Date.now()
    const res = await request(`${proxy.app.proxyUrl}/e/normal`)
    expect(await res.body.text()).toBe('GET /e/normal 0')
    expect(Date.now() - started).toBeLessThan(500)
    // The stalled ones get 408 once their body has been idle for clientBody.
    const answers = await Promise.all(stalled.map((s) => readUntil(s, (t) => t.includes('\r\n\r\n'), 5_000)))
    for (const text of answers) {
      expect(statuses(text)).toEqual([408])
      expect(text).toContain('x-switchyard-error: SWY_ERR_CLIENT_TIMEOUT')
    }
    // None of them reached the instance: their bodies never filled the request buffer.
    expect(app.seen.slice(seen).filter((r) => r.url === '/e/upload')).toHaveLength(0)
    for (const s of stalled) s.destroy()
  })

  it('answers 431 to a head with more header fields than the limit, and forwards nothing', async () => {
    const seen = app.seen.length
    const fields = Array.from({ length: 1_200 }, (_, i) => `x-f${i}: ${i}`).join('\r\n')
    // A late Content-Length must not be dropped with the fields past the limit.
    const res = await rawRequest(
      port,
      `POST /e/many HTTP/1.1\r\nHost: h\r\n${fields.slice(0, 3_000)}\r\nContent-Length: 5\r\n\r\nhello`,
    )
    expect(res.status).toBe(431)
    expect(res.text).toContain('x-switchyard-error: SWY_ERR_HEADERS_TOO_LARGE')
    expect(res.closed).toBe(true)
    expect(app.seen.length).toBe(seen)
  })

  it('answers 413 to a body over proxy.limits.maxBodySize, by Content-Length or as a chunked body grows', async () => {
    const seen = app.seen.length
    const declared = await rawRequest(
      port,
      'POST /e/big HTTP/1.1\r\nHost: h\r\nContent-Length: 2000000\r\n\r\n',
    )
    expect(declared.status).toBe(413)
    expect(declared.text).toContain('SWY_ERR_BODY_TOO_LARGE')
    expect(app.seen.length).toBe(seen)

    const chunk = Buffer.alloc(256 * 1024, 'a')
    const res = await request(`${proxy.app.proxyUrl}/e/chunked`, {
      method: 'POST',
      body: Readable.from(
        (async function* () {
          for (let i = 0; i < 8; i++) yield chunk
        })(),
      ),
    }).catch((err: Error) => err)
    // Either the 413 arrived, or the connection was cut once the instance had started answering.
    if (!(res instanceof Error)) expect(res.statusCode).toBe(413)
    expect(counts.rejected.get('body-too-large')?.length ?? 0).toBeGreaterThanOrEqual(2)
  })

  it('answers a request that closes the connection, and executes nothing sent after it', async () => {
    const seen = app.seen.length
    const res = await rawRequest(
      port,
      'POST /e/first HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello' +
        'GET /e/second HTTP/1.1\r\nHost: h\r\n\r\n',
    )
    expect(statuses(res.text)).toEqual([200])
    expect(res.text).toContain('POST /e/first 5')
    expect(res.closed).toBe(true)
    expect(app.seen.slice(seen).map((r) => r.url)).toEqual(['/e/first'])
  })

  it('answers an HTTP/1.0 chunked request once and closes, whatever follows it', async () => {
    const seen = app.seen.length
    const res = await rawRequest(
      port,
      'POST /e/old HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n' +
        'GET /e/smuggled HTTP/1.1\r\nHost: h\r\n\r\n',
    )
    expect(statuses(res.text)).toHaveLength(1)
    expect(res.closed).toBe(true)
    expect(app.seen.slice(seen).map((r) => r.url)).not.toContain('/e/smuggled')
    expect(app.seen.slice(seen).filter((r) => r.url === '/e/old').length).toBeLessThanOrEqual(1)
  })

  it('answers pipelined requests in order on one connection', async () => {
    const socket = await open(port)
    socket.write(
      'GET /e/p1 HTTP/1.1\r\nHost: h\r\n\r\n' +
        'POST /e/p2 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc' +
        'GET /e/p3 HTTP/1.1\r\nHost: h\r\n\r\n',
    )
    const text = await readUntil(socket, (t) => t.includes('GET /e/p3 0'))
    socket.destroy()
    const order = ['GET /e/p1 0', 'POST /e/p2 3', 'GET /e/p3 0'].map((s) => text.indexOf(s))
    expect(order.every((i) => i >= 0)).toBe(true)
    expect([...order].sort((a, b) => a - b)).toEqual(order)
  })

  it('relays 103 Early Hints before the response, and response trailers after a chunked body', async () => {
    const hints = await rawRequest(port, 'GET /e/hints HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n')
    expect(statuses(hints.text)).toEqual([103, 200])
    expect(hints.text.toLowerCase()).toContain('link: </style.css>; rel=preload; as=style')

    const trailers = await rawRequest(
      port,
      'GET /e/trailers HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n',
    )
    expect(trailers.text).toContain('transfer-encoding: chunked')
    expect(trailers.text).toMatch(/\r\n0\r\nx-checksum: abc123\r\n\r\n$/)
  })

  it('sends 100 Continue to a client that waits for it before its body', async () => {
    const socket = await open(port)
    socket.write('PUT /e/continue HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n')
    const interim = await readUntil(socket, (t) => t.includes('\r\n\r\n'), 2_000)
    expect(statuses(interim)).toEqual([100])
    socket.write('data')
    const text = await readUntil(socket, (t) => t.includes('PUT /e/continue 4'))
    socket.destroy()
    expect(statuses(text)).toEqual([200])
  })

  it('answers 503 when every connection to an instance is busy and its queue is full or too slow', async () => {
    const busy = counts.upstreamErrors.filter((e) => e.reason === 'busy').length
    // The first request takes the only connection, the second waits in the queue.
    const first = request(`${proxy.app.proxyUrl}/narrow/1`)
    await eventually(() => expect(releases.length).toBe(1))
    const second = request(`${proxy.app.proxyUrl}/narrow/2`)
    await sleep(50)
    // The third finds the queue full.
    const third = await request(`${proxy.app.proxyUrl}/narrow/3`)
    expect(third.statusCode).toBe(503)
    expect(third.headers['x-switchyard-error']).toBe('SWY_ERR_UPSTREAM_BUSY')
    await third.body.text()
    // The second gives up after proxy.timeouts.queue.
    const waited = await second
    expect(waited.statusCode).toBe(503)
    expect(await waited.body.text()).toContain('no free connection within 400 ms')
    for (const release of releases.splice(0)) release()
    expect((await first).statusCode).toBe(200)
    expect(counts.upstreamErrors.filter((e) => e.reason === 'busy').length).toBe(busy + 2)
  })

  it('answers a request that asks to upgrade to h2c (curl --http2) as plain HTTP/1.1, then closes', async () => {
    const res = await rawRequest(
      port,
      'GET /e/h2c HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n' +
        'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n',
    )
    expect(statuses(res.text)).toEqual([200])
    expect(res.text).toContain('GET /e/h2c 0')
    expect(res.text.toLowerCase()).toContain('connection: close')
    expect(res.closed).toBe(true)
    const seen = app.seen.find((r) => r.url === '/e/h2c')
    expect(seen?.headers.upgrade).toBeUndefined()
    expect(seen?.headers['http2-settings']).toBeUndefined()
  })

  it('takes cleartext HTTP/2 whose preface arrives in two pieces, and refuses a preface after a request', async () => {
    const socket = await open(port)
    socket.write('PRI * HTTP/2.0\r\n')
    await sleep(50)
    // The rest of the preface, then an empty SETTINGS frame (length 0, type 4, stream 0).
    socket.write(Buffer.concat([Buffer.from('\r\nSM\r\n\r\n'), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]))
    const frames = await new Promise<Buffer>((resolve) => {
      const chunks: Buffer[] = []
      const timer = setTimeout(() => resolve(Buffer.concat(chunks)), 5_000)
      socket.on('data', (c: Buffer) => {
        chunks.push(c)
        if (Buffer.concat(chunks).length >= 9) {
          clearTimeout(timer)
          resolve(Buffer.concat(chunks))
        }
      })
    })
    socket.destroy()
    // The server's first frame is its SETTINGS: an HTTP/2 session took the connection.
    expect(frames[3]).toBe(4)
    expect(frames.toString('latin1')).not.toContain('HTTP/1.1')

    const late = await open(port)
    late.write('GET /e/first HTTP/1.1\r\nHost: h\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')
    const text = await readUntil(late, (t) => statuses(t).length >= 2)
    late.destroy()
    expect(statuses(text)).toEqual([200, 400])
  })

  it('keeps serving after all of that', async () => {
    const res = await request(`${proxy.app.proxyUrl}/e/after`)
    expect(await res.body.text()).toBe('GET /e/after 0')
  })
})
