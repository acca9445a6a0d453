// buildRouteTable reuses what it derived from snapshot objects it has seen and
// the Route objects of the previous table whose inputs did not change. That
// must never change a result: after any sequence of Consul changes, the
// incremental build equals a full build from the same inputs, and the diff
// logged on a swap equals the diff of the two full canonical texts.

import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { buildRouteTable, EMPTY_TABLE } from '../../src/routing/build.js'
import { diffTables, tableText } from '../../src/routing/canonical.js'
import type { CatalogSnapshot, InstanceSnapshot, RouteTable, TargetEntry } from '../../src/routing/types.js'
import { BUILD, target } from './helpers.js'

const SERVICES = ['web', 'api', 'auth']
const VERSIONS = ['1', '2']
const TAGS = [
  'urlprefix-/shared',
  'urlprefix-/shared weight=0.5',
  'urlprefix-/shared allow=ip:10.0.0.0/8',
  'urlprefix-api.example.com/v1 strip=/v1',
  'urlprefix-/broken bogus=1',
  'urlprefix-nopath',
]

interface Instance {
  readonly service: string
  readonly n: number
  readonly version: string
  readonly status: 'passing' | 'warning' | 'critical'
  readonly extraTag: string | null
}

/**
 * One change: an instance appears, changes (health, version, tags) or leaves; a
 * target is set; or the configuration starts or stops accepting `warning`.
 */
type Change =
  | { readonly kind: 'lenient'; readonly on: boolean }
  | { readonly kind: 'upsert'; readonly instance: Instance }
  | { readonly kind: 'remove'; readonly service: string; readonly n: number }
  | { readonly kind: 'target'; readonly service: string; readonly value: unknown }

const instanceArb: fc.Arbitrary<Instance> = fc.record({
  service: fc.constantFrom(...SERVICES),
  n: fc.integer({ min: 0, max: 3 }),
  version: fc.constantFrom(...VERSIONS),
  status: fc.constantFrom('passing', 'warning', 'critical'),
  extraTag: fc.option(fc.constantFrom(...TAGS), { nil: null }),
})

const changeArb: fc.Arbitrary<Change> = fc.oneof(
  { weight: 4, arbitrary: instanceArb.map((instance) => ({ kind: 'upsert' as const, instance })) },
  { weight: 1, arbitrary: fc.boolean().map((on) => ({ kind: 'lenient' as const, on })) },
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
      value: fc.constantFrom<unknown>(
        { version: '1' },
        { version: '2' },
        { version: '3' },
        { weights: { '1': 90, '2': 10 } },
        { weights: { '1': 1, '2': 1 } },
        'not json',
      ),
    }),
  },
)

function snapshotOf(i: Instance): InstanceSnapshot {
  return {
    id: `${i.service}-${i.n}`,
    service: i.service,
    node: `node-${i.n}`,
    address: '127.0.0.1',
    port: 8000 + i.n,
    tags: [`urlprefix-/${i.service}`, ...(i.extraTag ? [i.extraTag] : [])],
    meta: { version: i.version },
    checks: [{ id: 'svc', name: 'svc', status: i.status, serviceId: `${i.service}-${i.n}` }],
  }
}

/** Applies a change the way the catalog watcher does: only the changed service gets a new instance list. */
function apply(
  catalog: CatalogSnapshot,
  targets: TargetEntry[],
  change: Change,
  index: number,
): [CatalogSnapshot, TargetEntry[]] {
  if (change.kind === 'lenient') return [catalog, targets]
  if (change.kind === 'target') {
    const rest = targets.filter((t) => t.key !== `switchyard/targets/${change.service}`)
    return [catalog, [...rest, target(change.service, change.value, index)]]
  }
  const services = new Map(catalog.services)
  const service = change.kind === 'upsert' ? change.instance.service : change.service
  const n = change.kind === 'upsert' ? change.instance.n : change.n
  const kept = (services.get(service) ?? []).filter((i) => i.id !== `${service}-${n}`)
  const next = change.kind === 'upsert' ? [...kept, snapshotOf(change.instance)] : kept
  if (next.length === 0) services.delete(service)
  else services.set(service, next)
  return [{ services }, targets]
}

/** A copy with no object in common with the original: nothing to reuse, so a full build. */
function fresh<T>(value: T): T {
  return structuredClone(value)
}

describe('incremental table builds', () => {
  it('give the same table, problems and diff as full builds, after any sequence of changes', () => {
    fc.assert(
      fc.property(fc.array(changeArb, { minLength: 1, maxLength: 25 }), (changes) => {
        let catalog: CatalogSnapshot = { services: new Map() }
        let targets: TargetEntry[] = []
        let table: RouteTable = EMPTY_TABLE
        let config = BUILD
        changes.forEach((change, k) => {
          ;[catalog, targets] = apply(catalog, targets, change, k + 1)
          if (change.kind === 'lenient') {
            config = { ...BUILD, healthyStatuses: change.on ? ['passing', 'warning'] : ['passing'] }
          }
          const incremental = buildRouteTable(catalog, targets, config, table)
          const full = buildRouteTable(fresh(catalog), fresh(targets), config, fresh(table))
          expect(incremental.table).toEqual(full.table)
          expect(incremental.table.problems).toEqual(full.table.problems)

          const before = new Set(tableText(table))
          const after = new Set(tableText(incremental.table))
          expect(diffTables(table, incremental.table)).toEqual({
            added: [...after].filter((l) => !before.has(l)).sort(),
            removed: [...before].filter((l) => !after.has(l)).sort(),
          })
          table = incremental.table
        })
      }),
      { numRuns: 200 },
    )
  })

  it('keeps the Route objects of services a change did not touch, so a swap costs only the change', () => {
    const instances = (service: string, passing: boolean[]) =>
      passing.map((p, n) =>
        snapshotOf({ service, n, version: '1', status: p ? 'passing' : 'critical', extraTag: null }),
      )
    const first: CatalogSnapshot = {
      services: new Map([
        ['web', instances('web', [true, true])],
        ['api', instances('api', [true, true])],
      ]),
    }
    const one = buildRouteTable(first, [], BUILD).table
    const second: CatalogSnapshot = {
      services: new Map(first.services).set('web', instances('web', [true, false])),
    }
    const two = buildRouteTable(second, [], BUILD, one).table

    const byId = (t: RouteTable, id: string) => t.routes.find((r) => r.id === id)
    expect(byId(two, '/api')).toBe(byId(one, '/api'))
    expect(byId(two, '/web')).not.toBe(byId(one, '/web'))
    expect(byId(two, '/web')?.backends.map((t) => t.instanceId)).toEqual(['web-0'])
    expect(diffTables(one, two).removed).toEqual([
      'route /web web http://127.0.0.1:8000 weight 0.5000 version 1',
      'route /web web http://127.0.0.1:8001 weight 0.5000 version 1',
    ])
  })
})
