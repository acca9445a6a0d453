import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { lookupRoute } from '../../src/routing/lookup.js'
import { normalizePath } from '../../src/routing/path.js'
import type { Route } from '../../src/routing/types.js'
import { instance, tableOf } from './helpers.js'

function routesTable(routes: string[]) {
  return tableOf(routes.map((r, i) => instance(`svc${i}`, [`urlprefix-${r}`])))
}

function hit(routes: string[], host: string | undefined, path: string, port = 0): string | null {
  return lookupRoute(routesTable(routes), host, path, port)?.id ?? null
}

describe('lookupRoute', () => {
  it('matches path prefixes at segment boundaries', () => {
    const routes = ['/web', '/web/api', '/']
    expect(hit(routes, undefined, '/web')).toBe('/web')
    expect(hit(routes, undefined, '/web/')).toBe('/web')
    expect(hit(routes, undefined, '/web/x/y')).toBe('/web')
    expect(hit(routes, undefined, '/web/api/v2')).toBe('/web/api')
    expect(hit(routes, undefined, '/website')).toBe('/')
    expect(hit(['/web'], undefined, '/website')).toBeNull()
  })

  it('treats a trailing slash in the route as part of the prefix', () => {
    expect(hit(['/web/'], undefined, '/web/x')).toBe('/web/')
    expect(hit(['/web/'], undefined, '/web/')).toBe('/web/')
    expect(hit(['/web/'], undefined, '/web')).toBeNull()
  })

  it('matches raw prefixes written with *', () => {
    expect(hit(['/web*'], undefined, '/website')).toBe('/web*')
    expect(hit(['/web*', '/web/api'], undefined, '/web/api/x')).toBe('/web/api')
    expect(hit(['/w*', '/web'], undefined, '/web/x')).toBe('/web')
    expect(hit(['/web/a*', '/web'], undefined, '/web/ab')).toBe('/web/a*')
  })

  it('prefers the most specific host, then falls back to globs and host-less routes', () => {
    const routes = ['api.example.com/', '*.example.com/', '*.b.example.com/', '/', 'api.example.com:8080/x']
    expect(hit(routes, 'api.example.com', '/x')).toBe('api.example.com/')
    expect(hit(routes, 'API.EXAMPLE.COM.', '/')).toBe('api.example.com/')
    // A port in a route's host is the listener's; the Host header's port plays no part.
    expect(hit(routes, 'api.example.com', '/x', 8080)).toBe('api.example.com:8080/x')
    expect(hit(routes, 'api.example.com:8080', '/x', 9999)).toBe('api.example.com/')
    expect(hit(routes, 'api.example.com:9999', '/x')).toBe('api.example.com/')
    expect(hit(routes, 'a.b.example.com', '/')).toBe('*.b.example.com/')
    expect(hit(routes, 'www.example.com', '/')).toBe('*.example.com/')
    expect(hit(routes, 'example.com', '/')).toBe('/')
    expect(hit(routes, undefined, '/')).toBe('/')
  })

  it('falls back to less specific hosts when the host has no matching path', () => {
    expect(hit(['api.example.com/v1', '/'], 'api.example.com', '/v2')).toBe('/')
  })

  it('always picks the most specific route (property, against a brute-force reference)', () => {
    const hostArb = fc.constantFrom(
      '',
      'a.com',
      'b.a.com',
      '*.a.com',
      'a.com:8080',
      'a.com:80',
      '*.b.a.com',
      '*.a.com:8080',
      '*',
      '*:80',
      'c.com',
    )
    const segArb = fc.constantFrom('x', 'y', 'xy', 'z')
    const pathArb = fc
      .array(segArb, { maxLength: 3 })
      .chain((segs) => fc.tuple(fc.constant(`/${segs.join('/')}`), fc.boolean(), fc.boolean()))
    const routeArb = fc.tuple(hostArb, pathArb).map(([host, [path, raw, slash]]) => {
      const p = slash && path !== '/' ? `${path}/` : path
      return `${host}${p}${raw ? '*' : ''}`
    })
    fc.assert(
      fc.property(
        fc.uniqueArray(routeArb, { minLength: 1, maxLength: 8 }),
        fc.constantFrom(
          undefined,
          'a.com',
          'A.com:80',
          'b.a.com',
          'q.b.a.com',
          'a.com:8080',
          'c.com',
          'd.com',
        ),
        fc.array(fc.constantFrom('x', 'y', 'xy', 'z', 'xyz', ''), { maxLength: 4 }),
        fc.constantFrom(0, 80, 8080, 9999),
        (routes, host, segs, port) => {
          const path = normalizePath(`/${segs.join('/')}`) as string
          const table = routesTable(routes)
          expect(lookupRoute(table, host, path, port)?.id ?? null).toBe(
            reference(table.routes, host, path, port),
          )
        },
      ),
      { numRuns: 3000 },
    )
  })
})

/** Straightforward statement of the matching rules, for the property test. */
function reference(
  routes: readonly Route[],
  hostHeader: string | undefined,
  path: string,
  port: number,
): string | null {
  let host = (hostHeader ?? '').toLowerCase()
  if (host.includes(':')) host = host.slice(0, host.lastIndexOf(':'))
  if (host.endsWith('.')) host = host.slice(0, -1)
  const pathMatches = (r: Route) =>
    r.rawPrefix
      ? path.startsWith(r.path)
      : r.path === path || path.startsWith(r.path.endsWith('/') ? r.path : `${r.path}/`)
  const tiers: ((r: Route) => boolean)[] = []
  if (host) {
    if (port !== 0) tiers.push((r) => r.host === `${host}:${port}`)
    tiers.push((r) => r.host === host)
    const globs = [
      ...new Set(
        routes.filter((r) => r.host.startsWith('*')).map((r) => r.host.slice(1).split(':')[0] as string),
      ),
    ].sort((a, b) => b.length - a.length)
    for (const suffix of globs) {
      const matches = host.length > suffix.length && host.endsWith(suffix)
      if (port !== 0) tiers.push((r) => matches && r.host === `*${suffix}:${port}`)
      tiers.push((r) => matches && r.host === `*${suffix}`)
    }
  }
  tiers.push((r) => r.host === '')
  for (const tier of tiers) {
    const candidates = routes.filter((r) => tier(r) && pathMatches(r))
    if (candidates.length === 0) continue
    candidates.sort((a, b) => b.path.length - a.path.length || Number(a.rawPrefix) - Number(b.rawPrefix))
    return (candidates[0] as Route).id
  }
  return null
}
