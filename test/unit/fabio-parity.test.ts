// Fabio's documented routing behaviour (route/*_test.go, registry/consul, its
// docs), as a migrating user would see it in Switchyard's table.

import { describe, expect, it } from 'vitest'
import { buildRouteTable } from '../../src/routing/build.js'
import { parseFabioLine } from '../../src/routing/fabio-config.js'
import { lookupRoute } from '../../src/routing/lookup.js'
import type { InstanceSnapshot, Route, RouteTable, TargetEntry } from '../../src/routing/types.js'
import { BUILD, catalogOf, instance, tableOf } from './helpers.js'

function route(table: RouteTable, id: string): Route {
  const r = table.routes.find((x) => x.id === id)
  if (!r) throw new Error(`no route ${id} in ${table.routes.map((x) => x.id).join(', ')}`)
  return r
}

/** Serving weights by instance id, rounded as Fabio prints them. */
function weights(table: RouteTable, id: string): Record<string, string> {
  return Object.fromEntries(route(table, id).backends.map((b) => [b.instanceId, b.weight.toFixed(4)]))
}

const FABIO = { fabioKvPath: 'fabio/config' }
const kv = (value: string, key = 'fabio/config'): TargetEntry => ({ key, value, modifyIndex: 1 })
function withOverrides(instances: InstanceSnapshot[], ...entries: TargetEntry[]) {
  return buildRouteTable(catalogOf(instances), entries, { ...BUILD, ...FABIO })
}

describe('weight= as in Fabio', () => {
  it.each([
    ['no fixed weights: even split', [null, null, null], ['0.3333', '0.3333', '0.3333']],
    ['weight=0 is no fixed weight', ['0'], ['1.0000']],
    ['fixed weights below 1 only: scaled up', ['0.2', '0.3'], ['0.4000', '0.6000']],
    ['fixed weights above 1: scaled down', ['2', '3'], ['0.4000', '0.6000']],
    ['mixed: the rest split evenly', [null, null, '0.5'], ['0.2500', '0.2500', '0.5000']],
  ])('%s', (_name, given, want) => {
    const list = given.map((w, i) =>
      instance('svc', [`urlprefix-/ ${w === null ? '' : `weight=${w}`}`], { id: `svc-${i}` }),
    )
    const t = tableOf(list)
    expect(list.map((i) => weights(t, '/')[i.id])).toEqual(want)
  })

  it.each([
    ['fixed weights adding up to 1', ['0.25', '0.75']],
    ['fixed weights above 1', ['1', '3']],
  ])('%s leave nothing for instances without one', (_name, [a, b]) => {
    const t = tableOf([
      instance('svc', ['urlprefix-/'], { id: 'free' }),
      instance('svc', [`urlprefix-/ weight=${a}`], { id: 'a' }),
      instance('svc', [`urlprefix-/ weight=${b}`], { id: 'b' }),
    ])
    expect(weights(t, '/')).toEqual({ a: '0.2500', b: '0.7500' })
    expect(route(t, '/').idle.map((x) => [x.instanceId, x.state])).toEqual([['free', 'zero-weight']])
  })
})

describe('tags', () => {
  it('are read with surrounding whitespace, as Fabio trims them', () => {
    const t = tableOf([instance('web', ['  urlprefix-/web strip=/web  '])])
    expect(route(t, '/web').backends[0]?.strip).toBe('/web')
  })

  it('the same route twice on one instance is one backend, not a double share', () => {
    const t = tableOf([
      instance('web', ['urlprefix-/web', 'urlprefix-/web'], { id: 'twice' }),
      instance('web', ['urlprefix-/web'], { id: 'once' }),
    ])
    expect(weights(t, '/web')).toEqual({ twice: '0.5000', once: '0.5000' })
    expect(t.problems).toEqual([])
  })

  it('a second tag for the same route with other options is ignored and reported', () => {
    const t = tableOf([instance('web', ['urlprefix-/web strip=/web', 'urlprefix-/web'])])
    expect(route(t, '/web').backends.map((b) => b.strip)).toEqual(['/web'])
    expect(t.problems[0]).toMatchObject({ code: 'SWY_ERR_TAG_OPTION' })
    expect(t.problems[0]?.message).toContain('already given by tag "urlprefix-/web strip=/web"')
  })

  it('tlsservername= and auth= reach the table', () => {
    const t = buildRouteTable(
      catalogOf([instance('api', ['urlprefix-/api proto=https tlsservername=api.internal auth=staff'])]),
      [],
      { ...BUILD, authSchemes: ['staff'] },
    ).table
    expect(route(t, '/api').backends[0]).toMatchObject({
      origin: expect.stringMatching(/^https:/),
      tlsServerName: 'api.internal',
    })
    expect(route(t, '/api').auth).toEqual(['staff'])
    expect(t.problems).toEqual([])
  })

  it('auth= naming no configured scheme is a problem (the route refuses requests)', () => {
    const t = tableOf([instance('api', ['urlprefix-/api auth=nobody'])])
    expect(route(t, '/api').auth).toEqual(['nobody'])
    expect(t.problems).toContainEqual({
      code: 'SWY_ERR_AUTH_SCHEME',
      subject: 'route /api',
      message: 'auth=nobody names no proxy.auth scheme; the route refuses every request',
    })
  })
})

describe('health checks', () => {
  const serf = (status: string) => ({ id: 'serfHealth', name: 'serf', status, serviceId: '' })
  const check = (id: string, status: string) => ({ id, name: id, status, serviceId: 'i' })

  it('an instance without a service check gets no traffic, and says why', () => {
    const t = tableOf([instance('web', ['urlprefix-/web'], { id: 'i', checks: [serf('passing')] })])
    expect(route(t, '/web').backends).toEqual([])
    expect(route(t, '/web').idle[0]?.state).toBe('unhealthy')
    expect(t.problems.map((p) => p.code)).toEqual(['SWY_ERR_INSTANCE_UNCHECKED'])
  })

  it.each([
    ['all', [serf('passing'), check('a', 'passing'), check('b', 'warning')], false],
    ['one', [serf('passing'), check('a', 'passing'), check('b', 'warning')], true],
    ['one', [serf('critical'), check('a', 'passing')], false],
    [
      'one',
      [
        serf('passing'),
        { id: 'disk', name: 'disk', status: 'critical', serviceId: '' },
        check('a', 'passing'),
      ],
      true,
    ],
    [
      'all',
      [
        serf('passing'),
        { id: 'disk', name: 'disk', status: 'critical', serviceId: '' },
        check('a', 'passing'),
      ],
      false,
    ],
    ['one', [serf('passing'), check('a', 'critical'), check('b', 'critical')], false],
  ] as const)('checksRequired %s: %j serves: %s', (checksRequired, checks, serves) => {
    const t = buildRouteTable(
      catalogOf([instance('web', ['urlprefix-/web'], { id: 'i', checks: [...checks] })]),
      [],
      {
        ...BUILD,
        checksRequired,
      },
    ).table
    expect(route(t, '/web').backends.length > 0).toBe(serves)
  })
})

describe('hosts with a port (Fabio issue 656) and any host', () => {
  const t = tableOf([
    instance('web', ['urlprefix-example.com:80/ redirect=301,https://example.com$path'], { id: 'redirect' }),
    instance('web', ['urlprefix-example.com/'], { id: 'proxy' }),
    instance('any', ['urlprefix-*/'], { id: 'any' }),
    instance('any80', ['urlprefix-*:80/x'], { id: 'any80' }),
    instance('default', ['urlprefix-/'], { id: 'default' }),
    instance('glob', ['urlprefix-*.example.com/'], { id: 'glob' }),
  ])

  it('are separate routes', () => {
    expect(route(t, 'example.com:80/').backends.map((b) => b.instanceId)).toEqual(['redirect'])
    expect(route(t, 'example.com/').backends.map((b) => b.instanceId)).toEqual(['proxy'])
  })

  it('a request on listener port 80 takes the :80 route, on another port the one without', () => {
    expect(lookupRoute(t, 'example.com', '/foo', 80)?.id).toBe('example.com:80/')
    expect(lookupRoute(t, 'example.com:80', '/foo', 80)?.id).toBe('example.com:80/')
    expect(lookupRoute(t, 'example.com', '/foo', 9999)?.id).toBe('example.com/')
  })

  it('* matches any host after exact hosts and globs, before routes without a host', () => {
    expect(lookupRoute(t, 'www.example.com', '/', 9999)?.id).toBe('*.example.com/')
    expect(lookupRoute(t, 'other.org', '/', 9999)?.id).toBe('*/')
    expect(lookupRoute(t, 'other.org', '/x', 80)?.id).toBe('*:80/x')
    expect(lookupRoute(t, 'other.org', '/x', 9999)?.id).toBe('*/')
    expect(lookupRoute(t, undefined, '/', 9999)?.id).toBe('/')
  })
})

describe('routing.matcher', () => {
  const table = (matcher: 'prefix' | 'iprefix' | 'glob', routes: string[]) =>
    buildRouteTable(catalogOf(routes.map((r, i) => instance(`svc${i}`, [`urlprefix-${r}`]))), [], {
      ...BUILD,
      matcher,
    }).table
  const hit = (t: RouteTable, path: string) => lookupRoute(t, 'a.com', path)?.id ?? null

  it('prefix: plain string prefixes, as Fabio does by default', () => {
    const t = table('prefix', ['/foo', '/foo/', '/'])
    expect(hit(t, '/foot')).toBe('/foo')
    expect(hit(t, '/foo/bar')).toBe('/foo/')
    expect(hit(t, '/fo')).toBe('/')
  })

  it('iprefix: the same, ignoring case', () => {
    const t = table('iprefix', ['/Foo'])
    expect(hit(t, '/FOO/bar')).toBe('/Foo')
    expect(hit(t, '/foot')).toBe('/Foo')
    expect(hit(t, '/bar')).toBeNull()
  })

  it('glob: the whole path against the pattern', () => {
    const t = table('glob', ['/foo*', '/foo/*/bar', '/', '/img/*.{png,jpg}', '/v[0-9]/*'])
    expect(hit(t, '/fool')).toBe('/foo*')
    expect(hit(t, '/foo/x/bar')).toBe('/foo/*/bar')
    expect(hit(t, '/')).toBe('/')
    expect(hit(t, '/other')).toBeNull()
    expect(hit(t, '/img/a/b.png')).toBe('/img/*.{png,jpg}')
    expect(hit(t, '/img/a.gif')).toBeNull()
    expect(hit(t, '/v2/users')).toBe('/v[0-9]/*')
  })
})

describe('Fabio route overrides in KV', () => {
  it('parses the documented command forms', () => {
    expect(
      parseFabioLine('route add svc /path http://1.2.3.4:5000 weight 0.5 tags "a,b" opts "strip=/path"'),
    ).toEqual({
      kind: 'add',
      service: 'svc',
      src: '/path',
      dst: 'http://1.2.3.4:5000',
      weight: 0.5,
      tags: ['a', 'b'],
      opts: ['strip=/path'],
    })
    expect(parseFabioLine('route del svc')).toMatchObject({ kind: 'del', service: 'svc', src: '', dst: '' })
    expect(parseFabioLine('route del svc /p http://a:1/')).toMatchObject({ src: '/p', dst: 'http://a:1/' })
    expect(parseFabioLine('route del svc tags "green"')).toMatchObject({ service: 'svc', tags: ['green'] })
    expect(parseFabioLine('route del tags "yesterday"')).toMatchObject({ service: '', tags: ['yesterday'] })
    expect(parseFabioLine('route  weight  web /web weight .05 tags "v2"')).toMatchObject({
      kind: 'weight',
      service: 'web',
      src: '/web',
      weight: 0.05,
      tags: ['v2'],
    })
    expect(parseFabioLine('route weight /path weight .05 tags "lang=go"')).toMatchObject({
      service: '',
      src: '/path',
      tags: ['lang=go'],
    })
    expect(parseFabioLine('route weight svc / weight 0')).toMatchObject({ weight: null })
    expect(parseFabioLine('route weight svc / weight abc')).toBe('weight "abc" is not a number')
    expect(parseFabioLine('route add svc /only-two')).toBe('not a valid "route add" line')
    expect(parseFabioLine('routes add')).toBe('expected route add, route del or route weight')
  })

  it('route weight gives a canary a fixed share of the route, split over its instances', () => {
    const list = [
      instance('web', ['urlprefix-/web', 'v1'], { id: 'v1' }),
      instance('web', ['urlprefix-/web', 'v2'], { id: 'v2a' }),
      instance('web', ['urlprefix-/web', 'v2'], { id: 'v2b' }),
    ]
    const t = withOverrides(list, kv('route weight web /web weight 0.1 tags "v2"')).table
    expect(weights(t, '/web')).toEqual({ v1: '0.9000', v2a: '0.0500', v2b: '0.0500' })
  })

  it('route weight by service, and by tags alone, works across services of one route', () => {
    const list = [
      instance('svca', ['urlprefix-/', 'a'], { id: 'a' }),
      instance('svcb', ['urlprefix-/', 'b'], { id: 'b1' }),
      instance('svcb', ['urlprefix-/', 'b'], { id: 'b2' }),
    ]
    const want = { a: '0.9000', b1: '0.0500', b2: '0.0500' }
    expect(weights(withOverrides(list, kv('route weight svcb / weight 0.1')).table, '/')).toEqual(want)
    expect(weights(withOverrides(list, kv('route weight / weight 0.1 tags "b"')).table, '/')).toEqual(want)
  })

  it('a weight that matches nothing serving is reported, not applied', () => {
    const r = withOverrides(
      [instance('web', ['urlprefix-/web'])],
      kv('route weight web /web weight 0.1 tags "v9"'),
    )
    expect(r.table.problems).toContainEqual({
      code: 'SWY_ERR_FABIO_CONFIG',
      subject: 'key fabio/config, line 1',
      message:
        '"route weight web /web weight 0.1 tags "v9"": matches no serving instance on route /web now; not applied',
    })
  })

  it('route del removes instances; a route left empty is gone and a shorter one answers (Fabio issue 57)', () => {
    const list = [
      instance('svca', ['urlprefix-/'], { port: 800 }),
      instance('svcb', ['urlprefix-/foo'], { port: 900 }),
    ]
    for (const line of [
      'route del svcb /foo http://127.0.0.1:900/',
      'route del svcb /foo',
      'route del svcb',
    ]) {
      const t = withOverrides(list, kv(line)).table
      expect(lookupRoute(t, undefined, '/foo')?.id).toBe('/')
    }
  })

  it('route del by tags, with or without a service', () => {
    const list = [
      instance('svca', ['urlprefix-/a', 'a', 'b'], { id: 'a1' }),
      instance('svca', ['urlprefix-/', 'b', 'c'], { id: 'a2' }),
      instance('svcb', ['urlprefix-/', 'c', 'd'], { id: 'b1' }),
    ]
    const byService = withOverrides(list, kv('route del svca tags "a,b"')).table
    expect(byService.routes.map((r) => r.id)).toEqual(['/'])
    expect(Object.keys(weights(byService, '/'))).toEqual(['a2', 'b1'])
    const byTag = withOverrides(list, kv('route del tags "b"')).table
    expect(byTag.routes.map((r) => r.id)).toEqual(['/'])
    expect(Object.keys(weights(byTag, '/'))).toEqual(['b1'])
  })

  it('route add serves a destination no tag names, and keys apply in key order', () => {
    const r = withOverrides(
      [instance('web', ['urlprefix-/web'])],
      kv(
        '# maintenance page\nroute add maint /maint http://10.1.2.3:5000 opts "strip=/maint"',
        'fabio/config/a',
      ),
      kv('route add ext example.org/ https://10.9.9.9', 'fabio/config/b'),
      kv('route del maint', 'fabio/config/c'),
    )
    expect(r.table.problems).toEqual([])
    expect(r.table.routes.map((x) => x.id)).toEqual(['/web', 'example.org/'])
    expect(route(r.table, 'example.org/').backends[0]).toMatchObject({
      origin: 'https://10.9.9.9:443',
      service: 'ext',
    })
  })

  it('route add with a redirect takes the destination as the redirect URL', () => {
    const t = withOverrides(
      [],
      kv('route add svc example.com:80/ https://example.com$path opts "redirect=301"'),
    ).table
    expect(route(t, 'example.com:80/').backends[0]?.redirect).toEqual({
      status: 301,
      url: 'https://example.com$path',
    })
  })

  it('a line that does not parse is a problem naming the key and line; the others apply', () => {
    const r = withOverrides(
      [
        instance('web', ['urlprefix-/web', 'v2'], { id: 'v2' }),
        instance('web', ['urlprefix-/web'], { id: 'v1' }),
      ],
      kv('route weight web /web weight 0.2 tags "v2"\nroute wieght web /web\n'),
    )
    expect(r.table.problems).toEqual([
      {
        code: 'SWY_ERR_FABIO_CONFIG',
        subject: 'key fabio/config, line 2',
        message: '"route wieght web /web": expected route add, route del or route weight; ignored',
      },
    ])
    expect(weights(r.table, '/web')).toEqual({ v2: '0.2000', v1: '0.8000' })
  })

  it('are not read when routing.fabio.kvPath is empty, and the no-route page comes from its key', () => {
    const list = [instance('web', ['urlprefix-/web'])]
    const off = buildRouteTable(catalogOf(list), [kv('route del web')], BUILD).table
    expect(off.routes.map((r) => r.id)).toEqual(['/web'])
    const page = buildRouteTable(catalogOf(list), [kv('<h1>nothing here</h1>', 'fabio/noroute.html')], {
      ...BUILD,
      noRouteHtmlPath: 'fabio/noroute.html',
    }).table
    expect(page.noRouteHtml).toBe('<h1>nothing here</h1>')
  })

  it('a change to the overrides rebuilds the routes (no stale reuse)', () => {
    const list = [
      instance('web', ['urlprefix-/web', 'v2'], { id: 'v2' }),
      instance('web', ['urlprefix-/web'], { id: 'v1' }),
    ]
    const catalog = catalogOf(list)
    const first = buildRouteTable(catalog, [kv('route weight web /web weight 0.2 tags "v2"')], {
      ...BUILD,
      ...FABIO,
    }).table
    const second = buildRouteTable(
      catalog,
      [kv('route weight web /web weight 0.5 tags "v2"')],
      { ...BUILD, ...FABIO },
      first,
    ).table
    expect(weights(second, '/web')).toEqual({ v2: '0.5000', v1: '0.5000' })
    const third = buildRouteTable(catalog, [], { ...BUILD, ...FABIO }, second).table
    expect(weights(third, '/web')).toEqual({ v2: '0.5000', v1: '0.5000' })
    expect(third.routes[0]).not.toBe(second.routes[0])
  })
})
