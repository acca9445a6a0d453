// Reading per-version traffic back from Switchyard's own metrics: what the
// status page shows and what `switchyard rollout` checks a step against.

import { describe, expect, it, vi } from 'vitest'
import { expositionText } from '../../src/metrics/families.js'
import { SwitchyardMetrics } from '../../src/metrics/metrics.js'
import {
  addTraffic,
  parsePrometheusText,
  quantile,
  summarize,
  trafficByVersion,
  trafficSince,
  VERSION_TRAFFIC_METRICS,
} from '../../src/metrics/scrape.js'
import { buildRouteTable } from '../../src/routing/build.js'
import type { Route } from '../../src/routing/types.js'
import { TableStore } from '../../src/table/store.js'
import type { SyncStatus } from '../../src/table/sync.js'
import { BUILD, instance, target } from './helpers.js'

const status = (): SyncStatus => ({ loaded: true, staleForMs: 0, lastSyncAt: 0, watches: [], problems: [] })

describe('parsePrometheusText', () => {
  it('reads names, labels (with escapes) and values', () => {
    const samples = parsePrometheusText(
      [
        '# HELP x y',
        'plain 3',
        'with{a="1",b="q\\"uote\\\\"} 2.5',
        'inf{le="+Inf"} +Inf',
        'broken{a="1"}',
        '',
      ].join('\n'),
    )
    expect(samples).toEqual([
      { name: 'plain', labels: {}, value: 3 },
      { name: 'with', labels: { a: '1', b: 'q"uote\\' }, value: 2.5 },
      { name: 'inf', labels: { le: '+Inf' }, value: Number.POSITIVE_INFINITY },
    ])
  })
})

describe('parsePrometheusText, some metrics only', () => {
  it('keeps the samples of the named metrics, not those of names that merely start alike', () => {
    const text = ['# HELP a x', 'a 1', 'ab 2', 'a{x="1"} 3', 'b 4', '', 'a_sum 5'].join('\n')
    expect(parsePrometheusText(text, ['a', 'a_sum'])).toEqual([
      { name: 'a', labels: {}, value: 1 },
      { name: 'a', labels: { x: '1' }, value: 3 },
      { name: 'a_sum', labels: {}, value: 5 },
    ])
    expect(parsePrometheusText(text, [])).toEqual([])
  })
})

describe('quantile', () => {
  // Buckets: 0.005 0.025 0.05 0.1 0.25 0.5 1 5 +Inf (cumulative counts).
  it('interpolates within the bucket the rank falls in, as histogram_quantile does', () => {
    // All 100 in (25ms, 50ms]: rank 99 is 99 % of the way through that bucket.
    expect(quantile(0.99, [0, 0, 100, 100, 100, 100, 100, 100, 100])).toBeCloseTo(0.04975, 6)
    expect(quantile(0.5, [0, 0, 100, 100, 100, 100, 100, 100, 100])).toBeCloseTo(0.0375, 6)
    expect(quantile(0.99, [90, 90, 90, 90, 90, 90, 90, 90, 100])).toBe(5)
    expect(quantile(0.99, [0, 0, 0, 0, 0, 0, 0, 0, 0])).toBeNull()
  })
})

describe('per-version traffic from the metrics of a real table', () => {
  const instances = [
    instance('web', ['urlprefix-/web'], { meta: { version: '1.6.0' } }),
    instance('web', ['urlprefix-/w2'], { meta: { version: '1.6.0' } }),
    instance('web', ['urlprefix-/web'], { meta: { version: '1.7.0' } }),
  ]
  const { table } = buildRouteTable(
    { services: new Map([['web', instances]]) },
    [target('web', { weights: { '1.6.0': 50, '1.7.0': 50 } })],
    BUILD,
  )
  const store = new TableStore()
  store.swap(table)
  const metrics = new SwitchyardMetrics({ store, status, defaultMetrics: false })
  const route = (id: string) => table.routes.find((r) => r.id === id) as Route
  const backend = (id: string, version: string) =>
    route(id).backends.find((b) => b.version === version) as Route['backends'][number]

  it('adds up routes per version, counts 5xx as errors and estimates p99 from the version histogram', async () => {
    const read = async () =>
      trafficByVersion(parsePrometheusText(expositionText((await metrics.text()).body)), 'web')
    const before = await read()
    for (let i = 0; i < 95; i++)
      metrics.observer.request(route('/web'), backend('/web', '1.7.0'), 200, 0.01, null as never)
    for (let i = 0; i < 5; i++)
      metrics.observer.request(route('/web'), backend('/web', '1.7.0'), 500, 0.4, null as never)
    for (let i = 0; i < 50; i++)
      metrics.observer.request(route('/web'), backend('/web', '1.6.0'), 200, 0.01, null as never)
    for (let i = 0; i < 50; i++)
      metrics.observer.request(route('/w2'), backend('/w2', '1.6.0'), 404, 0.02, null as never)
    // An answer decided before any instance was picked belongs to no version.
    metrics.observer.request(route('/web'), null, 503, 0.001, null as never)
    const after = await read()
    const canary = summarize(
      trafficSince(after.get('web')?.get('1.7.0') as never, before.get('web')?.get('1.7.0')),
    )
    const stable = summarize(
      trafficSince(after.get('web')?.get('1.6.0') as never, before.get('web')?.get('1.6.0')),
    )
    expect(canary).toMatchObject({ requests: 100, errors: 5, errorRate: 0.05 })
    expect(canary.p99).toBeGreaterThan(0.25)
    expect(canary.p99).toBeLessThanOrEqual(0.5)
    expect(stable).toMatchObject({ requests: 100, errors: 0, errorRate: 0 })
    expect(stable.p99).toBeLessThanOrEqual(0.025)
    expect([...(after.get('web')?.keys() ?? [])].sort()).toEqual(['1.6.0', '1.7.0'])

    // The metrics trafficByVersion reads are all it needs.
    const text = expositionText((await metrics.text()).body)
    expect(trafficByVersion(parsePrometheusText(text, VERSION_TRAFFIC_METRICS))).toEqual(
      trafficByVersion(parsePrometheusText(text)),
    )

    // Two proxies' scrapes add up; a counter that went down means a restart.
    const both = addTraffic(addTraffic(new Map(), after), after)
    expect(both.get('web')?.get('1.7.0')?.requests).toBe(200)
    const restarted = trafficSince(before.get('web')?.get('1.7.0') as never, after.get('web')?.get('1.7.0'))
    expect(restarted.requests).toBe(before.get('web')?.get('1.7.0')?.requests)
  })
})

/** One service with one version-2.0 instance, its metrics, and a VersionTraffic on a clock the test moves. */
async function shopTraffic() {
  const { VersionTraffic } = await import('../../src/admin/version-traffic.js')
  const instances = [instance('shop', ['urlprefix-/shop'], { meta: { version: '2.0' } })]
  const { table } = buildRouteTable({ services: new Map([['shop', instances]]) }, [], BUILD)
  const store = new TableStore()
  store.swap(table)
  const metrics = new SwitchyardMetrics({ store, status, defaultMetrics: false })
  const route = table.routes[0] as Route
  const backend = route.backends[0] as Route['backends'][number]
  let now = 1_000_000
  const clock = { now: () => now, sleep: async () => {} }
  const traffic = new VersionTraffic(() => metrics.text(), clock)
  const advance = (ms: number) => {
    now += ms
  }
  return { metrics, route, backend, traffic, advance }
}

describe('VersionTraffic (status page and /api/targets)', () => {
  it('shows totals at once and the last minute once readings are far enough apart', async () => {
    const { metrics, route, backend, traffic, advance } = await shopTraffic()
    for (let i = 0; i < 10; i++) metrics.observer.request(route, backend, 200, 0.01, null as never)
    const first = (await traffic.view()).get('shop')
    expect(first).toEqual([{ version: '2.0', requests: 10, successRate: 1, p99Ms: 24.8, recent: null }])
    advance(30_000)
    for (let i = 0; i < 3; i++) metrics.observer.request(route, backend, 503, 0.01, null as never)
    metrics.observer.request(route, backend, 200, 0.01, null as never)
    const later = (await traffic.view()).get('shop')?.[0]
    expect(later).toMatchObject({
      requests: 14,
      recent: { seconds: 30, requests: 4, requestsPerSecond: 0.13, successRate: 0.25 },
    })
    traffic.stop()
  })

  it('gives a version that had no traffic at the earlier reading all its traffic as recent', async () => {
    const { metrics, route, backend, traffic, advance } = await shopTraffic()
    expect((await traffic.view()).get('shop')).toEqual([
      { version: '2.0', requests: 0, successRate: null, p99Ms: null, recent: null },
    ])
    advance(10_000)
    for (let i = 0; i < 4; i++) metrics.observer.request(route, backend, 200, 0.01, null as never)
    expect((await traffic.view()).get('shop')?.[0]).toEqual({
      version: '2.0',
      requests: 4,
      successRate: 1,
      p99Ms: 24.8,
      recent: { seconds: 10, requests: 4, requestsPerSecond: 0.4, successRate: 1, p99Ms: 24.8 },
    })
    traffic.stop()
  })

  it('reads the metrics in the background only while someone looks, and for two minutes after', async () => {
    const { VersionTraffic } = await import('../../src/admin/version-traffic.js')
    vi.useFakeTimers()
    try {
      // The fake timers move Date.now() along with them.
      const clock = { now: () => Date.now(), sleep: async () => {} }
      let reads = 0
      const traffic = new VersionTraffic(async () => {
        reads++
        return { body: '' }
      }, clock)
      const wait = (ms: number) => vi.advanceTimersByTimeAsync(ms)
      await wait(60_000)
      expect(reads).toBe(0)
      await traffic.view()
      expect(reads).toBe(1)
      await wait(30_000)
      // Every 5 s while watched.
      expect(reads).toBe(7)
      await wait(200_000)
      const stoppedAt = reads
      // Two minutes after the view, at most a reading or two more.
      expect(stoppedAt).toBeLessThanOrEqual(7 + 120 / 5 + 1)
      await wait(60_000)
      expect(reads).toBe(stoppedAt)
      traffic.stop()
    } finally {
      vi.useRealTimers()
    }
  })
})
