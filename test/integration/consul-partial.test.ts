// One service's health cannot be read when Switchyard starts: its routes must
// answer 503, never fall through to another service's shorter route, and turn
// normal as soon as its health can be read.

import { afterAll, beforeAll, expect, it } from 'vitest'
import { ConsulApi } from '../harness/consul-api.js'
import { ConsulRelay } from '../harness/consul-relay.js'
import { describeWithConsul } from '../harness/context.js'
import { startTestProxy, type TestProxy } from '../harness/switchyard.js'
import { startUpstream, type Upstream } from '../harness/upstream.js'
import { eventually, uniqueName } from '../harness/wait.js'

describeWithConsul('a service whose health cannot be read at start', (consul) => {
  const api = new ConsulApi(consul)
  const prefix = `${uniqueName('pt')}-`
  const front = uniqueName('front')
  const back = uniqueName('api')
  const upstreams: Upstream[] = []
  let relay: ConsulRelay
  let proxy: TestProxy

  beforeAll(async () => {
    upstreams.push(await startUpstream('front'), await startUpstream('api'))
    await api.register({ id: `${front}-1`, name: front, port: upstreams[0]!.port, tags: [`${prefix}/`] })
    await api.register({ id: `${back}-1`, name: back, port: upstreams[1]!.port, tags: [`${prefix}/api`] })
    relay = await ConsulRelay.start(consul.address)
    relay.failPaths = new RegExp(`^/v1/health/service/${back}\\b`)
    proxy = await startTestProxy({ ...consul, address: relay.address }, { routing: { tagPrefix: prefix } })
  })

  afterAll(async () => {
    await proxy?.stop()
    await relay?.close()
    await api.deregister(`${front}-1`)
    await api.deregister(`${back}-1`)
    await Promise.all(upstreams.map((u) => u.close()))
  })

  it('answers 503 on its routes instead of sending them to another service', async () => {
    expect((await proxy.get('/')).body).toBe('front')
    const res = await proxy.get('/api/orders')
    expect(res.status).toBe(503)
    expect(res.body).toContain(`no healthy instance for route /api (service ${back})`)
    const problems = JSON.parse((await proxy.admin('/api/problems')).body) as {
      code: string
      subject: string
    }[]
    expect(problems).toContainEqual(
      expect.objectContaining({ code: 'SWY_ERR_SERVICE_NOT_LOADED', subject: `service ${back}` }),
    )
  })

  it('routes it as soon as its health can be read', async () => {
    relay.failPaths = null
    await eventually(async () => expect((await proxy.get('/api/orders')).body).toBe('api'), 10_000)
  })
})
