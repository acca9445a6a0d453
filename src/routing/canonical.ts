// The canonical text of a table: one sorted line per serving target and per
// target state. Two tables route the same way exactly when their texts are
// equal, so the diff of two texts is the change log line written on every swap.
//
// A route's lines are computed once per Route object, and a diff skips routes
// both tables share (buildRouteTable reuses unchanged Route objects): after a
// change to one service, the diff costs that service's lines, not the fleet's.
// A shared route's lines cannot match a changed route's, since every line
// starts with its route id and ids are unique in a table.

import { formatTarget } from './targets.js'
import type { BackendPool, Route, RouteTable } from './types.js'

const linesOf = new WeakMap<Route, readonly string[]>()

function routeLines(route: Route): readonly string[] {
  let lines = linesOf.get(route)
  if (lines !== undefined) return lines
  if (route.backends.length === 0) {
    lines = [`route ${route.id} no-instances`]
  } else {
    lines = route.backends.map((t) => {
      const version = t.version ? ` version ${t.version}` : ''
      const opts = t.optionsText ? ` opts "${t.optionsText}"` : ''
      return `route ${route.id} ${t.service} ${t.origin} weight ${t.weight.toFixed(4)}${version}${opts}`
    })
  }
  const v = route.variants
  if (v !== null) {
    // Where matched and pinned requests go moves traffic too: it belongs in the change log.
    const origins = (pool: BackendPool) => pool.backends.map((b) => b.origin).join(',')
    lines = [
      ...lines,
      ...v.rules.map(
        (r) =>
          `route ${route.id} match ${r.source} ${r.name}=${JSON.stringify(r.equals)} ${r.pool.service} version ${r.pool.version} ${origins(r.pool)}`,
      ),
      ...(v.sticky?.versions.map(
        (s) =>
          `route ${route.id} sticky ${v.sticky?.service} version ${s.version} buckets below ${s.upTo} ${origins(s.pool)}`,
      ) ?? []),
    ]
  }
  linesOf.set(route, lines)
  return lines
}

function targetLines(table: RouteTable): string[] {
  return table.targets.map((s) => {
    const state = s.ready ? 'ready' : `not-ready (${s.reason})`
    return `target ${s.service} desired ${formatTarget(s.desired)} effective ${formatTarget(s.effective)} ${state}`
  })
}

export function tableText(table: RouteTable): string[] {
  const lines: string[] = []
  for (const route of table.routes) lines.push(...routeLines(route))
  lines.push(...targetLines(table))
  return lines.sort()
}

export interface TableDiff {
  readonly added: readonly string[]
  readonly removed: readonly string[]
}

export function diffTables(before: RouteTable, after: RouteTable): TableDiff {
  const shared = new Set(after.routes)
  const kept = new Set<Route>()
  for (const route of before.routes) if (shared.has(route)) kept.add(route)
  const changedLines = (table: RouteTable): Set<string> => {
    const lines = new Set(targetLines(table))
    for (const route of table.routes) {
      if (kept.has(route)) continue
      for (const line of routeLines(route)) lines.add(line)
    }
    return lines
  }
  const a = changedLines(before)
  const b = changedLines(after)
  return {
    added: [...b].filter((line) => !a.has(line)).sort(),
    removed: [...a].filter((line) => !b.has(line)).sort(),
  }
}
