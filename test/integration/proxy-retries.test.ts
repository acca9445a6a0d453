// Retries and passive health. A GET whose instance refuses the connection is
// retried once on another instance; a POST is never replayed. An instance
// with repeated connect failures is ejected before Consul notices, and a
// probe lets it back in once it accepts connections. A keep-alive connection
// the instance closed just as a request went out is not the client's problem.

import { once } from 'node:events'
import { createServer, type Server, type Socket } from 'node:net'
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePort } from '../harness/consul-agent.js'
import { ConsulApi } from '../harness/consul-api.js'
import { describeWithConsul } from '../harness/context.js'
import { countingObserver, sleep } from '../harness/proxy-tools.js'
import { startTestProxy, type TestProxy } from '../harness/switchyard.js'
import { startUpstream, type Upstream } from '../harness/upstream.js'
import { eventually, uniqueName } from '../harness/wait.js'

describeWithConsul('retries and passive health', (consul) => {
  const api = new ConsulApi(consul)
  const prefix = `${uniqueName('rty')}-`
  const ids: string[] = []
  const upstreams: Upstream[] = []
  let deadPort: number
  let good: Upstream
  const seenPosts: string[] = []

  beforeAll(async () => {
    deadPort = await freePort() // nothing listens: connections are refused
    good = await startUpstream('good', (req, res) => {
      if (req.method === 'POST') seenPosts.push(String(req.headers['x-id']))
      req.resume()
      req.on('end', () => res.end('good'))
    })
    upstreams.push(good)
    const service = uniqueName('pair')
    for (const [n, port] of [
      ['dead', deadPort],
      ['good', good.port],
    ] as const) {
      ids.push(`${service}-${n}`)
      await api.register({ id: `${service}-${n}`, name: service, port, tags: [`${prefix}/pair`] })
    }
  })

  afterAll(async () => {
    for (const id of ids) await api.deregister(id).catch(() => {})
    await Promise.all(upstreams.map((u) => u.close()))
  })

  describe('without passive health', () => {
    let proxy: TestProxy
    const { observer, counts } = countingObserver()

    beforeAll(async () => {
      proxy = await startTestProxy(
        consul,
        { routing: { tagPrefix: prefix }, proxy: { passiveHealth: { failures: 0 } }, log: { level: 'warn' } },
        { observer },
      )
    })
    afterAll(async () => proxy?.stop())

    it('retries a refused GET on the other instance: all succeed', async () => {
      for (let i = 0; i < 20; i++) {
        const res = await proxy.get('/pair')
        expect(res.status).toBe(200)
        expect(res.body).toBe('good')
      }
      // Round robin sent about half of them to the dead instance first.
      const refused = counts.upstreamErrors.filter((e) => e.reason === 'connect' && e.target.includes('dead'))
      expect(refused.length).toBeGreaterThanOrEqual(8)
    })

    it('never replays a POST: the ones sent to the dead instance fail with 502, each one reached the app at most once', async () => {
      const statuses: number[] = []
      seenPosts.length = 0
      for (let i = 0; i < 20; i++) {
        const res = await request(`${proxy.app.proxyUrl}/pair`, {
          method: 'POST',
          body: `payload ${i}`,
          headers: { 'x-id': String(i) },
        })
        statuses.push(res.statusCode)
        const body = await res.body.text()
        if (res.statusCode === 502) expect(body).toContain('SWY_ERR_UPSTREAM_CONNECT')
      }
      const failed = statuses.filter((s) => s === 502).length
      expect(failed).toBeGreaterThanOrEqual(8)
      expect(statuses.filter((s) => s === 200).length + failed).toBe(20)
      expect(seenPosts.length).toBe(20 - failed)
      expect(new Set(seenPosts).size).toBe(seenPosts.length)
    })

    it('retries a body-less DELETE (idempotent) but not a PATCH', async () => {
      for (let i = 0; i < 6; i++) {
        expect((await request(`${proxy.app.proxyUrl}/pair`, { method: 'DELETE' })).statusCode).toBe(200)
      }
      const patches: number[] = []
      for (let i = 0; i < 6; i++)
        patches.push((await request(`${proxy.app.proxyUrl}/pair`, { method: 'PATCH' })).statusCode)
      expect(patches).toContain(502)
    })
  })

  describe('with passive health', () => {
    let proxy: TestProxy
    const { observer, counts } = countingObserver()

    beforeAll(async () => {
      proxy = await startTestProxy(
        consul,
        {
          routing: { tagPrefix: prefix },
          proxy: { passiveHealth: { failures: 3, ejectFor: '600ms', ejectForMax: '5s' } },
          log: { level: 'warn' },
        },
        { observer },
      )
    })
    afterAll(async () => proxy?.stop())

    it('ejects an instance after 3 connect failures while Consul still calls it healthy', async () => {
      for (let i = 0; i < 10; i++) expect((await proxy.get('/pair')).status).toBe(200)
      const dead = counts.upstreamErrors.filter((e) => e.target.includes('dead'))
      expect(dead.length).toBe(3)
      expect(counts.health).toEqual([{ target: expect.stringContaining('dead'), ejected: true }])
      expect(proxy.app.health.ejected()).toEqual([expect.stringContaining('dead')])
      // Ejected: no further attempt on it, not even a first try that would be retried.
      for (let i = 0; i < 10; i++) expect((await proxy.get('/pair')).status).toBe(200)
      expect(counts.upstreamErrors.filter((e) => e.target.includes('dead')).length).toBe(3)
      // Consul was never told.
      const health = (await (
        await api.call('GET', `/v1/health/checks/${ids[0]!.replace(/-dead$/, '')}`)
      ).json()) as {
        Status: string
      }[]
      expect(health.every((c) => c.Status === 'passing')).toBe(true)
    })

    it('keeps it out while the probe fails, and takes it back once it accepts connections', async () => {
      // Past the first period the probe fails (still nothing listening): ejected again, for longer.
      await sleep(700)
      for (let i = 0; i < 4; i++) expect((await proxy.get('/pair')).status).toBe(200)
      await eventually(() => expect(counts.health.filter((h) => h.ejected).length).toBe(2), 3_000)
      expect(counts.upstreamErrors.filter((e) => e.target.includes('dead')).length).toBe(3)

      const revived = await startUpstream('revived', undefined, deadPort)
      upstreams.push(revived)
      const bodies = new Set<string>()
      await eventually(async () => {
        bodies.add((await proxy.get('/pair')).body)
        expect(bodies.has('revived')).toBe(true)
      }, 5_000)
      expect(counts.health.at(-1)).toEqual({ target: expect.stringContaining('dead'), ejected: false })
      expect(proxy.app.health.ejected()).toEqual([])
    })
  })
})

/**
 * An HTTP/1.1 server that drops keep-alive connections which were idle for
 * longer than `idleMs` at the moment the next request arrives, without an
 * answer and without a Keep-Alive hint beforehand. That is the race every
 * keep-alive client meets: the server closes an idle connection just as a
 * request is sent on it. Made deterministic here.
 */
async function startStaleServer(
  idleMs: number,
): Promise<{ port: number; server: Server; dropped: () => number }> {
  let dropped = 0
  const server = createServer((socket: Socket) => {
    let last = 0
    let buffered = ''
    socket.on('error', () => {})
    socket.on('data', (chunk) => {
      buffered += chunk.toString('latin1')
      while (buffered.includes('\r\n\r\n')) {
        buffered = buffered.slice(buffered.indexOf('\r\n\r\n') + 4)
        if (last !== 0 && Date.now() - last > idleMs) {
          dropped++
          socket.destroy()
          return
        }
        socket.write('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\nfresh')
        last = Date.now()
      }
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return { port: (server.address() as { port: number }).port, server, dropped: () => dropped }
}

describeWithConsul('stale keep-alive connections', (consul) => {
  const api = new ConsulApi(consul)
  const prefix = `${uniqueName('stale')}-`
  const id = uniqueName('stale')
  let stale: Awaited<ReturnType<typeof startStaleServer>>
  let proxy: TestProxy

  beforeAll(async () => {
    stale = await startStaleServer(150)
    await api.register({ id, name: id, port: stale.port, tags: [`${prefix}/stale`] })
    proxy = await startTestProxy(consul, { routing: { tagPrefix: prefix }, log: { level: 'warn' } })
  })

  afterAll(async () => {
    await proxy?.stop()
    await api.deregister(id).catch(() => {})
    stale?.server.close()
  })

  it('retries an idempotent request on a fresh connection when the instance dropped the idle one', async () => {
    for (let i = 0; i < 5; i++) {
      const res = await proxy.get('/stale')
      expect(res.status, res.body).toBe(200)
      expect(res.body).toBe('fresh')
      await sleep(250)
    }
    // The instance really dropped requests; the client never saw it.
    expect(stale.dropped()).toBeGreaterThanOrEqual(4)
  })

  it('does not replay a POST on such a connection: the client gets 502', async () => {
    await proxy.get('/stale')
    await sleep(250)
    const res = await request(`${proxy.app.proxyUrl}/stale`, { method: 'POST', body: 'once' })
    expect(res.statusCode).toBe(502)
    expect(await res.body.text()).toContain('SWY_ERR_UPSTREAM_RESET')
  })
})
