// Prometheus metrics, one set per Switchyard instance.
//
// Three sources, three update rules:
//   - per request: RequestCounters cells on the hot path, read at scrape time;
//   - per table swap: what describes the table (instances per route and
//     version, target readiness) is counted from the new table, which also
//     drops the series of whatever vanished;
//   - per scrape: watch state and problems are read from TableSync.status().
//
// Families with a series per service, route or watch (thousands in a large
// fleet) are written from those cells by families.ts; prom-client keeps the
// few fixed ones (table build, swaps, problems, certificates) and Node's
// process metrics.
//
// Several worker processes share one scrape through prom-client's
// AggregatorRegistry: `json()` gives every metric in the form it aggregates,
// per-request counters sum across workers, and gauges that describe the one
// shared table use the `first` aggregator instead of adding up copies.

import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'
import type { ProxyObserver } from '../proxy/observer.js'
import type { RouteTable } from '../routing/types.js'
import type { TableStore } from '../table/store.js'
import type { SyncStatus } from '../table/sync.js'
import type { CertificateReport } from '../tls/store.js'
import {
  exposition,
  extraLabel,
  type Family,
  familyJson,
  freeChunks,
  histogramSamples,
  type Labels,
  type MetricJson,
} from './families.js'
import {
  ALWAYS_REPORTED_CLASSES,
  DURATION_BUCKETS,
  type EventCount,
  RequestCounters,
  STATUS_CLASSES,
  UPSTREAM_ERROR_REASONS,
} from './request-counters.js'

export type { MetricJson } from './families.js'

export interface MetricsOptions {
  readonly store: TableStore
  readonly status: () => SyncStatus
  /** Node.js process metrics (CPU, memory, event loop, GC); on unless a test turns them off. */
  readonly defaultMetrics?: boolean
  /** The TLS certificates served (and set aside), where this process holds them. */
  readonly certificates?: () => CertificateReport
}

const REQUEST_DURATION = {
  name: 'switchyard_request_duration_seconds',
  help: 'Time from the request arriving to the response ending, by service and route.',
  labelNames: ['service', 'route'],
} as const

const VERSION_REQUEST_DURATION = {
  name: 'switchyard_version_request_duration_seconds',
  help: 'Time from the request arriving to the response ending, by service and instance version over all routes: what a canary is compared on.',
  labelNames: ['service', 'version'],
} as const

const STATUS_CLASS_LABELS = STATUS_CLASSES.map((c) => extraLabel('status_class', c))
const REASON_LABELS = UPSTREAM_ERROR_REASONS.map((r) => extraLabel('reason', r))

const TABLE_BUILD_BUCKETS = [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1]

/** Instances of one service on one route with one version, as of the last swap. */
interface InstanceCount {
  readonly labels: Labels
  healthy: number
  serving: number
}

export class SwitchyardMetrics {
  readonly registry = new Registry()
  readonly counters = new RequestCounters()
  /** The families written from cells, in the order they are exposed (before the registry's). */
  readonly families: readonly Family[]
  /** Feeds the request counters; cheap enough to stay on for every request. */
  readonly observer: ProxyObserver
  private readonly tableBuild: Histogram<'changed'>
  private readonly swaps: Counter
  private readonly generation: Gauge
  private instances: InstanceCount[] = []

  constructor(options: MetricsOptions) {
    const { registry, counters } = this
    const registers = [registry]
    const { status, certificates, store } = options

    /** A family of one sample per label set, which `each` lists. */
    const plain = (
      name: string,
      help: string,
      type: 'counter' | 'gauge',
      labelNames: string[],
      aggregator: 'sum' | 'first',
      each: (sample: (labels: Labels, value: number) => void) => void,
    ): Family => ({
      name,
      help,
      type,
      labelNames,
      aggregator,
      samples: (emit) => each((labels, value) => emit(name, labels, value)),
    })
    const events = (name: string, help: string, labelNames: string[], counts: () => Iterable<EventCount>) =>
      plain(name, help, 'counter', labelNames, 'sum', (sample) => {
        for (const c of counts()) sample(c.labels, c.n)
      })
    const requests = 'switchyard_requests_total'
    const upstreamErrors = 'switchyard_upstream_errors_total'
    this.families = [
      {
        name: requests,
        help: 'Requests answered, by service, route, instance version and status class (2xx, 4xx, 5xx reported from 0). Requests that matched no route have empty labels, once there are any.',
        type: 'counter',
        labelNames: ['service', 'route', 'version', 'status_class'],
        aggregator: 'sum',
        samples: (emit) => {
          for (const s of counters.requestSeries()) {
            const unrouted = counters.isUnrouted(s)
            const labels = { service: s.service, route: s.route, version: s.version }
            for (let i = 0; i < s.byClass.length; i++) {
              const n = s.byClass[i] as number
              if (n > 0 || (!unrouted && ALWAYS_REPORTED_CLASSES.has(i)))
                emit(requests, labels, n, STATUS_CLASS_LABELS[i])
            }
          }
        },
      },
      {
        ...REQUEST_DURATION,
        type: 'histogram',
        aggregator: 'sum',
        samples: histogramSamples(
          REQUEST_DURATION.name,
          DURATION_BUCKETS,
          () => counters.durationSeries(),
          (d) => ({ service: d.service, route: d.route }),
        ),
      },
      {
        ...VERSION_REQUEST_DURATION,
        type: 'histogram',
        aggregator: 'sum',
        samples: histogramSamples(
          VERSION_REQUEST_DURATION.name,
          DURATION_BUCKETS,
          () => counters.versionDurationSeries(),
          (d) => ({ service: d.service, version: d.version }),
        ),
      },
      {
        name: upstreamErrors,
        help: 'Failed exchanges with an instance, by service and reason (connect, timeout, reset, busy: no free connection).',
        type: 'counter',
        labelNames: ['service', 'reason'],
        aggregator: 'sum',
        samples: (emit) => {
          for (const e of counters.errorSeries()) {
            const labels = { service: e.service }
            for (let i = 0; i < e.byReason.length; i++)
              emit(upstreamErrors, labels, e.byReason[i] as number, REASON_LABELS[i])
          }
        },
      },
      events(
        'switchyard_timeouts_total',
        'Timeouts by kind: connect, response-headers, idle, queue (towards an instance of service), client-headers (a slow client; service "") and client-body (a stalled upload).',
        ['service', 'kind'],
        () => counters.timeoutCounts(),
      ),
      events(
        'switchyard_instance_ejections_total',
        'Instances taken out by passive health after repeated connect failures, by service.',
        ['service'],
        () => counters.ejectionCounts(),
      ),
      events(
        'switchyard_grpc_responses_total',
        'gRPC calls through routes with proto=grpc or grpcs, by service, route and the grpc-status they ended with.',
        ['service', 'route', 'grpc_status'],
        () => counters.grpcCounts(),
      ),
      events(
        'switchyard_rejected_requests_total',
        'Requests refused before routing as malformed or hostile, by reason (they also count in switchyard_requests_total with empty labels).',
        ['reason'],
        () => counters.rejectionCounts(),
      ),
      // What describes the one shared table and the watches: with several
      // workers, the primary's value counts ('first'), copies are not added up.
      plain(
        'switchyard_route_instances_healthy',
        'Instances on a route whose checks pass (serving or not), by service, route and version.',
        'gauge',
        ['service', 'route', 'version'],
        'first',
        (sample) => {
          for (const c of this.instances) sample(c.labels, c.healthy)
        },
      ),
      plain(
        'switchyard_route_instances_serving',
        'Instances on a route that get traffic: healthy, in the target state, weight above 0.',
        'gauge',
        ['service', 'route', 'version'],
        'first',
        (sample) => {
          for (const c of this.instances) sample(c.labels, c.serving)
        },
      ),
      plain(
        'switchyard_target_ready',
        "1 when a service's desired target state is served, 0 while it waits for healthy instances.",
        'gauge',
        ['service'],
        'first',
        (sample) => {
          for (const t of store.current.targets) sample({ service: t.service }, t.ready ? 1 : 0)
        },
      ),
      plain(
        'switchyard_consul_watch_errors_total',
        'Failed requests of a Consul watch (services, health:<service>, targets).',
        'counter',
        ['watch'],
        'first',
        (sample) => {
          for (const w of status().watches) sample({ watch: w.name }, w.errors)
        },
      ),
      plain(
        'switchyard_consul_watch_last_success_timestamp_seconds',
        'When a Consul watch last got an answer (Unix time); 0 before its first.',
        'gauge',
        ['watch'],
        'first',
        (sample) => {
          for (const w of status().watches) sample({ watch: w.name }, w.lastSuccessAt / 1000)
        },
      ),
    ]

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
    return [...this.families.map(familyJson), ...((await this.registry.getMetricsAsJSON()) as MetricJson[])]
  }

  /** Prometheus text exposition of every metric. */
  /** `free` releases the chunks once they are sent (they read as empty afterwards). */
  async text(): Promise<{ contentType: string; body: Buffer[]; free: () => void }> {
    const body = exposition(this.families, await this.registry.metrics())
    return { contentType: this.registry.contentType, body, free: () => freeChunks(body) }
  }

  private onSwap(table: RouteTable, swapped: boolean): void {
    this.counters.retain(table)
    if (swapped) this.swaps.inc()
    this.generation.set(table.generation)
    const counts = new Map<string, InstanceCount>()
    for (const route of table.routes) {
      for (const list of [route.backends, route.idle]) {
        for (const t of list) {
          const key = `${t.service}\0${route.id}\0${t.version}`
          let count = counts.get(key)
          if (count === undefined) {
            count = {
              labels: { service: t.service, route: route.id, version: t.version },
              healthy: 0,
              serving: 0,
            }
            counts.set(key, count)
          }
          if (t.state !== 'unhealthy' && t.state !== 'maintenance') count.healthy += 1
          if (t.state === 'serving') count.serving += 1
        }
      }
    }
    this.instances = [...counts.values()]
  }
}
