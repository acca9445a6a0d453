// Bodies stream through the proxy with backpressure: 200 MB each way pass with
// memory growing by a small fraction of that, server-sent events arrive one by
// one as the upstream writes them, and chunked encoding works both ways.
// A proxy that buffered bodies (or ignored backpressure) fails these.

import { once } from 'node:events'
import { connect } from 'node:net'
import { Readable } from 'node:stream'
import { request } from 'undici'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { ConsulApi } from '../harness/consul-api.js'
import { describeWithConsul } from '../harness/context.js'
import { startProxyProcess } from '../harness/proxy-process.js'
import { MB, sleep } from '../harness/proxy-tools.js'
import { startTestProxy, type TestProxy } from '../harness/switchyard.js'
import { tempDir } from '../harness/temp.js'
import { startUpstream, type Upstream } from '../harness/upstream.js'
import { uniqueName } from '../harness/wait.js'

const BODY = 200 * MB
/**
 * A proxy that buffered the body, or read faster than the far side takes it,
 * would hold most of the 200 MB. One with backpressure holds 64 KiB windows,
 * but its RSS still rises by about 60-75 MB (measured): the chunks it passed
 * are garbage V8 frees only when a collection runs, and external memory
 * triggers one every 64 MB or so.
 */
const MAX_PROXY_GROWTH = BODY / 2
const CHUNK = Buffer.alloc(64 * 1024, 'x')

/** Generated data, never held in memory: the same 64 KiB chunk, `total` bytes in all. */
function generated(total: number): Readable {
  let sent = 0
  return new Readable({
    read() {
      if (sent >= total) return void this.push(null)
      const n = Math.min(CHUNK.length, total - sent)
      sent += n
      this.push(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))
    },
  })
}

/** Reads a stream at most ~100 MB/s so the proxy has to hold the faster side back. */
async function drainSlowly(body: AsyncIterable<Buffer>): Promise<number> {
  let bytes = 0
  let sinceNap = 0
  for await (const chunk of body) {
    bytes += chunk.length
    sinceNap += chunk.length
    if (sinceNap >= 2 * MB) {
      sinceNap = 0
      await sleep(20)
    }
  }
  return bytes
}

describeWithConsul('streaming with backpressure', (consul) => {
  const api = new ConsulApi(consul)
  const prefix = `${uniqueName('stream')}-`
  const service = uniqueName('stream')
  let upstream: Upstream
  let proxy: TestProxy
  let sseStep: (() => void) | null = null
  const dir = tempDir('streaming')

  beforeAll(async () => {
    upstream = await startUpstream('stream', (req, res) => {
      if (req.url === '/stream/up') {
        void drainSlowly(req).then((bytes) => res.end(JSON.stringify({ bytes })))
        return
      }
      if (req.url === '/stream/down') {
        const source = generated(BODY)
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': BODY })
        source.pipe(res)
        return
      }
      if (req.url === '/stream/events') {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
        let n = 0
        const next = () => {
          n++
          if (n > 5) return void res.end()
          res.write(`id: ${n}\ndata: event ${n}\n\n`)
        }
        sseStep = next
        next()
        return
      }
      if (req.url === '/stream/echo') {
        const chunks: Buffer[] = []
        req.on('data', (c: Buffer) => chunks.push(c))
        req.on('end', async () => {
          res.writeHead(200, {
            'content-type': 'text/plain',
            'x-request-te': String(req.headers['transfer-encoding']),
            'x-request-cl': String(req.headers['content-length']),
          })
          res.write(`got ${Buffer.concat(chunks).toString()};`)
          await sleep(50)
          res.end(' done')
        })
        return
      }
      res.writeHead(404).end()
    })
    await api.register({ id: service, name: service, port: upstream.port, tags: [`${prefix}/stream`] })
    proxy = await startTestProxy(consul, { routing: { tagPrefix: prefix }, log: { level: 'warn' } })
  })

  afterAll(async () => {
    await proxy?.stop()
    await api.deregister(service).catch(() => {})
    await upstream?.close()
  })

  /**
   * How much the proxy's resident memory rose above its level before `work`,
   * at its highest while `work` ran. The proxy runs as its own process for
   * this, so the test's clients and upstream do not count.
   */
  async function proxyMemoryGrowth(work: (url: string) => Promise<void>): Promise<number> {
    const child = await startProxyProcess(consul, dir, {
      routing: { tagPrefix: prefix },
      log: { level: 'warn' },
    })
    try {
      // Warm: pools, buffers and code paths exist before the baseline is read.
      expect((await request(`${child.url}/stream/echo`, { method: 'POST', body: 'warm' })).statusCode).toBe(
        200,
      )
      const baseline = child.rss()
      await work(child.url)
      return child.peakRss() - baseline
    } finally {
      await child.stop()
    }
  }

  it('uploads 200 MB to a slow reader with the proxy holding a small part of it', async () => {
    let answer: { bytes: number } | null = null
    const growth = await proxyMemoryGrowth(async (url) => {
      const res = await request(`${url}/stream/up`, {
        method: 'POST',
        body: generated(BODY),
        headers: { 'content-length': String(BODY) },
      })
      expect(res.statusCode).toBe(200)
      answer = (await res.body.json()) as { bytes: number }
    })
    expect(answer).toEqual({ bytes: BODY })
    // A proxy that buffered the body would hold 200 MB.
    expect(growth).toBeLessThan(MAX_PROXY_GROWTH)
    process.stdout.write(
      `streaming: upload of 200 MB raised the proxy's RSS by ${(growth / MB).toFixed(1)} MB\n`,
    )
  }, 120_000)

  it('downloads 200 MB to a slow client with the proxy holding a small part of it', async () => {
    let bytes = 0
    const growth = await proxyMemoryGrowth(async (url) => {
      const res = await request(`${url}/stream/down`)
      expect(res.statusCode).toBe(200)
      expect(res.headers['content-length']).toBe(String(BODY))
      bytes = await drainSlowly(res.body)
    })
    expect(bytes).toBe(BODY)
    expect(growth).toBeLessThan(MAX_PROXY_GROWTH)
    process.stdout.write(
      `streaming: download of 200 MB raised the proxy's RSS by ${(growth / MB).toFixed(1)} MB\n`,
    )
  }, 120_000)

  it('delivers each server-sent event before the upstream writes the next one', async () => {
    const res = await request(`${proxy.app.proxyUrl}/stream/events`)
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-type']).toBe('text/event-stream')
    const received: string[] = []
    let pending = ''
    // The upstream writes event n+1 only when the client has seen event n: a
    // proxy that buffers would hang here.
    for await (const chunk of res.body) {
      pending += chunk.toString()
      let end = pending.indexOf('\n\n')
      while (end !== -1) {
        received.push(pending.slice(0, end))
        pending = pending.slice(end + 2)
        end = pending.indexOf('\n\n')
      }
      sseStep?.()
    }
    expect(received).toEqual([1, 2, 3, 4, 5].map((n) => `id: ${n}\ndata: event ${n}`))
  }, 15_000)

  it('passes a chunked request body upstream and a chunked response back', async () => {
    // The body arrives in two parts 100 ms apart, so the proxy cannot know its
    // length when it starts forwarding and must stream it chunked.
    const socket = connect(Number(new URL(proxy.app.proxyUrl).port), '127.0.0.1')
    const received: Buffer[] = []
    socket.on('data', (c: Buffer) => received.push(c))
    await once(socket, 'connect')
    socket.write(
      'POST /stream/echo HTTP/1.1\r\nHost: s.local\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n',
    )
    await sleep(100)
    socket.write('6\r\n world\r\n0\r\n\r\n')
    await once(socket, 'close')
    const text = Buffer.concat(received).toString()
    const split = text.indexOf('\r\n\r\n')
    const head = text.slice(0, split)
    const body = text.slice(split + 4)
    expect(head).toMatch(/^HTTP\/1\.1 200 /)
    expect(head.toLowerCase()).toContain('transfer-encoding: chunked')
    expect(head.toLowerCase()).toContain('x-request-te: chunked')
    expect(head.toLowerCase()).toContain('x-request-cl: undefined')
    // Two chunks as the upstream wrote them, then the last chunk.
    expect(body).toBe('10\r\ngot hello world;\r\n5\r\n done\r\n0\r\n\r\n')
  })

  it('keeps serving after the big transfers', async () => {
    const res = await request(`${proxy.app.proxyUrl}/stream/echo`, { method: 'POST', body: 'small' })
    expect(res.statusCode).toBe(200)
    expect(await res.body.text()).toBe('got small; done')
  })
})
