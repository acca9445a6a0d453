// Request → route. Hosts are tried from most to least specific: the exact
// host with the listener's port, the exact host, `*.` globs by length (each
// with the port, then without), `*`, then routes without a host. Within a host
// the path matcher decides (see types.ts PathMatcher); under the default
// `segment` matcher the longest matching prefix wins: `/web` matches `/web`,
// `/web/` and `/web/x` but not `/website`, and `/web*` matches any path
// starting with `/web`. The path must already be normalised (see path.ts).

import type { HostRoutes, PathMatcher, Route, RouteTable } from './types.js'

/**
 * `port` is the port of the listener the request arrived on (0: unknown); a
 * route whose host names a port matches only requests that arrived there. The
 * port in the Host header plays no part in lookup.
 */
export function lookupRoute(
  table: RouteTable,
  hostHeader: string | undefined,
  path: string,
  port = 0,
): Route | null {
  const matcher = table.matcher
  const subject = matcher === 'iprefix' ? path.toLowerCase() : path
  const name = requestHostName(hostHeader)
  if (name !== '') {
    if (port !== 0 && table.portHosts) {
      const withPort = table.exactHosts.get(`${name}:${port}`)
      const hit = withPort && matchPath(matcher, withPort, subject)
      if (hit) return hit
    }
    const exact = table.exactHosts.get(name)
    const hit = exact && matchPath(matcher, exact, subject)
    if (hit) return hit
    for (const glob of table.globHosts) {
      if (glob.port !== 0 && glob.port !== port) continue
      if (name.length > glob.suffix.length && name.endsWith(glob.suffix)) {
        const hit3 = matchPath(matcher, glob.routes, subject)
        if (hit3) return hit3
      }
    }
  }
  return table.anyHost ? matchPath(matcher, table.anyHost, subject) : null
}

/** The route of one host that the path matches, if any. */
export function matchPath(matcher: PathMatcher, routes: HostRoutes, path: string): Route | null {
  if (matcher === 'glob') {
    for (const glob of routes.globs) if (glob.pattern.test(path)) return glob.route
    return null
  }
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
    if (best !== null && raw.prefix.length <= best.path.length) break
    if (path.startsWith(raw.prefix)) return raw.route
  }
  return best
}

/** Lower-case host name without a port or a trailing dot ('' when there is none). */
export function requestHostName(host: string | undefined): string {
  if (host === undefined || host === '') return ''
  let h = host.toLowerCase()
  const colon = h.lastIndexOf(':')
  if (colon !== -1 && h.lastIndexOf(']') < colon) h = h.slice(0, colon)
  if (h.endsWith('.')) h = h.slice(0, -1)
  return h
}
