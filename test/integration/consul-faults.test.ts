// Consul misbehaving while the proxy carries traffic: 500s, a lost leader,
// requests that never answer, X-Consul-Index 0, and the agent restarted (its
// index starting over, lower). Through all of it the last table keeps
// serving every request, the watchers send Consul a bounded number of
// requests per second (no busy loop), and changes made afterwards are
// picked up (resync).

import { afterAll, beforeAll, expect, it } from 'vitest'
import { ConsulAgent } from '../harness/consul-agent.js'
import { ConsulApi } from '../harness/consul-api.js'
import { type ConsulFault, ConsulRelay } from '../harness/consul-relay.js'
import { describeWithConsul } from '../harness/context.js'
import { sleep } from '../harness/proxy-tools.js'
import { startTestProxy, type TestProxy } from '../harness/switchyard.js'
import { startUpstream, type Upstream } from '../harness/upstream.js'
import { eventually } from '../harness/wait.js'

/**
 * Requests per second to Consul that the 3 watches here may not exceed. A busy
 * loop would send about 600 (minInterval 5 ms); backoff from 100 ms keeps
 * them near 9, so 20 leaves room for a busy machine without hiding a loop.
 */
const MAX_RATE = 20

describeWithConsul('Consul faults under load', (shared) => {
  const agent = new ConsulAgent(shared.binary)
  const upstreams = new Map<string, Upstream>()
  const registered: string[] = []
  let relay: ConsulRelay
  let api: ConsulApi
  let proxy: TestProxy

  async function register(name: string): Promise<void> {
    let upstream = upstreams.get(name)
    if (!upstream) {
      upstream = await startUpstream(name)
      upstreams.set(name, upstream)
    }
    await api.register({ id: `web-${name}`, name: 'web', port: upstream.port, tags: ['urlprefix-/web'] })
    if (!registered.includes(name)) registered.push(name)
  }

  beforeAll(async () => {
    await agent.start()
    api = new ConsulApi(agent.info)
    relay = await ConsulRelay.start(agent.address)
    await register('a')
    await register('b')
    proxy = await startTestProxy(
      { ...agent.info, address: relay.address },
      {
        // wait 1s: the client timeout of a blocking query is then about 6 s.
        consul: { wait: '1s', minInterval: '5ms', backoffInitial: '100ms', backoffMax: '1s' },
        log: { level: 'warn' },
      },
    )
  })

  afterAll(async () => {
    await proxy?.stop()
    await relay?.close()
    await agent.destroy()
    await Promise.all([...upstreams.values()].map((u) => u.close()))
  })

  /** Runs steady traffic while `during` runs; every request must succeed. */
  async function underLoad(during: () => Promise<void>): Promise<{ requests: number; served: Set<string> }> {
    let stop = false
    let requests = 0
    const served = new Set<string>()
    const failures: string[] = []
    const worker = async () => {
      while (!stop) {
        const res = await proxy.get('/web')
        requests++
        if (res.status === 200) served.add(res.body)
        else failures.push(`${res.status} ${res.body}`)
        await sleep(10)
      }
    }
    const workers = [worker(), worker()]
    try {
      await during()
    } finally {
      stop = true
      await Promise.all(workers)
    }
    expect(failures).toEqual([])
    return { requests, served }
  }

  /** Holds `fault` for `ms` and returns the request rate Consul saw meanwhile. */
  async function hold(fault: ConsulFault, ms: number): Promise<number> {
    relay.setFault(fault)
    const from = Date.now()
    await sleep(ms)
    return relay.count(from) / (ms / 1000)
  }

  async function resyncs(name: string): Promise<void> {
    relay.setFault('none')
    await register(name)
    await eventually(async () => {
      const seen = new Set<string>()
      for (let i = 0; i < 12; i++) seen.add((await proxy.get('/web')).body)
      expect(seen.has(name)).toBe(true)
    }, 10_000)
  }

  it('sends Consul a few requests per second while all is well', async () => {
    const rate = await hold('none', 2_000)
    expect(rate).toBeLessThan(MAX_RATE)
  })

  it('keeps serving through 500s without a busy loop, then resyncs', async () => {
    let rate = 0
    const { requests } = await underLoad(async () => {
      rate = await hold('error-500', 3_000)
    })
    expect(requests).toBeGreaterThan(50)
    expect(rate).toBeLessThan(MAX_RATE)
    expect(proxy.logs.some((l) => l.msg === 'consul watch failing')).toBe(true)
    await resyncs('c')
  })

  it('keeps serving through a lost leader, then resyncs', async () => {
    let rate = 0
    await underLoad(async () => {
      relay.setFault('no-leader')
      const from = Date.now()
      await sleep(2_000)
      // A watch notices when its blocking query (wait 1 s) ends; on a busy machine, later.
      await eventually(
        () => expect(proxy.logs.some((l) => String(l.err).includes('No cluster leader'))).toBe(true),
        10_000,
        100,
      )
      rate = relay.count(from) / ((Date.now() - from) / 1000)
    })
    expect(rate).toBeLessThan(MAX_RATE)
    await resyncs('d')
  })

  it('keeps serving while Consul does not answer at all (its requests time out), then resyncs', async () => {
    const before = proxy.logs.length
    let rate = 0
    await underLoad(async () => {
      // The client timeout is wait + wait/16 + 5 s ≈ 6.1 s; undici's coarse
      // timers and a busy machine may add seconds, so wait for the failure.
      relay.setFault('hang')
      const from = Date.now()
      // Long enough for every watch's request in flight to time out once.
      await sleep(8_000)
      await eventually(
        () => expect(proxy.logs.slice(before).some((l) => l.msg === 'consul watch failing')).toBe(true),
        25_000,
        100,
      )
      rate = relay.count(from) / ((Date.now() - from) / 1000)
    })
    // One hanging request per watch, then a retry after the timeout: nowhere near a loop.
    expect(rate).toBeLessThan(2)
    await resyncs('e')
  }, 45_000)

  it('does not busy-loop on X-Consul-Index 0, keeps serving and still follows changes', async () => {
    let rate = 0
    await underLoad(async () => {
      rate = await hold('index-zero', 3_000)
    })
    expect(rate).toBeLessThan(MAX_RATE)
    // Changes still arrive while every answer carries index 0.
    relay.setFault('index-zero')
    await register('f')
    await eventually(async () => {
      const seen = new Set<string>()
      for (let i = 0; i < 14; i++) seen.add((await proxy.get('/web')).body)
      expect(seen.has('f')).toBe(true)
    }, 10_000)
    relay.setFault('none')
  })

  it('keeps serving while the agent restarts (index reset lower), then resyncs', async () => {
    const indexBefore = Number((await api.call('GET', '/v1/catalog/services')).headers.get('x-consul-index'))
    let rate = 0
    await underLoad(async () => {
      relay.setFault('refuse')
      await agent.stop()
      rate = await hold('refuse', 2_000)
      await agent.start()
      // A dev agent restarts empty: restore the catalog before the proxy can see it again.
      for (const name of registered) await register(name)
      relay.setFault('none')
      await sleep(1_000)
    })
    expect(rate).toBeLessThan(MAX_RATE)
    const indexAfter = Number((await api.call('GET', '/v1/catalog/services')).headers.get('x-consul-index'))
    expect(indexAfter).toBeLessThan(indexBefore)
    await resyncs('g')
    expect((await proxy.admin('/ready')).status).toBe(200)
  }, 30_000)
})
