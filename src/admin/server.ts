// The admin listener: liveness, readiness, metrics, JSON views and the status
// page, kept apart from the proxy port and on loopback by default.

import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import FindMyWay from 'find-my-way'
import { type Clock, systemClock } from '../clock.js'
import type { Logger } from '../log.js'
import type { TableStore } from '../table/store.js'
import type { SyncStatus } from '../table/sync.js'
import type { CertificateReport } from '../tls/store.js'
import { ProblemTracker } from './problems.js'
import { renderStatusPage } from './status-page.js'
import { VersionTraffic, type VersionTrafficView } from './version-traffic.js'
import { readiness, routesView, targetsView, watchesView } from './views.js'

const { randomBytes } = process.getBuiltinModule('node:crypto')
const { createServer } = process.getBuiltinModule('node:http')

export interface AdminOptions {
  readonly store: TableStore
  readonly status: () => SyncStatus
  readonly readinessMaxStaleMs: number
  /** The effective configuration with secrets already removed. */
  readonly config: unknown
  /**
   * Prometheus exposition for /metrics; without it /metrics answers 404.
   * `free`, when given, is called once the body has been written.
   */
  readonly metrics?: () => Promise<{
    contentType: string
    body: string | readonly Uint8Array[]
    free?: () => void
  }>
  readonly log?: Logger
  readonly clock?: Clock
  /** TLS certificates served and set aside; without it /api/certificates lists none. */
  readonly certificates?: () => CertificateReport
}

/** Seconds between status page refreshes unless `?refresh=N` asks otherwise (0 = off). */
const DEFAULT_REFRESH_SECONDS = 5

export function createAdminServer(options: AdminOptions): Server {
  const { store, status } = options
  const clock = options.clock ?? systemClock
  const log = options.log
  const certificates = () => options.certificates?.() ?? { certificates: [], problems: [] }
  const problems = new ProblemTracker(store, status, {
    clock,
    log,
    certificates: () => certificates().problems,
  })
  const router = FindMyWay({
    ignoreTrailingSlash: true,
    defaultRoute: (_req, res) => sendJson(res, 404, { error: 'not found' }),
  })
  const ready = () => readiness(status(), options.readinessMaxStaleMs, store.current.generation)

  router.on('GET', '/health', (_req, res) => sendJson(res, 200, { status: 'ok' }))
  router.on('GET', '/ready', (_req, res) => {
    const view = ready()
    sendJson(res, view.ready ? 200 : 503, view)
  })
  const metrics = options.metrics
  const versionTraffic = metrics ? new VersionTraffic(metrics, clock) : null
  /** Per-version numbers, or none when metrics are off or cannot be read (the rest of the view still answers). */
  const traffic = async (): Promise<Map<string, VersionTrafficView[]>> => {
    if (versionTraffic === null) return new Map()
    return versionTraffic.view().catch((err: unknown) => {
      log?.warn({ err }, 'reading per-version traffic from the metrics failed')
      return new Map()
    })
  }
  router.on('GET', '/api/routes', (_req, res) => sendJson(res, 200, routesView(store.current)))
  router.on('GET', '/api/targets', (_req, res) => {
    void traffic().then((t) => sendJson(res, 200, targetsView(store.current, t)))
  })
  router.on('GET', '/api/problems', (_req, res) => sendJson(res, 200, problems.current()))
  router.on('GET', '/api/watches', (_req, res) => sendJson(res, 200, watchesView(status())))
  router.on('GET', '/api/config', (_req, res) => sendJson(res, 200, options.config))
  router.on('GET', '/api/certificates', (_req, res) => sendJson(res, 200, certificates()))
  if (metrics) {
    router.on('GET', '/metrics', (_req, res) => {
      metrics().then(
        // The exposition's chunks are freed once written rather than at a later
        // GC, which at 1,000 services left two scrapes' worth (~60 chunks of
        // 64 KiB) and the C heap between them resident.
        ({ contentType, body, free }) => send(res, 200, contentType, body, {}, free),
        (err: unknown) => {
          log?.error({ err }, 'collecting metrics failed')
          send(res, 500, 'text/plain; charset=utf-8', 'collecting metrics failed\n')
        },
      )
    })
  }
  router.on('GET', '/', (req, res) => {
    void traffic().then((t) => statusPage(req, res, t))
  })
  const statusPage = (
    req: IncomingMessage,
    res: ServerResponse,
    traffic: Map<string, VersionTrafficView[]>,
  ) => {
    const now = clock.now()
    const current = status()
    const nonce = randomBytes(16).toString('base64')
    const body = renderStatusPage({
      now,
      readiness: ready(),
      swappedAt: store.swappedAt,
      routes: routesView(store.current),
      targets: targetsView(store.current, traffic),
      traffic,
      problems: problems.current(),
      certificates: options.certificates?.(),
      watches: {
        total: current.watches.length,
        failing: current.watches.filter((w) => w.failingSince > 0).map((w) => w.name),
      },
      refreshSeconds: refreshSeconds(req.url ?? '/'),
      nonce,
    })
    send(res, 200, 'text/html; charset=utf-8', body, {
      'content-security-policy': `default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-${nonce}'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
      'x-content-type-options': 'nosniff',
    })
  }

  const server = createServer((req: IncomingMessage, res: ServerResponse) => router.lookup(req, res))
  server.on('close', () => versionTraffic?.stop())
  return server
}

function refreshSeconds(url: string): number {
  const value = new URL(url, 'http://admin').searchParams.get('refresh')
  if (value === null) return DEFAULT_REFRESH_SECONDS
  const n = Number(value)
  return Number.isFinite(n) && n >= 0 ? Math.min(Math.round(n), 3600) : DEFAULT_REFRESH_SECONDS
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  send(res, status, 'application/json; charset=utf-8', `${JSON.stringify(body, null, 2)}\n`)
}

function send(
  res: ServerResponse,
  status: number,
  contentType: string,
  body: string | readonly Uint8Array[],
  headers: Record<string, string> = {},
  /** Called once the body is written (or the connection failed). */
  sent?: () => void,
): void {
  res.writeHead(status, {
    ...headers,
    'content-type': contentType,
    'content-length':
      typeof body === 'string' ? Buffer.byteLength(body) : body.reduce((n, chunk) => n + chunk.byteLength, 0),
    'cache-control': 'no-store',
  })
  if (typeof body === 'string') return void res.end(body, sent)
  res.cork()
  for (const chunk of body) res.write(chunk)
  res.end(sent)
}
