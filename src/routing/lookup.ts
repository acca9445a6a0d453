// Request → route. Hosts are tried from most to least specific (exact host,
// then `*.` globs by length, then routes without a host); within a host the
// longest matching prefix wins. A route `/web` matches `/web`, `/web/` and
// `/web/x` but not `/website`; `/web*` matches any path starting with `/web`.
// The path must already be normalised (see path.ts).

import type { HostRoutes, Route, RouteTable } from './types.js'

export function lookupRoute(table: RouteTable, hostHeader: string | undefined, path: string): Route | null {
  const host = normalizeRequestHost(hostHeader)
  if (host !== '') {
    const exact = table.exactHosts.get(host)
    const hit = exact && matchPath(exact, path)
    if (hit) return hit
    const colon = portSeparator(host)
    const bare = colon === -1 ? host : host.slice(0, colon)
    if (bare !== host) {
      const portless = table.exactHosts.get(bare)
      const hit2 = portless && matchPath(portless, path)
      if (hit2) return hit2
    }
    for (const glob of table.globHosts) {
      if (bare.length > glob.suffix.length && bare.endsWith(glob.suffix)) {
        const hit3 = matchPath(glob.routes, path)
        if (hit3) return hit3
      }
    }
  }
  return table.anyHost ? matchPath(table.anyHost, path) : null
}

/** Longest segment-prefix route, or a longer raw-prefix route. */
export function matchPath(routes: HostRoutes, path: string): Route | null {
  const { byPath, rawPrefixes } = routes
  let best: Route | null = null
  if (byPath.size > 0) {
    best = byPath.get(path) ?? null
    // Shorter candidates, longest first: for `/a/b` that is `/a/`, `/a`, `/`
    // (a route written `/a/` matches below `/a/` but not `/a` itself).
    let slash = path.lastIndexOf('/')
    while (best === null && slash >= 0) {
      if (slash + 1 < path.length) best = byPath.get(path.slice(0, slash + 1)) ?? null
      if (best === null && slash > 0) best = byPath.get(path.slice(0, slash)) ?? null
      slash = slash > 0 ? path.lastIndexOf('/', slash - 1) : -1
    }
  }
  for (const raw of rawPrefixes) {
    if (best !== null && raw.path.length <= best.path.length) break
    if (path.startsWith(raw.path)) return raw
  }
  return best
}

/** Lower-case host without a trailing dot or the default port 80. */
export function normalizeRequestHost(host: string | undefined): string {
  if (host === undefined || host === '') return ''
  let h = host.toLowerCase()
  if (h.endsWith(':80')) h = h.slice(0, -3)
  if (h.endsWith('.')) h = h.slice(0, -1)
  return h
}

function portSeparator(host: string): number {
  const colon = host.lastIndexOf(':')
  return colon === -1 || host.lastIndexOf(']') > colon ? -1 : colon
}
