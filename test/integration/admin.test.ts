// The admin listener against the real Consul: JSON API, readiness before the
// first sync and after Consul has been away too long, liveness throughout,
// problems with since-times, the access log, and secrets kept out of every
// log line and every answer.

import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConsulAgent, freePort } from '../harness/consul-agent.js'
import { ConsulApi } from '../harness/consul-api.js'
import { describeWithConsul } from '../harness/context.js'
import { startTestProxy, type TestProxy } from '../harness/switchyard.js'
import { startUpstream, type Upstream } from '../harness/upstream.js'
import { eventually, uniqueName } from '../harness/wait.js'

const ADMIN_PATHS = [
  '/',
  '/health',
  '/ready',
  '/metrics',
  '/api/routes',
  '/api/targets',
  '/api/problems',
  '/api/config',
  '/api/watches',
]

describeWithConsul('admin API', (consul) => {
  const api = new ConsulApi(consul)
  const prefix = `${uniqueName('adm')}-`
  const targetPrefix = `switchyard/targets/${uniqueName('admin')}`
  const svc = uniqueName('web')
  const bad = uniqueName('bad')
  const retry = uniqueName('retry')
  const ids = [`${svc}-1`, `${svc}-2`, `${bad}-1`, `${retry}-dead`, `${retry}-live`]
  const upstreams: Upstream[] = []
  let proxy: TestProxy

  beforeAll(async () => {
    upstreams.push(await startUpstream('one'), await startUpstream('two'))
    await api.register({
      id: `${svc}-1`,
      name: svc,
      port: upstreams[0]!.port,
      tags: [`${prefix}/web strip=/web`],
      meta: { version: '1.5.0' },
    })
    await api.register({
      id: `${svc}-2`,
      name: svc,
      port: upstreams[1]!.port,
      tags: [`${prefix}/web strip=/web`],
      meta: { version: '1.6.0' },
    })
    await api.register({
      id: `${bad}-1`,
      name: bad,
      port: upstreams[0]!.port,
      tags: [`${prefix}/bad strip=nope`],
    })
    // One instance refuses connections: requests retry on the other, which logs at debug level.
    await api.register({
      id: `${retry}-dead`,
      name: retry,
      port: await freePort(),
      tags: [`${prefix}/retry`],
    })
    await api.register({
      id: `${retry}-live`,
      name: retry,
      port: upstreams[1]!.port,
      tags: [`${prefix}/retry`],
    })
    await api.kvPut(`${targetPrefix}/${svc}`, JSON.stringify({ version: '1.6.0' }))
    proxy = await startTestProxy(
      consul,
      {
        routing: { tagPrefix: prefix, targetPrefix },
        proxy: { accessLog: true },
        // The token in the config file too, so the config view has one to hide.
        consul: { token: consul.proxyToken },
        log: { level: 'debug' },
      },
      { token: consul.proxyToken },
    )
  })

  afterAll(async () => {
    await proxy?.stop()
    for (const id of ids) await api.deregister(id).catch(() => {})
    await api.kvDelete(`${targetPrefix}/${svc}`).catch(() => {})
    await Promise.all(upstreams.map((u) => u.close()))
  })

  it('lists routes with every instance: version, health, selection, weight, options', async () => {
    const routes = JSON.parse((await proxy.admin('/api/routes')).body) as {
      id: string
      host: string
      path: string
      services: string[]
      serving: number
      instances: {
        id: string
        version: string
        state: string
        healthy: boolean
        selected: boolean
        weight: number
        options: string
      }[]
    }[]
    const web = routes.find((r) => r.id === '/web')
    expect(web).toMatchObject({ host: '', path: '/web', services: [svc], serving: 1 })
    const byVersion = Object.fromEntries(web!.instances.map((i) => [i.version, i]))
    expect(byVersion['1.6.0']).toMatchObject({
      id: `${svc}-2`,
      state: 'serving',
      healthy: true,
      selected: true,
      weight: 1,
      options: 'strip=/web',
    })
    expect(byVersion['1.5.0']).toMatchObject({
      state: 'not-selected',
      healthy: true,
      selected: false,
      weight: 0,
    })
  })

  it('lists targets with desired, effective and readiness', async () => {
    const targets = JSON.parse((await proxy.admin('/api/targets')).body) as Record<string, unknown>[]
    expect(targets.find((t) => t.service === svc)).toMatchObject({
      key: `${targetPrefix}/${svc}`,
      desired: 'version=1.6.0',
      effective: 'version=1.6.0',
      ready: true,
      reason: '',
    })
    await api.kvPut(`${targetPrefix}/${svc}`, JSON.stringify({ version: '2.0.0' }))
    await eventually(async () => {
      const now = JSON.parse((await proxy.admin('/api/targets')).body) as Record<string, unknown>[]
      expect(now.find((t) => t.service === svc)).toMatchObject({
        desired: 'version=2.0.0',
        effective: 'version=1.6.0',
        ready: false,
      })
    })
    await api.kvPut(`${targetPrefix}/${svc}`, JSON.stringify({ version: '1.6.0' }))
    await eventually(async () => {
      const now = JSON.parse((await proxy.admin('/api/targets')).body) as Record<string, unknown>[]
      expect(now.find((t) => t.service === svc)).toMatchObject({ ready: true })
    })
  })

  it('lists problems with the time each was first seen, and warns once per problem', async () => {
    const before = Date.now()
    for (let i = 0; i < 5; i++) await proxy.get('/bad')
    const problems = JSON.parse((await proxy.admin('/api/problems')).body) as {
      code: string
      subject: string
      message: string
      source: string
      since: string
    }[]
    const tag = problems.find((p) => p.subject.includes(`${bad}-1`))
    expect(tag).toMatchObject({ code: 'SWY_ERR_TAG_SYNTAX', source: 'table' })
    expect(Date.parse(tag!.since)).toBeLessThanOrEqual(before)
    expect(Date.parse(tag!.since)).toBeGreaterThan(before - 120_000)
    // Still the same since after more swaps.
    const again = JSON.parse((await proxy.admin('/api/problems')).body) as typeof problems
    expect(again.find((p) => p.subject === tag!.subject)?.since).toBe(tag!.since)
    const warnings = proxy.logs.filter((l) => l.level === 'warn' && String(l.subject).includes(`${bad}-1`))
    expect(warnings).toHaveLength(1)
  })

  it('shows the effective config with the token redacted', async () => {
    const config = JSON.parse((await proxy.admin('/api/config')).body) as {
      consul: { token: string }
      routing: unknown
    }
    expect(config.consul.token).toBe('[redacted]')
    expect(config.routing).toMatchObject({ tagPrefix: prefix, targetPrefix })
  })

  it('writes flat access log lines without secrets, and the token appears in no log line or answer', async () => {
    const secretAuth = `Bearer ${randomUUID()}`
    const secretCookie = `session=${randomUUID()}`
    const res = await proxy.get(`/web/page?x=${randomUUID()}`, {
      authorization: secretAuth,
      cookie: secretCookie,
      'x-consul-token': consul.proxyToken,
    })
    expect(res.status).toBe(200)
    expect((await proxy.get('/nowhere', { authorization: secretAuth })).status).toBe(404)
    for (let i = 0; i < 3; i++) {
      expect((await proxy.get('/retry', { authorization: secretAuth, cookie: secretCookie })).status).toBe(
        200,
      )
    }

    const access = await eventually(() => {
      const lines = proxy.logs.filter((l) => l.msg === 'request' && l.path === '/web/page')
      expect(lines).toHaveLength(1)
      return lines[0]!
    })
    expect(access).toMatchObject({
      level: 'info',
      method: 'GET',
      path: '/web/page',
      status: 200,
      route: '/web',
      service: svc,
      version: '1.6.0',
      instance: `switchyard-test/${svc}-2`,
    })
    expect(Object.values(access).every((v) => v === null || typeof v !== 'object')).toBe(true)
    expect(proxy.logs.some((l) => l.msg === 'request' && l.path === '/nowhere' && l.route === '')).toBe(true)

    const answers = await Promise.all(ADMIN_PATHS.map((p) => proxy.admin(p)))
    const everything = [JSON.stringify(proxy.logs), ...answers.map((a) => a.body)].join('\n')
    expect(proxy.logs.some((l) => l.level === 'debug' && l.msg === 'retrying on another instance')).toBe(true)
    expect(everything).not.toContain(consul.proxyToken)
    expect(everything).not.toContain(secretAuth.slice(7))
    expect(everything).not.toContain(secretCookie.slice(8))
  })
})

describeWithConsul('readiness', (shared) => {
  describe('before the first table', () => {
    const proxies: TestProxy[] = []
    afterAll(async () => {
      await Promise.all(proxies.map((p) => p.stop()))
    })

    it('is not ready while the token cannot read Consul, but alive; the token is not shown', async () => {
      const token = randomUUID()
      const proxy = await startTestProxy(shared, {}, { token, waitLoaded: false })
      proxies.push(proxy)
      await eventually(async () => {
        const problems = JSON.parse((await proxy.admin('/api/problems')).body) as {
          code: string
          since: string
        }[]
        expect(problems.map((p) => p.code)).toContain('SWY_ERR_CONSUL_PERMISSION')
      })
      const ready = await proxy.admin('/ready')
      expect(ready.status).toBe(503)
      expect(JSON.parse(ready.body)).toMatchObject({ ready: false, generation: 0 })
      expect(JSON.parse(ready.body).reason).toContain('no routing table yet')
      expect((await proxy.admin('/health')).status).toBe(200)
      const answers = await Promise.all(ADMIN_PATHS.map((p) => proxy.admin(p)))
      expect([JSON.stringify(proxy.logs), ...answers.map((a) => a.body)].join('\n')).not.toContain(token)
    })

    it('is not ready while nothing answers at the Consul address, but alive', async () => {
      const nowhere = { ...shared, address: `http://127.0.0.1:${await freePort()}` }
      const proxy = await startTestProxy(nowhere, {}, { waitLoaded: false })
      proxies.push(proxy)
      await eventually(async () => {
        const problems = JSON.parse((await proxy.admin('/api/problems')).body) as { code: string }[]
        expect(problems.map((p) => p.code)).toContain('SWY_ERR_CONSUL_UNREACHABLE')
      })
      const ready = await proxy.admin('/ready')
      expect(ready.status).toBe(503)
      const body = JSON.parse(ready.body)
      expect(body.reason).toMatch(
        new RegExp(
          `^no routing table yet: Consul unreachable: Consul at ${nowhere.address} unreachable: ECONNREFUSED \\(watch \\w+, failing since \\S+Z\\)$`,
        ),
      )
      expect(body.cause).toMatchObject({ code: 'SWY_ERR_CONSUL_UNREACHABLE' })
      expect(body.since).toBe(body.cause.failingSince)
      expect((await proxy.admin('/')).body).toContain(
        `Consul at ${nowhere.address} unreachable: ECONNREFUSED`,
      )
      expect((await proxy.admin('/health')).status).toBe(200)
    })
  })

  describe('when Consul goes away', () => {
    const agent = new ConsulAgent(shared.binary)
    let proxy: TestProxy

    beforeAll(async () => {
      await agent.start()
      proxy = await startTestProxy(agent.info, {
        consul: { backoffInitial: '50ms', backoffMax: '200ms' },
        readiness: { maxStale: '1s' },
      })
    })

    afterAll(async () => {
      await proxy?.stop()
      await agent.destroy()
    })

    it('is ready while Consul answers, not ready once it has been away longer than maxStale, ready again after', async () => {
      expect((await proxy.admin('/ready')).status).toBe(200)
      // Taken before stopping: the watches may see the connection drop before stop() returns.
      const stoppedAt = Date.now()
      await agent.stop()
      await eventually(async () => {
        const ready = await proxy.admin('/ready')
        expect(ready.status).toBe(503)
        expect(JSON.parse(ready.body).reason).toMatch(
          /^Consul unreachable for \d+s \(limit 1s\): Consul at \S+ unreachable: \w+ \(watch \S+, since \S+Z\); serving the last table$/,
        )
      }, 15_000)
      expect(Date.now() - stoppedAt).toBeGreaterThanOrEqual(1000)
      expect((await proxy.admin('/health')).status).toBe(200)

      await agent.start()
      await eventually(async () => expect((await proxy.admin('/ready')).status).toBe(200), 15_000)
      expect((await proxy.admin('/health')).status).toBe(200)
    })
  })
})
