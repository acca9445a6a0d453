// Match rules and sticky versions: the target parser, what the table builder
// compiles into a route, and what a request then gets, without Consul.

import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { Balancer } from '../../src/proxy/pickers.js'
import { createResolver, type Resolution } from '../../src/proxy/resolve.js'
import { buildRouteTable } from '../../src/routing/build.js'
import { tableText } from '../../src/routing/canonical.js'
import { parseKeys, StickyKeys } from '../../src/routing/sticky.js'
import { formatTarget, parseTarget } from '../../src/routing/targets.js'
import type { InstanceSnapshot, Route, RouteTable } from '../../src/routing/types.js'
import { cookieValue } from '../../src/routing/variant-pick.js'
import { STICKY_BUCKETS } from '../../src/routing/variants.js'
import { TableStore } from '../../src/table/store.js'
import { BUILD, instance, requestHead, target } from './helpers.js'

const RULES = [
  { header: 'X-Canary', equals: '1', version: '1.7.0' },
  { cookie: 'canary', equals: 'always', version: '1.7.0' },
]

describe('parseTarget: match rules and sticky', () => {
  it('accepts rules and sticky weights, and prints them', () => {
    const parsed = parseTarget(JSON.stringify({ version: '1.6.0', match: RULES }))
    expect(parsed).toEqual({
      ok: true,
      spec: {
        kind: 'version',
        version: '1.6.0',
        match: [
          { source: 'header', name: 'x-canary', equals: '1', version: '1.7.0' },
          { source: 'cookie', name: 'canary', equals: 'always', version: '1.7.0' },
        ],
      },
    })
    expect(formatTarget(parsed.ok ? parsed.spec : null)).toBe(
      'version=1.6.0; header x-canary=1 -> 1.7.0; cookie canary=always -> 1.7.0',
    )
    const sticky = parseTarget('{"weights":{"1.6.0":80,"1.7.0":20},"sticky":true}')
    expect(formatTarget(sticky.ok ? sticky.spec : null)).toBe('weights=1.6.0:80,1.7.0:20 sticky')
  })

  it.each([
    ['{"version":"1","match":{}}', '"match" must be a list of rules'],
    [
      '{"version":"1","match":[{"equals":"1","version":"2"}]}',
      'match rule 1: give exactly one of "header" or "cookie"',
    ],
    [
      '{"version":"1","match":[{"header":"a","cookie":"b","equals":"1","version":"2"}]}',
      'match rule 1: give exactly one of "header" or "cookie"',
    ],
    [
      '{"version":"1","match":[{"header":"a b","equals":"1","version":"2"}]}',
      'match rule 1: "header" must be a header name',
    ],
    [
      '{"version":"1","match":[{"header":"a","equals":1,"version":"2"}]}',
      'match rule 1: "equals" must be a string',
    ],
    [
      '{"version":"1","match":[{"header":"a","equals":"1","version":""}]}',
      'match rule 1: "version" must be a non-empty string',
    ],
    [
      '{"version":"1","match":[{"header":"a","equals":"1","version":"2","to":"x"}]}',
      'match rule 1: unknown field "to"',
    ],
    ['{"version":"1","sticky":true}', '"sticky" applies to a "weights" split only'],
    ['{"weights":{"1":1},"sticky":"yes"}', '"sticky" must be true or false'],
    ['{"match":[]}', 'must have exactly one of "version", "slice" or "weights"'],
  ])('rejects %s', (text, error) => {
    const parsed = parseTarget(text)
    expect(parsed.ok).toBe(false)
    expect(parsed.ok ? '' : parsed.error).toContain(error)
  })
})

const stable = [1, 2].map(() => instance('web', ['urlprefix-/web'], { meta: { version: '1.6.0' } }))
const canary = [instance('web', ['urlprefix-/web'], { meta: { version: '1.7.0' } })]
const critical = (i: InstanceSnapshot): InstanceSnapshot => ({
  ...i,
  checks: [...i.checks, { id: `svc-${i.id}`, name: 'ttl', status: 'critical', serviceId: i.id }],
})
const catalog = (instances: InstanceSnapshot[]) => ({ services: new Map([['web', instances]]) })
const web = (t: RouteTable): Route => t.routes.find((r) => r.id === '/web') as Route

describe('match rules in the table', () => {
  const rules = target('web', { version: '1.6.0', match: RULES })

  it('compiles each rule with the backends of its version; 1.7.0 gets only matched requests', () => {
    const { table } = buildRouteTable(catalog([...stable, ...canary]), [rules], BUILD)
    const route = web(table)
    expect(route.backends.map((b) => b.version)).toEqual(['1.6.0', '1.6.0'])
    expect(route.idle.map((b) => [b.version, b.state])).toEqual([['1.7.0', 'match-only']])
    expect(
      route.variants?.rules.map((r) => [
        r.source,
        r.name,
        r.equals,
        r.pool.backends.map((b) => b.instanceId),
      ]),
    ).toEqual([
      ['header', 'x-canary', '1', [canary[0]?.id]],
      ['cookie', 'canary', 'always', [canary[0]?.id]],
    ])
    // The matched backend is the same object the metrics cells are laid out for.
    expect(route.variants?.rules[0]?.pool.backends[0]).toBe(route.idle[0])
    expect(table.targets[0]?.ready).toBe(true)
    expect(tableText(table)).toContain(
      `route /web match header x-canary="1" web version 1.7.0 http://127.0.0.1:${canary[0]?.port}`,
    )
  })

  it('a rule version without a healthy instance: the rule is dropped and the target is not ready', () => {
    const first = buildRouteTable(catalog([...stable, ...canary]), [rules], BUILD).table
    const { table } = buildRouteTable(catalog([...stable, ...canary.map(critical)]), [rules], BUILD, first)
    expect(web(table).variants).toBeNull()
    expect(web(table).backends.map((b) => b.version)).toEqual(['1.6.0', '1.6.0'])
    expect(table.targets[0]).toMatchObject({ ready: false })
    expect(table.targets[0]?.reason).toContain('no healthy instance of version 1.7.0')
    expect(table.problems.map((p) => p.code)).toContain('SWY_ERR_TARGET_NOT_READY')
  })

  it('a new target whose rule names an unhealthy version is not applied (guarded cutover)', () => {
    const first = buildRouteTable(
      catalog([...stable, ...canary.map(critical)]),
      [target('web', { version: '1.6.0' })],
      BUILD,
    ).table
    const { table } = buildRouteTable(
      catalog([...stable, ...canary.map(critical)]),
      [target('web', { version: '1.6.0', match: RULES }, 2)],
      BUILD,
      first,
    )
    expect(table.targets[0]?.effective).toEqual({ kind: 'version', version: '1.6.0' })
  })
})

describe('match rules on the request path', () => {
  const { table } = buildRouteTable(
    catalog([...stable, ...canary]),
    [target('web', { version: '1.6.0', match: RULES })],
    BUILD,
  )
  const store = new TableStore()
  store.swap(table)
  const resolve = createResolver({ store, balancer: new Balancer('round-robin'), health: null })
  const version = (r: Resolution) => (r.kind === 'forward' ? r.backend.version : r.kind)
  const get = (headers: Record<string, string>) =>
    resolve(requestHead('/web', { Host: 'example.com', ...headers }))

  it('sends requests with the header or cookie to 1.7.0, every other request to 1.6.0', () => {
    expect(version(get({ 'X-Canary': '1' }))).toBe('1.7.0')
    expect(version(get({ cookie: 'a=b; canary=always' }))).toBe('1.7.0')
    const others: Record<string, string>[] = [
      {},
      { 'x-canary': '0' },
      { cookie: 'canary=sometimes' },
      { cookie: 'xcanary=always' },
    ]
    for (const headers of others) for (let i = 0; i < 4; i++) expect(version(get(headers))).toBe('1.6.0')
  })

  it('a matched request retries within its version first', () => {
    const r = get({ 'x-canary': '1' })
    expect(r.kind === 'forward' ? r.pool.backends.map((b) => b.version) : []).toEqual(['1.7.0'])
    expect(r.kind === 'forward' ? r.setCookie : 'x').toBeNull()
  })
})

describe('cookieValue', () => {
  it('finds a cookie by its exact name', () => {
    expect(cookieValue('a=1; canary=always; b=2', 'canary')).toBe('always')
    expect(cookieValue('xcanary=1;canary="q"', 'canary')).toBe('q')
    expect(cookieValue('canaryx=1', 'canary')).toBeNull()
    expect(cookieValue('', 'canary')).toBeNull()
  })
})

function keyFile(...keys: string[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'swy-sticky-'))
  const file = join(dir, 'key')
  writeFileSync(file, `${keys.join('\n')}\n`)
  return file
}
const KEY_A = `${'a'.repeat(16)}0123456789abcdef0123`
const KEY_B = `${'b'.repeat(16)}0123456789abcdef0123`

describe('sticky keys', () => {
  it('signs and verifies; a changed version, bucket or service does not verify', () => {
    const keys = new StickyKeys(keyFile(KEY_A), 86_400_000, null, false)
    const value = keys.value('web', '1.7.0', 4321)
    expect(value).toMatch(/^1\.7\.0:4321:[A-Za-z0-9_-]{22}$/)
    expect(keys.verify('web', value)).toEqual({ version: '1.7.0', bucket: 4321, current: true })
    expect(keys.verify('shop', value)).toBeNull()
    expect(keys.verify('web', value.replace('1.7.0', '1.6.0'))).toBeNull()
    expect(keys.verify('web', value.replace(':4321:', ':4322:'))).toBeNull()
    expect(keys.verify('web', 'garbage')).toBeNull()
    expect(keys.setCookie('switchyard_web', value, true)).toBe(
      `switchyard_web=${value}; Path=/; Max-Age=86400; HttpOnly; SameSite=Lax; Secure`,
    )
  })

  it('rotation: a cookie signed with the previous key verifies, flagged for re-issue', () => {
    const old = new StickyKeys(keyFile(KEY_A), 1000, null, false)
    const rotated = new StickyKeys(keyFile(KEY_B, KEY_A), 1000, null, false)
    const value = old.value('web', '1.6.0', 7)
    expect(rotated.verify('web', value)).toEqual({ version: '1.6.0', bucket: 7, current: false })
    expect(new StickyKeys(keyFile(KEY_B), 1000, null, false).verify('web', value)).toBeNull()
  })

  it('refuses key files without a usable key', () => {
    expect(() => parseKeys('# nothing\n')).toThrow('holds no key')
    expect(() => parseKeys('short\n')).toThrow('at least 32 are needed')
    expect(() => parseKeys(`${KEY_A}\n${KEY_B}\n${KEY_A}`)).toThrow('at most 2')
    expect(() => new StickyKeys('/nonexistent/key', 1000, null, false)).toThrow(
      /routing.stickyKeyFile.*ENOENT/,
    )
  })
})

describe('sticky versions on the request path', () => {
  const pair = [
    instance('web', ['urlprefix-/web'], { meta: { version: '1.6.0' } }),
    instance('web', ['urlprefix-/web'], { meta: { version: '1.7.0' } }),
  ]
  const keys = new StickyKeys(keyFile(KEY_A), 3_600_000, null, false)
  const store = new TableStore()
  const resolve = createResolver({ store, balancer: new Balancer('round-robin'), health: null, sticky: keys })
  const split = (weights: Record<string, number>, previous?: RouteTable) => {
    const table = buildRouteTable(
      catalog(pair),
      [target('web', { weights, sticky: true })],
      { ...BUILD, stickyKeys: true },
      previous,
    ).table
    store.swap(table)
    return table
  }
  const send = (cookie: string) => {
    const r = resolve(requestHead('/web', cookie === '' ? { Host: 'a' } : { Host: 'a', cookie }))
    if (r.kind !== 'forward') throw new Error(r.kind)
    return { version: r.backend.version, setCookie: r.setCookie }
  }

  it('pins each client, keeps the split, and moves only the clients whose bucket changed version', () => {
    const first = split({ '1.6.0': 80, '1.7.0': 20 })
    const cookies: string[] = []
    const firstSeen: string[] = []
    for (let c = 0; c < 2000; c++) {
      const { version, setCookie } = send('')
      expect(setCookie).toMatch(/^switchyard_web=/)
      cookies.push((setCookie as string).split(';')[0] as string)
      firstSeen.push(version)
    }
    const share = (versions: string[]) => versions.filter((v) => v === '1.7.0').length / versions.length
    expect(share(firstSeen)).toBeCloseTo(0.2, 2)
    // Returning clients: the same version, no new cookie.
    for (let c = 0; c < 2000; c++) {
      const again = send(cookies[c] as string)
      expect(again).toEqual({ version: firstSeen[c], setCookie: null })
    }
    split({ '1.6.0': 50, '1.7.0': 50 }, first)
    const after = cookies.map((cookie) => send(cookie))
    // Buckets spread evenly over each slice: the share that moves is the share that should.
    expect(Math.abs(share(after.map((a) => a.version)) - 0.5)).toBeLessThan(0.005)
    // Nobody moved back from the canary; those who moved got a new cookie naming it.
    after.forEach((a, c) => {
      if (firstSeen[c] === '1.7.0') expect(a.version).toBe('1.7.0')
      expect(a.setCookie !== null).toBe(a.version !== firstSeen[c])
    })
  })

  it('a tampered cookie is ignored: the client is placed again', () => {
    split({ '1.6.0': 0.0001, '1.7.0': 100 })
    const forged = `switchyard_web=1.6.0:0:${'A'.repeat(22)}`
    const r = send(forged)
    expect(r.version).toBe('1.7.0')
    expect(r.setCookie).toMatch(/^switchyard_web=1\.7\.0:\d+:/)
    expect(Number(r.setCookie?.split(':')[1])).toBeLessThan(STICKY_BUCKETS)
  })
})

describe('a sticky target without a key', () => {
  it('is a problem and splits per request', () => {
    const { table } = buildRouteTable(
      catalog([...stable, ...canary]),
      [target('web', { weights: { '1.6.0': 50, '1.7.0': 50 }, sticky: true })],
      BUILD,
    )
    expect(table.problems.find((p) => p.code === 'SWY_ERR_STICKY_KEY')?.subject).toBe('service web')
    expect(web(table).backends).toHaveLength(3)
  })
})
