import { describe, expect, it } from 'vitest'
import { buildRouteTable } from '../../src/routing/build.js'
import { diffTables, tableText } from '../../src/routing/canonical.js'
import type { Route, RouteTable } from '../../src/routing/types.js'
import { BUILD, instance, recordedCatalog, recordedTargets, tableOf, target } from './helpers.js'

function route(table: RouteTable, id: string): Route {
  const r = table.routes.find((x) => x.id === id)
  if (!r) throw new Error(`no route ${id} in ${table.routes.map((x) => x.id).join(', ')}`)
  return r
}

const serving = (r: Route) => r.backends.map((t) => t.instanceId).sort()
const states = (r: Route) =>
  Object.fromEntries([...r.backends, ...r.idle].map((t) => [t.instanceId, t.state]))

describe('buildRouteTable on recorded Consul JSON', () => {
  const { table } = buildRouteTable(recordedCatalog(), [], BUILD)
  const { problems } = table

  it('builds one route per distinct urlprefix- route', () => {
    expect(table.routes.map((r) => r.id)).toEqual([
      '*.example.com/',
      '/api',
      '/ok',
      '/old',
      '/static*',
      '/web',
      'api.example.com/v1',
    ])
  })

  it('sends traffic only to instances whose node and service checks pass', () => {
    const web = route(table, '/web')
    expect(serving(web)).toEqual(['web-blue-1', 'web-blue-2', 'web-green-1'])
    expect(states(web)).toMatchObject({
      'web-green-2': 'unhealthy',
      'web-old': 'unhealthy',
      'web-maint': 'maintenance',
    })
    expect(web.backends.map((t) => t.weight)).toEqual([1 / 3, 1 / 3, 1 / 3])
  })

  it('accepts warning when configured', () => {
    const lenient = buildRouteTable(recordedCatalog(), [], {
      ...BUILD,
      healthyStatuses: ['passing', 'warning'],
    }).table
    expect(serving(route(lenient, '/web'))).toContain('web-old')
    expect(states(route(lenient, '/web'))['web-maint']).toBe('maintenance')
  })

  it('reads versions and slices from meta and from Environment Manager tags', () => {
    const byId = Object.fromEntries(
      [...route(table, '/web').backends, ...route(table, '/web').idle].map((t) => [t.instanceId, t]),
    )
    expect([byId['web-blue-1']?.version, byId['web-blue-1']?.slice]).toEqual(['1.5.0', 'blue'])
    expect([byId['web-green-1']?.version, byId['web-green-1']?.slice]).toEqual(['1.6.0', 'green'])
    expect([byId['web-green-2']?.version, byId['web-green-2']?.slice]).toEqual(['1.6.0', 'green'])
  })

  it('precomputes what the proxy needs per instance', () => {
    const api = route(table, 'api.example.com/v1')
    const byId = Object.fromEntries(api.backends.map((t) => [t.instanceId, t]))
    expect(byId['api-1']).toMatchObject({
      origin: 'http://127.0.0.1:9001',
      strip: '/v1',
      hostHeader: '127.0.0.1:9001',
    })
    // api-3 registered without an address: the node's address is used.
    expect(byId['api-3']?.origin).toBe('http://127.0.0.1:9003')
    // Fabio weights: api-2 has a fixed 20 %, the other two share the remaining 80 %.
    expect(byId['api-2']?.weight).toBeCloseTo(0.2)
    expect(byId['api-1']?.weight).toBeCloseTo(0.4)
    expect(byId['api-3']?.weight).toBeCloseTo(0.4)
    expect(route(table, '/old').backends[0]?.redirect).toEqual({
      status: 301,
      url: 'https://new.example.com$path',
    })
    expect(route(table, '/static*')).toMatchObject({ rawPrefix: true, path: '/static' })
    expect(route(table, '/static*').backends[0]?.prepend).toBe('/assets')
    expect(route(table, '/api').access).toHaveLength(1)
  })

  it('reports bad tags per instance and keeps the instance’s good routes', () => {
    const tagProblems = problems.filter((p) => p.code === 'SWY_ERR_TAG_SYNTAX').map((p) => p.message)
    expect(tagProblems).toEqual([
      'tag "urlprefix-": tag "urlprefix-" names no route',
      'tag "urlprefix-/x strip=nope": option strip=nope: must be a path starting with /',
      'tag "urlprefix-:3306 proto=tcp": TCP route ":3306" is not supported (HTTP only)',
    ])
    expect(
      problems.filter((p) => p.code === 'SWY_ERR_TAG_SYNTAX').every((p) => p.subject.includes('bad-1')),
    ).toBe(true)
    expect(serving(route(table, '/ok'))).toEqual(['bad-1'])
    expect(problems.find((p) => p.code === 'SWY_ERR_TAG_OPTION')?.message).toContain('register=public')
  })

  it('applies the recorded target state and rejects the bad keys with a problem naming them', () => {
    const withTargets = buildRouteTable(recordedCatalog(), recordedTargets(), BUILD)
    expect(serving(route(withTargets.table, '/web'))).toEqual(['web-green-1'])
    expect(states(route(withTargets.table, '/web'))['web-blue-1']).toBe('not-selected')
    const invalid = withTargets.table.problems.filter((p) => p.code === 'SWY_ERR_TARGET_INVALID')
    expect(invalid.map((p) => p.subject)).toEqual([
      'key switchyard/targets/legacy',
      'key switchyard/targets/wild',
    ])
    expect(invalid[0]?.message).toContain('invalid JSON')
    expect(invalid[1]?.message).toContain('"version" must be a non-empty string')
    // Invalid keys with no earlier valid target leave every healthy instance serving.
    expect(serving(route(withTargets.table, '*.example.com/'))).toEqual(['wild-1'])
  })

  it('is deterministic: the same input gives the same canonical text', () => {
    const again = buildRouteTable(recordedCatalog(), [], BUILD).table
    expect(tableText(again)).toEqual(tableText(table))
    expect(tableText(table)).toContain('route /web web http://127.0.0.1:8001 weight 0.3333 version 1.5.0')
  })

  it('describes a change as a diff of canonical lines', () => {
    const next = buildRouteTable(recordedCatalog(), [target('web', { version: '1.6.0' })], BUILD, table).table
    const diff = diffTables(table, next)
    expect(diff.removed).toContain('route /web web http://127.0.0.1:8001 weight 0.3333 version 1.5.0')
    expect(diff.added).toContain('route /web web http://127.0.0.1:8003 weight 1.0000 version 1.6.0')
    expect(diff.added).toContain('target web desired version=1.6.0 effective version=1.6.0 ready')
    expect(next.generation).toBe(table.generation + 1)
  })
})

describe('target state in the table builder', () => {
  const blue = [1, 2].map(() =>
    instance('web', ['urlprefix-/web'], { meta: { version: '1.5.0', slice: 'blue' } }),
  )
  const green = [1, 2].map(() => instance('web', ['urlprefix-/web', 'version:1.6.0', 'slice:green']))
  const critical = (i: ReturnType<typeof instance>) => ({
    ...i,
    checks: [...i.checks, { id: `svc-${i.id}`, name: 'ttl', status: 'critical', serviceId: i.id }],
  })
  const versions = (t: RouteTable) => [...new Set(route(t, '/web').backends.map((x) => x.version))].sort()

  it('without a key, every healthy instance serves', () => {
    expect(versions(tableOf([...blue, ...green]))).toEqual(['1.5.0', '1.6.0'])
  })

  it('selects by version and by slice', () => {
    expect(versions(tableOf([...blue, ...green], [target('web', { version: '1.6.0' })]))).toEqual(['1.6.0'])
    expect(versions(tableOf([...blue, ...green], [target('web', { slice: 'blue' })]))).toEqual(['1.5.0'])
  })

  it('splits by version weights, then evenly over each version’s instances', () => {
    const t = tableOf([...blue, ...green], [target('web', { weights: { '1.5.0': 90, '1.6.0': 10 } })])
    const weights = route(t, '/web').backends.map((x) => [x.version, x.weight])
    expect(weights).toEqual([
      ['1.5.0', 0.45],
      ['1.5.0', 0.45],
      ['1.6.0', 0.05],
      ['1.6.0', 0.05],
    ])
    const schedule = route(t, '/web').schedule
    expect(schedule.length).toBe(20)
    expect(schedule.filter((i) => i >= 2).length).toBe(2)
  })

  it('leaves a version with weight 0 out', () => {
    const t = tableOf([...blue, ...green], [target('web', { weights: { '1.5.0': 1, '1.6.0': 0 } })])
    expect(versions(t)).toEqual(['1.5.0'])
    expect(states(route(t, '/web'))[green[0]!.id]).toBe('not-selected')
  })

  it('guards a cutover: a target without healthy instances keeps the last selection until it is ready', () => {
    const catalog = [...blue, ...green.map(critical)]
    const first = tableOf(catalog, [target('web', { version: '1.5.0' })])
    expect(versions(first)).toEqual(['1.5.0'])

    const notReady = buildRouteTable(
      { services: new Map([['web', catalog]]) },
      [target('web', { version: '1.6.0' }, 2)],
      BUILD,
      first,
    )
    expect(versions(notReady.table)).toEqual(['1.5.0'])
    expect(notReady.table.targets[0]).toMatchObject({
      ready: false,
      desired: { kind: 'version', version: '1.6.0' },
    })
    expect(notReady.table.targets[0]?.effective).toEqual({ kind: 'version', version: '1.5.0' })
    const problem = notReady.table.problems.find((p) => p.code === 'SWY_ERR_TARGET_NOT_READY')
    expect(problem?.message).toBe(
      'target version=1.6.0: no healthy instance of version 1.6.0; serving version=1.5.0',
    )

    const healthy = buildRouteTable(
      { services: new Map([['web', [...blue, ...green]]]) },
      [target('web', { version: '1.6.0' }, 2)],
      BUILD,
      notReady.table,
    )
    expect(versions(healthy.table)).toEqual(['1.6.0'])
    expect(healthy.table.targets[0]?.ready).toBe(true)
  })

  it('at start-up, a target that is not ready serves every healthy instance and says so', () => {
    const t = buildRouteTable(
      { services: new Map([['web', [...blue, ...green.map(critical)]]]) },
      [target('web', { version: '1.6.0' })],
      BUILD,
    )
    expect(versions(t.table)).toEqual(['1.5.0'])
    expect(t.table.targets[0]).toMatchObject({ ready: false, effective: null })
  })

  it('weights naming a version without healthy instances are not ready', () => {
    const first = tableOf([...blue, ...green.map(critical)], [target('web', { version: '1.5.0' })])
    const t = buildRouteTable(
      { services: new Map([['web', [...blue, ...green.map(critical)]]]) },
      [target('web', { weights: { '1.5.0': 50, '1.6.0': 50 } })],
      BUILD,
      first,
    )
    expect(versions(t.table)).toEqual(['1.5.0'])
    expect(t.table.targets[0]?.reason).toContain('no healthy instance of version 1.6.0')
  })

  it('an invalid key keeps the previous selection of that service only', () => {
    const other = instance('shop', ['urlprefix-/shop'], { meta: { version: '3' } })
    const first = tableOf([...blue, ...green, other], [target('web', { version: '1.6.0' })])
    const next = buildRouteTable(
      {
        services: new Map([
          ['web', [...blue, ...green]],
          ['shop', [other]],
        ]),
      },
      [target('web', '{"version": "1.5.0", "colour": "red"}', 2), target('shop', { version: '3' })],
      BUILD,
      first,
    )
    expect(versions(next.table)).toEqual(['1.6.0'])
    expect(serving(route(next.table, '/shop'))).toEqual([other.id])
    const problem = next.table.problems.find((p) => p.code === 'SWY_ERR_TARGET_INVALID')
    expect(problem).toEqual({
      code: 'SWY_ERR_TARGET_INVALID',
      subject: 'key switchyard/targets/web',
      message: 'unknown field "colour"; keeping version=1.6.0',
    })
  })

  it('deleting the key returns to every healthy instance', () => {
    const first = tableOf([...blue, ...green], [target('web', { version: '1.6.0' })])
    const next = buildRouteTable({ services: new Map([['web', [...blue, ...green]]]) }, [], BUILD, first)
    expect(versions(next.table)).toEqual(['1.5.0', '1.6.0'])
  })

  it('reports keys below a service key', () => {
    const t = buildRouteTable(
      { services: new Map() },
      [{ key: 'switchyard/targets/web/extra', value: '{}', modifyIndex: 1 }],
      BUILD,
    )
    expect(t.table.problems[0]?.message).toContain('not a service key')
  })
})

describe('guarded cutover per route', () => {
  const blue = [
    instance('web', ['urlprefix-/web', 'urlprefix-/web-api'], { meta: { version: '1.5.0' } }),
    instance('web', ['urlprefix-/web', 'urlprefix-/web-api'], { meta: { version: '1.5.0' } }),
  ]
  const versionsOn = (t: RouteTable, id: string) =>
    [...new Set(route(t, id).backends.map((x) => x.version))].sort()
  /** Blue serves as the target, then the target moves to green 1.6.0: the resulting build. */
  const cutToGreen = (green: ReturnType<typeof instance>) => {
    const first = tableOf([...blue, green], [target('web', { version: '1.5.0' })])
    return buildRouteTable(
      { services: new Map([['web', [...blue, green]]]) },
      [target('web', { version: '1.6.0' }, 2)],
      BUILD,
      first,
    )
  }

  it('keeps the old version while the new one would leave a route without instances', () => {
    const green = instance('web', ['urlprefix-/web'], { meta: { version: '1.6.0' } })
    const next = cutToGreen(green)
    expect(next.table.targets[0]).toMatchObject({
      ready: false,
      reason: 'no serving instance of version=1.6.0 on route /web-api; serving version=1.5.0',
    })
    expect(versionsOn(next.table, '/web')).toEqual(['1.5.0'])
    expect(versionsOn(next.table, '/web-api')).toEqual(['1.5.0'])
  })

  it('counts a new version whose route tag does not parse as absent from that route', () => {
    const green = instance('web', ['urlprefix-/web', 'urlprefix-/web-api weight=abc'], {
      meta: { version: '1.6.0' },
    })
    const next = cutToGreen(green)
    expect(next.table.targets[0]?.ready).toBe(false)
    expect(versionsOn(next.table, '/web-api')).toEqual(['1.5.0'])
  })

  it('cuts over once the new version serves every route', () => {
    const green = instance('web', ['urlprefix-/web', 'urlprefix-/web-api'], { meta: { version: '1.6.0' } })
    const next = cutToGreen(green)
    expect(next.table.targets[0]?.ready).toBe(true)
    expect(versionsOn(next.table, '/web-api')).toEqual(['1.6.0'])
  })
})

describe('instances no connection can be made to', () => {
  it.each([
    [{ address: 'a b' }, 'address "a b" is not an IP address or host name'],
    [{ address: 'fe80::1%eth0' }, 'address "fe80::1%eth0" is not an IP address or host name'],
    [{ port: 99_999 }, 'port 99999 is not from 1 to 65535'],
    [{ port: 0 }, 'port 0 is not from 1 to 65535'],
  ])('%j gets no route and a problem', (extra, words) => {
    const bad = instance('web', ['urlprefix-/web'], extra)
    const good = instance('web', ['urlprefix-/web'])
    const result = buildRouteTable({ services: new Map([['web', [bad, good]]]) }, [], BUILD)
    expect(serving(route(result.table, '/web'))).toEqual([good.id])
    expect(result.table.problems).toContainEqual({
      code: 'SWY_ERR_INSTANCE_ADDRESS',
      subject: `service web, instance ${bad.id} on node-1`,
      message: `${words}; the instance gets no traffic`,
    })
  })

  it('accepts host names and IPv6 addresses', () => {
    const t = tableOf([
      instance('web', ['urlprefix-/web'], { address: 'web-1.node.consul' }),
      instance('web', ['urlprefix-/web'], { address: '::1' }),
    ])
    expect(
      route(t, '/web')
        .backends.map((x) => x.origin)
        .sort(),
    ).toEqual([
      expect.stringMatching(/^http:\/\/\[::1\]:\d+$/),
      expect.stringMatching(/^http:\/\/web-1\.node\.consul:\d+$/),
    ])
  })
})

describe('routes shared by services, and fallthrough', () => {
  it('shares a route claimed by two services and reports it', () => {
    const t = buildRouteTable(
      {
        services: new Map([
          ['a', [instance('a', ['urlprefix-/x'])]],
          ['b', [instance('b', ['urlprefix-/x'])]],
        ]),
      },
      [],
      BUILD,
    )
    expect(route(t.table, '/x').services).toEqual(['a', 'b'])
    expect(t.table.problems.map((p) => p.code)).toContain('SWY_ERR_ROUTE_CONFLICT')
  })

  it('with fallthrough, a route without healthy instances is left out of lookup', () => {
    const down = instance('down', ['urlprefix-/app/down'], {
      checks: [{ id: 'c', name: 'c', status: 'critical', serviceId: 'x' }],
    })
    const up = instance('up', ['urlprefix-/app'])
    const strict = tableOf([down, up])
    expect(strict.anyHost?.byPath.has('/app/down')).toBe(true)
    const lenient = tableOf([down, up], [], { fallthrough: true })
    expect(lenient.anyHost?.byPath.has('/app/down')).toBe(false)
    expect(lenient.routes.map((r) => r.id)).toContain('/app/down')
  })
})
