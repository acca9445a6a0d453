// Request counters, table gauges and the exposition, without Consul: tables
// come from the pure builder, sync status is a stub.

import { AggregatorRegistry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { accessLogLine } from '../../src/metrics/access-log.js'
import { expositionText } from '../../src/metrics/families.js'
import { SwitchyardMetrics } from '../../src/metrics/metrics.js'
import { combineObservers } from '../../src/metrics/observers.js'
import { DURATION_BUCKETS, RequestCounters } from '../../src/metrics/request-counters.js'
import { buildRouteTable } from '../../src/routing/build.js'
import type { Backend, InstanceSnapshot, Route, RouteTable, TargetEntry } from '../../src/routing/types.js'
import { TableStore } from '../../src/table/store.js'
import type { SyncStatus } from '../../src/table/sync.js'
import { parsePrometheusText, samplesOf, sampleValue } from '../integration/metrics-text.js'
import { BUILD, catalogOf, instance, requestHead, target } from './helpers.js'

const v = (version: string) => ({ meta: { version } })
const old1 = instance('shop', ['urlprefix-/shop'], v('1.5.0'))
const new1 = instance('shop', ['urlprefix-/shop'], v('1.6.0'))
const new2 = instance('shop', ['urlprefix-/shop'], v('1.6.0'))
const cart = instance('cart', ['urlprefix-/cart'], v('2.0.0'))

function build(
  instances: InstanceSnapshot[],
  previous?: RouteTable,
  targets: TargetEntry[] = [],
): RouteTable {
  return buildRouteTable(catalogOf(instances), targets, BUILD, previous).table
}

function routeOf(table: RouteTable, id: string): Route {
  const route = table.routes.find((r) => r.id === id)
  if (!route) throw new Error(`no route ${id}`)
  return route
}

function targetOf(route: Route, version: string): Backend {
  const t = route.backends.find((x) => x.version === version)
  if (!t) throw new Error(`no serving ${version} on ${route.id}`)
  return t
}

function series(counters: RequestCounters) {
  return [...counters.requestSeries()]
    .map((s) => ({ key: `${s.service} ${s.route} ${s.version}`, byClass: s.byClass.join(',') }))
    .sort((a, b) => (a.key < b.key ? -1 : 1))
}

describe('RequestCounters', () => {
  it('counts by version and status class, unrouted and route-level answers apart', () => {
    const table = build([old1, new1, cart])
    const counters = new RequestCounters()
    counters.retain(table)
    const shop = routeOf(table, '/shop')
    counters.request(shop, targetOf(shop, '1.5.0'), 200, 0.001)
    counters.request(shop, targetOf(shop, '1.6.0'), 201, 0.001)
    counters.request(shop, targetOf(shop, '1.6.0'), 502, 0.001)
    counters.request(shop, targetOf(shop, '1.6.0'), 499, 0.001)
    counters.request(shop, null, 503, 0.001)
    counters.request(null, null, 404, 0.001)
    counters.request(null, null, 400, 0.001)
    expect(series(counters)).toEqual([
      { key: '  ', byClass: '0,0,0,2,0' },
      { key: 'cart /cart ', byClass: '0,0,0,0,0' },
      { key: 'cart /cart 2.0.0', byClass: '0,0,0,0,0' },
      { key: 'shop /shop ', byClass: '0,0,0,0,1' },
      { key: 'shop /shop 1.5.0', byClass: '0,1,0,0,0' },
      { key: 'shop /shop 1.6.0', byClass: '0,1,0,1,1' },
    ])
  })

  it('puts durations in the first bucket whose bound they do not exceed, +Inf last', () => {
    const table = build([cart])
    const counters = new RequestCounters()
    counters.retain(table)
    const route = routeOf(table, '/cart')
    const t = targetOf(route, '2.0.0')
    for (const s of [0, 0.005, 0.0051, 1, 5, 5.01, 60]) counters.request(route, t, 200, s)
    const d = [...counters.durationSeries()].find((x) => x.route === '/cart')!
    expect(d.count).toBe(7)
    expect(d.sum).toBeCloseTo(71.0201, 6)
    const at = (bound: number) => d.buckets[DURATION_BUCKETS.indexOf(bound)]
    expect(at(0.005)).toBe(2)
    expect(at(0.025)).toBe(1)
    expect(at(1)).toBe(1)
    expect(at(5)).toBe(1)
    expect(d.buckets[DURATION_BUCKETS.length]).toBe(2)
  })

  it('on swap keeps the counts of label sets that remain and drops the rest', () => {
    const first = build([old1, new1, cart])
    const counters = new RequestCounters()
    counters.retain(first)
    const shop = routeOf(first, '/shop')
    const oldTarget = targetOf(shop, '1.5.0')
    const newTarget = targetOf(shop, '1.6.0')
    counters.request(shop, oldTarget, 200, 0.01)
    counters.request(shop, newTarget, 200, 0.01)
    counters.upstreamError(routeOf(first, '/cart').backends[0]!, 'timeout')

    const second = build([new1, new2], first)
    counters.retain(second)
    expect(series(counters)).toEqual([
      { key: '  ', byClass: '0,0,0,0,0' },
      { key: 'shop /shop ', byClass: '0,0,0,0,0' },
      { key: 'shop /shop 1.6.0', byClass: '0,1,0,0,0' },
    ])
    // cart vanished with its error; shop's error counts start at 0.
    expect([...counters.errorSeries()]).toEqual([{ service: 'shop', byReason: [0, 0, 0, 0] }])

    // A request that began on the first table and ends now: its series lives on, so it counts...
    counters.request(shop, newTarget, 200, 0.01)
    // ...while one whose series was dropped neither counts nor brings it back.
    counters.request(shop, oldTarget, 200, 0.01)
    counters.upstreamError(routeOf(first, '/cart').backends[0]!, 'connect')
    expect(series(counters).find((s) => s.key === 'shop /shop 1.6.0')?.byClass).toBe('0,2,0,0,0')
    expect(series(counters).some((s) => s.key.endsWith('1.5.0'))).toBe(false)
    expect([...counters.errorSeries()]).toEqual([{ service: 'shop', byReason: [0, 0, 0, 0] }])
    // Errors are per service, and shop is still there.
    counters.upstreamError(oldTarget, 'connect')
    expect([...counters.errorSeries()]).toEqual([{ service: 'shop', byReason: [1, 0, 0, 0] }])
  })

  it('counts timeouts, ejections and rejections, and drops those of vanished services on swap', () => {
    const first = build([old1, cart])
    const counters = new RequestCounters()
    counters.retain(first)
    const shopTarget = targetOf(routeOf(first, '/shop'), '1.5.0')
    const cartTarget = targetOf(routeOf(first, '/cart'), '2.0.0')
    counters.timeout('connect', shopTarget)
    counters.timeout('connect', shopTarget)
    counters.timeout('idle', cartTarget)
    counters.timeout('client-headers', null)
    counters.ejection(cartTarget)
    counters.rejected('framing')
    const counts = (it: Iterable<{ labels: Record<string, string>; n: number }>) =>
      [...it].map((c) => `${Object.values(c.labels).join(' ')} ${c.n}`).sort()
    // Every service's counters exist from the start, at 0; client-headers (no service) once it happens.
    expect(counts(counters.timeoutCounts())).toEqual([
      ' client-headers 1',
      'cart client-body 0',
      'cart connect 0',
      'cart idle 1',
      'cart queue 0',
      'cart response-headers 0',
      'shop client-body 0',
      'shop connect 2',
      'shop idle 0',
      'shop queue 0',
      'shop response-headers 0',
    ])
    expect(counts(counters.ejectionCounts())).toEqual(['cart 1', 'shop 0'])
    expect(counts(counters.rejectionCounts())).toEqual([
      'body-too-large 0',
      'framing 1',
      'h2-rapid-reset 0',
      'header 0',
      'headers-too-large 0',
      'host 0',
      'malformed 0',
      'method 0',
      'path 0',
      'request-line 0',
      'upgrade 0',
    ])

    counters.retain(build([old1], first))
    counters.timeout('idle', cartTarget)
    counters.ejection(cartTarget)
    expect(counts(counters.timeoutCounts())).toEqual([
      ' client-headers 1',
      'shop client-body 0',
      'shop connect 2',
      'shop idle 0',
      'shop queue 0',
      'shop response-headers 0',
    ])
    expect(counts(counters.ejectionCounts())).toEqual(['shop 0'])
    expect(counts(counters.rejectionCounts())).toContain('framing 1')
  })

  it('counts upstream errors per service and reason', () => {
    const table = build([old1, cart])
    const counters = new RequestCounters()
    counters.retain(table)
    const t = targetOf(routeOf(table, '/shop'), '1.5.0')
    counters.upstreamError(t, 'connect')
    counters.upstreamError(t, 'connect')
    counters.upstreamError(t, 'reset')
    expect([...counters.errorSeries()].sort((a, b) => (a.service < b.service ? -1 : 1))).toEqual([
      { service: 'cart', byReason: [0, 0, 0, 0] },
      { service: 'shop', byReason: [2, 0, 1, 0] },
    ])
  })
})

function stubStatus(overrides: Partial<SyncStatus> = {}): SyncStatus {
  return {
    loaded: true,
    staleForMs: 0,
    lastSyncAt: 1_700_000_000_000,
    watches: [
      {
        name: 'services',
        index: 5,
        requests: 3,
        errors: 2,
        consecutiveErrors: 0,
        lastSuccessAt: 1_700_000_000_000,
        failingSince: 0,
        lastError: null,
      },
    ],
    problems: [],
    ...overrides,
  }
}

function swap(store: TableStore, next: RouteTable): void {
  store.swap(next)
}

describe('SwitchyardMetrics', () => {
  it('error counters have a series per service from the start; no placeholder series with empty labels', async () => {
    const store = new TableStore()
    const metrics = new SwitchyardMetrics({ store, status: () => stubStatus(), defaultMetrics: false })
    swap(store, build([old1, cart]))
    const m = parsePrometheusText(expositionText((await metrics.text()).body))
    for (const service of ['shop', 'cart']) {
      for (const reason of ['connect', 'timeout', 'reset'])
        expect(sampleValue(m, 'switchyard_upstream_errors_total', { service, reason })).toBe(0)
      for (const kind of ['connect', 'response-headers', 'idle'])
        expect(sampleValue(m, 'switchyard_timeouts_total', { service, kind })).toBe(0)
      expect(sampleValue(m, 'switchyard_instance_ejections_total', { service })).toBe(0)
    }
    expect(
      sampleValue(m, 'switchyard_requests_total', { service: 'cart', version: '2.0.0', status_class: '5xx' }),
    ).toBe(0)
    expect(sampleValue(m, 'switchyard_rejected_requests_total', { reason: 'framing' })).toBe(0)
    const empty = [...m.values()]
      .flatMap((f) => f.samples)
      .filter((x) => x.labels.service === '' || x.labels.route === '')
    expect(empty).toEqual([])

    // Requests that matched no route do get their (empty-labelled) series, once there are some.
    metrics.observer.request(null, null, 404, 0.001, requestHead('/'))
    const after = parsePrometheusText(expositionText((await metrics.text()).body))
    expect(sampleValue(after, 'switchyard_requests_total', { route: '', status_class: '4xx' })).toBe(1)
    expect(samplesOf(after, 'switchyard_requests_total', { route: '', status_class: '5xx' })).toEqual([])
    expect(sampleValue(after, 'switchyard_request_duration_seconds_count', { route: '' })).toBe(1)
  })

  it('exposes requests, durations, table gauges and watch state as valid Prometheus text', async () => {
    const store = new TableStore()
    const metrics = new SwitchyardMetrics({ store, status: () => stubStatus(), defaultMetrics: false })
    const table = build([old1, new1, cart], undefined, [target('shop', { version: '1.6.0' })])
    swap(store, table)
    metrics.observeBuild(2.5, true)
    const shop = routeOf(table, '/shop')
    metrics.observer.request(shop, targetOf(shop, '1.6.0'), 200, 0.02, requestHead('/'))
    metrics.observer.request(null, null, 404, 0.001, requestHead('/'))

    const { contentType, body } = await metrics.text()
    expect(contentType).toBe('text/plain; version=0.0.4; charset=utf-8')
    const m = parsePrometheusText(expositionText(body))
    const shopLabels = { service: 'shop', route: '/shop' }
    expect(
      sampleValue(m, 'switchyard_requests_total', { ...shopLabels, version: '1.6.0', status_class: '2xx' }),
    ).toBe(1)
    // Not selected, never asked: its error classes are there at 0, so a 5xx ratio has a series.
    expect(
      samplesOf(m, 'switchyard_requests_total', { version: '1.5.0' })
        .map((x) => `${x.labels.status_class}=${x.value}`)
        .sort(),
    ).toEqual(['2xx=0', '4xx=0', '5xx=0'])
    expect(sampleValue(m, 'switchyard_requests_total', { route: '', status_class: '4xx' })).toBe(1)
    expect(sampleValue(m, 'switchyard_request_duration_seconds_bucket', { ...shopLabels, le: '0.025' })).toBe(
      1,
    )
    expect(sampleValue(m, 'switchyard_request_duration_seconds_bucket', { ...shopLabels, le: '0.005' })).toBe(
      0,
    )
    expect(m.get('switchyard_request_duration_seconds')?.type).toBe('histogram')
    expect(sampleValue(m, 'switchyard_route_instances_serving', { ...shopLabels, version: '1.5.0' })).toBe(0)
    expect(sampleValue(m, 'switchyard_route_instances_healthy', { ...shopLabels, version: '1.5.0' })).toBe(1)
    expect(sampleValue(m, 'switchyard_route_instances_serving', { ...shopLabels, version: '1.6.0' })).toBe(1)
    expect(sampleValue(m, 'switchyard_target_ready', { service: 'shop' })).toBe(1)
    expect(sampleValue(m, 'switchyard_table_swaps_total')).toBe(1)
    expect(sampleValue(m, 'switchyard_table_generation')).toBe(1)
    expect(sampleValue(m, 'switchyard_table_build_duration_seconds_count', { changed: 'true' })).toBe(1)
    expect(sampleValue(m, 'switchyard_consul_watch_errors_total', { watch: 'services' })).toBe(2)
    expect(
      sampleValue(m, 'switchyard_consul_watch_last_success_timestamp_seconds', { watch: 'services' }),
    ).toBe(1_700_000_000)
    expect(sampleValue(m, 'switchyard_consul_stale_seconds')).toBe(0)

    metrics.observer.timeout?.('response-headers', targetOf(shop, '1.6.0'))
    metrics.observer.passiveHealth?.(targetOf(shop, '1.6.0'), true, 5000)
    metrics.observer.passiveHealth?.(targetOf(shop, '1.6.0'), false, 0)
    metrics.observer.rejected?.('host', 400)
    const after = parsePrometheusText(expositionText((await metrics.text()).body))
    expect(
      sampleValue(after, 'switchyard_timeouts_total', { service: 'shop', kind: 'response-headers' }),
    ).toBe(1)
    expect(sampleValue(after, 'switchyard_instance_ejections_total', { service: 'shop' })).toBe(1)
    expect(sampleValue(after, 'switchyard_rejected_requests_total', { reason: 'host' })).toBe(1)
  })

  it('deletes gauge series of vanished versions and routes on swap', async () => {
    const store = new TableStore()
    const metrics = new SwitchyardMetrics({ store, status: () => stubStatus(), defaultMetrics: false })
    const first = build([old1, new1, cart])
    swap(store, first)
    swap(store, build([new1], first))
    const m = parsePrometheusText(expositionText((await metrics.text()).body))
    expect(samplesOf(m, 'switchyard_route_instances_healthy').map((s) => s.labels)).toEqual([
      { service: 'shop', route: '/shop', version: '1.6.0' },
    ])
    expect(
      samplesOf(m, 'switchyard_request_duration_seconds_count')
        .map((s) => s.labels.route)
        .sort(),
    ).toEqual(['/shop'])
    expect(sampleValue(m, 'switchyard_table_swaps_total')).toBe(2)
  })

  it('counts problems by code from the table and from Consul', async () => {
    const store = new TableStore()
    const status = stubStatus({
      staleForMs: 4200,
      problems: [{ code: 'SWY_ERR_CONSUL_UNREACHABLE', subject: 'watch services', message: 'ECONNREFUSED' }],
    })
    const metrics = new SwitchyardMetrics({ store, status: () => status, defaultMetrics: false })
    swap(store, build([instance('bad', ['urlprefix-/a strip=x', 'urlprefix-/b nope=1'])]))
    const m = parsePrometheusText(expositionText((await metrics.text()).body))
    expect(sampleValue(m, 'switchyard_problems', { code: 'SWY_ERR_CONSUL_UNREACHABLE' })).toBe(1)
    expect(sampleValue(m, 'switchyard_problems', { code: 'SWY_ERR_TAG_SYNTAX' })).toBe(1)
    expect(sampleValue(m, 'switchyard_problems', { code: 'SWY_ERR_TAG_OPTION' })).toBe(1)
    expect(sampleValue(m, 'switchyard_consul_stale_seconds')).toBe(4.2)
  })

  it("aggregates across worker registries: request counts add up, the table's gauges do not", async () => {
    const table = build([old1, new1])
    const workers = [0, 1].map(() => {
      const store = new TableStore()
      const metrics = new SwitchyardMetrics({ store, status: () => stubStatus(), defaultMetrics: false })
      swap(store, table)
      return metrics
    })
    const shop = routeOf(table, '/shop')
    const t = targetOf(shop, '1.5.0')
    workers[0]!.observer.request(shop, t, 200, 0.01, requestHead('/'))
    workers[1]!.observer.request(shop, t, 200, 0.3, requestHead('/'))
    workers[1]!.observer.request(shop, t, 200, 0.3, requestHead('/'))
    const aggregated = AggregatorRegistry.aggregate(await Promise.all(workers.map((w) => w.json())))
    const m = parsePrometheusText(await aggregated.metrics())
    const labels = { service: 'shop', route: '/shop', version: '1.5.0' }
    expect(sampleValue(m, 'switchyard_requests_total', { ...labels, status_class: '2xx' })).toBe(3)
    expect(
      sampleValue(m, 'switchyard_request_duration_seconds_count', { service: 'shop', route: '/shop' }),
    ).toBe(3)
    expect(
      sampleValue(m, 'switchyard_request_duration_seconds_bucket', {
        service: 'shop',
        route: '/shop',
        le: '0.25',
      }),
    ).toBe(1)
    expect(sampleValue(m, 'switchyard_route_instances_serving', labels)).toBe(1)
    expect(sampleValue(m, 'switchyard_table_generation')).toBe(1)
  })
})

describe('access log line', () => {
  it('has flat fields, no query string and no header but Host and User-Agent', () => {
    const table = build([cart])
    const route = routeOf(table, '/cart')
    const req = requestHead(
      '/cart/checkout?token=s3cret',
      {
        host: 'shop.example',
        'user-agent': 'curl/8',
        authorization: 'Bearer s3cret',
        cookie: 'session=s3cret',
      },
      { method: 'POST', client: { address: '10.1.2.3', localPort: 9999, proto: 'http' } },
    )
    const line = accessLogLine(route, route.backends[0]!, 201, 0.0123456, req)
    expect(line).toEqual({
      method: 'POST',
      host: 'shop.example',
      path: '/cart/checkout',
      status: 201,
      durationMs: 12.346,
      route: '/cart',
      service: 'cart',
      version: '2.0.0',
      instance: route.backends[0]!.key,
      upstream: route.backends[0]!.origin,
      client: '10.1.2.3',
      userAgent: 'curl/8',
    })
    expect(JSON.stringify(line)).not.toContain('s3cret')
    expect(Object.values(line).every((x) => typeof x !== 'object')).toBe(true)
    const unrouted = accessLogLine(null, null, 404, 0.001, req)
    expect([unrouted.route, unrouted.service, unrouted.instance]).toEqual(['', '', ''])
  })

  it('combines observers, skipping absent ones', () => {
    const calls: string[] = []
    const make = (name: string) => ({
      request: () => calls.push(`${name} request`),
      upstreamError: () => calls.push(`${name} error`),
    })
    const one = make('a')
    expect(combineObservers([one, null, undefined])).toBe(one)
    const both = combineObservers([one, null, make('b')])
    both.request(null, null, 404, 0, requestHead('/'))
    expect(calls).toEqual(['a request', 'b request'])
    // Optional hooks reach the observers that have them and skip the others.
    const ejections: string[] = []
    const withHealth = { ...make('c'), passiveHealth: (t: Backend) => ejections.push(t.key) }
    const target = routeOf(build([cart]), '/cart').backends[0]!
    combineObservers([one, withHealth]).passiveHealth?.(target, true, 1000)
    combineObservers([one, withHealth]).timeout?.('connect', target)
    expect(ejections).toEqual([target.key])
  })
})
