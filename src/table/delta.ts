// A table change as the difference from the table before it, for handing
// tables to worker processes. Sending every table whole costs each worker a
// structured clone of the full table per change (megabytes at 10,000
// instances, for one health flip); a delta carries only the routes that
// changed. The builder reuses a route object when nothing about it changed,
// so "changed" is object identity and encoding is a walk over the routes; the
// target and problem lists are compared by content.
// Pure: no I/O, no state; `applyTableDelta(prev, encodeTableDelta(prev, next))`
// equals `next`.

import { indexRoutes } from '../routing/lookup-index.js'
import type { HostRoutes, PathMatcher, Problem, Route, RouteTable, TargetStatus } from '../routing/types.js'

export interface TableDelta {
  /** The generation this delta applies to. */
  readonly base: number
  readonly generation: number
  /** Routes that are new or differ from the base's, whole. */
  readonly changed: readonly Route[]
  /** Ids of the base's routes that are gone. */
  readonly removed: readonly string[]
  /** Ids of routes the lookup index leaves out (routing.fallthrough: routes without backends). */
  readonly unindexed: readonly string[]
  /** The new list when it changed, else null. */
  readonly targets: readonly TargetStatus[] | null
  readonly problems: readonly Problem[] | null
  readonly matcher: PathMatcher
  readonly noRouteHtml: string | null
}

export function encodeTableDelta(previous: RouteTable, next: RouteTable): TableDelta {
  const before = new Map(previous.routes.map((r) => [r.id, r]))
  const changed: Route[] = []
  for (const route of next.routes) {
    if (before.get(route.id) !== route) changed.push(route)
    before.delete(route.id)
  }
  const indexed = indexedRoutes(next)
  return {
    base: previous.generation,
    generation: next.generation,
    changed,
    removed: [...before.keys()],
    unindexed: next.routes.filter((r) => !indexed.has(r)).map((r) => r.id),
    targets: sameContent(next.targets, previous.targets) ? null : next.targets,
    problems: sameContent(next.problems, previous.problems) ? null : next.problems,
    matcher: next.matcher,
    noRouteHtml: next.noRouteHtml,
  }
}

/** Each build makes these lists anew; comparing their content keeps an unchanged one off the wire. */
function sameContent(a: readonly unknown[], b: readonly unknown[]): boolean {
  return a === b || (a.length === b.length && JSON.stringify(a) === JSON.stringify(b))
}

/** The table `delta` describes; throws when `previous` is not the table it was made from. */
export function applyTableDelta(previous: RouteTable, delta: TableDelta): RouteTable {
  if (previous.generation !== delta.base) {
    throw new Error(
      `table delta for generation ${delta.base} cannot apply to generation ${previous.generation}`,
    )
  }
  const byId = new Map(previous.routes.map((r) => [r.id, r]))
  for (const id of delta.removed) byId.delete(id)
  for (const route of delta.changed) byId.set(route.id, route)
  // The builder's order: by id.
  const routes = [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  const unindexed = new Set(delta.unindexed)
  return {
    generation: delta.generation,
    routes,
    ...indexRoutes(unindexed.size === 0 ? routes : routes.filter((r) => !unindexed.has(r.id)), delta.matcher),
    noRouteHtml: delta.noRouteHtml,
    targets: delta.targets ?? previous.targets,
    problems: delta.problems ?? previous.problems,
  }
}

function indexedRoutes(table: RouteTable): Set<Route> {
  const indexed = new Set<Route>()
  const add = (host: HostRoutes | null) => {
    if (host === null) return
    for (const route of host.byPath.values()) indexed.add(route)
    for (const { route } of host.rawPrefixes) indexed.add(route)
    for (const { route } of host.globs) indexed.add(route)
  }
  for (const host of table.exactHosts.values()) add(host)
  for (const glob of table.globHosts) add(glob.routes)
  add(table.anyHost)
  return indexed
}
