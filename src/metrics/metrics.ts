// Prometheus metrics (prom-client), one registry per Switchyard instance.
//
// Three sources, three update rules:
//   - per request: RequestCounters cells on the hot path, read at scrape time;
//   - per table swap: gauges that describe the table (instances per route and
//     version, target readiness) are rebuilt from the new table, which also
//     deletes the series of whatever vanished;
//   - per scrape: watch state and problems are read from TableSync.status().
//
// Several worker processes share one scrape through prom-client's
// AggregatorRegistry: `json()` gives every metric in the form it aggregates,
// per-request counters sum across workers, and gauges that describe the one
// shared table use the `first` aggregator instead of adding up copies.
//
// The request duration histogram is not a prom-client Histogram: its buckets
// are RequestCounters cells, and prom-client has no public way to set a
// histogram's counts. It is written as the metric JSON that
// getMetricsAsJSON() produces (for aggregate(), with several workers) and as
// Prometheus text (for one process), next to the registry's own.

import {
  Counter,
  collectDefaultMetrics,
  Gauge,
  Histogram,
  type MetricObjectWithValues,
  type MetricType,
  type MetricValue,
  Registry,
} from 'prom-client'
import type { ProxyObserver } from '../proxy/observer.js'
import type { RouteTable } from '../routing/types.js'
import type { TableStore } from '../table/store.js'
import type { SyncStatus } from '../table/sync.js'
import type { CertificateReport } from '../tls/store.js'
import {
  ALWAYS_REPORTED_CLASSES,
  DURATION_BUCKETS,
  type DurationSeries,
  type EventCount,
  RequestCounters,
  STATUS_CLASSES,
  UPSTREAM_ERROR_REASONS,
} from './request-counters.js'

export interface MetricsOptions {
  readonly store: TableStore
  readonly status: () => SyncStatus
  /** Node.js process metrics (CPU, memory, event loop, GC); on unless a test turns them off. */
  readonly defaultMetrics?: boolean
  /** The TLS certificates served (and set aside), where this process holds them. */
  readonly certificates?: () => CertificateReport
}

export type MetricJson = MetricObjectWithValues<MetricValue<string> & { metricName?: string }>

/** The request duration histograms, written from RequestCounters cells (see cellHistogram). */
export const REQUEST_DURATION = {
  name: 'switchyard_request_duration_seconds',
  help: 'Time from the request arriving to the response ending, by service and route.',
  labelNames: ['service', 'route'],
} as const

export const VERSION_REQUEST_DURATION = {
  name: 'switchyard_version_request_duration_seconds',
  help: 'Time from the request arriving to the response ending, by service and instance version over all routes: what a canary is compared on.',
  labelNames: ['service', 'version'],
} as const

/** The cells of one label set of a histogram kept in RequestCounters. */
type CellSeries = Pick<DurationSeries, 'buckets' | 'sum' | 'count'>

const TABLE_BUILD_BUCKETS = [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1]

export class SwitchyardMetrics {
  readonly registry = new Registry()
  readonly counters = new RequestCounters()
  /** Feeds the request counters; cheap enough to stay on for every request. */
  readonly observer: ProxyObserver
  private readonly tableBuild: Histogram<'changed'>
  private readonly swaps: Counter
  private readonly generation: Gauge
  private readonly instancesHealthy: Gauge<'service' | 'route' | 'version'>
  private readonly instancesServing: Gauge<'service' | 'route' | 'version'>
  private readonly targetReady: Gauge<'service'>

  constructor(options: MetricsOptions) {
    const { registry, counters } = this
    const registers = [registry]
    const { status, certificates } = options

    new Counter({
      name: 'switchyard_requests_total',
      help: 'Requests answered, by service, route, instance version and status class (2xx, 4xx, 5xx reported from 0). Requests that matched no route have empty labels, once there are any.',
      labelNames: ['service', 'route', 'version', 'status_class'],
      registers,
      collect() {
        this.reset()
        for (const s of counters.requestSeries()) {
          const unrouted = counters.isUnrouted(s)
          s.byClass.forEach((n, i) => {
            if (n > 0 || (!unrouted && ALWAYS_REPORTED_CLASSES.has(i))) {
              const labels = { service: s.service, route: s.route, version: s.version }
              this.inc({ ...labels, status_class: STATUS_CLASSES[i] as string }, n)
            }
          })
        }
      },
    })
    new Counter({
      name: 'switchyard_upstream_errors_total',
      help: 'Failed exchanges with an instance, by service and reason (connect, timeout, reset, busy: no free connection).',
      labelNames: ['service', 'reason'],
      registers,
      collect() {
        this.reset()
        for (const e of counters.errorSeries()) {
          e.byReason.forEach((n, i) => {
            this.inc({ service: e.service, reason: UPSTREAM_ERROR_REASONS[i] as string }, n)
          })
        }
      },
    })

    const events = (name: string, help: string, labelNames: string[], counts: () => Iterable<EventCount>) =>
      new Counter({
        name,
        help,
        labelNames,
        registers,
        collect() {
          this.reset()
          for (const c of counts()) this.inc(c.labels, c.n)
        },
      })
    events(
      'switchyard_timeouts_total',
      'Timeouts by kind: connect, response-headers, idle, queue (towards an instance of service), client-headers (a slow client; service "") and client-body (a stalled upload).',
      ['service', 'kind'],
      () => counters.timeoutCounts(),
    )
    events(
      'switchyard_instance_ejections_total',
      'Instances taken out by passive health after repeated connect failures, by service.',
      ['service'],
      () => counters.ejectionCounts(),
    )
    events(
      'switchyard_grpc_responses_total',
      'gRPC calls through routes with proto=grpc or grpcs, by service, route and the grpc-status they ended with.',
      ['service', 'route', 'grpc_status'],
      () => counters.grpcCounts(),
    )
    events(
      'switchyard_rejected_requests_total',
      'Requests refused before routing as malformed or hostile, by reason (they also count in switchyard_requests_total with empty labels).',
      ['reason'],
      () => counters.rejectionCounts(),
    )

    // Gauges that describe the one shared table: with several workers, the
    // primary's value counts ('first'), copies are not added up.
    const perRouteVersion = (name: string, help: string) =>
      new Gauge({ name, help, labelNames: ['service', 'route', 'version'], aggregator: 'first', registers })
    this.instancesHealthy = perRouteVersion(
      'switchyard_route_instances_healthy',
      'Instances on a route whose checks pass (serving or not), by service, route and version.',
    )
    this.instancesServing = perRouteVersion(
      'switchyard_route_instances_serving',
      'Instances on a route that get traffic: healthy, in the target state, weight above 0.',
    )
    this.targetReady = new Gauge({
      name: 'switchyard_target_ready',
      help: "1 when a service's desired target state is served, 0 while it waits for healthy instances.",
      labelNames: ['service'],
      aggregator: 'first',
      registers,
    })
    this.generation = new Gauge({
      name: 'switchyard_table_generation',
      help: 'Generation of the routing table in use; 0 until the first table is built from Consul.',
      aggregator: 'first',
      registers,
    })
    this.swaps = new Counter({
      name: 'switchyard_table_swaps_total',
      help: 'Routing tables swapped in.',
      aggregator: 'first',
      registers,
    })
    this.tableBuild = new Histogram({
      name: 'switchyard_table_build_duration_seconds',
      help: 'Time to build a routing table from a Consul snapshot, by whether the result differed.',
      labelNames: ['changed'],
      buckets: TABLE_BUILD_BUCKETS,
      aggregator: 'first',
      registers,
    })

    new Counter({
      name: 'switchyard_consul_watch_errors_total',
      help: 'Failed requests of a Consul watch (services, health:<service>, targets).',
      labelNames: ['watch'],
      aggregator: 'first',
      registers,
      collect() {
        this.reset()
        for (const w of status().watches) this.inc({ watch: w.name }, w.errors)
      },
    })
    new Gauge({
      name: 'switchyard_consul_watch_last_success_timestamp_seconds',
      help: 'When a Consul watch last got an answer (Unix time); 0 before its first.',
      labelNames: ['watch'],
      aggregator: 'first',
      registers,
      collect() {
        this.reset()
        for (const w of status().watches) this.set({ watch: w.name }, w.lastSuccessAt / 1000)
      },
    })
    new Gauge({
      name: 'switchyard_consul_stale_seconds',
      help: 'How long the oldest failing Consul watch has failed; 0 while all are current. /ready turns false above readiness.maxStale.',
      aggregator: 'first',
      registers,
      collect() {
        this.set(status().staleForMs / 1000)
      },
    })
    new Gauge({
      name: 'switchyard_problems',
      help: 'Problems listed by /api/problems (bad tags, bad target keys, bad certificates, Consul errors), by error code.',
      labelNames: ['code'],
      aggregator: 'first',
      registers,
      collect() {
        this.reset()
        const byCode = new Map<string, number>()
        const certificateProblems = certificates?.().problems ?? []
        for (const p of [...status().problems, ...options.store.current.problems, ...certificateProblems])
          byCode.set(p.code, (byCode.get(p.code) ?? 0) + 1)
        for (const [code, n] of byCode) this.set({ code }, n)
      },
    })

    new Gauge({
      name: 'switchyard_certificate_not_after_seconds',
      help: 'When the TLS certificate served for a host name expires (Unix time), by host name (as in the certificate, *.example.com for a wildcard) and source (file or consul). Names no longer served lose their series.',
      labelNames: ['host', 'source'],
      aggregator: 'first',
      registers,
      collect() {
        // Rebuilt at every scrape from the store's current list: whatever is
        // no longer served has no series.
        this.reset()
        for (const c of certificates?.().certificates ?? []) {
          for (const host of c.serving) this.set({ host, source: c.source }, Date.parse(c.notAfter) / 1000)
        }
      },
    })

    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry })

    this.observer = {
      request: (route, target, status, seconds) => counters.request(route, target, status, seconds),
      upstreamError: (target, reason) => counters.upstreamError(target, reason),
      rejected: (reason) => counters.rejected(reason),
      timeout: (kind, target) => counters.timeout(kind, target),
      passiveHealth: (target, ejected) => {
        if (ejected) counters.ejection(target)
      },
      grpcStatus: (route, backend, status) => counters.grpcStatus(route, backend, status),
    }
    this.onSwap(options.store.current, false)
    options.store.onSwap((table) => this.onSwap(table, true))
  }

  /** For TableSync's onBuild hook. */
  observeBuild(durationMs: number, changed: boolean): void {
    this.tableBuild.observe({ changed: String(changed) }, durationMs / 1000)
  }

  /** Every metric as prom-client's metric JSON, the form AggregatorRegistry.aggregate() adds up. */
  async json(): Promise<MetricJson[]> {
    const [first, ...rest] = await this.registry.getMetricsAsJSON()
    // Right after the request counts, where they were registered before the cells.
    const cells = this.cellHistograms()
    return first === undefined ? cells : [first, ...cells, ...rest]
  }

  /** Prometheus text exposition of every metric. */
  async text(): Promise<{ contentType: string; body: string }> {
    const body = `${await this.registry.metrics()}\n${this.cellHistograms().map(exposition).join('')}`
    return { contentType: this.registry.contentType, body }
  }

  /** The duration histograms kept in RequestCounters cells: by route, and by version. */
  private cellHistograms(): MetricJson[] {
    return [
      cellHistogram(REQUEST_DURATION, this.counters.durationSeries(), (d) => ({
        service: d.service,
        route: d.route,
      })),
      cellHistogram(VERSION_REQUEST_DURATION, this.counters.versionDurationSeries(), (d) => ({
        service: d.service,
        version: d.version,
      })),
    ]
  }

  private onSwap(table: RouteTable, swapped: boolean): void {
    this.counters.retain(table)
    if (swapped) this.swaps.inc()
    this.generation.set(table.generation)

    const healthy = new Map<string, { labels: Record<'service' | 'route' | 'version', string>; n: number }>()
    const serving = new Map<string, number>()
    for (const route of table.routes) {
      for (const t of [...route.backends, ...route.idle]) {
        const key = `${t.service}\0${route.id}\0${t.version}`
        const entry = healthy.get(key) ?? {
          labels: { service: t.service, route: route.id, version: t.version },
          n: 0,
        }
        if (t.state !== 'unhealthy' && t.state !== 'maintenance') entry.n += 1
        healthy.set(key, entry)
        if (t.state === 'serving') serving.set(key, (serving.get(key) ?? 0) + 1)
      }
    }
    this.instancesHealthy.reset()
    this.instancesServing.reset()
    for (const [key, { labels, n }] of healthy) {
      this.instancesHealthy.set(labels, n)
      this.instancesServing.set(labels, serving.get(key) ?? 0)
    }
    this.targetReady.reset()
    for (const s of table.targets) this.targetReady.set({ service: s.service }, s.ready ? 1 : 0)
  }
}

/** A histogram as prom-client's metric JSON, from cells of per-bucket (not cumulative) counts. */
function cellHistogram<S extends CellSeries>(
  meta: { readonly name: string; readonly help: string },
  series: Iterable<S>,
  labelsOf: (series: S) => Record<string, string>,
): MetricJson {
  const { name, help } = meta
  const values: MetricJson['values'] = []
  for (const d of series) {
    const labels = labelsOf(d)
    let cumulative = 0
    DURATION_BUCKETS.forEach((le, i) => {
      cumulative += d.buckets[i] ?? 0
      values.push({ value: cumulative, labels: { ...labels, le }, metricName: `${name}_bucket` })
    })
    values.push({ value: d.count, labels: { ...labels, le: '+Inf' }, metricName: `${name}_bucket` })
    values.push({ value: d.sum, labels, metricName: `${name}_sum` })
    values.push({ value: d.count, labels, metricName: `${name}_count` })
  }
  return {
    name,
    help,
    // prom-client's typings declare MetricType as a numeric enum; its JSON carries the type's name.
    type: 'histogram' as unknown as MetricType,
    aggregator: 'sum',
    collect: () => {},
    values,
  }
}

/** One metric in the Prometheus text format (version 0.0.4), ending with a newline. */
function exposition(metric: MetricJson): string {
  const lines = [`# HELP ${metric.name} ${escapeHelp(metric.help)}`, `# TYPE ${metric.name} ${metric.type}`]
  for (const v of metric.values) {
    const labels = Object.entries(v.labels)
      .map(([k, value]) => `${k}="${escapeLabel(String(value))}"`)
      .join(',')
    lines.push(`${v.metricName ?? metric.name}${labels === '' ? '' : `{${labels}}`} ${formatValue(v.value)}`)
  }
  return `${lines.join('\n')}\n`
}

function escapeHelp(text: string): string {
  return text.replaceAll('\\', '\\\\').replaceAll('\n', '\\n')
}

function escapeLabel(text: string): string {
  return text.replaceAll('\\', '\\\\').replaceAll('"', '\\"').replaceAll('\n', '\\n')
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN'
  if (value === Number.POSITIVE_INFINITY) return '+Inf'
  if (value === Number.NEGATIVE_INFINITY) return '-Inf'
  return String(value)
}
