// The engine's verdicts on raw request bytes against Node's own HTTP server on
// the same bytes. Both parse with llhttp; what is compared is everything
// around it (head accumulation, framing, limits, what counts as a complete
// request). For each input: does the request reach the application, and is
// it refused with a 4xx? Switchyard may refuse more than Node only through
// its own documented checks (Host and path validation); it must never pass
// on a request Node refuses. Inputs are valid requests with random damage.

import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import { type AddressInfo, connect } from 'node:net'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createLogger } from '../../src/log.js'
import { createProxyListener, type ProxyListener } from '../../src/proxy/listener.js'
import type { RejectReason } from '../../src/proxy/observer.js'
import { Balancer } from '../../src/proxy/pickers.js'
import { Sweeper } from '../../src/proxy/sweeper.js'
import { Upstreams } from '../../src/proxy/upstreams.js'
import { TableStore } from '../../src/table/store.js'
import { instance, tableOf } from './helpers.js'

interface Verdict {
  /**
   * Requests the application received whole (the instance, or Node's handler
   * up to the body's end). Node calls its handler at the head and may refuse
   * the body later; Switchyard reads a small body before it connects, so only
   * a completed request is comparable.
   */
  readonly reached: number
  /** Status of the first answer, 0 when the connection closed without one. */
  readonly status: number
}

function exchange(port: number, bytes: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    let text = ''
    const timer = setTimeout(() => socket.destroy(), 400)
    socket.on('data', (c) => {
      text += c.toString('latin1')
    })
    socket.on('error', () => {})
    socket.on('close', () => {
      clearTimeout(timer)
      resolve(text)
    })
    socket.write(bytes)
    // Half-close after the bytes: both servers answer what they got, then close.
    setTimeout(() => socket.end(), 150)
  })
}

const firstStatus = (text: string) => Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? 0)

describe('request parsing: Switchyard against Node on the same bytes', () => {
  let seenByInstance = 0
  let seenByNode = 0
  let instanceServer: Server
  let nodeServer: Server
  let listener: ProxyListener
  let upstreams: Upstreams
  let proxyPort = 0
  let nodePort = 0
  const ownChecks: RejectReason[] = []

  beforeAll(async () => {
    const answer = (count: () => void) =>
      createServer((req, res) => {
        req.resume()
        req.on('end', () => {
          count()
          res.end('ok')
        })
      })
    instanceServer = answer(() => seenByInstance++)
    nodeServer = answer(() => seenByNode++)
    for (const s of [instanceServer, nodeServer]) {
      s.listen(0, '127.0.0.1')
      await once(s, 'listening')
    }
    nodePort = (nodeServer.address() as AddressInfo).port
    const instancePort = (instanceServer.address() as AddressInfo).port
    const store = new TableStore()
    store.swap(tableOf([instance('app', ['urlprefix-/'], { port: instancePort })]))
    const sweeper = new Sweeper(100)
    upstreams = new Upstreams(
      {
        connectTimeoutMs: 1000,
        responseHeadersTimeoutMs: 2000,
        idleTimeoutMs: 2000,
        keepAliveTimeoutMs: 1000,
        maxConnections: 64,
        maxQueue: 64,
        queueTimeoutMs: 1000,
        maxHeaderSize: 65_536,
      },
      sweeper,
    )
    listener = createProxyListener({
      store,
      balancer: new Balancer('round-robin'),
      upstreams,
      log: createLogger('silent'),
      retries: 0,
      sweeper,
      observer: {
        request() {},
        upstreamError() {},
        rejected(reason) {
          ownChecks.push(reason)
        },
      },
      // Node's defaults, so that limits do not differ.
      limits: {
        maxHeaderSize: 16_384,
        maxHeaderCount: 2_000,
        maxBodySize: 0,
        requestBuffer: 65_536,
        headersTimeoutMs: 5_000,
        bodyTimeoutMs: 5_000,
        keepAliveTimeoutMs: 5_000,
        sendTimeoutMs: 5_000,
      },
    })
    listener.server.listen(0, '127.0.0.1')
    await once(listener.server, 'listening')
    proxyPort = (listener.server.address() as AddressInfo).port
  })

  afterAll(async () => {
    await listener.drain(0)
    upstreams.close()
    for (const s of [instanceServer, nodeServer]) {
      s.closeAllConnections()
      s.close()
    }
  })

  async function verdicts(bytes: Buffer): Promise<{ ours: Verdict; node: Verdict; own: RejectReason[] }> {
    const [i, n] = [seenByInstance, seenByNode]
    const checks = ownChecks.length
    const [ourText, nodeText] = await Promise.all([exchange(proxyPort, bytes), exchange(nodePort, bytes)])
    return {
      ours: { reached: seenByInstance - i, status: firstStatus(ourText) },
      node: { reached: seenByNode - n, status: firstStatus(nodeText) },
      own: ownChecks.slice(checks),
    }
  }

  const damage = fc.constantFrom(
    '\r',
    '\n',
    '\0',
    ' ',
    '\t',
    ':',
    'a',
    '\x7f',
    '\x80',
    '\r\n',
    '\r\n ',
    '\r\n\r\n',
    '0\r\n',
  )
  const framing = fc.constantFrom(
    [],
    ['Content-Length: 5'],
    ['Content-Length: 5', 'Content-Length: 5'],
    ['Content-Length: 5', 'Content-Length: 6'],
    ['Content-Length: 5, 5'],
    ['Content-Length: +5'],
    ['Content-Length: 0x5'],
    ['Content-Length: -1'],
    ['Transfer-Encoding: chunked'],
    ['Transfer-Encoding: gzip, chunked'],
    ['Transfer-Encoding: chunked, gzip'],
    ['Transfer-Encoding: identity'],
    ['Transfer-Encoding: chunked', 'Content-Length: 5'],
    ['Transfer-Encoding: chunked', 'Transfer-Encoding: chunked'],
    ['Transfer-Encoding : chunked'],
    ['Transfer-Encoding:\tchunked'],
  )
  const body = fc.constantFrom(
    '',
    'hello',
    '5\r\nhello\r\n0\r\n\r\n',
    '5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n',
    '5;x=y\r\nhello\r\n0\r\n\r\n',
    'zz\r\nhello\r\n0\r\n\r\n',
  )
  const request = fc.record({
    method: fc.constantFrom('GET', 'POST', 'PUT', 'HEAD', 'OPTIONS'),
    version: fc.constantFrom('HTTP/1.1', 'HTTP/1.0'),
    framing,
    body,
    extra: fc.array(fc.constantFrom('Accept: */*', 'X-A: 1', 'Connection: close', 'Connection: keep-alive'), {
      maxLength: 3,
    }),
    cuts: fc.oneof(fc.constant([]), fc.array(fc.tuple(fc.nat(), damage), { minLength: 1, maxLength: 2 })),
  })

  it('never passes on a request Node refuses, and refuses no more than its own checks add', async () => {
    const disagreements: string[] = []
    const stats: string[] = []
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        let head = `${r.method} /d/x HTTP${r.version.slice(4)}\r\nHost: example.test\r\n`
        for (const line of [...r.framing, ...r.extra]) head += `${line}\r\n`
        let text = `${head}\r\n`
        // Damage only the head: a damaged body is a different length, not a different verdict.
        for (const [at, what] of r.cuts) {
          const i = 1 + (at % (head.length - 1))
          text = text.slice(0, i) + what + text.slice(i)
        }
        const bytes = Buffer.from(text + r.body, 'latin1')
        const { ours, node, own } = await verdicts(bytes)
        if (ours.reached > 0 && node.reached > 0) stats.push('both passed')
        if (ours.reached === 0 && node.reached === 0) stats.push('both refused')
        const ownRefusal = own.some((reason) => reason === 'host' || reason === 'path')
        if (ours.reached > node.reached) {
          disagreements.push(`passed on what Node refused: ${JSON.stringify(bytes.toString('latin1'))}`)
        } else if (ours.reached < node.reached && !ownRefusal) {
          disagreements.push(
            `refused what Node passed on: ${JSON.stringify(bytes.toString('latin1'))} ours=${ours.status} node=${node.status}`,
          )
        }
        if (node.status >= 400 && node.status < 500 && node.reached === 0) {
          // Node's 4xx before its handler: ours is a 4xx too (or a close), never a forward.
          expect(ours.reached).toBe(0)
        }
      }),
      { numRuns: 200, seed: 20261130 },
    )
    expect(disagreements).toEqual([])
    // Both kinds of input were exercised: passed on by both, refused by both.
    expect(stats.filter((s) => s === 'both passed').length).toBeGreaterThan(20)
    expect(stats.filter((s) => s === 'both refused').length).toBeGreaterThan(30)
  }, 120_000)
})
