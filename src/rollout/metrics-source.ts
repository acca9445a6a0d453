// Where a rollout reads the numbers it checks between steps: the proxies'
// own admin /metrics (named with --admin, or the --fleet found in Consul), or
// a Prometheus that scrapes them. Either way the answer is, per version of
// the service, what happened during the step's interval.

import { SwitchyardError } from '../errors.js'
import {
  addTraffic,
  parsePrometheusText,
  summarize,
  type TrafficByVersion,
  trafficByVersion,
  trafficSince,
  VERSION_TRAFFIC_METRICS,
  type VersionSummary,
} from '../metrics/scrape.js'

export interface MetricsSource {
  /** How the output names it. */
  readonly name: string
  /** Marks the start of an interval. */
  begin(): Promise<void>
  /** Per version, what happened since begin() (`seconds` ago). Throws SWY_ERR_METRICS when nothing can be read. */
  end(seconds: number): Promise<{ versions: Map<string, VersionSummary>; warnings: string[] }>
}

export interface AdminEndpoint {
  readonly name: string
  readonly url: string | null
}

/**
 * The proxies' /metrics, read at both ends of the interval; the difference of
 * each proxy's counters, added up. A proxy that answered only once (it
 * started, or stopped answering, in between) is left out with a warning: its
 * counters say nothing about this interval.
 */
export function proxyMetrics(
  service: string,
  proxies: () => Promise<readonly AdminEndpoint[]>,
): MetricsSource {
  let baseline = new Map<string, TrafficByVersion>()
  const readAll = async () => {
    const list = await proxies()
    const results = await Promise.all(
      list.map(async (p) => {
        if (p.url === null) return { p, error: 'no admin address', traffic: null }
        try {
          const res = await fetch(`${p.url}/metrics`, { signal: AbortSignal.timeout(5_000) })
          if (!res.ok) return { p, error: `/metrics answered ${res.status}`, traffic: null }
          return {
            p,
            error: null,
            traffic: trafficByVersion(
              parsePrometheusText(await res.text(), VERSION_TRAFFIC_METRICS),
              service,
            ),
          }
        } catch (err) {
          const e = err as Error & { cause?: { code?: string } }
          return { p, error: e.cause?.code ?? e.message, traffic: null }
        }
      }),
    )
    return results
  }
  return {
    name: 'the proxies\u2019 /metrics',
    async begin() {
      baseline = new Map()
      for (const r of await readAll()) if (r.traffic !== null) baseline.set(r.p.name, r.traffic)
    },
    async end() {
      const warnings: string[] = []
      const sum: TrafficByVersion = new Map()
      let counted = 0
      for (const r of await readAll()) {
        if (r.traffic === null) {
          warnings.push(`${r.p.name}: ${r.error}; its traffic is not counted`)
          continue
        }
        const before = baseline.get(r.p.name)
        if (before === undefined) {
          warnings.push(`${r.p.name}: no reading at the start of the interval; its traffic is not counted`)
          continue
        }
        const delta: TrafficByVersion = new Map()
        for (const [s, versions] of r.traffic) {
          const out = new Map()
          for (const [v, totals] of versions) out.set(v, trafficSince(totals, before.get(s)?.get(v)))
          delta.set(s, out)
        }
        addTraffic(sum, delta)
        counted++
      }
      if (counted === 0)
        throw new SwitchyardError(
          'SWY_ERR_METRICS',
          `no proxy's /metrics could be read: ${warnings.join('; ')}`,
        )
      const versions = new Map<string, VersionSummary>()
      for (const [v, totals] of sum.get(service) ?? []) versions.set(v, summarize(totals))
      return { versions, warnings }
    },
  }
}

/** Prometheus' HTTP API: the interval's increase and p99 per version, asked once at its end. */
export function prometheusMetrics(service: string, url: string): MetricsSource {
  const base = url.replace(/\/+$/, '')
  const selector = `service=${JSON.stringify(service)}`
  const query = async (expr: string): Promise<Map<string, number>> => {
    let body: {
      status?: string
      error?: string
      data?: { result?: { metric: Record<string, string>; value: [number, string] }[] }
    }
    try {
      const res = await fetch(`${base}/api/v1/query?query=${encodeURIComponent(expr)}`, {
        signal: AbortSignal.timeout(10_000),
      })
      body = (await res.json()) as typeof body
      if (!res.ok || body.status !== 'success') throw new Error(body.error ?? `answered ${res.status}`)
    } catch (err) {
      const e = err as Error & { cause?: { code?: string } }
      throw new SwitchyardError(
        'SWY_ERR_METRICS',
        `Prometheus at ${base}: ${e.cause?.code ?? e.message} (query ${expr})`,
      )
    }
    const out = new Map<string, number>()
    for (const r of body.data?.result ?? []) {
      const value = Number(r.value[1])
      if (r.metric.version !== undefined && r.metric.version !== '' && Number.isFinite(value))
        out.set(r.metric.version, value)
    }
    return out
  }
  return {
    name: `Prometheus at ${base}`,
    async begin() {},
    async end(seconds) {
      const window = `[${Math.max(1, Math.round(seconds))}s]`
      const [requests, errors, p99] = await Promise.all([
        query(`sum by (version) (increase(switchyard_requests_total{${selector}}${window}))`),
        query(
          `sum by (version) (increase(switchyard_requests_total{${selector},status_class="5xx"}${window}))`,
        ),
        query(
          `histogram_quantile(0.99, sum by (version, le) (rate(switchyard_version_request_duration_seconds_bucket{${selector}}${window})))`,
        ),
      ])
      const versions = new Map<string, VersionSummary>()
      for (const [version, n] of requests) {
        const e = errors.get(version) ?? 0
        versions.set(version, {
          requests: n,
          errors: e,
          errorRate: n > 0 ? e / n : null,
          p99: p99.get(version) ?? null,
        })
      }
      return { versions, warnings: [] }
    },
  }
}
