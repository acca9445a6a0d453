// Per-request accounting for the hot path. Cells of plain numbers are laid out
// once per table swap, one per label set, and each Route and Target of the
// table is mapped to its cell; a finished request then costs one WeakMap
// lookup and a few increments. prom-client reads the cells only at scrape time
// (see metrics.ts). bench/metrics-observe.ts measures this against calling
// prom-client's labelled inc/observe per request (figures in docs/operating.md).
//
// A swap keeps the cells whose labels the new table still has (their counts
// carry on) and drops the others, so the series of a vanished route or version
// disappear from /metrics. A request that started on an older table and ends
// after the swap still finds its cell through the WeakMap; if the cell was
// dropped, the count goes nowhere, which is what dropping the series means.

import type { RejectReason, TimeoutKind, UpstreamErrorReason } from '../proxy/observer.js'
import type { Backend, Route, RouteTable } from '../routing/types.js'

/** Upper bounds (seconds) of the request duration histogram; few, as labels multiply them. */
export const DURATION_BUCKETS: readonly number[] = [0.005, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5]

export const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const

export const UPSTREAM_ERROR_REASONS: readonly UpstreamErrorReason[] = ['connect', 'timeout', 'reset', 'busy']

/**
 * Status classes every request series reports from the start, at 0 until
 * counted: an error ratio (5xx / all) or a Grafana panel of 4xx then has a
 * series to show rather than "No data". 1xx and 3xx appear once they occur,
 * which keeps the series count at 3 per label set instead of 5.
 */
export const ALWAYS_REPORTED_CLASSES: ReadonlySet<number> = new Set([1, 3, 4])

/** Timeouts towards an instance; counted per service from the start (client-headers has no service). */
const BACKEND_TIMEOUT_KINDS = [
  'connect',
  'response-headers',
  'idle',
  'queue',
  'client-body',
] as const satisfies readonly TimeoutKind[]

/** Every reason a request is refused before routing, reported from the start. */
export const REJECT_REASONS = [
  'headers-too-large',
  'request-line',
  'method',
  'framing',
  'header',
  'host',
  'path',
  'malformed',
  'body-too-large',
  'upgrade',
  'h2-rapid-reset',
] as const satisfies readonly RejectReason[]
// Fails to compile when a RejectReason is added without being listed above.
const everyRejectReason: Record<Exclude<RejectReason, (typeof REJECT_REASONS)[number]>, never> = {}
void everyRejectReason

/** Requests of one service, route and version, by status class. */
export interface RequestSeries {
  readonly service: string
  readonly route: string
  readonly version: string
  /** Counts indexed like STATUS_CLASSES. */
  readonly byClass: number[]
  readonly duration: DurationSeries
  /** Durations of the service's version over all its routes; null for no version (and the route-level series). */
  readonly versionDuration: VersionDurationSeries | null
}

/**
 * Request durations of one version of a service, whatever the route: what a
 * canary is compared on (p99 per version). Laid out with the request series.
 */
export interface VersionDurationSeries {
  readonly service: string
  readonly version: string
  /** Per-bucket (not cumulative) counts; the last slot is +Inf. */
  readonly buckets: number[]
  sum: number
  count: number
}

/** Request durations of one service and route. */
export interface DurationSeries {
  readonly service: string
  readonly route: string
  /** Per-bucket (not cumulative) counts; the last slot is +Inf. */
  readonly buckets: number[]
  sum: number
  count: number
}

export interface ServiceErrors {
  readonly service: string
  /** Counts indexed like UPSTREAM_ERROR_REASONS. */
  readonly byReason: number[]
}

/** A count under a few labels, for events rarer than requests (timeouts, ejections, rejections). */
export interface EventCount {
  readonly labels: Readonly<Record<string, string>>
  n: number
}

/**
 * The label set of requests that matched no route: fixed, never the raw path.
 * Its series are reported only once such a request was counted: they are not
 * placeholders.
 */
export const UNROUTED = { service: '', route: '', version: '' } as const

export class RequestCounters {
  private readonly series = new Map<string, RequestSeries>()
  private readonly durations = new Map<string, DurationSeries>()
  private readonly versionDurations = new Map<string, VersionDurationSeries>()
  private readonly errors = new Map<string, ServiceErrors>()
  private readonly byBackend = new WeakMap<Backend, RequestSeries>()
  private readonly byRoute = new WeakMap<Route, RequestSeries>()
  private readonly unrouted: RequestSeries
  private liveServices = new Set<string>()
  private readonly timeouts = new Map<string, EventCount>()
  private readonly ejections = new Map<string, EventCount>()
  private readonly rejections = new Map<string, EventCount>()
  private readonly grpc = new Map<string, EventCount>()
  private liveRoutes = new Set<string>()

  constructor() {
    this.unrouted = this.seriesFor(UNROUTED.service, UNROUTED.route, UNROUTED.version)
    for (const reason of REJECT_REASONS) this.rejections.set(reason, { labels: { reason }, n: 0 })
  }

  /** Whether `series` is the one of requests that matched no route. */
  isUnrouted(series: RequestSeries): boolean {
    return series === this.unrouted
  }

  /** Lays out the cells of a new table and drops those of label sets it no longer has. */
  retain(table: RouteTable): void {
    const series = new Set<string>([seriesKey(UNROUTED.service, UNROUTED.route, UNROUTED.version)])
    const durations = new Set<string>([durationKey(UNROUTED.service, UNROUTED.route)])
    const versions = new Set<string>()
    const services = new Set<string>()
    for (const route of table.routes) {
      // Answers decided before an instance was picked (403, 503) count under
      // the route with an empty version.
      const routeService = route.services.join(',')
      this.byRoute.set(route, this.seriesFor(routeService, route.id, ''))
      series.add(seriesKey(routeService, route.id, ''))
      durations.add(durationKey(routeService, route.id))
      for (const list of [route.backends, route.idle]) {
        for (const backend of list) {
          this.byBackend.set(backend, this.seriesFor(backend.service, route.id, backend.version))
          series.add(seriesKey(backend.service, route.id, backend.version))
          durations.add(durationKey(backend.service, route.id))
          versions.add(durationKey(backend.service, backend.version))
          services.add(backend.service)
        }
      }
    }
    for (const key of this.series.keys()) if (!series.has(key)) this.series.delete(key)
    for (const key of this.durations.keys()) if (!durations.has(key)) this.durations.delete(key)
    for (const key of this.versionDurations.keys()) if (!versions.has(key)) this.versionDurations.delete(key)
    for (const key of this.errors.keys()) if (!services.has(key)) this.errors.delete(key)
    for (const [key, c] of this.timeouts)
      if (c.labels.service !== '' && !services.has(c.labels.service!)) this.timeouts.delete(key)
    for (const key of this.ejections.keys()) if (!services.has(key)) this.ejections.delete(key)
    this.liveRoutes = new Set(table.routes.map((r) => r.id))
    for (const [key, c] of this.grpc)
      if (!this.liveRoutes.has(c.labels.route as string)) this.grpc.delete(key)
    // Error counters of every service start at 0, so they have a series before the first error.
    for (const service of services) {
      if (!this.errors.has(service))
        this.errors.set(service, { service, byReason: UPSTREAM_ERROR_REASONS.map(() => 0) })
      for (const kind of BACKEND_TIMEOUT_KINDS) {
        const key = `${service}\0${kind}`
        if (!this.timeouts.has(key)) this.timeouts.set(key, { labels: { service, kind }, n: 0 })
      }
      if (!this.ejections.has(service)) this.ejections.set(service, { labels: { service }, n: 0 })
    }
    this.liveServices = services
  }

  /** The hot path: one finished request. */
  request(route: Route | null, backend: Backend | null, status: number, seconds: number): void {
    const series =
      backend !== null
        ? this.byBackend.get(backend)
        : route !== null
          ? this.byRoute.get(route)
          : this.unrouted
    if (series === undefined) return
    const cls = ((status / 100) | 0) - 1
    series.byClass[Math.max(0, Math.min(cls, 4))]! += 1
    const d = series.duration
    d.count += 1
    d.sum += seconds
    let i = 0
    while (i < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[i]!) i++
    d.buckets[i]! += 1
    const v = series.versionDuration
    if (v !== null) {
      v.count += 1
      v.sum += seconds
      v.buckets[i]! += 1
    }
  }

  upstreamError(backend: Backend, reason: UpstreamErrorReason): void {
    // A late error from an instance of a vanished service must not bring its series back.
    if (!this.liveServices.has(backend.service)) return
    let cell = this.errors.get(backend.service)
    if (cell === undefined) {
      cell = { service: backend.service, byReason: UPSTREAM_ERROR_REASONS.map(() => 0) }
      this.errors.set(backend.service, cell)
    }
    const i = UPSTREAM_ERROR_REASONS.indexOf(reason)
    cell.byReason[i < 0 ? 2 : i]! += 1
  }

  /** A timeout towards an instance, or of a slow client (backend null). */
  timeout(kind: TimeoutKind, backend: Backend | null): void {
    const service = backend?.service ?? ''
    if (service !== '' && !this.liveServices.has(service)) return
    bump(this.timeouts, `${service}\0${kind}`, { service, kind })
  }

  /** Passive health took an instance out after repeated connect failures. */
  ejection(backend: Backend): void {
    if (!this.liveServices.has(backend.service)) return
    bump(this.ejections, backend.service, { service: backend.service })
  }

  /** A request refused as malformed or hostile before routing. */
  rejected(reason: RejectReason): void {
    bump(this.rejections, reason, { reason })
  }

  timeoutCounts(): IterableIterator<EventCount> {
    return this.timeouts.values()
  }

  ejectionCounts(): IterableIterator<EventCount> {
    return this.ejections.values()
  }

  /** The grpc-status a gRPC call through `route` ended with. */
  grpcStatus(route: Route, backend: Backend, status: string): void {
    if (!this.liveRoutes.has(route.id)) return
    bump(this.grpc, seriesKey(backend.service, route.id, status), {
      service: backend.service,
      route: route.id,
      grpc_status: status,
    })
  }

  grpcCounts(): IterableIterator<EventCount> {
    return this.grpc.values()
  }

  rejectionCounts(): IterableIterator<EventCount> {
    return this.rejections.values()
  }

  requestSeries(): IterableIterator<RequestSeries> {
    return this.series.values()
  }

  /** Durations per service and route; the unrouted one only once it counted a request. */
  *durationSeries(): IterableIterator<DurationSeries> {
    for (const d of this.durations.values()) if (d !== this.unrouted.duration || d.count > 0) yield d
  }

  /** Durations per service and version (instances with a version only). */
  versionDurationSeries(): IterableIterator<VersionDurationSeries> {
    return this.versionDurations.values()
  }

  errorSeries(): IterableIterator<ServiceErrors> {
    return this.errors.values()
  }

  private seriesFor(service: string, route: string, version: string): RequestSeries {
    const key = seriesKey(service, route, version)
    let series = this.series.get(key)
    if (series === undefined) {
      series = {
        service,
        route,
        version,
        byClass: [0, 0, 0, 0, 0],
        duration: this.durationFor(service, route),
        // Route-level answers (version '') were not served by any version.
        versionDuration: version === '' ? null : this.versionDurationFor(service, version),
      }
      this.series.set(key, series)
    }
    return series
  }

  private versionDurationFor(service: string, version: string): VersionDurationSeries {
    const key = durationKey(service, version)
    let duration = this.versionDurations.get(key)
    if (duration === undefined) {
      duration = {
        service,
        version,
        buckets: new Array(DURATION_BUCKETS.length + 1).fill(0),
        sum: 0,
        count: 0,
      }
      this.versionDurations.set(key, duration)
    }
    return duration
  }

  private durationFor(service: string, route: string): DurationSeries {
    const key = durationKey(service, route)
    let duration = this.durations.get(key)
    if (duration === undefined) {
      duration = { service, route, buckets: new Array(DURATION_BUCKETS.length + 1).fill(0), sum: 0, count: 0 }
      this.durations.set(key, duration)
    }
    return duration
  }
}

function bump(counts: Map<string, EventCount>, key: string, labels: Record<string, string>): void {
  const count = counts.get(key)
  if (count === undefined) counts.set(key, { labels, n: 1 })
  else count.n += 1
}

// NUL cannot occur in Consul names, tags or meta values that reach a route id.
function seriesKey(service: string, route: string, version: string): string {
  return `${service}\0${route}\0${version}`
}

function durationKey(service: string, route: string): string {
  return `${service}\0${route}`
}
