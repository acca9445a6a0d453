// A client that disconnects aborts the upstream request: while waiting for
// the response head, mid-response and mid-upload. After 1,000 aborted
// requests no socket, in-flight count or request object is left behind.

import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { ConsulApi } from '../harness/consul-api.js'
import { describeWithConsul } from '../harness/context.js'
import { countingObserver, MB, openSockets, trackRetention } from '../harness/proxy-tools.js'
import { startTestProxy, type TestProxy } from '../harness/switchyard.js'
import { startUpstream, type Upstream } from '../harness/upstream.js'
import { eventually, uniqueName } from '../harness/wait.js'

type Kind = 'waiting' | 'response' | 'upload'
const KINDS: Kind[] = ['waiting', 'response', 'upload']

describeWithConsul('client aborts', (consul) => {
  const api = new ConsulApi(consul)
  const prefix = `${uniqueName('abort')}-`
  const id = uniqueName('abort')
  const { observer, counts } = countingObserver()
  /** Upstream requests by client id: resolves when the upstream has it. */
  const arrived = new Map<string, () => void>()
  let open = 0
  let abortedUpstream = 0
  let upstream: Upstream
  let proxy: TestProxy
  let port: number

  beforeAll(async () => {
    upstream = await startUpstream('abort', (req, res) => {
      open++
      res.on('close', () => {
        open--
        if (!res.writableFinished) abortedUpstream++
      })
      const key = String(req.headers['x-id'])
      if (req.url === '/abort/response') {
        res.writeHead(200, { 'content-type': 'text/plain' })
        const timer = setInterval(() => res.write('tick\n'), 10)
        res.on('close', () => clearInterval(timer))
        res.write('tick\n')
      } else if (req.url === '/abort/upload') {
        req.on('data', () => {})
      } // '/abort/waiting': never answers
      arrived.get(key)?.()
    })
    await api.register({ id, name: id, port: upstream.port, tags: [`${prefix}/abort`] })
    proxy = await startTestProxy(
      consul,
      { routing: { tagPrefix: prefix }, log: { level: 'warn' } },
      { observer },
    )
    port = Number(new URL(proxy.app.proxyUrl).port)
  })

  afterAll(async () => {
    await proxy?.stop()
    await api.deregister(id).catch(() => {})
    await upstream?.close()
  })

  let sequence = 0
  /** One request that the client abandons once the upstream is working on it. */
  async function abandon(kind: Kind): Promise<void> {
    const key = String(sequence++)
    const reached = new Promise<void>((resolve) => arrived.set(key, resolve))
    const socket: Socket = connect(port, '127.0.0.1')
    socket.on('error', () => {})
    await once(socket, 'connect')
    if (kind === 'upload') {
      socket.write(`POST /abort/upload HTTP/1.1\r\nHost: h\r\nx-id: ${key}\r\nContent-Length: ${MB}\r\n\r\n`)
      socket.write(Buffer.alloc(64 * 1024))
    } else {
      socket.write(`GET /abort/${kind} HTTP/1.1\r\nHost: h\r\nx-id: ${key}\r\n\r\n`)
    }
    await reached
    arrived.delete(key)
    if (kind === 'response') await once(socket, 'data') // mid-response: the head and a first chunk arrived
    socket.destroy()
  }

  async function abandonMany(n: number, concurrency = 25): Promise<void> {
    let next = 0
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < n) {
          const kind = KINDS[next++ % KINDS.length] as Kind
          await abandon(kind)
        }
      }),
    )
  }

  it('aborts the upstream request for each kind of client disconnect', async () => {
    for (const kind of KINDS) {
      const before = abortedUpstream
      await abandon(kind)
      await eventually(() => expect(abortedUpstream).toBe(before + 1), 3_000)
    }
    expect(counts.requests.filter((r) => r.status === 499)).toHaveLength(3)
  })

  it('leaves no socket, in-flight count or request object behind after 1,000 aborted requests', async () => {
    await abandonMany(150) // warm up: pools, JIT, buffers
    await eventually(() => expect(open).toBe(0), 5_000)
    const socketsBefore = openSockets()
    const abortedBefore = abortedUpstream
    const clientGoneBefore = counts.requests.filter((r) => r.status === 499).length
    const retained = trackRetention(proxy.app.proxy, [`http://127.0.0.1:${upstream.port}`])
    try {
      await abandonMany(1_000)

      // Every one of them was aborted upstream, not left to finish.
      await eventually(() => expect(abortedUpstream - abortedBefore).toBe(1_000), 10_000)
      expect(open).toBe(0)
      const route = proxy.app.store.current.routes.find((r) => r.id === '/abort')!
      expect(proxy.app.balancer.outstanding(route.backends[0]!)).toBe(0)
      await eventually(async () => {
        const proxyConnections = await new Promise<number>((resolve) =>
          proxy.app.proxy.getConnections((_e, n) => resolve(n)),
        )
        expect(proxyConnections).toBe(0)
        expect(openSockets()).toBeLessThanOrEqual(socketsBefore)
      }, 5_000)
      expect(counts.requests.filter((r) => r.status === 499).length - clientGoneBefore).toBe(1_000)

      // Each of them was seen by the tracker…
      expect(retained.created).toEqual({
        'client request': 1_000,
        'client socket': 1_000,
        'upstream request': 1_000,
      })
      // …and none stays reachable. Finalisation runs some ticks after a
      // collection, so this is checked until it holds; a leak never lets go.
      await eventually(
        async () =>
          expect(await retained.live()).toEqual({
            'client request': 0,
            'client socket': 0,
            'upstream request': 0,
          }),
        15_000,
        250,
      )
    } finally {
      retained.stop()
    }
  }, 60_000)
})
