// Every strategy respects instance weights; picker state lives outside the
// immutable table and survives table swaps for routes and instances that stay.

import { describe, expect, it } from 'vitest'
import { Balancer, type Strategy } from '../../src/proxy/pickers.js'
import { buildRouteTable } from '../../src/routing/build.js'
import type { Backend, Route, RouteTable } from '../../src/routing/types.js'
import { BUILD, catalogOf, instance, target } from './helpers.js'

const INSTANCES = [
  instance('web', ['urlprefix-/web'], { meta: { version: '1' } }),
  instance('web', ['urlprefix-/web'], { meta: { version: '2' } }),
  instance('web', ['urlprefix-/web'], { meta: { version: '2' } }),
]
/** 60 % to version 1 (one instance), 40 % to version 2 (two instances, 20 % each). */
const TARGETS = [target('web', { weights: { '1': 60, '2': 40 } })]

function table(previous?: RouteTable): RouteTable {
  return buildRouteTable(catalogOf(INSTANCES), TARGETS, BUILD, previous).table
}

function route(t: RouteTable): Route {
  return t.routes.find((r) => r.id === '/web') as Route
}

/** A seeded generator (mulberry32), so the random picker's test is deterministic. */
function seeded(seed: number): () => number {
  let a = seed
  return () => {
    a = (a + 0x6d2b79f5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function shares(picks: Backend[]): Record<string, number> {
  const out: Record<string, number> = {}
  for (const p of picks) out[p.key] = (out[p.key] ?? 0) + 1 / picks.length
  return out
}

describe('Balancer', () => {
  const r = route(table())
  const [v1, v2a, v2b] = r.backends as [Backend, Backend, Backend]

  it('has the weights the table was built with', () => {
    expect(r.backends.map((t) => t.weight)).toEqual([0.6, 0.2, 0.2])
  })

  for (const strategy of ['round-robin', 'random', 'least-outstanding'] as Strategy[]) {
    it(`${strategy}: sequential requests split by weight`, () => {
      const balancer = new Balancer(strategy, seeded(7))
      const picks: Backend[] = []
      for (let i = 0; i < 5_000; i++) {
        const t = balancer.pick(r) as Backend
        balancer.begin(t)
        balancer.end(t)
        picks.push(t)
      }
      const s = shares(picks)
      const tolerance = strategy === 'random' ? 0.03 : 0.001
      expect(s[v1.key]).toBeCloseTo(0.6, 1)
      expect(Math.abs((s[v1.key] ?? 0) - 0.6)).toBeLessThan(tolerance)
      expect(Math.abs((s[v2a.key] ?? 0) - 0.2)).toBeLessThan(tolerance)
      expect(Math.abs((s[v2b.key] ?? 0) - 0.2)).toBeLessThan(tolerance)
    })
  }

  it('least-outstanding: under concurrency, in-flight requests per instance follow the weights', () => {
    const balancer = new Balancer('least-outstanding', seeded(1))
    // 50 requests held in flight at once.
    const held: Backend[] = []
    for (let i = 0; i < 50; i++) {
      const t = balancer.pick(r) as Backend
      balancer.begin(t)
      held.push(t)
    }
    expect(balancer.outstanding(v1)).toBe(30)
    expect(balancer.outstanding(v2a)).toBe(10)
    expect(balancer.outstanding(v2b)).toBe(10)
    for (const t of held) balancer.end(t)
  })

  it('least-outstanding: a slow instance gets fewer new requests', () => {
    const balancer = new Balancer('least-outstanding', seeded(2))
    for (let i = 0; i < 20; i++) balancer.begin(v1) // v1 is stuck with 20 in flight
    const picks: Backend[] = []
    for (let i = 0; i < 20; i++) {
      const t = balancer.pick(r) as Backend
      balancer.begin(t)
      picks.push(t)
    }
    // v1 carries 20/0.6 = 33 per unit of weight: the others get new requests
    // until they carry as much (7 each), although round robin would give v1 60 %.
    expect(picks.slice(0, 12)).not.toContain(v1)
    expect(picks.filter((t) => t === v1).length).toBeLessThanOrEqual(6)
  })

  for (const strategy of ['round-robin', 'random', 'least-outstanding'] as Strategy[]) {
    it(`${strategy}: skips instances the filter rejects and returns null when none is left`, () => {
      const balancer = new Balancer(strategy, seeded(3))
      for (let i = 0; i < 50; i++) expect(balancer.pick(r, (t) => t !== v1)).not.toBe(v1)
      expect(balancer.pick(r, () => false)).toBeNull()
    })
  }

  it('round robin: the position survives a table swap for a route that stays', () => {
    const first = table()
    // A copy made of new objects, as a table handed to a worker process is.
    const second = structuredClone(first)
    expect(route(second)).not.toBe(route(first))
    const continued = new Balancer('round-robin', () => 0)
    const fresh = new Balancer('round-robin', () => 0)
    const before = [0, 1].map(() => (continued.pick(route(first)) as Backend).key)
    const after = [0, 1, 2].map(() => (continued.pick(route(second)) as Backend).key)
    // The schedule is 5 long; picking on the new table goes on where the old one stopped.
    const straight = [0, 1, 2, 3, 4].map(() => (fresh.pick(route(first)) as Backend).key)
    expect([...before, ...after]).toEqual(straight)
  })

  it('least-outstanding: in-flight counts survive a table swap (keyed by instance, not object)', () => {
    const first = table()
    const balancer = new Balancer('least-outstanding')
    const t = route(first).backends[0] as Backend
    balancer.begin(t)
    const second = structuredClone(first)
    const same = route(second).backends.find((x) => x.key === t.key) as Backend
    expect(same).not.toBe(t)
    expect(balancer.outstanding(same)).toBe(1)
    balancer.end(same)
    expect(balancer.outstanding(t)).toBe(0)
  })

  it('keeps the in-flight count of an instance that stays when its route changes', () => {
    const first = table()
    const balancer = new Balancer('least-outstanding')
    const t = route(first).backends[0] as Backend
    balancer.begin(t)
    const grown = buildRouteTable(
      catalogOf([...INSTANCES, instance('web', ['urlprefix-/web'], { meta: { version: '1' } })]),
      TARGETS,
      BUILD,
      first,
    ).table
    expect(route(grown)).not.toBe(route(first))
    const same = route(grown).backends.find((x) => x.key === t.key) as Backend
    expect(balancer.outstanding(same)).toBe(1)
  })

  it('forgets the positions of routes that left the table', () => {
    const balancer = new Balancer('round-robin', () => 0)
    balancer.pick(r)
    balancer.retain(new Set())
    const again = new Balancer('round-robin', () => 0)
    expect(balancer.pick(r)).toBe(again.pick(r))
  })
})
