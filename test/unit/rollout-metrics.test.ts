// Where a rollout reads its numbers. The proxies' /metrics path is exercised
// against real Switchyards in test/integration/rollout.test.ts; here the
// Prometheus path, against an HTTP server answering in the format of
// Prometheus' /api/v1/query (no Prometheus runs in this test suite), and the
// proxies path's handling of a proxy that stops answering.

import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, describe, expect, it } from 'vitest'
import { prometheusMetrics, proxyMetrics } from '../../src/rollout/metrics-source.js'

const servers: Server[] = []
afterAll(() => {
  for (const s of servers) s.close()
})

async function serve(answer: (url: URL) => { status: number; body: unknown }): Promise<string> {
  const server = createServer((req, res) => {
    const { status, body } = answer(new URL(req.url ?? '/', 'http://x'))
    res.writeHead(status, { 'content-type': typeof body === 'string' ? 'text/plain' : 'application/json' })
    res.end(typeof body === 'string' ? body : JSON.stringify(body))
  })
  servers.push(server)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

const vector = (values: Record<string, number>) => ({
  status: 'success',
  data: {
    resultType: 'vector',
    result: Object.entries(values).map(([version, v]) => ({ metric: { version }, value: [0, String(v)] })),
  },
})

describe('prometheusMetrics', () => {
  it('asks for the interval’s increase, 5xx and p99 per version of the service', async () => {
    const asked: string[] = []
    const url = await serve((u) => {
      const q = u.searchParams.get('query') ?? ''
      asked.push(q)
      if (q.startsWith('histogram_quantile'))
        return { status: 200, body: vector({ '1.7.0': 0.31, '1.6.0': 0.02 }) }
      if (q.includes('5xx')) return { status: 200, body: vector({ '1.7.0': 12, '1.6.0': 0 }) }
      return { status: 200, body: vector({ '1.7.0': 240, '1.6.0': 2160 }) }
    })
    const source = prometheusMetrics('web', `${url}/`)
    await source.begin()
    const { versions } = await source.end(60)
    expect(versions.get('1.7.0')).toEqual({ requests: 240, errors: 12, errorRate: 0.05, p99: 0.31 })
    expect(versions.get('1.6.0')).toEqual({ requests: 2160, errors: 0, errorRate: 0, p99: 0.02 })
    expect(asked.sort()).toEqual([
      'histogram_quantile(0.99, sum by (version, le) (rate(switchyard_version_request_duration_seconds_bucket{service="web"}[60s])))',
      'sum by (version) (increase(switchyard_requests_total{service="web",status_class="5xx"}[60s]))',
      'sum by (version) (increase(switchyard_requests_total{service="web"}[60s]))',
    ])
  })

  it('a query Prometheus refuses is a metrics error naming it', async () => {
    const url = await serve(() => ({ status: 400, body: { status: 'error', error: 'parse error' } }))
    await expect(prometheusMetrics('web', url).end(10)).rejects.toThrow(
      /SWY_ERR_METRICS|Prometheus at .*: parse error/,
    )
  })
})

describe('proxyMetrics', () => {
  it('counts only proxies read at both ends of the interval, and fails when none was', async () => {
    let requests = 100
    const text = () =>
      `switchyard_requests_total{service="web",route="/web",version="1.7.0",status_class="2xx"} ${requests}\n`
    const up = await serve(() => ({ status: 200, body: text() }))
    let downAnswers = true
    const flaky = await serve(() =>
      downAnswers ? { status: 200, body: text() } : { status: 503, body: 'no' },
    )
    const source = proxyMetrics('web', async () => [
      { name: 'up', url: up },
      { name: 'flaky', url: flaky },
    ])
    await source.begin()
    requests = 130
    downAnswers = false
    const { versions, warnings } = await source.end(1)
    expect(versions.get('1.7.0')?.requests).toBe(30)
    expect(warnings).toEqual(['flaky: /metrics answered 503; its traffic is not counted'])

    const none = proxyMetrics('web', async () => [{ name: 'flaky', url: flaky }])
    await none.begin()
    await expect(none.end(1)).rejects.toThrow("no proxy's /metrics could be read")
  })
})
