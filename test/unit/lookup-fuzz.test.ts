// Random request targets and Host headers, hostile ones included, driven
// through the proxy's own request resolution (split, normalise, look up,
// pick): it never throws, and what it forwards is always inside the route it
// matched, with the route a straightforward statement of the rules would
// pick. Encoded slashes, dot segments and host spellings cannot change that.

import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { RequestHead } from '../../src/proxy/exchange.js'
import { Balancer } from '../../src/proxy/pickers.js'
import { createResolver, type Resolution } from '../../src/proxy/resolve.js'
import { normalizePath, splitRequestTarget } from '../../src/routing/path.js'
import type { Route, RouteTable } from '../../src/routing/types.js'
import { TableStore } from '../../src/table/store.js'
import { instance, requestHead, tableOf } from './helpers.js'

const ROUTES = [
  '/',
  '/public',
  '/public/assets/',
  '/admin',
  '/admin/api',
  '/a*',
  'api.example.com/',
  'api.example.com/v1',
  '*.example.com/',
  '*.b.example.com/x',
  'static.example.com/files*',
]

function resolverFor(routes: string[]): { table: RouteTable; resolve: (head: RequestHead) => Resolution } {
  const table = tableOf(routes.map((r, i) => instance(`svc${i}`, [`urlprefix-${r}`])))
  const store = new TableStore()
  store.swap(table)
  return { table, resolve: createResolver({ store, balancer: new Balancer('round-robin'), health: null }) }
}

function request(url: string, host: string | undefined): RequestHead {
  return requestHead(url, host === undefined ? {} : { Host: host })
}

/** The matching rules stated plainly (see lookup.ts): host tiers, then the longest path. */
function reference(routes: readonly Route[], hostHeader: string, path: string): Route | null {
  let host = hostHeader.toLowerCase()
  if (host.endsWith(':80')) host = host.slice(0, -3)
  if (host.endsWith('.')) host = host.slice(0, -1)
  const colon = host.lastIndexOf(':')
  const bare = colon === -1 || host.lastIndexOf(']') > colon ? host : host.slice(0, colon)
  const tiers: ((r: Route) => boolean)[] = []
  if (host) {
    tiers.push((r) => r.host === host)
    if (bare !== host) tiers.push((r) => r.host === bare)
    const globs = [...new Set(routes.filter((r) => r.host.startsWith('*.')).map((r) => r.host.slice(1)))]
    globs.sort((a, b) => b.length - a.length)
    for (const suffix of globs)
      tiers.push((r) => r.host === `*${suffix}` && bare.length > suffix.length && bare.endsWith(suffix))
  }
  tiers.push((r) => r.host === '')
  for (const tier of tiers) {
    const candidates = routes.filter((r) => tier(r) && covers(r, path))
    if (candidates.length === 0) continue
    candidates.sort((a, b) => b.path.length - a.path.length || Number(a.rawPrefix) - Number(b.rawPrefix))
    return candidates[0] as Route
  }
  return null
}

/** Whether `path` lies inside the route's prefix. */
function covers(route: Route, path: string): boolean {
  if (route.rawPrefix) return path.startsWith(route.path)
  return route.path === path || path.startsWith(route.path.endsWith('/') ? route.path : `${route.path}/`)
}

const SEGMENTS = [
  'public',
  'admin',
  'api',
  'assets',
  'a',
  'ab',
  'v1',
  'x',
  'files',
  '',
  '.',
  '..',
  '%2e',
  '%2E%2e',
  '.%2e',
  '%2f',
  '%2F',
  'admin%2fapi',
  '..%2fadmin',
  '%5c',
  '\\',
  '%00',
  '%zz',
  '%',
  '%41dmin',
  '%61dmin',
  '~',
  '%25',
  '%252e%252e',
  ';',
  'a;b=..',
  '%3f',
  '%23',
  'ü',
  '%C3%BC',
]

const pathArb = fc
  .tuple(
    fc.constantFrom('/', '//', '/./', '/../', ''),
    fc.array(fc.constantFrom(...SEGMENTS), { maxLength: 7 }),
    fc.constantFrom('', '/', '?q=1', '?../admin', '?a=%2f..'),
  )
  .map(([lead, segments, tail]) => `${lead}${segments.join('/')}${tail}`)

const hostArb = fc.oneof(
  fc.constantFrom(
    'api.example.com',
    'API.Example.COM',
    'api.example.com.',
    'api.example.com:80',
    'api.example.com:8080',
    'q.example.com',
    'a.b.example.com',
    'b.example.com',
    'example.com',
    'static.example.com',
    'other.test',
    '[::1]:8080',
    '127.0.0.1',
    '',
  ),
  fc.string({ maxLength: 20 }),
)

describe('request resolution under random input', () => {
  const { table, resolve } = resolverFor(ROUTES)

  it('never throws and forwards only paths inside the route that matched, which is the right route', () => {
    fc.assert(
      fc.property(pathArb, hostArb, (url, host) => {
        const resolved = resolve(request(url, host))
        if (resolved.kind === 'reply') {
          expect([400, 404]).toContain(resolved.status)
          return
        }
        expect(resolved.kind).toBe('forward')
        if (resolved.kind !== 'forward') return
        const { path, query } = splitRequestTarget(url)
        expect(resolved.path).toBe(normalizePath(path))
        expect(resolved.query).toBe(query)
        expect(covers(resolved.route, resolved.path)).toBe(true)
        expect(resolved.route).toBe(reference(table.routes, host, resolved.path))
        // Nothing for the instance to re-resolve: no dot segments (encoded or
        // not), no empty segments, no backslash.
        const segments = resolved.path.split('/').slice(1)
        for (const s of segments.slice(0, -1)) expect(s).not.toBe('')
        for (const s of segments) {
          expect(['.', '..']).not.toContain(s)
          expect(s).not.toMatch(/%2e|%5c|\\/i)
        }
      }),
      { numRuns: 5_000 },
    )
  })

  it('treats an encoded slash as a character: it never changes which route matches', () => {
    fc.assert(
      fc.property(pathArb, hostArb, (url, host) => {
        if (!/%2f/i.test(url)) return
        const a = resolve(request(url, host))
        // The same request with each %2F replaced by a character no route contains.
        const b = resolve(request(url.replace(/%2f/gi, 'Z'), host))
        expect(a.kind).toBe(b.kind)
        expect(a.route?.id ?? null).toBe(b.route?.id ?? null)
      }),
      { numRuns: 3_000 },
    )
  })

  it('routes every spelling of a host the same way', () => {
    fc.assert(
      fc.property(
        pathArb,
        fc.constantFrom(
          'api.example.com',
          'q.example.com',
          'a.b.example.com',
          'static.example.com',
          'x.test',
        ),
        (url, host) => {
          const routeOf = (h: string) => resolve(request(url, h)).route?.id ?? null
          const expected = routeOf(host)
          for (const variant of [host.toUpperCase(), `${host}.`, `${host}:80`]) {
            expect(routeOf(variant)).toBe(expected)
          }
        },
      ),
      { numRuns: 2_000 },
    )
  })

  it('an absolute-form target is routed by its own host, like a Host header', () => {
    fc.assert(
      fc.property(pathArb, (url) => {
        if (!url.startsWith('/')) return
        const viaHeader = resolve(request(url, 'api.example.com'))
        const absolute = resolve(request(`http://api.example.com${url}`, 'other.test'))
        expect(absolute.route?.id ?? null).toBe(viaHeader.route?.id ?? null)
      }),
      { numRuns: 2_000 },
    )
  })

  it('refuses (400) rather than guesses on hosts with characters a host cannot have', () => {
    for (const host of ['a b', 'evil.example/admin', 'a\tb', 'a@b', 'a?b', 'a#b', '%61pi.example.com']) {
      const resolved = resolve(request('/public', host))
      expect(resolved.kind, host).toBe('reply')
      if (resolved.kind === 'reply') expect(resolved.reject).toBe('host')
    }
  })
})
