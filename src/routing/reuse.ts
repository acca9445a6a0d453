// Route reuse across builds: a route whose inputs are all as they were when
// the previous table built it is that table's Route object again, so a health
// change to one service rebuilds (and diffs, and logs) that service's routes
// only. The cache lives beside the tables, never in them: a table stays plain
// data, and a previous table without an entry (one received from another
// process) simply gives a full build with the same result.

import type { Problem, Route, RouteTable } from './types.js'

/** What built a Route: a later build with the same inputs reuses the Route. */
export interface RouteInputs {
  readonly route: Route
  /**
   * Everything its candidates derive from: the tag prefix, the accepted
   * statuses, and per contributing service its name, instance list (the
   * object: lists are immutable) and effective target. Compared item by item.
   */
  readonly key: readonly unknown[]
  readonly problems: readonly Problem[]
}

// One entry per table (not per route): weak references cost the garbage collector.
const routeInputsOf = new WeakMap<RouteTable, ReadonlyMap<string, RouteInputs>>()

export function previousInputs(table: RouteTable): ReadonlyMap<string, RouteInputs> | undefined {
  return routeInputsOf.get(table)
}

export function rememberInputs(table: RouteTable, inputs: ReadonlyMap<string, RouteInputs>): void {
  routeInputsOf.set(table, inputs)
}

export function sameKey(a: readonly unknown[], b: readonly unknown[]): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}
