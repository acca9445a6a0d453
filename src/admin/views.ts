// What the admin API shows: plain JSON views of the current table and sync
// state, shared by the JSON endpoints and the status page.

import { formatRollout } from '../routing/rollout-record.js'
import { formatTarget } from '../routing/targets.js'
import type { Backend, RouteTable } from '../routing/types.js'
import type { SyncStatus } from '../table/sync.js'
import type { VersionTrafficView } from './version-traffic.js'

export interface ReadinessView {
  readonly ready: boolean
  /** Why not ready, naming the cause; '' when ready. */
  readonly reason: string
  /** ISO time the cause began (the first failure, or the start of the wait); null when ready. */
  readonly since: string | null
  /** The failing Consul watch behind the reason, when one is. */
  readonly cause: ReadinessCause | null
  readonly generation: number
  readonly staleForMs: number
  readonly lastSyncAt: string | null
}

export interface ReadinessCause {
  readonly code: string
  readonly watch: string
  readonly error: string
  readonly failingSince: string
}

/**
 * Ready once a first table is built and Consul has not failed for longer than
 * `maxStaleMs`. When not, the reason names the cause an operator can act on —
 * Consul unreachable (with the error), the token lacking a permission (which
 * prefix), another watch failing — and since when.
 */
export function readiness(status: SyncStatus, maxStaleMs: number, generation: number): ReadinessView {
  const failing = status.watches.filter((w) => w.failingSince > 0 && w.lastError !== null)
  // A permission error is the most specific cause: it will not heal by itself.
  const worst =
    failing.find((w) => codeOf(w.lastError) === 'SWY_ERR_CONSUL_PERMISSION') ??
    [...failing].sort((a, b) => a.failingSince - b.failingSince)[0]
  const cause: ReadinessCause | null = worst
    ? {
        code: codeOf(worst.lastError),
        watch: worst.name,
        error: worst.lastError?.message ?? '',
        failingSince: new Date(worst.failingSince).toISOString(),
      }
    : null
  const what = cause === null ? '' : causeText(cause)
  let reason = ''
  let since: string | null = null
  if (!status.loaded) {
    since = cause?.failingSince ?? (status.startedAt ? new Date(status.startedAt).toISOString() : null)
    reason =
      cause === null
        ? `no routing table yet: waiting for the first complete read of Consul${since ? ` (since ${since})` : ''}`
        : `no routing table yet: ${what} (watch ${cause.watch}, failing since ${cause.failingSince})`
  } else if (status.staleForMs > maxStaleMs) {
    const lasted = `for ${Math.round(status.staleForMs / 1000)}s (limit ${Math.round(maxStaleMs / 1000)}s)`
    since = cause?.failingSince ?? null
    reason =
      cause === null
        ? `Consul unreachable ${lasted}; serving the last table`
        : cause.code === 'SWY_ERR_CONSUL_UNREACHABLE'
          ? `Consul unreachable ${lasted}: ${cause.error} (watch ${cause.watch}, since ${cause.failingSince}); serving the last table`
          : `Consul failing ${lasted}: ${what} (watch ${cause.watch}, since ${cause.failingSince}); serving the last table`
  }
  return {
    ready: reason === '',
    reason,
    since,
    cause: reason === '' ? null : cause,
    generation,
    staleForMs: status.staleForMs,
    lastSyncAt: status.lastSyncAt > 0 ? new Date(status.lastSyncAt).toISOString() : null,
  }
}

function causeText(cause: ReadinessCause): string {
  switch (cause.code) {
    case 'SWY_ERR_CONSUL_UNREACHABLE':
      return `Consul unreachable: ${cause.error}`
    case 'SWY_ERR_CONSUL_PERMISSION':
      return `the token lacks a permission (see config/acl/switchyard-proxy.hcl): ${cause.error}`
    default:
      return `Consul watch failing: ${cause.code}: ${cause.error}`
  }
}

function codeOf(error: Error | null): string {
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === 'string' && code.startsWith('SWY_ERR_') ? code : 'SWY_ERR_CONSUL_UNREACHABLE'
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

/**
 * Targets as the admin API shows them; `traffic` adds each version's success
 * rate and latency (what a rollout compares), when metrics are available.
 */
export function targetsView(table: RouteTable, traffic?: ReadonlyMap<string, readonly VersionTrafficView[]>) {
  return table.targets.map((t) => ({
    service: t.service,
    key: t.key,
    desired: formatTarget(t.desired),
    effective: formatTarget(t.effective),
    ready: t.ready,
    reason: t.reason,
    modifyIndex: t.modifyIndex,
    rollout: t.rollout === null ? null : { ...t.rollout, summary: formatRollout(t.rollout) },
    versions: traffic?.get(t.service) ?? [],
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
