// A Consul server (a data folder, not -dev: it comes back with its catalog,
// KV, tokens and index) is stopped for 20 s while the proxy serves, then
// restarted. By then every watch has backed off for seconds; still, a target
// written as soon as Consul answers is served within a second, because the
// first watch to get an answer wakes all the others.
//
// The instances are registered in the catalog on a node of their own, as the
// agents on application hosts register them in production: restarting the
// server then leaves them and their passing checks as they were. (Registered
// through this agent, they would be re-synced on restart with their TTL checks
// critical until the next update.)

import { afterAll, beforeAll, expect, it } from 'vitest'
import { ConsulAgent } from '../harness/consul-agent.js'
import { ConsulApi } from '../harness/consul-api.js'
import { describeWithConsul } from '../harness/context.js'
import { sleep } from '../harness/proxy-tools.js'
import { servedBy, startTestProxy, type TestProxy } from '../harness/switchyard.js'
import { startUpstream, type Upstream } from '../harness/upstream.js'
import { eventually } from '../harness/wait.js'

const OUTAGE_MS = 20_000

describeWithConsul('Consul server restart', (shared) => {
  const agent = new ConsulAgent(shared.binary, { server: true })
  const key = 'switchyard/targets/web'
  const upstreams: Upstream[] = []
  let proxy: TestProxy
  let api: ConsulApi

  beforeAll(async () => {
    await agent.start()
    api = new ConsulApi(agent.info)
    for (const [colour, version] of [
      ['blue', '1'],
      ['green', '2'],
    ] as const) {
      const upstream = await startUpstream(colour)
      upstreams.push(upstream)
      const res = await api.call('PUT', '/v1/catalog/register', {
        Node: 'app-host',
        Address: '127.0.0.1',
        Service: {
          ID: `web-${colour}`,
          Service: 'web',
          Port: upstream.port,
          Tags: ['urlprefix-/web'],
          Meta: { version },
        },
        Check: { CheckID: `web-${colour}`, Name: 'app', ServiceID: `web-${colour}`, Status: 'passing' },
      })
      expect(res.status).toBe(200)
    }
    await api.kvPut(key, '{"version":"1"}')
    // The shipped backoff (250 ms doubling up to 30 s), not the harness's short one.
    proxy = await startTestProxy(agent.info, {
      consul: { backoffInitial: '250ms', backoffMax: '30s' },
      log: { level: 'info' },
    })
  })

  afterAll(async () => {
    await proxy?.stop()
    await agent.destroy()
    await Promise.all(upstreams.map((u) => u.close()))
  })

  const served = () => servedBy(proxy, '/web', 6)

  it('serves a target written right after a 20 s outage within a second', async () => {
    expect(await served()).toEqual(['blue'])

    await agent.stop()
    const stoppedAt = Date.now()
    // Down long enough for every watch's backoff to grow to several seconds;
    // the last table serves throughout.
    while (Date.now() - stoppedAt < OUTAGE_MS) {
      expect(await servedBy(proxy, '/web', 2)).toEqual(['blue'])
      await sleep(1_000)
    }
    const failing = proxy.logs.filter((l) => l.msg === 'consul watch failing').map((l) => l.watch)
    expect(new Set(failing)).toEqual(new Set(['services', 'health:web', 'targets', 'fabio']))

    await agent.start()
    // As soon as the server answers writes (a leader is elected), a deploy moves traffic.
    await eventually(() => api.kvPut(key, '{"version":"2"}'), 30_000, 20)
    const writtenAt = Date.now()
    await eventually(async () => expect(await servedBy(proxy, '/web', 4)).toEqual(['green']), 5_000, 10)
    const servedAfterMs = Date.now() - writtenAt
    // When each watch got its first answer, relative to the write: what to read when this fails.
    const recovered = proxy.logs
      .filter((l) => l.msg === 'consul watch recovered')
      .map((l) => `${l.watch} ${Date.parse(String(l.time)) - writtenAt} ms`)
      .join(', ')
    process.stdout.write(
      `consul restart: target served ${servedAfterMs} ms after the write (recovered: ${recovered})\n`,
    )
    expect(servedAfterMs).toBeLessThan(1_000)

    // Every watch is back, not only the one that carried the target.
    await eventually(async () => {
      const watches = JSON.parse((await proxy.admin('/api/watches')).body) as {
        name: string
        failingSince: string | null
      }[]
      expect(watches.filter((w) => w.failingSince !== null)).toEqual([])
    }, 2_000)
    expect((await proxy.admin('/ready')).status).toBe(200)
  }, 90_000)
})
