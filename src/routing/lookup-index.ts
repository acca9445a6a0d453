// The lookup index of a table: routes grouped by host pattern, built once per
// table so that lookup.ts does a few map reads per request.

import { groupBy } from './problems.js'
import type { HostRoutes, Route, RouteTable } from './types.js'

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
