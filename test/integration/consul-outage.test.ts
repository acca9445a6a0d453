// Consul goes away while the proxy runs: the last table keeps serving, /ready
// says how stale it is, and when Consul returns (a dev agent restarts empty,
// so its index goes backwards) the changes made meanwhile are picked up.

import { afterAll, beforeAll, expect, it } from 'vitest'
import { ConsulAgent } from '../harness/consul-agent.js'
import { ConsulApi } from '../harness/consul-api.js'
import { describeWithConsul } from '../harness/context.js'
import { servedBy, startTestProxy, type TestProxy } from '../harness/switchyard.js'
import { startUpstream, type Upstream } from '../harness/upstream.js'
import { eventually } from '../harness/wait.js'

describeWithConsul('Consul outage', (shared) => {
  const agent = new ConsulAgent(shared.binary)
  const upstreams: Upstream[] = []
  let proxy: TestProxy
  let api: ConsulApi

  beforeAll(async () => {
    await agent.start()
    api = new ConsulApi(agent.info)
    upstreams.push(await startUpstream('a'), await startUpstream('b'), await startUpstream('c'))
    for (const u of upstreams.slice(0, 2))
      await api.register({ id: `web-${u.name}`, name: 'web', port: u.port, tags: ['urlprefix-/web'] })
    proxy = await startTestProxy(agent.info, {
      consul: { backoffInitial: '50ms', backoffMax: '200ms' },
      readiness: { maxStale: '1s' },
    })
  })

  afterAll(async () => {
    await proxy?.stop()
    await agent.destroy()
    await Promise.all(upstreams.map((u) => u.close()))
  })

  const served = () => servedBy(proxy, '/web', 8)

  it('keeps serving the last table while Consul is down, and reports staleness', async () => {
    expect(await served()).toEqual(['a', 'b'])
    expect((await proxy.admin('/ready')).status).toBe(200)

    // Taken before the stop: the watches may notice the agent going away before stop() returns.
    const downSince = Date.now()
    await agent.stop()
    await eventually(async () => {
      const ready = await proxy.admin('/ready')
      expect(ready.status).toBe(503)
      expect(JSON.parse(ready.body).reason).toContain('Consul unreachable')
    }, 10_000)
    expect(Date.now() - downSince).toBeGreaterThanOrEqual(1000)
    expect(await served()).toEqual(['a', 'b'])
    expect((await proxy.admin('/health')).status).toBe(200)
    const problems = JSON.parse((await proxy.admin('/api/problems')).body) as { code: string }[]
    expect(problems.map((p) => p.code)).toContain('SWY_ERR_CONSUL_UNREACHABLE')
  })

  it('picks up changes made while it was away once Consul is back', async () => {
    await agent.start()
    // The restarted dev agent is empty: register the new state (b gone, c new).
    await api.register({ id: 'web-a', name: 'web', port: upstreams[0]!.port, tags: ['urlprefix-/web'] })
    await api.register({ id: 'web-c', name: 'web', port: upstreams[2]!.port, tags: ['urlprefix-/web'] })
    await eventually(async () => expect(await served()).toEqual(['a', 'c']), 15_000)
    await eventually(async () => expect((await proxy.admin('/ready')).status).toBe(200), 5_000)
    expect(proxy.logs.some((l) => l.msg === 'consul watch recovered')).toBe(true)
  })
})
