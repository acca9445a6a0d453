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

import { applyFabioConfig, readFabioConfig } from './fabio-config.js'
import { serviceFacts } from './facts.js'
import { indexRoutes } from './lookup-index.js'
import { ProblemList } from './problems.js'
import { previousInputs, type RouteInputs, rememberInputs, sameKey } from './reuse.js'
import { addPendingRoutes, buildRoute, type Candidate } from './routes.js'
import {
  type ChecksRequired,
  type Health,
  instanceHealth,
  matchesTarget,
  resolveTargets,
} from './selection.js'
import { formatTarget } from './targets.js'
import type {
  CatalogSnapshot,
  InstanceSnapshot,
  PathMatcher,
  Route,
  RouteTable,
  TargetEntry,
} from './types.js'

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
  /** How request paths match route paths; `segment` when absent. */
  readonly matcher?: PathMatcher
  /** Which checks must pass (see selection.ts); `all` when absent. */
  readonly checksRequired?: ChecksRequired
  /** Names of the `proxy.auth` schemes; an `auth=` naming another is a problem. */
  readonly authSchemes?: readonly string[]
  /** KV key (and prefix) of Fabio's route overrides; '' or absent: none are read. */
  readonly fabioKvPath?: string
  /** KV key of the HTML body for 404 answers; '' or absent: none. */
  readonly noRouteHtmlPath?: string
  /** Whether routing.stickyKeyFile is set (else a sticky target is a problem and applies without stickiness). */
  readonly stickyKeys?: boolean
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
  matcher: 'segment',
  portHosts: false,
  noRouteHtml: null,
  targets: [],
  problems: [],
}

interface RouteGroup {
  readonly candidates: Candidate[]
  readonly key: unknown[]
  lastService: string
}

/**
 * `kv` holds the KV entries the build reads: the target keys and, when
 * configured, Fabio's route overrides and no-route page; each is picked out by
 * its key.
 */
export function buildRouteTable(
  catalog: CatalogSnapshot,
  kv: readonly TargetEntry[],
  config: BuildConfig,
  previous: RouteTable = EMPTY_TABLE,
): BuildResult {
  const problems = new ProblemList()
  const healthy = new Set(config.healthyStatuses)
  const matcher = config.matcher ?? 'segment'
  const checksRequired = config.checksRequired ?? 'all'

  // Health and identity of every instance, computed once.
  const health = new Map<InstanceSnapshot, Health>()
  for (const instances of catalog.services.values()) {
    for (const instance of instances) health.set(instance, instanceHealth(instance, healthy, checksRequired))
  }

  const statuses = resolveTargets(catalog, kv, config, previous, health, problems)
  const effective = new Map(statuses.map((s) => [s.service, s.effective]))

  // Group every (instance, tag) by the route it asks for.
  const byRoute = new Map<string, RouteGroup>()
  const healthyKey = `${config.healthyStatuses.join(',')} ${checksRequired} ${matcher}`
  const serviceNames = [...catalog.services.keys()].sort()
  for (const service of serviceNames) {
    const selection = effective.get(service) ?? null
    const list = catalog.services.get(service) ?? []
    let target: string | null = null
    for (const facts of serviceFacts(list, config.tagPrefix, matcher).instances) {
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
          fixedWeight: spec.weight,
        })
      }
    }
  }
  applyOverrides(byRoute, kv, config, problems)

  const authSchemes = new Set(config.authSchemes ?? [])
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
    const route = buildRoute(id, group.candidates, effective, routeProblems, authSchemes)
    for (const p of routeProblems.list) problems.add(p.code, p.subject, p.message)
    routes.push(route)
    inputs.set(id, { route, key: group.key, problems: routeProblems.list })
  }
  if (addPendingRoutes(catalog, config.tagPrefix, matcher, routes, problems)) {
    routes.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  }

  const table: RouteTable = {
    generation: previous.generation + 1,
    routes,
    ...indexRoutes(config.fallthrough ? routes.filter((r) => r.backends.length > 0) : routes, matcher),
    noRouteHtml: noRouteHtml(kv, config.noRouteHtmlPath ?? ''),
    targets: statuses,
    problems: problems.list,
  }
  rememberInputs(table, inputs)
  return { table }
}

/**
 * Fabio's KV overrides, applied to the grouped candidates. Every route's
 * reuse key gets the override text, so a change to it rebuilds the routes.
 * A route whose candidates were all deleted is gone, as in Fabio (a shorter
 * route answers), not a 503.
 */
function applyOverrides(
  byRoute: Map<string, RouteGroup>,
  kv: readonly TargetEntry[],
  config: BuildConfig,
  problems: ProblemList,
): void {
  const lines = readFabioConfig(kv, config.fabioKvPath ?? '', problems)
  if (lines.length === 0) return
  const text = lines.map((l) => l.text).join('\n')
  const base = [config.tagPrefix, `${config.healthyStatuses.join(',')} ${config.checksRequired ?? 'all'}`]
  applyFabioConfig(
    lines,
    {
      tagPrefix: config.tagPrefix,
      matcher: config.matcher ?? 'segment',
      candidatesOf: (id, create) => {
        let group = byRoute.get(id)
        if (group === undefined && create) {
          group = { candidates: [], key: [...base], lastService: '' }
          byRoute.set(id, group)
        }
        return group?.candidates
      },
      all: () => [...byRoute].map(([id, g]) => [id, g.candidates] as [string, Candidate[]]),
      set: (id, candidates) => {
        const group = byRoute.get(id)
        if (group === undefined) return
        group.candidates.length = 0
        group.candidates.push(...candidates)
      },
    },
    problems,
  )
  for (const [id, group] of byRoute) {
    if (group.candidates.length === 0) byRoute.delete(id)
    else group.key.push(text)
  }
}

function noRouteHtml(kv: readonly TargetEntry[], key: string): string | null {
  if (key === '') return null
  const value = kv.find((e) => e.key === key)?.value.trim() ?? ''
  return value === '' ? null : value
}
