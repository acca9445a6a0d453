// buildRouteTable: the one place that decides where traffic goes. Pure: the
// same snapshot, targets, config and previous table give the same table, so it
// is tested on recorded Consul JSON with no network, and every table the proxy
// ever serves can be reproduced from its inputs.
//
// Incremental underneath, for fleets of thousands of instances: a health change
// replaces one service's instance list in the snapshot and leaves the other
// lists as they were (the same objects), so what is derived from an unchanged
// list (its instances sorted, their tags parsed) is looked up rather than
// recomputed, and a route whose inputs are all as they were when the previous
// table built it is that table's Route object again. The caches live beside
// the data, never in it: a table stays plain data, a previous table without a
// cache entry (one received from another process) gives a full build, and
// either way the result is the same.

import { instanceSlice, instanceVersion } from './identity.js'
import { buildCumulative, buildSchedule, groupShares } from './schedule.js'
import { isConnectableAddress, parseRouteTag } from './tags.js'
import { formatTarget, parseTarget } from './targets.js'
import type {
  AccessRules,
  Backend,
  CatalogSnapshot,
  HostRoutes,
  InstanceSnapshot,
  InstanceState,
  Problem,
  Route,
  RouteSpec,
  RouteTable,
  TargetEntry,
  TargetSpec,
  TargetStatus,
} from './types.js'

export interface BuildConfig {
  /** Tag prefix that marks a route, `urlprefix-` by default. */
  readonly tagPrefix: string
  /** Check statuses that count as healthy, `['passing']` by default. */
  readonly healthyStatuses: readonly string[]
  /** KV prefix of target-state keys, without trailing slash. */
  readonly targetPrefix: string
  /** Leave routes without a serving instance out of lookup, so a shorter prefix can answer. */
  readonly fallthrough: boolean
}

export interface BuildResult {
  /** The new table; its `problems` list every problem found building it. */
  readonly table: RouteTable
}

export const EMPTY_TABLE: RouteTable = {
  generation: 0,
  routes: [],
  exactHosts: new Map(),
  globHosts: [],
  anyHost: null,
  targets: [],
  problems: [],
}

type Health = 'healthy' | 'unhealthy' | 'maintenance'

interface Candidate {
  readonly instance: InstanceSnapshot
  readonly spec: RouteSpec
  readonly health: Health
  readonly selected: boolean
  readonly version: string
  readonly slice: string
}

/** What an instance's own fields say, whatever its health and the targets. */
interface InstanceFacts {
  readonly instance: InstanceSnapshot
  readonly version: string
  readonly slice: string
  /** Its routes in tag order. */
  readonly routes: readonly { readonly id: string; readonly spec: RouteSpec }[]
  /** Tag problems in tag order. */
  readonly problems: readonly Problem[]
}

/** A service's instances in table order with their facts: derived once per instance list object. */
interface ServiceFacts {
  readonly tagPrefix: string
  readonly instances: readonly InstanceFacts[]
}

/** What built a Route: a later build with the same inputs reuses the Route. */
interface RouteInputs {
  readonly route: Route
  /**
   * Everything its candidates derive from: the tag prefix, the accepted
   * statuses, and per contributing service its name, instance list (the
   * object: lists are immutable) and effective target. Compared item by item.
   */
  readonly key: readonly unknown[]
  readonly problems: readonly Problem[]
}

interface RouteGroup {
  readonly candidates: Candidate[]
  readonly key: unknown[]
  lastService: string
}

// One entry per instance list and one per table (not per instance or route):
// weak references cost the garbage collector, and there are thousands.
const serviceFactsOf = new WeakMap<readonly InstanceSnapshot[], ServiceFacts>()
const routeInputsOf = new WeakMap<RouteTable, ReadonlyMap<string, RouteInputs>>()

export function buildRouteTable(
  catalog: CatalogSnapshot,
  targets: readonly TargetEntry[],
  config: BuildConfig,
  previous: RouteTable = EMPTY_TABLE,
): BuildResult {
  const problems = new ProblemList()
  const healthy = new Set(config.healthyStatuses)

  // Health and identity of every instance, computed once.
  const health = new Map<InstanceSnapshot, Health>()
  for (const instances of catalog.services.values()) {
    for (const instance of instances) health.set(instance, instanceHealth(instance, healthy))
  }

  const statuses = resolveTargets(catalog, targets, config, previous, health, problems)
  const effective = new Map(statuses.map((s) => [s.service, s.effective]))

  // Group every (instance, tag) by the route it asks for.
  const byRoute = new Map<string, RouteGroup>()
  const healthyKey = config.healthyStatuses.join(',')
  const serviceNames = [...catalog.services.keys()].sort()
  for (const service of serviceNames) {
    const selection = effective.get(service) ?? null
    const list = catalog.services.get(service) ?? []
    let target: string | null = null
    for (const facts of serviceFacts(list, config.tagPrefix).instances) {
      for (const p of facts.problems) problems.add(p.code, p.subject, p.message)
      for (const { id, spec } of facts.routes) {
        let group = byRoute.get(id)
        if (group === undefined) {
          group = { candidates: [], key: [config.tagPrefix, healthyKey], lastService: '' }
          byRoute.set(id, group)
        }
        if (group.lastService !== service) {
          target ??= formatTarget(selection)
          group.key.push(service, list, target)
          group.lastService = service
        }
        group.candidates.push({
          instance: facts.instance,
          spec,
          health: health.get(facts.instance) ?? 'unhealthy',
          selected: matchesTarget(selection, facts.version, facts.slice),
          version: facts.version,
          slice: facts.slice,
        })
      }
    }
  }

  const before = routeInputsOf.get(previous)
  const inputs = new Map<string, RouteInputs>()
  const routes: Route[] = []
  for (const id of [...byRoute.keys()].sort()) {
    const group = byRoute.get(id) as RouteGroup
    const old = before?.get(id)
    if (old && sameKey(old.key, group.key)) {
      for (const p of old.problems) problems.add(p.code, p.subject, p.message)
      routes.push(old.route)
      inputs.set(id, old)
      continue
    }
    const routeProblems = new ProblemList()
    const route = buildRoute(id, group.candidates, effective, routeProblems)
    for (const p of routeProblems.list) problems.add(p.code, p.subject, p.message)
    routes.push(route)
    inputs.set(id, { route, key: group.key, problems: routeProblems.list })
  }
  if (addPendingRoutes(catalog, config, routes, problems)) {
    routes.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  }

  const table: RouteTable = {
    generation: previous.generation + 1,
    routes,
    ...indexRoutes(config.fallthrough ? routes.filter((r) => r.backends.length > 0) : routes),
    targets: statuses,
    problems: problems.list,
  }
  routeInputsOf.set(table, inputs)
  return { table }
}

function serviceFacts(instances: readonly InstanceSnapshot[], tagPrefix: string): ServiceFacts {
  const cached = serviceFactsOf.get(instances)
  if (cached !== undefined && cached.tagPrefix === tagPrefix) return cached
  const facts: ServiceFacts = {
    tagPrefix,
    instances: [...instances].sort(compareInstances).map((i) => instanceFacts(i, tagPrefix)),
  }
  serviceFactsOf.set(instances, facts)
  return facts
}

function instanceFacts(instance: InstanceSnapshot, tagPrefix: string): InstanceFacts {
  const routes: { id: string; spec: RouteSpec }[] = []
  const problems: Problem[] = []
  // Consul accepts any address and port; one no connection can be made to
  // must not become a route (nor an origin undici refuses).
  const unreachable = !isConnectableAddress(instance.address)
    ? `address "${instance.address}" is not an IP address or host name`
    : !Number.isInteger(instance.port) || instance.port < 1 || instance.port > 65_535
      ? `port ${instance.port} is not from 1 to 65535`
      : ''
  if (unreachable !== '' && instance.tags.some((t) => t.startsWith(tagPrefix))) {
    problems.push({
      code: 'SWY_ERR_INSTANCE_ADDRESS',
      subject: instanceSubject(instance),
      message: `${unreachable}; the instance gets no traffic`,
    })
    return { instance, version: instanceVersion(instance), slice: instanceSlice(instance), routes, problems }
  }
  for (const tag of instance.tags) {
    const parsed = parseRouteTag(tag, tagPrefix)
    if (parsed === null) continue
    if (!parsed.ok) {
      problems.push({
        code: 'SWY_ERR_TAG_SYNTAX',
        subject: instanceSubject(instance),
        message: `tag "${tag}": ${parsed.error}`,
      })
      continue
    }
    for (const warning of parsed.warnings) {
      problems.push({
        code: 'SWY_ERR_TAG_OPTION',
        subject: instanceSubject(instance),
        message: `tag "${tag}": ${warning}`,
      })
    }
    routes.push({ id: routeId(parsed.spec), spec: parsed.spec })
  }
  return { instance, version: instanceVersion(instance), slice: instanceSlice(instance), routes, problems }
}

function instanceSubject(instance: InstanceSnapshot): string {
  return `service ${instance.service}, instance ${instance.id} on ${instance.node}`
}

function sameKey(a: readonly unknown[], b: readonly unknown[]): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

function instanceHealth(instance: InstanceSnapshot, healthy: ReadonlySet<string>): Health {
  let result: Health = 'healthy'
  for (const check of instance.checks) {
    if (check.id === '_node_maintenance' || check.id.startsWith('_service_maintenance:')) return 'maintenance'
    if (!healthy.has(check.status)) result = 'unhealthy'
  }
  return result
}

function matchesTarget(spec: TargetSpec | null, version: string, slice: string): boolean {
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

/**
 * Decides, per service, which target is in force. A valid, ready target wins.
 * A target that is not ready (no healthy instance to send to) or a key that is
 * invalid leaves the previous effective selection in place.
 */
function resolveTargets(
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

  for (const entry of [...entries].sort((a, b) => (a.key < b.key ? -1 : 1))) {
    if (!entry.key.startsWith(prefix)) continue
    const service = entry.key.slice(prefix.length)
    if (service === '') continue
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

    const instances = catalog.services.get(service) ?? []
    const facts = serviceFacts(instances, config.tagPrefix)
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
  switch (spec.kind) {
    case 'version':
      return live.some((i) => instanceVersion(i) === spec.version)
        ? ''
        : `no healthy instance of version ${spec.version}`
    case 'slice':
      return live.some((i) => instanceSlice(i) === spec.slice)
        ? ''
        : `no healthy instance of slice ${spec.slice}`
    case 'weights': {
      const absent = Object.entries(spec.weights)
        .filter(([v, w]) => w > 0 && !live.some((i) => instanceVersion(i) === v))
        .map(([v]) => v)
      return absent.length === 0 ? '' : `no healthy instance of version ${absent.join(', ')}`
    }
  }
}

/**
 * Routes of services listed in the catalog whose instances could not be read
 * yet: present but empty, so their requests get 503 instead of reaching a
 * shorter route of another service. Returns whether any was added.
 */
function addPendingRoutes(
  catalog: CatalogSnapshot,
  config: BuildConfig,
  routes: Route[],
  problems: ProblemList,
): boolean {
  const known = new Set(routes.map((r) => r.id))
  let added = false
  for (const [service, tags] of [...(catalog.pending ?? [])].sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (catalog.services.has(service)) continue
    problems.add(
      'SWY_ERR_SERVICE_NOT_LOADED',
      `service ${service}`,
      'its instances could not be read from Consul yet; its routes answer 503',
    )
    for (const tag of tags) {
      const parsed = parseRouteTag(tag, config.tagPrefix)
      if (parsed === null || !parsed.ok) continue
      const id = routeId(parsed.spec)
      if (known.has(id)) continue
      known.add(id)
      added = true
      const { host, path, rawPrefix } = parsed.spec
      routes.push({
        id,
        host,
        path,
        rawPrefix,
        services: [service],
        backends: [],
        idle: [],
        schedule: [],
        cumulative: [],
        access: [],
      })
    }
  }
  return added
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
    for (const { id, spec } of f.routes) {
      if (spec.weight === 0) continue
      if (matchesTarget(current, f.version, f.slice)) now.add(id)
      if (matchesTarget(next, f.version, f.slice)) then.add(id)
    }
  }
  const lost = [...now].filter((id) => !then.has(id)).sort()
  if (lost.length === 0) return ''
  return `no serving instance of ${formatTarget(next)} on route ${lost.join(', ')}`
}

function buildRoute(
  id: string,
  candidates: readonly Candidate[],
  effective: ReadonlyMap<string, TargetSpec | null>,
  problems: ProblemList,
): Route {
  const first = candidates[0] as Candidate
  const services = [...new Set(candidates.map((c) => c.instance.service))]
  if (services.length > 1) {
    problems.add(
      'SWY_ERR_ROUTE_CONFLICT',
      `route ${id}`,
      `claimed by services ${services.join(', ')}; traffic is shared`,
    )
  }

  const serving = candidates.filter((c) => c.health === 'healthy' && c.selected)
  const weights = servingWeights(serving, effective)

  const weightOf = new Map(serving.map((c, i) => [c, weights[i] as number]))

  const backends: Backend[] = []
  const servingWeightsKept: number[] = []
  const idle: Backend[] = []
  for (const c of candidates) {
    const weight = weightOf.get(c) ?? 0
    const state: InstanceState =
      c.health === 'maintenance'
        ? 'maintenance'
        : c.health === 'unhealthy'
          ? 'unhealthy'
          : !c.selected
            ? 'not-selected'
            : weight > 0
              ? 'serving'
              : 'zero-weight'
    const backend = makeBackend(c, weight, state)
    if (state === 'serving') {
      backends.push(backend)
      servingWeightsKept.push(weight)
    } else {
      idle.push(backend)
    }
  }

  const ruleSets = new Map<string, AccessRules>()
  for (const c of candidates) if (c.spec.access) ruleSets.set(JSON.stringify(c.spec.access), c.spec.access)
  const withoutRules = candidates.some((c) => c.spec.access === null)
  if (ruleSets.size > 1 || (ruleSets.size === 1 && withoutRules)) {
    problems.add(
      'SWY_ERR_ROUTE_CONFLICT',
      `route ${id}`,
      'instances disagree on allow/deny; a request must pass all of them',
    )
  }

  return {
    id,
    host: first.spec.host,
    path: first.spec.path,
    rawPrefix: first.spec.rawPrefix,
    services,
    backends,
    idle,
    schedule: buildSchedule(servingWeightsKept),
    cumulative: buildCumulative(servingWeightsKept),
    access: [...ruleSets.values()],
  }
}

/**
 * Share of the route's traffic for each serving candidate: services in
 * proportion to their instance count, then versions by the target's weights,
 * then instances by their `weight=` tags.
 */
function servingWeights(
  serving: readonly Candidate[],
  effective: ReadonlyMap<string, TargetSpec | null>,
): number[] {
  const result = new Array<number>(serving.length).fill(0)
  const byService = groupBy(
    serving.map((c, i) => ({ c, i })),
    ({ c }) => c.instance.service,
  )
  for (const [service, members] of byService) {
    const serviceShare = members.length / serving.length
    const spec = effective.get(service) ?? null
    const groups = groupBy(members, ({ c }) => (spec?.kind === 'weights' ? c.version : ''))
    const groupWeight = (key: string) => (spec?.kind === 'weights' ? (spec.weights[key] ?? 0) : 1)
    const totalGroupWeight = [...groups.keys()].reduce((a, k) => a + groupWeight(k), 0)
    for (const [key, group] of groups) {
      const versionShare = totalGroupWeight > 0 ? groupWeight(key) / totalGroupWeight : 0
      const shares = groupShares(group.map(({ c }) => c.spec.weight))
      group.forEach(({ i }, n) => {
        result[i] = serviceShare * versionShare * (shares[n] as number)
      })
    }
  }
  return result
}

function makeBackend(c: Candidate, weight: number, state: InstanceState): Backend {
  const { instance, spec } = c
  const hostPort = instance.address.includes(':')
    ? `[${instance.address}]:${instance.port}`
    : `${instance.address}:${instance.port}`
  return {
    key: `${instance.node}/${instance.id}`,
    service: instance.service,
    instanceId: instance.id,
    node: instance.node,
    address: instance.address,
    port: instance.port,
    version: c.version,
    slice: c.slice,
    origin: `${spec.proto}://${hostPort}`,
    tlsSkipVerify: spec.tlsSkipVerify,
    strip: spec.strip,
    prepend: spec.prepend,
    hostHeader:
      spec.hostHeader.kind === 'dst'
        ? hostPort
        : spec.hostHeader.kind === 'name'
          ? spec.hostHeader.name
          : null,
    redirect: spec.redirect,
    weight,
    state,
    optionsText: spec.optionsText,
  }
}

export function routeId(spec: Pick<RouteSpec, 'host' | 'path' | 'rawPrefix'>): string {
  return `${spec.host}${spec.path}${spec.rawPrefix ? '*' : ''}`
}

/** The lookup index over `routes` (also rebuilt by workers from table deltas, table/delta.ts). */
export function indexRoutes(
  routes: readonly Route[],
): Pick<RouteTable, 'exactHosts' | 'globHosts' | 'anyHost'> {
  const byHost = groupBy(routes, (r) => r.host)
  const exactHosts = new Map<string, HostRoutes>()
  const globHosts: { suffix: string; routes: HostRoutes }[] = []
  let anyHost: HostRoutes | null = null
  for (const [host, list] of byHost) {
    const index: HostRoutes = {
      byPath: new Map(list.filter((r) => !r.rawPrefix).map((r) => [r.path, r])),
      rawPrefixes: list.filter((r) => r.rawPrefix).sort((a, b) => b.path.length - a.path.length),
    }
    if (host === '') anyHost = index
    else if (host.startsWith('*.')) globHosts.push({ suffix: host.slice(1), routes: index })
    else exactHosts.set(host, index)
  }
  globHosts.sort((a, b) => b.suffix.length - a.suffix.length || (a.suffix < b.suffix ? -1 : 1))
  return { exactHosts, globHosts, anyHost }
}

function compareInstances(a: InstanceSnapshot, b: InstanceSnapshot): number {
  return a.node < b.node ? -1 : a.node > b.node ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0
}

function groupBy<T>(items: readonly T[], key: (item: T) => string): Map<string, T[]> {
  const map = new Map<string, T[]>()
  for (const item of items) {
    const k = key(item)
    const list = map.get(k)
    if (list) list.push(item)
    else map.set(k, [item])
  }
  return map
}

/** Problems in first-seen order, each reported once per build. */
class ProblemList {
  readonly list: Problem[] = []
  // Made on the first problem: most lists (one per route built) stay empty.
  private seen: Set<string> | null = null
  add(code: Problem['code'], subject: string, message: string): void {
    const key = `${code}\u0000${subject}\u0000${message}`
    this.seen ??= new Set()
    if (this.seen.has(key)) return
    this.seen.add(key)
    this.list.push({ code, subject, message })
  }
}
