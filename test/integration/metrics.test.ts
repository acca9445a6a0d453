// /metrics against the real Consul: per-version request counts after traffic
// through two versions of one service, table gauges, watch metrics, and the
// series of a vanished version and route deleted on the next swap.

import { afterAll, beforeAll, expect, it } from 'vitest'
import { freePort } from '../harness/consul-agent.js'
import { ConsulApi } from '../harness/consul-api.js'
import { describeWithConsul } from '../harness/context.js'
import { startTestProxy, type TestProxy } from '../harness/switchyard.js'
import { registerVersions, type Upstream } from '../harness/upstream.js'
import { eventually, uniqueName } from '../harness/wait.js'
import { type Family, parsePrometheusText, samplesOf, sampleValue } from './metrics-text.js'

describeWithConsul('Prometheus metrics', (consul) => {
  const api = new ConsulApi(consul)
  const prefix = `${uniqueName('m')}-`
  const targetPrefix = `switchyard/targets/${uniqueName('metrics')}`
  const shop = uniqueName('shop')
  const dead = uniqueName('dead')
  const ids = [`${shop}-old`, `${shop}-new`, `${dead}-1`]
  const upstreams: Upstream[] = []
  let proxy: TestProxy

  async function scrape(): Promise<Map<string, Family>> {
    const res = await proxy.admin('/metrics')
    expect(res.status).toBe(200)
    expect(res.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8')
    return parsePrometheusText(res.body)
  }

  beforeAll(async () => {
    upstreams.push(
      ...(await registerVersions(api, shop, `${prefix}/shop`, [
        { id: `${shop}-old`, answer: 'old', version: '1.5.0' },
        { id: `${shop}-new`, answer: 'new', version: '1.6.0' },
      ])),
    )
    // Nothing listens on this port: every request is a connect error.
    await api.register({ id: `${dead}-1`, name: dead, port: await freePort(), tags: [`${prefix}/dead`] })
    proxy = await startTestProxy(consul, { routing: { tagPrefix: prefix, targetPrefix } })
  })

  afterAll(async () => {
    await proxy?.stop()
    for (const id of ids) await api.deregister(id).catch(() => {})
    await api.kvDelete(`${targetPrefix}/${shop}`).catch(() => {})
    await Promise.all(upstreams.map((u) => u.close()))
  })

  it('counts requests per version, status class and route, and never by raw path', async () => {
    const sent = { old: 0, new: 0 }
    for (let i = 0; i < 30; i++) {
      const res = await proxy.get(`/shop/item/${i}?q=${i}`)
      expect(res.status).toBe(200)
      sent[res.body as 'old' | 'new'] += 1
    }
    expect(sent.old).toBeGreaterThan(0)
    expect(sent.new).toBeGreaterThan(0)
    for (let i = 0; i < 3; i++) expect((await proxy.get(`/no-such-route-${i}`)).status).toBe(404)
    expect((await proxy.get('/dead')).status).toBe(502)

    const m = await scrape()
    const labels = { service: shop, route: '/shop' }
    expect(
      sampleValue(m, 'switchyard_requests_total', { ...labels, version: '1.5.0', status_class: '2xx' }),
    ).toBe(sent.old)
    expect(
      sampleValue(m, 'switchyard_requests_total', { ...labels, version: '1.6.0', status_class: '2xx' }),
    ).toBe(sent.new)
    // No 5xx on /shop: its 5xx series are there (reported from 0), and all at 0.
    expect(
      samplesOf(m, 'switchyard_requests_total', { ...labels, status_class: '5xx' }).map((x) => x.value),
    ).toEqual([0, 0, 0])
    expect(
      sampleValue(m, 'switchyard_requests_total', {
        service: '',
        route: '',
        version: '',
        status_class: '4xx',
      }),
    ).toBe(3)
    expect(sampleValue(m, 'switchyard_request_duration_seconds_count', labels)).toBe(30)
    expect(sampleValue(m, 'switchyard_request_duration_seconds_bucket', { ...labels, le: '+Inf' })).toBe(30)
    expect(sampleValue(m, 'switchyard_request_duration_seconds_sum', labels)).toBeGreaterThan(0)
    expect(
      sampleValue(m, 'switchyard_requests_total', { service: dead, route: '/dead', status_class: '5xx' }),
    ).toBe(1)
    expect(sampleValue(m, 'switchyard_upstream_errors_total', { service: dead, reason: 'connect' })).toBe(1)

    // Request paths are not labels: cardinality stays bounded by the routes.
    const labelValues = [...m.values()].flatMap((f) => f.samples.flatMap((s) => Object.values(s.labels)))
    expect(labelValues.some((v) => v.includes('no-such-route') || v.includes('/shop/item'))).toBe(false)
  })

  it('reports instances per route and version, target readiness, watches and table swaps', async () => {
    let m = await scrape()
    for (const version of ['1.5.0', '1.6.0']) {
      const labels = { service: shop, route: '/shop', version }
      expect(sampleValue(m, 'switchyard_route_instances_healthy', labels)).toBe(1)
      expect(sampleValue(m, 'switchyard_route_instances_serving', labels)).toBe(1)
    }
    const services = sampleValue(m, 'switchyard_consul_watch_last_success_timestamp_seconds', {
      watch: 'services',
    })
    expect(Math.abs((services ?? 0) - Date.now() / 1000)).toBeLessThan(120)
    expect(sampleValue(m, 'switchyard_consul_watch_errors_total', { watch: `health:${shop}` })).toBe(0)
    expect(sampleValue(m, 'switchyard_consul_stale_seconds')).toBe(0)
    expect(sampleValue(m, 'switchyard_table_swaps_total')).toBeGreaterThanOrEqual(1)
    expect(sampleValue(m, 'switchyard_table_generation')).toBe(proxy.app.store.current.generation)
    expect(samplesOf(m, 'switchyard_table_build_duration_seconds_count').length).toBeGreaterThan(0)
    expect(m.get('process_cpu_user_seconds_total')?.type).toBe('counter')
    expect(m.get('nodejs_eventloop_lag_seconds')?.type).toBe('gauge')

    // A target naming a version with no instance is not ready; one that exists is.
    await api.kvPut(`${targetPrefix}/${shop}`, JSON.stringify({ version: '9.9.9' }))
    await eventually(async () => {
      m = await scrape()
      expect(sampleValue(m, 'switchyard_target_ready', { service: shop })).toBe(0)
      expect(sampleValue(m, 'switchyard_problems', { code: 'SWY_ERR_TARGET_NOT_READY' })).toBe(1)
    })
    await api.kvPut(`${targetPrefix}/${shop}`, JSON.stringify({ version: '1.6.0' }))
    await eventually(async () => {
      m = await scrape()
      expect(sampleValue(m, 'switchyard_target_ready', { service: shop })).toBe(1)
      const old = { service: shop, route: '/shop', version: '1.5.0' }
      expect(sampleValue(m, 'switchyard_route_instances_serving', old)).toBe(0)
      expect(sampleValue(m, 'switchyard_route_instances_healthy', old)).toBe(1)
      expect(samplesOf(m, 'switchyard_problems', { code: 'SWY_ERR_TARGET_NOT_READY' })).toEqual([])
    })
  })

  it('deletes the series of a version, then of a route, when they disappear from Consul', async () => {
    await api.kvDelete(`${targetPrefix}/${shop}`)
    await api.deregister(`${shop}-old`)
    await eventually(async () => {
      const m = await scrape()
      const gone = { service: shop, route: '/shop', version: '1.5.0' }
      expect(samplesOf(m, 'switchyard_requests_total', gone)).toEqual([])
      expect(samplesOf(m, 'switchyard_route_instances_healthy', gone)).toEqual([])
      expect(samplesOf(m, 'switchyard_route_instances_serving', gone)).toEqual([])
      // The route and its other version keep their counts.
      const kept = { service: shop, route: '/shop', version: '1.6.0', status_class: '2xx' }
      expect(sampleValue(m, 'switchyard_requests_total', kept)).toBeGreaterThan(0)
      expect(
        sampleValue(m, 'switchyard_request_duration_seconds_count', { service: shop, route: '/shop' }),
      ).toBe(30)
    })

    await api.deregister(`${shop}-new`)
    await api.deregister(`${dead}-1`)
    await eventually(async () => {
      const m = await scrape()
      const all = [...m.values()].flatMap((f) => f.samples)
      expect(all.filter((s) => s.labels.route === '/shop' || s.labels.route === '/dead')).toEqual([])
      expect(all.filter((s) => s.labels.service === shop || s.labels.service === dead)).toEqual([])
      expect(samplesOf(m, 'switchyard_consul_watch_errors_total', { watch: `health:${shop}` })).toEqual([])
      // Unrouted requests keep their fixed series.
      expect(
        sampleValue(m, 'switchyard_requests_total', {
          service: '',
          route: '',
          version: '',
          status_class: '4xx',
        }),
      ).toBe(3)
    })
  })
})
