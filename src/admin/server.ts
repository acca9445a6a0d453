// The admin listener: liveness, readiness, JSON views, kept apart from the
// proxy port and on loopback by default.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import FindMyWay from 'find-my-way'
import type { TableStore } from '../table/store.js'
import type { SyncStatus } from '../table/sync.js'
import { problemsView, readiness, routesView, targetsView } from './views.js'

export interface AdminOptions {
  readonly store: TableStore
  readonly status: () => SyncStatus
  readonly readinessMaxStaleMs: number
  /** The effective configuration with secrets already removed. */
  readonly config: unknown
}

export function createAdminServer(options: AdminOptions): Server {
  const router = FindMyWay({
    ignoreTrailingSlash: true,
    defaultRoute: (_req, res) => sendJson(res, 404, { error: 'not found' }),
  })
  const { store, status } = options

  router.on('GET', '/health', (_req, res) => sendJson(res, 200, { status: 'ok' }))
  router.on('GET', '/ready', (_req, res) => {
    const view = readiness(status(), options.readinessMaxStaleMs, store.current.generation)
    sendJson(res, view.ready ? 200 : 503, view)
  })
  router.on('GET', '/api/routes', (_req, res) => sendJson(res, 200, routesView(store.current)))
  router.on('GET', '/api/targets', (_req, res) => sendJson(res, 200, targetsView(store.current)))
  router.on('GET', '/api/problems', (_req, res) => sendJson(res, 200, problemsView(store.current, status())))
  router.on('GET', '/api/config', (_req, res) => sendJson(res, 200, options.config))

  return createServer((req: IncomingMessage, res: ServerResponse) => router.lookup(req, res))
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body, null, 2)}\n`
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  })
  res.end(text)
}
