// Reading Switchyard's own metrics back, per service and version: the
// Prometheus text of /metrics (one proxy's, or several added up) turned into
// request, 5xx and latency totals, and the difference of two readings into
// rates and a p99. The status page and `switchyard rollout` both compare a
// canary with this, so they agree with each other and with Prometheus.

import { DURATION_BUCKETS } from './request-counters.js'

export interface Sample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

/** The metrics trafficByVersion reads: a scrape for it need not parse the others. */
export const VERSION_TRAFFIC_METRICS: readonly string[] = [
  'switchyard_requests_total',
  'switchyard_version_request_duration_seconds_bucket',
  'switchyard_version_request_duration_seconds_sum',
  'switchyard_version_request_duration_seconds_count',
]

/**
 * The samples of a Prometheus text exposition; comments and malformed lines
 * are skipped. `only`: the samples of these metric names only; other lines
 * are skipped before anything is made of them (a proxy's own /metrics at
 * 1,000 services is 42,000 lines, of which the status page reads 17,000).
 */
export function parsePrometheusText(text: string, only?: readonly string[]): Sample[] {
  const samples: Sample[] = []
  for (let start = 0; start < text.length; ) {
    let end = text.indexOf('\n', start)
    if (end === -1) end = text.length
    const from = start
    start = end + 1
    if (end === from || text.charCodeAt(from) === 35 /* # */) continue
    if (only !== undefined && !only.some((name) => isSampleOf(text, from, name))) continue
    const line = text.slice(from, end)
    const brace = line.indexOf('{')
    const space = line.indexOf(' ')
    let name: string
    const labels: Record<string, string> = {}
    let rest: string
    if (brace !== -1 && (space === -1 || brace < space)) {
      name = line.slice(0, brace)
      let i = brace + 1
      for (;;) {
        while (line[i] === ',' || line[i] === ' ') i++
        if (line[i] === '}' || i >= line.length) break
        const eq = line.indexOf('=', i)
        if (eq === -1 || line[eq + 1] !== '"') break
        const label = line.slice(i, eq)
        let value = ''
        let j = eq + 2
        for (; j < line.length && line[j] !== '"'; j++) {
          if (line[j] === '\\') {
            j++
            value += line[j] === 'n' ? '\n' : (line[j] ?? '')
          } else value += line[j]
        }
        labels[label] = value
        i = j + 1
      }
      rest = line.slice(line.indexOf('}', i) + 1).trim()
    } else {
      if (space === -1) continue
      name = line.slice(0, space)
      rest = line.slice(space + 1).trim()
    }
    const valueText = rest.split(' ')[0] ?? ''
    const value =
      valueText === '+Inf'
        ? Number.POSITIVE_INFINITY
        : valueText === '-Inf'
          ? Number.NEGATIVE_INFINITY
          : Number(valueText)
    if (valueText !== '' && !Number.isNaN(value)) samples.push({ name, labels, value })
  }
  return samples
}

/** Whether the line at `at` is a sample of metric `name` (the name, then labels or the value). */
function isSampleOf(text: string, at: number, name: string): boolean {
  if (!text.startsWith(name, at)) return false
  const next = text.charCodeAt(at + name.length)
  return next === 123 /* { */ || next === 32 /* space */
}

/** What a service's version was asked and how it answered, as counters (since a proxy started). */
export interface VersionTotals {
  requests: number
  /** Answers with a 5xx status (the instance's own, or Switchyard's 502/503/504 for it). */
  errors: number
  /** Cumulative counts per bucket upper bound (seconds), +Inf last: `le` of the histogram. */
  readonly buckets: number[]
  sum: number
  count: number
}

/** service -> version -> totals. */
export type TrafficByVersion = Map<string, Map<string, VersionTotals>>

const BOUNDS = [...DURATION_BUCKETS, Number.POSITIVE_INFINITY]

function emptyTotals(): VersionTotals {
  return { requests: 0, errors: 0, buckets: BOUNDS.map(() => 0), sum: 0, count: 0 }
}

function totalsOf(traffic: TrafficByVersion, service: string, version: string): VersionTotals {
  let versions = traffic.get(service)
  if (versions === undefined) {
    versions = new Map()
    traffic.set(service, versions)
  }
  let totals = versions.get(version)
  if (totals === undefined) {
    totals = emptyTotals()
    versions.set(version, totals)
  }
  return totals
}

/**
 * Per service and version, from the samples of one or more scrapes (several
 * proxies' scrapes add up). Requests of no version (route-level answers, instances
 * without a version) are left out. `service` keeps only that one.
 */
export function trafficByVersion(samples: readonly Sample[], service?: string): TrafficByVersion {
  const traffic: TrafficByVersion = new Map()
  for (const { name, labels, value } of samples) {
    const s = labels.service
    const v = labels.version
    if (s === undefined || v === undefined || s === '' || v === '') continue
    if (service !== undefined && s !== service) continue
    if (name === 'switchyard_requests_total') {
      const totals = totalsOf(traffic, s, v)
      totals.requests += value
      if (labels.status_class === '5xx') totals.errors += value
    } else if (name === 'switchyard_version_request_duration_seconds_bucket') {
      const le = labels.le === '+Inf' ? Number.POSITIVE_INFINITY : Number(labels.le)
      const i = BOUNDS.indexOf(le)
      if (i !== -1) (totalsOf(traffic, s, v).buckets[i] as number) += value
    } else if (name === 'switchyard_version_request_duration_seconds_sum') {
      totalsOf(traffic, s, v).sum += value
    } else if (name === 'switchyard_version_request_duration_seconds_count') {
      totalsOf(traffic, s, v).count += value
    }
  }
  return traffic
}

/** Adds `more` into `into` (the scrapes of several proxies). */
export function addTraffic(into: TrafficByVersion, more: TrafficByVersion): TrafficByVersion {
  for (const [service, versions] of more) {
    for (const [version, t] of versions) {
      const totals = totalsOf(into, service, version)
      totals.requests += t.requests
      totals.errors += t.errors
      t.buckets.forEach((n, i) => {
        ;(totals.buckets[i] as number) += n
      })
      totals.sum += t.sum
      totals.count += t.count
    }
  }
  return into
}

/**
 * What happened between two readings of the same counters. A counter that
 * went down was reset (a proxy restarted): its new value is what happened since.
 */
export function trafficSince(now: VersionTotals, before: VersionTotals | undefined): VersionTotals {
  if (before === undefined) return now
  const reset = now.requests < before.requests || now.count < before.count
  if (reset) return now
  return {
    requests: now.requests - before.requests,
    errors: Math.max(0, now.errors - before.errors),
    buckets: now.buckets.map((n, i) => Math.max(0, n - (before.buckets[i] ?? 0))),
    sum: Math.max(0, now.sum - before.sum),
    count: now.count - before.count,
  }
}

/**
 * The q-quantile of a histogram's cumulative buckets, interpolated within the
 * bucket it falls in as Prometheus' histogram_quantile does; in the +Inf
 * bucket, the highest finite bound. Null when nothing was observed.
 */
export function quantile(q: number, buckets: readonly number[]): number | null {
  const total = buckets[buckets.length - 1] ?? 0
  if (total <= 0) return null
  const rank = q * total
  let below = 0
  for (let i = 0; i < buckets.length; i++) {
    const count = buckets[i] as number
    if (count >= rank && count > below) {
      const upper = BOUNDS[i] as number
      const lower = i === 0 ? 0 : (BOUNDS[i - 1] as number)
      if (!Number.isFinite(upper)) return lower
      return lower + ((upper - lower) * (rank - below)) / (count - below)
    }
    below = count
  }
  return BOUNDS[BOUNDS.length - 2] as number
}

export interface VersionSummary {
  readonly requests: number
  readonly errors: number
  /** 5xx answers over all answers; null without requests. */
  readonly errorRate: number | null
  /** Seconds; null without requests. */
  readonly p99: number | null
}

export function summarize(t: VersionTotals): VersionSummary {
  return {
    requests: t.requests,
    errors: t.errors,
    errorRate: t.requests > 0 ? t.errors / t.requests : null,
    p99: quantile(0.99, t.buckets),
  }
}
