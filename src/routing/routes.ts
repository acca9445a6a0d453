// One Route from the (instance, tag) candidates that ask for it: which of them
// serve, with what share, and the access rules a request must pass.

import type { ProblemList } from './problems.js'
import { buildCumulative, buildSchedule } from './schedule.js'
import type { Health } from './selection.js'
import { parseRouteTag } from './tags.js'
import type {
  AccessRules,
  Backend,
  CatalogSnapshot,
  InstanceSnapshot,
  InstanceState,
  PathMatcher,
  Route,
  RouteSpec,
  TargetSpec,
} from './types.js'
import { compileVariants, ruleVersions } from './variants.js'
import { servingWeights } from './weights.js'

/** One instance's claim on a route, with what the build decided about it. */
export interface Candidate {
  readonly instance: InstanceSnapshot
  readonly spec: RouteSpec
  readonly health: Health
  readonly selected: boolean
  readonly version: string
  readonly slice: string
  /** The tag's `weight=`, or what a `route weight` override in KV set. */
  fixedWeight: number | null
  /** Tags a KV override matches on, for routes written in KV; else the instance's own non-route tags. */
  readonly tags?: readonly string[]
}

export function routeId(spec: Pick<RouteSpec, 'host' | 'path' | 'rawPrefix'>): string {
  return `${spec.host}${spec.path}${spec.rawPrefix ? '*' : ''}`
}

export function buildRoute(
  id: string,
  candidates: readonly Candidate[],
  effective: ReadonlyMap<string, TargetSpec | null>,
  problems: ProblemList,
  authSchemes: ReadonlySet<string> = new Set(),
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
  const matched = new Map(services.map((s) => [s, ruleVersions(effective.get(s) ?? null)]))

  const backends: Backend[] = []
  const servingWeightsKept: number[] = []
  const idle: Backend[] = []
  const backendOf = new Map<Candidate, Backend>()
  for (const c of candidates) {
    const weight = weightOf.get(c) ?? 0
    const state: InstanceState =
      c.health === 'maintenance'
        ? 'maintenance'
        : c.health === 'unhealthy'
          ? 'unhealthy'
          : !c.selected
            ? matched.get(c.instance.service)?.has(c.version)
              ? 'match-only'
              : 'not-selected'
            : weight > 0
              ? 'serving'
              : 'zero-weight'
    const backend = makeBackend(c, weight, state)
    backendOf.set(c, backend)
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

  const auth = [...new Set(candidates.flatMap((c) => (c.spec.auth === null ? [] : [c.spec.auth])))].sort()
  if (auth.length > 1 || (auth.length === 1 && candidates.some((c) => c.spec.auth === null))) {
    // Fail closed: one instance asking for auth protects the whole route.
    problems.add(
      'SWY_ERR_ROUTE_CONFLICT',
      `route ${id}`,
      `instances disagree on auth=; a request must pass ${auth.map((a) => `auth=${a}`).join(' and ')}`,
    )
  }
  for (const scheme of auth) {
    if (!authSchemes.has(scheme)) {
      problems.add(
        'SWY_ERR_AUTH_SCHEME',
        `route ${id}`,
        `auth=${scheme} names no proxy.auth scheme; the route refuses every request`,
      )
    }
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
    auth,
    variants: compileVariants(id, candidates, backendOf, effective, problems),
  }
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
    tlsServerName: spec.tlsServerName,
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

/**
 * Routes of services listed in the catalog whose instances could not be read
 * yet: present but empty, so their requests get 503 instead of reaching a
 * shorter route of another service. Returns whether any was added.
 */
export function addPendingRoutes(
  catalog: CatalogSnapshot,
  tagPrefix: string,
  matcher: PathMatcher,
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
      const parsed = parseRouteTag(tag, tagPrefix, matcher)
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
        auth: [],
        variants: null,
      })
    }
  }
  return added
}
