// buildRouteTable: the one place that decides where traffic goes. Pure: the
// same snapshot, targets, config and previous table give the same table, so it
// is tested on recorded Consul JSON with no network, and every table the proxy
// ever serves can be reproduced from its inputs.
//
// The decisions live in their own modules: facts.ts (what each instance's tags
// say, cached per instance list), selection.ts (health and the target in
// force), routes.ts (one Route from its candidates), weights.ts (shares),
// lookup-index.ts (the index lookup.ts reads) and reuse.ts (unchanged routes
// kept from the previous table). This file puts them in order.

import { serviceFacts } from './facts.js'
import { indexRoutes } from './lookup-index.js'
import { ProblemList } from './problems.js'
import { previousInputs, type RouteInputs, rememberInputs, sameKey } from './reuse.js'
import { addPendingRoutes, buildRoute, type Candidate } from './routes.js'
import { type Health, instanceHealth, matchesTarget, resolveTargets } from './selection.js'
import { formatTarget } from './targets.js'
import type { CatalogSnapshot, InstanceSnapshot, Problem, Route, RouteTable, TargetEntry } from './types.js'

export { routeId } from './routes.js'

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
  readonly table: RouteTable
  readonly problems: readonly Problem[]
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

interface RouteGroup {
  readonly candidates: Candidate[]
  readonly key: unknown[]
  lastService: string
}

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

  const before = previousInputs(previous)
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
  if (addPendingRoutes(catalog, config.tagPrefix, routes, problems)) {
    routes.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  }

  const table: RouteTable = {
    generation: previous.generation + 1,
    routes,
    ...indexRoutes(config.fallthrough ? routes.filter((r) => r.backends.length > 0) : routes),
    targets: statuses,
    problems: problems.list,
  }
  rememberInputs(table, inputs)
  return { table, problems: problems.list }
}
