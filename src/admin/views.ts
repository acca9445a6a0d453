// What the admin API shows: plain JSON views of the current table and sync
// state, shared by the JSON endpoints and the status page.

import { formatTarget } from '../routing/targets.js'
import type { Backend, RouteTable } from '../routing/types.js'
import type { SyncStatus } from '../table/sync.js'

export interface ReadinessView {
  readonly ready: boolean
  readonly reason: string
  readonly generation: number
  readonly staleForMs: number
  readonly lastSyncAt: string | null
}

export function readiness(status: SyncStatus, maxStaleMs: number, generation: number): ReadinessView {
  const reason = !status.loaded
    ? 'no routing table yet: waiting for the first complete read of Consul'
    : status.staleForMs > maxStaleMs
      ? `Consul unreachable for ${Math.round(status.staleForMs / 1000)}s (limit ${Math.round(maxStaleMs / 1000)}s); serving the last table`
      : ''
  return {
    ready: reason === '',
    reason,
    generation,
    staleForMs: status.staleForMs,
    lastSyncAt: status.lastSyncAt > 0 ? new Date(status.lastSyncAt).toISOString() : null,
  }
}

function instanceView(t: Backend) {
  return {
    service: t.service,
    id: t.instanceId,
    node: t.node,
    address: `${t.address}:${t.port}`,
    version: t.version,
    slice: t.slice,
    state: t.state,
    healthy: t.state !== 'unhealthy' && t.state !== 'maintenance',
    selected: t.state === 'serving' || t.state === 'zero-weight',
    weight: Number(t.weight.toFixed(6)),
    options: t.optionsText,
  }
}

export function routesView(table: RouteTable) {
  return table.routes.map((r) => ({
    id: r.id,
    host: r.host,
    path: r.path,
    match: r.rawPrefix ? 'prefix' : 'path-segment',
    services: r.services,
    serving: r.backends.length,
    instances: [...r.backends, ...r.idle].map(instanceView),
    access: r.access,
  }))
}

export function targetsView(table: RouteTable) {
  return table.targets.map((t) => ({
    service: t.service,
    key: t.key,
    desired: formatTarget(t.desired),
    effective: formatTarget(t.effective),
    ready: t.ready,
    reason: t.reason,
    modifyIndex: t.modifyIndex,
  }))
}

export type RouteView = ReturnType<typeof routesView>[number]
export type TargetView = ReturnType<typeof targetsView>[number]

/** Each Consul watch: when it last answered, and whether it is failing now. */
export function watchesView(status: SyncStatus) {
  return status.watches.map((w) => ({
    name: w.name,
    requests: w.requests,
    errors: w.errors,
    lastSuccessAt: w.lastSuccessAt > 0 ? new Date(w.lastSuccessAt).toISOString() : null,
    failingSince: w.failingSince > 0 ? new Date(w.failingSince).toISOString() : null,
    lastError: w.lastError?.message ?? null,
  }))
}
