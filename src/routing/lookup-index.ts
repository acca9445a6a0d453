// The lookup index of a table: routes grouped by host pattern, and within a
// host arranged for the path matcher in force. Built once per table, so that
// lookup.ts does a few map reads (or, under the glob matcher, pattern tests)
// per request.

import { compileGlob } from './glob.js'
import { groupBy } from './problems.js'
import type { GlobHost, HostRoutes, PathMatcher, Route, RouteTable } from './types.js'

export function indexRoutes(
  routes: readonly Route[],
  matcher: PathMatcher,
): Pick<RouteTable, 'matcher' | 'exactHosts' | 'portHosts' | 'globHosts' | 'anyHost'> {
  const byHost = groupBy(routes, (r) => r.host)
  const exactHosts = new Map<string, HostRoutes>()
  const globHosts: GlobHost[] = []
  let anyHost: HostRoutes | null = null
  let portHosts = false
  for (const [host, list] of byHost) {
    const index = hostIndex(list, matcher)
    const colon = host.lastIndexOf(':')
    const name = colon === -1 ? host : host.slice(0, colon)
    const port = colon === -1 ? 0 : Number(host.slice(colon + 1))
    if (host === '') anyHost = index
    else if (name.startsWith('*')) globHosts.push({ suffix: name.slice(1), port, routes: index })
    else {
      exactHosts.set(host, index)
      if (port !== 0) portHosts = true
    }
  }
  globHosts.sort(
    (a, b) =>
      b.suffix.length - a.suffix.length ||
      (a.port === 0 ? 1 : 0) - (b.port === 0 ? 1 : 0) ||
      (a.suffix < b.suffix ? -1 : a.suffix > b.suffix ? 1 : 0),
  )
  return { matcher, exactHosts, portHosts, globHosts, anyHost }
}

function hostIndex(list: readonly Route[], matcher: PathMatcher): HostRoutes {
  switch (matcher) {
    case 'segment':
      return {
        byPath: new Map(list.filter((r) => !r.rawPrefix).map((r) => [r.path, r])),
        rawPrefixes: prefixes(
          list.filter((r) => r.rawPrefix),
          false,
        ),
        globs: [],
      }
    case 'prefix':
    case 'iprefix':
      return { byPath: new Map(), rawPrefixes: prefixes(list, matcher === 'iprefix'), globs: [] }
    case 'glob':
      // Fabio tries a host's routes in reverse lexical order of their paths.
      return {
        byPath: new Map(),
        rawPrefixes: [],
        globs: [...list]
          .sort((a, b) => (a.path < b.path ? 1 : a.path > b.path ? -1 : 0))
          .flatMap((route) => {
            const pattern = compileGlob(route.path)
            return pattern === null ? [] : [{ pattern, route }]
          }),
      }
  }
}

/** Longest first: the first prefix that matches is the longest that does. */
function prefixes(list: readonly Route[], lowerCase: boolean): HostRoutes['rawPrefixes'] {
  return list
    .map((route) => ({ prefix: lowerCase ? route.path.toLowerCase() : route.path, route }))
    .sort((a, b) => b.prefix.length - a.prefix.length)
}
