// Routing by urlprefix- tags and health, hot-swapped through blocking queries,
// against the real Consul agent with the proxy on the read-only token.

import { afterAll, beforeAll, expect, it } from 'vitest'
import { ConsulApi } from '../harness/consul-api.js'
import { describeWithConsul } from '../harness/context.js'
import { servedBy, startTestProxy, type TestProxy } from '../harness/switchyard.js'
import { startUpstream, type Upstream } from '../harness/upstream.js'
import { eventually, uniqueName } from '../harness/wait.js'

describeWithConsul('routing from Consul tags and health', (consul) => {
  const api = new ConsulApi(consul)
  const prefix = `${uniqueName('t')}-`
  const web = uniqueName('web')
  const apiSvc = uniqueName('api')
  const upstreams: Upstream[] = []
  let proxy: TestProxy

  beforeAll(async () => {
    const [a, b, c] = await Promise.all([
      startUpstream('web-a'),
      startUpstream('web-b'),
      startUpstream('api-1'),
    ])
    upstreams.push(a!, b!, c!)
    await api.register({ id: `${web}-a`, name: web, port: a!.port, tags: [`${prefix}/web`] })
    await api.register({ id: `${web}-b`, name: web, port: b!.port, tags: [`${prefix}/web`] })
    await api.register({ id: `${apiSvc}-1`, name: apiSvc, port: c!.port, tags: [`${prefix}api.local/`] })
    proxy = await startTestProxy(consul, { routing: { tagPrefix: prefix } })
  })

  afterAll(async () => {
    await proxy?.stop()
    for (const id of [`${web}-a`, `${web}-b`, `${apiSvc}-1`]) await api.deregister(id).catch(() => {})
    await Promise.all(upstreams.map((u) => u.close()))
  })

  it('spreads /web over both healthy instances', async () => {
    expect(await servedBy(proxy, '/web/page', 20)).toEqual(['web-a', 'web-b'])
  })

  it('routes a host route only for that Host header', async () => {
    expect((await proxy.get('/', { host: 'api.local' })).body).toBe('api-1')
    expect((await proxy.get('/anything', { host: 'API.local:80' })).body).toBe('api-1')
    const other = await proxy.get('/', { host: 'other.local' })
    expect(other.status).toBe(404)
    expect(other.headers['x-switchyard-error']).toBe('SWY_ERR_NO_ROUTE')
  })

  it('does not match /website for the route /web', async () => {
    expect((await proxy.get('/website')).status).toBe(404)
  })

  it('stops sending to an instance whose check goes critical, within a second, and takes it back', async () => {
    const started = Date.now()
    await api.setCheck(`${web}-b`, 'critical')
    await eventually(async () => {
      for (let i = 0; i < 6; i++) expect((await proxy.get('/web')).body).toBe('web-a')
    })
    const delay = Date.now() - started
    expect(delay).toBeLessThan(1000)

    await api.setCheck(`${web}-b`, 'passing')
    await eventually(async () => {
      const bodies = new Set<string>()
      for (let i = 0; i < 6; i++) bodies.add((await proxy.get('/web')).body)
      expect(bodies.has('web-b')).toBe(true)
    })
  })

  it('takes an instance in maintenance mode out at once, and back after', async () => {
    const started = Date.now()
    await api.maintenance(`${web}-a`, true)
    await eventually(async () => {
      for (let i = 0; i < 6; i++) expect((await proxy.get('/web')).body).toBe('web-b')
    })
    expect(Date.now() - started).toBeLessThan(1000)
    await api.maintenance(`${web}-a`, false)
    await eventually(async () => {
      const bodies = new Set<string>()
      for (let i = 0; i < 6; i++) bodies.add((await proxy.get('/web')).body)
      expect(bodies.has('web-a')).toBe(true)
    })
  })

  it('answers 503 with a clear body when no instance of a route is healthy', async () => {
    await api.setCheck(`${apiSvc}-1`, 'critical')
    await eventually(async () => {
      const res = await proxy.get('/', { host: 'api.local' })
      expect(res.status).toBe(503)
      expect(res.body).toContain(`no healthy instance for route api.local/ (service ${apiSvc})`)
    })
    await api.setCheck(`${apiSvc}-1`, 'passing')
    await eventually(async () => expect((await proxy.get('/', { host: 'api.local' })).status).toBe(200))
  })

  it('routes a service registered while running, and drops it when deregistered', async () => {
    const late = await startUpstream('late-1')
    upstreams.push(late)
    const name = uniqueName('late')
    await api.register({ id: `${name}-1`, name, port: late.port, tags: [`${prefix}/late`] })
    await eventually(async () => expect((await proxy.get('/late/x')).body).toBe('late-1'))
    await api.deregister(`${name}-1`)
    await eventually(async () => expect((await proxy.get('/late/x')).status).toBe(404))
  })

  it('skips and reports a malformed tag while everything else keeps routing', async () => {
    const bad = await startUpstream('bad-1')
    upstreams.push(bad)
    const name = uniqueName('bad')
    await api.register({
      id: `${name}-1`,
      name,
      port: bad.port,
      tags: [`${prefix}/bad strip=nope`, `${prefix}/good-too`],
    })
    await eventually(async () => {
      const problems = JSON.parse((await proxy.admin('/api/problems')).body) as {
        code: string
        subject: string
        message: string
      }[]
      const problem = problems.find((p) => p.subject.includes(`${name}-1`))
      expect(problem?.code).toBe('SWY_ERR_TAG_SYNTAX')
      expect(problem?.message).toContain('strip=nope')
    })
    expect((await proxy.get('/bad')).status).toBe(404)
    expect((await proxy.get('/good-too')).body).toBe('bad-1')
    expect((await proxy.get('/web')).status).toBe(200)
    await api.deregister(`${name}-1`)
  })

  it('logs each table change as a diff', async () => {
    const changes = proxy.logs.filter((l) => l.msg === 'routing table changed')
    expect(changes.length).toBeGreaterThan(0)
    const added = changes.flatMap((l) => l.added as string[])
    expect(added.some((line) => line.startsWith('route /late '))).toBe(true)
    expect(JSON.stringify(proxy.logs)).not.toContain(consul.proxyToken)
  })
})
