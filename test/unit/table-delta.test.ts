// Workers receive each table as a delta from the one before (src/table/delta.ts).
// Whatever the change, the table a worker rebuilds from the previous one and
// the delta (after the structured clone IPC applies) is the primary's table,
// index included; and a one-instance change costs the size of that change,
// not of the table.

import { deserialize, serialize } from 'node:v8'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { buildRouteTable, EMPTY_TABLE } from '../../src/routing/build.js'
import { lookupRoute } from '../../src/routing/lookup.js'
import type { CatalogSnapshot, InstanceSnapshot, RouteTable, TargetEntry } from '../../src/routing/types.js'
import { applyTableDelta, encodeTableDelta } from '../../src/table/delta.js'
import { BUILD, target } from './helpers.js'

const SERVICES = ['web', 'api', 'auth', 'shop']
const TAGS = [
  'urlprefix-/shared',
  'urlprefix-/static*',
  'urlprefix-api.example.com/v1',
  'urlprefix-*.example.com/',
  'urlprefix-/x bogus=1',
]

type Change =
  | { kind: 'upsert'; service: string; n: number; version: string; passing: boolean; tag: string | null }
  | { kind: 'remove'; service: string; n: number }
  | { kind: 'target'; service: string; version: string | null }

const changeArb: fc.Arbitrary<Change> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('upsert' as const),
      service: fc.constantFrom(...SERVICES),
      n: fc.integer({ min: 0, max: 3 }),
      version: fc.constantFrom('1', '2'),
      passing: fc.boolean(),
      tag: fc.option(fc.constantFrom(...TAGS), { nil: null }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('remove' as const),
      service: fc.constantFrom(...SERVICES),
      n: fc.integer({ min: 0, max: 3 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('target' as const),
      service: fc.constantFrom(...SERVICES),
      version: fc.option(fc.constantFrom('1', '2', '3'), { nil: null }),
    }),
  },
)

function instanceOf(c: Extract<Change, { kind: 'upsert' }>): InstanceSnapshot {
  return {
    id: `${c.service}-${c.n}`,
    service: c.service,
    node: `node-${c.n}`,
    address: '127.0.0.1',
    port: 8000 + c.n,
    tags: [`urlprefix-/${c.service}`, ...(c.tag ? [c.tag] : [])],
    meta: { version: c.version },
    checks: [
      {
        id: 'svc',
        name: 'svc',
        status: c.passing ? 'passing' : 'critical',
        serviceId: `${c.service}-${c.n}`,
      },
    ],
  }
}

/** As the watchers change their state: only the changed service gets a new instance list. */
function applyChange(catalog: CatalogSnapshot, targets: TargetEntry[], change: Change, k: number) {
  if (change.kind === 'target') {
    const rest = targets.filter((t) => t.key !== `switchyard/targets/${change.service}`)
    return {
      catalog,
      targets:
        change.version === null ? rest : [...rest, target(change.service, { version: change.version }, k)],
    }
  }
  const services = new Map(catalog.services)
  const kept = (services.get(change.service) ?? []).filter((i) => i.id !== `${change.service}-${change.n}`)
  const list = change.kind === 'upsert' ? [...kept, instanceOf(change)] : kept
  if (list.length === 0) services.delete(change.service)
  else services.set(change.service, list)
  return { catalog: { services }, targets }
}

/** What a worker holds after the primary's message: a structured clone, as IPC with serialization 'advanced'. */
const overIpc = <T>(value: T): T => deserialize(serialize(value)) as T

describe('table deltas', () => {
  it('rebuild, from the previous table, exactly the table the primary built, whatever the changes', () => {
    fc.assert(
      fc.property(
        fc.array(changeArb, { minLength: 1, maxLength: 20 }),
        fc.boolean(),
        (changes, fallthrough) => {
          const config = { ...BUILD, fallthrough }
          let state: { catalog: CatalogSnapshot; targets: TargetEntry[] } = {
            catalog: { services: new Map() },
            targets: [],
          }
          let primary: RouteTable = EMPTY_TABLE
          let worker: RouteTable = overIpc(EMPTY_TABLE)
          changes.forEach((change, k) => {
            state = applyChange(state.catalog, state.targets, change, k + 1)
            const next = buildRouteTable(state.catalog, state.targets, config, primary).table
            worker = applyTableDelta(worker, overIpc(encodeTableDelta(primary, next)))
            primary = next
            expect(worker).toEqual(primary)
            for (const [host, path] of [
              ['', '/shared/a'],
              ['a.example.com', '/static/x'],
              ['api.example.com', '/v1/users'],
              ['', '/web'],
            ] as const) {
              expect(lookupRoute(worker, host, path)?.id).toBe(lookupRoute(primary, host, path)?.id)
            }
          })
        },
      ),
      { numRuns: 150 },
    )
  })

  it('refuses a delta made for another table', () => {
    const one = buildRouteTable({ services: new Map() }, [], BUILD).table
    const two = buildRouteTable({ services: new Map() }, [], BUILD, one).table
    expect(() => applyTableDelta(EMPTY_TABLE, encodeTableDelta(one, two))).toThrow(
      'table delta for generation 1 cannot apply to generation 0',
    )
  })

  it('costs the size of the change: one health flip among 1,000 services x 10 instances', () => {
    const services = new Map<string, InstanceSnapshot[]>()
    for (let s = 0; s < 1_000; s++) {
      const name = `svc-${s}`
      services.set(
        name,
        Array.from({ length: 10 }, (_, n) =>
          instanceOf({ kind: 'upsert', service: name, n, version: '1', passing: true, tag: null }),
        ),
      )
    }
    const before = buildRouteTable({ services }, [], BUILD).table
    const flipped = new Map(services)
    flipped.set(
      'svc-500',
      (services.get('svc-500') ?? []).map((i, n) =>
        n === 3 ? { ...i, checks: [{ ...i.checks[0]!, status: 'critical' }] } : i,
      ),
    )
    const after = buildRouteTable({ services: flipped }, [], BUILD, before).table
    const delta = encodeTableDelta(before, after)
    expect(delta.changed.map((r) => r.id)).toEqual(['/svc-500'])
    expect(delta.removed).toEqual([])
    const deltaBytes = serialize(delta).byteLength
    const tableBytes = serialize(after).byteLength
    // One route of a thousand: well under a hundredth of the whole table.
    expect(deltaBytes * 100).toBeLessThan(tableBytes)
    expect(applyTableDelta(before, overIpc(delta))).toEqual(after)
  })
})
