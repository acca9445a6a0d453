// Blue/green and canary cutover from KV target state, against the real Consul,
// with the proxy on the read-only token throughout.

import { Agent, request } from 'undici'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { ConsulApi } from '../harness/consul-api.js'
import { describeWithConsul } from '../harness/context.js'
import { startTestProxy, type TestProxy } from '../harness/switchyard.js'
import { startUpstream, type Upstream } from '../harness/upstream.js'
import { eventually, uniqueName } from '../harness/wait.js'

describeWithConsul('cutover by target state', (consul) => {
  const api = new ConsulApi(consul)
  const prefix = `${uniqueName('co')}-`
  const targetPrefix = `switchyard/targets/${uniqueName('t')}`
  const web = uniqueName('web')
  const shop = uniqueName('shop')
  const key = `${targetPrefix}/${web}`
  const upstreams: Upstream[] = []
  let proxy: TestProxy

  beforeAll(async () => {
    const [b1, b2, g1, g2, s1] = await Promise.all(
      ['blue-1', 'blue-2', 'green-1', 'green-2', 'shop-1'].map((n) => startUpstream(n)),
    )
    upstreams.push(b1!, b2!, g1!, g2!, s1!)
    await api.register({
      id: `${web}-b1`,
      name: web,
      port: b1!.port,
      tags: [`${prefix}/web`],
      meta: { version: '1.5.0' },
    })
    await api.register({
      id: `${web}-b2`,
      name: web,
      port: b2!.port,
      tags: [`${prefix}/web`],
      meta: { version: '1.5.0' },
    })
    await api.register({
      id: `${web}-g1`,
      name: web,
      port: g1!.port,
      tags: [`${prefix}/web`, 'version:1.6.0'],
    })
    await api.register({
      id: `${web}-g2`,
      name: web,
      port: g2!.port,
      tags: [`${prefix}/web`, 'version=1.6.0'],
    })
    await api.register({
      id: `${shop}-1`,
      name: shop,
      port: s1!.port,
      tags: [`${prefix}/shop`],
      meta: { version: '3.0.0' },
    })
    proxy = await startTestProxy(consul, { routing: { tagPrefix: prefix, targetPrefix } })
  })

  afterAll(async () => {
    await proxy?.stop()
    for (const id of ['b1', 'b2', 'g1', 'g2']) await api.deregister(`${web}-${id}`).catch(() => {})
    await api.deregister(`${shop}-1`).catch(() => {})
    await api.kvDelete(`${targetPrefix}?recurse`).catch(() => {})
    await Promise.all(upstreams.map((u) => u.close()))
  })

  const colour = (body: string) => body.split('-')[0]

  async function colours(n = 12): Promise<string[]> {
    const seen = new Set<string>()
    for (let i = 0; i < n; i++) seen.add(colour((await proxy.get('/web')).body) ?? '')
    return [...seen].sort()
  }

  /** Time from the KV write until the first response from the new version. */
  async function cutTo(value: object, expected: string): Promise<number> {
    const started = performance.now()
    await api.kvPut(key, JSON.stringify(value))
    for (;;) {
      if (colour((await proxy.get('/web')).body) === expected) return performance.now() - started
      if (performance.now() - started > 5_000) throw new Error(`no ${expected} response 5 s after the write`)
    }
  }

  it('without a key, both versions get traffic', async () => {
    expect(await colours()).toEqual(['blue', 'green'])
  })

  it('moves every new request to green, then back to blue, each in well under a second', async () => {
    await cutTo({ version: '1.5.0' }, 'blue')
    expect(await colours()).toEqual(['blue'])
    const toGreen = await cutTo({ version: '1.6.0' }, 'green')
    expect(await colours(20)).toEqual(['green'])
    const toBlue = await cutTo({ version: '1.5.0' }, 'blue')
    expect(await colours(20)).toEqual(['blue'])
    expect(toGreen).toBeLessThan(1000)
    expect(toBlue).toBeLessThan(1000)
    const targets = JSON.parse((await proxy.admin('/api/targets')).body) as {
      service: string
      effective: string
      ready: boolean
    }[]
    expect(targets.find((t) => t.service === web)).toMatchObject({ effective: 'version=1.5.0', ready: true })
  })

  it('under load, ten cutovers fail no request and send nothing to the old version after convergence', async () => {
    const dispatcher = new Agent({ connections: 8, keepAliveTimeout: 10_000 })
    type Sample = { start: number; end: number; colour: string; status: number }
    const samples: Sample[] = []
    let running = true
    const worker = async () => {
      while (running && samples.length < 50_000) {
        const start = performance.now()
        const res = await request(`${proxy.app.proxyUrl}/web`, { dispatcher })
        const body = await res.body.text()
        samples.push({ start, end: performance.now(), colour: colour(body) ?? '', status: res.statusCode })
      }
    }
    const workers = Array.from({ length: 8 }, worker)
    const cutovers: { at: number; to: string }[] = []
    /** Requests started after a cutover that the new version answered. */
    const answeredBy = (cut: { at: number; to: string }) =>
      samples.filter((s) => s.start >= cut.at && s.colour === cut.to).length
    try {
      for (let i = 0; i < 10; i++) {
        const to = i % 2 === 0 ? 'green' : 'blue'
        const cut = { at: performance.now(), to }
        cutovers.push(cut)
        await api.kvPut(key, JSON.stringify({ version: to === 'green' ? '1.6.0' : '1.5.0' }))
        // The next cutover waits for this one to be served, and for enough
        // requests after it to show anything stale: on a busy machine
        // convergence takes longer, but what follows it must still be clean.
        await eventually(() => expect(answeredBy(cut)).toBeGreaterThanOrEqual(50), 10_000, 5)
      }
    } finally {
      running = false
      await Promise.all(workers)
      await dispatcher.close()
    }

    expect(samples.filter((s) => s.status !== 200)).toEqual([])
    cutovers.forEach((cut, i) => {
      const until = cutovers[i + 1]?.at ?? Number.POSITIVE_INFINITY
      const window = samples.filter((s) => s.start >= cut.at && s.start < until)
      // Converged: the first answer from the new version ended.
      const converged = Math.min(...window.filter((s) => s.colour === cut.to).map((s) => s.end))
      const after = window.filter((s) => s.start > converged)
      // At most one request per worker (8) was under way when it converged.
      expect(after.length).toBeGreaterThanOrEqual(50 - 8)
      expect(after.filter((s) => s.colour !== cut.to)).toEqual([])
    })
  })

  it('splits 90/10 by version weights over 2,000 requests', async () => {
    await api.kvPut(key, JSON.stringify({ weights: { '1.5.0': 90, '1.6.0': 10 } }))
    await eventually(async () => expect(await colours(40)).toEqual(['blue', 'green']))
    const counts: Record<string, number> = { blue: 0, green: 0 }
    const dispatcher = new Agent({ connections: 4 })
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        for (let i = 0; i < 500; i++) {
          const res = await request(`${proxy.app.proxyUrl}/web`, { dispatcher })
          const c = colour(await res.body.text()) ?? ''
          counts[c] = (counts[c] ?? 0) + 1
        }
      }),
    )
    await dispatcher.close()
    expect((counts.blue ?? 0) + (counts.green ?? 0)).toBe(2000)
    // Smooth weighted round robin is exact per cycle; allow 3 points either way.
    expect(counts.green! / 2000).toBeGreaterThan(0.07)
    expect(counts.green! / 2000).toBeLessThan(0.13)
  })

  it('does not cut over to a version without a healthy instance, and moves the moment one is healthy', async () => {
    await cutTo({ version: '1.5.0' }, 'blue')
    const canary = await startUpstream('canary-1')
    upstreams.push(canary)
    await api.register({
      id: `${web}-c1`,
      name: web,
      port: canary.port,
      tags: [`${prefix}/web`],
      meta: { version: '1.7.0' },
      status: 'critical',
    })
    await api.kvPut(key, JSON.stringify({ version: '1.7.0' }))
    await eventually(async () => {
      const targets = JSON.parse((await proxy.admin('/api/targets')).body) as {
        service: string
        ready: boolean
        reason: string
      }[]
      expect(targets.find((t) => t.service === web)).toMatchObject({
        ready: false,
        reason: 'no healthy instance of version 1.7.0; serving version=1.5.0',
      })
    })
    expect(await colours(20)).toEqual(['blue'])
    const problems = JSON.parse((await proxy.admin('/api/problems')).body) as {
      code: string
      subject: string
    }[]
    expect(problems).toContainEqual(
      expect.objectContaining({ code: 'SWY_ERR_TARGET_NOT_READY', subject: `service ${web}` }),
    )

    const started = performance.now()
    await api.setCheck(`${web}-c1`, 'passing')
    await eventually(async () => expect(await colours(6)).toEqual(['canary']))
    expect(performance.now() - started).toBeLessThan(1000)
    await api.deregister(`${web}-c1`)
  })

  it.each([
    ['not json', 'invalid JSON'],
    ['{"version":"1.6.0","extra":1}', 'unknown field "extra"'],
    ['{"weights":{"1.5.0":-1}}', 'weight of "1.5.0" must be a number >= 0'],
    ['{"weights":{"1.5.0":0,"1.6.0":0}}', '"weights" must not all be zero'],
  ])(
    'a bad key (%s) keeps that service’s selection, leaves others alone and names the key',
    async (value, reason) => {
      await cutTo({ version: '1.5.0' }, 'blue')
      await api.kvPut(`${targetPrefix}/${shop}`, JSON.stringify({ version: '3.0.0' }))
      await api.kvPut(key, value)
      await eventually(async () => {
        const problems = JSON.parse((await proxy.admin('/api/problems')).body) as {
          code: string
          subject: string
          message: string
        }[]
        const p = problems.find((x) => x.code === 'SWY_ERR_TARGET_INVALID')
        expect(p?.subject).toBe(`key ${key}`)
        expect(p?.message).toContain(reason)
      })
      expect(await colours(10)).toEqual(['blue'])
      expect((await proxy.get('/shop')).body).toBe('shop-1')
      await api.kvDelete(`${targetPrefix}/${shop}`)
    },
  )
})
