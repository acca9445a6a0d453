// Which instances a service's traffic may go to: their health, and the target
// in force. A valid, ready target wins; a target that is not ready (no healthy
// instance to send to, or a route it would leave without one) or a key that
// is invalid leaves the previous effective selection in place.

import type { BuildConfig } from './build.js'
import { type ServiceFacts, serviceFacts } from './facts.js'
import { instanceSlice, instanceVersion } from './identity.js'
import type { ProblemList } from './problems.js'
import { parseRolloutRecord, ROLLOUT_KEY } from './rollout-record.js'
import { formatTarget, parseTarget, targetVersions } from './targets.js'
import type {
  CatalogSnapshot,
  InstanceSnapshot,
  RolloutRecord,
  RouteTable,
  TargetEntry,
  TargetSpec,
  TargetStatus,
} from './types.js'

export type Health = 'healthy' | 'unhealthy' | 'maintenance'

/**
 * `all` (the default): every node and service check has an accepted status.
 * `one` (Fabio's default): at least one service check has one, and the node's
 * agent (serfHealth) is not critical; other node checks are not looked at.
 * Either way an instance needs a service check of its own, as in Fabio: one
 * without has nothing that says it is up. Maintenance wins over everything.
 */
export type ChecksRequired = 'all' | 'one'

export function instanceHealth(
  instance: InstanceSnapshot,
  healthy: ReadonlySet<string>,
  required: ChecksRequired = 'all',
): Health {
  let nodeOk = true
  let serviceChecks = 0
  let servicePassing = 0
  for (const check of instance.checks) {
    if (check.id === '_node_maintenance' || check.id.startsWith('_service_maintenance:')) return 'maintenance'
    if (check.serviceId === '') {
      if (
        required === 'all'
          ? !healthy.has(check.status)
          : check.id === 'serfHealth' && check.status === 'critical'
      )
        nodeOk = false
    } else {
      serviceChecks++
      if (healthy.has(check.status)) servicePassing++
    }
  }
  if (!nodeOk || serviceChecks === 0) return 'unhealthy'
  return (required === 'all' ? servicePassing === serviceChecks : servicePassing > 0)
    ? 'healthy'
    : 'unhealthy'
}

/** Whether the instance has a health check of its own (not only its node's). */
export function hasServiceCheck(instance: InstanceSnapshot): boolean {
  return instance.checks.some((c) => c.serviceId !== '')
}

export function matchesTarget(spec: TargetSpec | null, version: string, slice: string): boolean {
  if (spec === null) return true
  switch (spec.kind) {
    case 'version':
      return version === spec.version
    case 'slice':
      return slice === spec.slice
    case 'weights':
      return (spec.weights[version] ?? 0) > 0
  }
}

/** Decides, per service, which target is in force. */
export function resolveTargets(
  catalog: CatalogSnapshot,
  entries: readonly TargetEntry[],
  config: BuildConfig,
  previous: RouteTable,
  health: ReadonlyMap<InstanceSnapshot, Health>,
  problems: ProblemList,
): TargetStatus[] {
  const before = new Map(previous.targets.map((t) => [t.service, t]))
  const prefix = `${config.targetPrefix}/`
  const statuses: TargetStatus[] = []
  // A rollout's record sits beside its target (`<prefix>/<service>/rollout`):
  // shown with the target, never a target itself.
  const rollouts = new Map<string, RolloutRecord>()
  for (const entry of entries) {
    if (!entry.key.startsWith(prefix) || !entry.key.endsWith(`/${ROLLOUT_KEY}`)) continue
    const service = entry.key.slice(prefix.length, -ROLLOUT_KEY.length - 1)
    const record = service.includes('/') ? null : parseRolloutRecord(entry.value)
    if (record !== null) rollouts.set(service, record)
  }

  for (const entry of [...entries].sort((a, b) => (a.key < b.key ? -1 : 1))) {
    if (!entry.key.startsWith(prefix)) continue
    const service = entry.key.slice(prefix.length)
    if (service === '') continue
    if (service.endsWith(`/${ROLLOUT_KEY}`) && !service.slice(0, -ROLLOUT_KEY.length - 1).includes('/'))
      continue
    if (service.includes('/')) {
      problems.add('SWY_ERR_TARGET_INVALID', `key ${entry.key}`, `not a service key: use ${prefix}<service>`)
      continue
    }
    const old = before.get(service)
    const parsed = parseTarget(entry.value)
    let desired: TargetSpec | null
    if (parsed.ok) {
      desired = parsed.spec
    } else {
      problems.add(
        'SWY_ERR_TARGET_INVALID',
        `key ${entry.key}`,
        `${parsed.error}; keeping ${formatTarget(old?.effective ?? null)}`,
      )
      desired = old?.desired ?? null
    }

    if (desired?.kind === 'weights' && desired.sticky && !config.stickyKeys) {
      problems.add(
        'SWY_ERR_STICKY_KEY',
        `service ${service}`,
        'the target asks for sticky versions but routing.stickyKeyFile is not set: the split applies per request, without stickiness',
      )
    }
    const rollout = rollouts.get(service) ?? null
    const instances = catalog.services.get(service) ?? []
    const facts = serviceFacts(instances, config.tagPrefix, config.matcher)
    const missing =
      missingFor(desired, instances, health) || lostRoutes(desired, old?.effective ?? null, facts, health)
    if (missing === '') {
      statuses.push({
        service,
        desired,
        effective: desired,
        ready: true,
        reason: '',
        key: entry.key,
        modifyIndex: entry.modifyIndex,
        rollout,
      })
      continue
    }
    // Keep what traffic follows now. With no history (start-up) that is every
    // healthy instance, as if there were no key, so a restarted proxy keeps
    // serving what the rest of the fleet serves until the target is ready.
    const effective = old !== undefined ? old.effective : null
    const reason = `${missing}; serving ${formatTarget(effective)}`
    problems.add(
      'SWY_ERR_TARGET_NOT_READY',
      `service ${service}`,
      `target ${formatTarget(desired)}: ${reason}`,
    )
    statuses.push({
      service,
      desired,
      effective,
      ready: false,
      reason,
      key: entry.key,
      modifyIndex: entry.modifyIndex,
      rollout,
    })
  }
  return statuses
}

/** '' when the target can be served; otherwise what is missing, in words. */
function missingFor(
  spec: TargetSpec | null,
  instances: readonly InstanceSnapshot[],
  health: ReadonlyMap<InstanceSnapshot, Health>,
): string {
  if (spec === null) return ''
  const live = instances.filter((i) => health.get(i) === 'healthy')
  if (spec.kind === 'slice' && !live.some((i) => instanceSlice(i) === spec.slice))
    return `no healthy instance of slice ${spec.slice}`
  // Every version the target sends to, a match rule's too: a canary rule into
  // a version with nothing healthy is not ready like a cutover would be.
  const absent = targetVersions(spec).filter((v) => !live.some((i) => instanceVersion(i) === v))
  return absent.length === 0 ? '' : `no healthy instance of version ${absent.join(', ')}`
}

/**
 * Routes that serve the service now (under `current`) but would have no
 * serving instance under `next`: a new version without one of the old
 * version's route tags, or with a tag that does not parse, must not take
 * that route into a void. '' when there are none.
 */
function lostRoutes(
  next: TargetSpec | null,
  current: TargetSpec | null,
  facts: ServiceFacts,
  health: ReadonlyMap<InstanceSnapshot, Health>,
): string {
  if (next === null) return ''
  const now = new Set<string>()
  const then = new Set<string>()
  for (const f of facts.instances) {
    if (health.get(f.instance) !== 'healthy') continue
    for (const { id } of f.routes) {
      if (matchesTarget(current, f.version, f.slice)) now.add(id)
      if (matchesTarget(next, f.version, f.slice)) then.add(id)
    }
  }
  const lost = [...now].filter((id) => !then.has(id)).sort()
  if (lost.length === 0) return ''
  return `no serving instance of ${formatTarget(next)} on route ${lost.join(', ')}`
}
