// Switchyard only ever reads Consul, with the read-only policy shipped in
// config/acl/. What happens when a token lacks a permission, at start and later.

import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { ConsulApi } from '../harness/consul-api.js'
import { describeWithConsul } from '../harness/context.js'
import { startTestProxy, type TestProxy } from '../harness/switchyard.js'
import { registerVersions, type Upstream } from '../harness/upstream.js'
import { eventually, uniqueName } from '../harness/wait.js'

const PROXY_POLICY = readFileSync(new URL('../../config/acl/switchyard-proxy.hcl', import.meta.url), 'utf8')
const CATALOG_ONLY = 'service_prefix "" { policy = "read" }\nnode_prefix "" { policy = "read" }\n'

describeWithConsul('ACL tokens', (consul) => {
  const api = new ConsulApi(consul)
  const prefix = `${uniqueName('acl')}-`
  const targetPrefix = `switchyard/targets/${uniqueName('t')}`
  const web = uniqueName('web')
  const upstreams: Upstream[] = []
  const proxies: TestProxy[] = []

  beforeAll(async () => {
    upstreams.push(
      ...(await registerVersions(api, web, `${prefix}/web`, [
        { id: `${web}-b`, answer: 'blue', version: '1' },
        { id: `${web}-g`, answer: 'green', version: '2' },
      ])),
    )
  })

  afterAll(async () => {
    await Promise.all(proxies.map((p) => p.stop()))
    await api.deregister(`${web}-b`)
    await api.deregister(`${web}-g`)
    await Promise.all(upstreams.map((u) => u.close()))
  })

  it('the proxy token (config/acl/switchyard-proxy.hcl) cannot write target state', async () => {
    const asProxy = new ConsulApi(consul, consul.proxyToken)
    const write = await asProxy.call('PUT', `/v1/kv/${targetPrefix}/${web}`, '{"version":"2"}')
    expect(write.status).toBe(403)
    const register = await asProxy.call('PUT', '/v1/agent/service/register', { Name: 'intruder', Port: 1 })
    expect(register.status).toBe(403)
  })

  it('a token that cannot read the target prefix stops start-up with a clear error; readiness stays false', async () => {
    const { secret } = await api.createToken(uniqueName('no-kv'), CATALOG_ONLY)
    const proxy = await startTestProxy(
      consul,
      { routing: { tagPrefix: prefix, targetPrefix } },
      { token: secret, waitLoaded: false },
    )
    proxies.push(proxy)
    await eventually(() => {
      const line = proxy.logs.find(
        (l) => l.code === 'SWY_ERR_CONSUL_PERMISSION' && String(l.err).includes(`${targetPrefix}/`),
      )
      expect(line?.level).toBe('error')
      expect(line?.err).toMatch(
        new RegExp(`^token cannot read key prefix ${targetPrefix}/: 403 Permission denied`),
      )
    })
    const ready = await proxy.admin('/ready')
    expect(ready.status).toBe(503)
    // The body names the cause, the prefix and since when, not only "waiting".
    const body = JSON.parse(ready.body)
    expect(body.reason).toMatch(
      new RegExp(
        `^no routing table yet: the token lacks a permission \\(see config/acl/switchyard-proxy\\.hcl\\): token cannot read key prefix ${targetPrefix}/: 403 Permission denied.* \\(watch targets, failing since \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z\\)$`,
      ),
    )
    expect(body.cause).toMatchObject({ code: 'SWY_ERR_CONSUL_PERMISSION', watch: 'targets' })
    expect(Date.parse(body.since)).toBeLessThanOrEqual(Date.now())
    const page = await proxy.admin('/')
    expect(page.body).toContain(`token cannot read key prefix ${targetPrefix}/: 403 Permission denied`)
    const res = await proxy.get('/web')
    expect(res.status).toBe(503)
    expect(res.body).toContain('no routing table yet')
  })

  it('a token revoked at run time keeps the last table serving and is reported', async () => {
    const { accessor, secret } = await api.createToken(uniqueName('revoked'), PROXY_POLICY)
    await api.kvPut(`${targetPrefix}/${web}`, '{"version":"1"}')
    const proxy = await startTestProxy(
      consul,
      { routing: { tagPrefix: prefix, targetPrefix }, consul: { wait: '2s' } },
      { token: secret },
    )
    proxies.push(proxy)
    expect((await proxy.get('/web')).body).toBe('blue')

    // Rotated without telling the proxy, or deleted by mistake. Consul checks a
    // token when a blocking read starts, so the read in flight ends by its wait
    // time at the latest; the next one is refused and reported.
    await api.deleteToken(accessor)
    await eventually(async () => {
      const problems = JSON.parse((await proxy.admin('/api/problems')).body) as {
        code: string
        subject: string
        message: string
      }[]
      const p = problems.find((x) => x.subject === 'watch targets')
      expect(p).toMatchObject({
        code: 'SWY_ERR_CONSUL_PERMISSION',
        message: expect.stringContaining('403 ACL not found'),
      })
    }, 10_000)
    // A deploy now writes a new target the proxy cannot read: the last table keeps serving.
    const targetErrors = async () => {
      const watches = JSON.parse((await proxy.admin('/api/watches')).body) as {
        name: string
        errors: number
      }[]
      return watches.find((w) => w.name === 'targets')?.errors ?? 0
    }
    const errorsBefore = await targetErrors()
    await api.kvPut(`${targetPrefix}/${web}`, '{"version":"2"}')
    // Two more refused reads: at most one was in flight during the write, so the
    // other started after it, and would have seen version 2 with a valid token.
    await eventually(
      async () => expect(await targetErrors()).toBeGreaterThanOrEqual(errorsBefore + 2),
      10_000,
    )
    for (let i = 0; i < 5; i++) expect((await proxy.get('/web')).body).toBe('blue')
    const targets = JSON.parse((await proxy.admin('/api/targets')).body) as {
      service: string
      effective: string
    }[]
    expect(targets.find((t) => t.service === web)?.effective).toBe('version=1')
  })
})
