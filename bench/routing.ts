// Pure routing costs, no network: building the table for a large fleet, the
// diff the sync logs on every swap, and what a request pays to find its
// instance (path normalisation, lookup, pick). Runs in this process on a
// generated snapshot (bench/fleet.ts) or on one read from a real Consul.

import { existsSync } from 'node:fs'
import { performance } from 'node:perf_hooks'
import type { Balancer as BalancerClass } from '../src/proxy/pickers.js'
import type { BuildConfig, buildRouteTable as BuildRouteTable } from '../src/routing/build.js'
import type { diffTables as DiffTables } from '../src/routing/canonical.js'
import type { lookupRoute as LookupRoute } from '../src/routing/lookup.js'
import type { normalizePath as NormalizePath } from '../src/routing/path.js'
import type { CatalogSnapshot, RouteTable, TargetEntry } from '../src/routing/types.js'
import { median } from './stats.js'

interface RoutingCode {
  readonly buildRouteTable: typeof BuildRouteTable
  readonly diffTables: typeof DiffTables
  readonly lookupRoute: typeof LookupRoute
  readonly normalizePath: typeof NormalizePath
  readonly Balancer: typeof BalancerClass
}

/**
 * The compiled modules in dist/, what `switchyard serve` runs: timing the
 * TypeScript sources as tsx transforms them would add its helpers to the figures.
 */
async function routingCode(): Promise<RoutingCode> {
  const dist = new URL('../dist/', import.meta.url)
  if (!existsSync(new URL('routing/build.js', dist))) throw new Error('dist/ is not built: run npm run build')
  const load = (path: string) => import(new URL(path, dist).href)
  const [build, canonical, lookup, path, pickers] = await Promise.all([
    load('routing/build.js'),
    load('routing/canonical.js'),
    load('routing/lookup.js'),
    load('routing/path.js'),
    load('proxy/pickers.js'),
  ])
  return {
    buildRouteTable: build.buildRouteTable,
    diffTables: canonical.diffTables,
    lookupRoute: lookup.lookupRoute,
    normalizePath: path.normalizePath,
    Balancer: pickers.Balancer,
  }
}

export const BENCH_BUILD_CONFIG: BuildConfig = {
  tagPrefix: 'urlprefix-',
  healthyStatuses: ['passing'],
  targetPrefix: 'switchyard/targets',
  fallthrough: false,
}

export interface RoutingResult {
  readonly source: string
  readonly services: number
  readonly instances: number
  readonly routes: number
  /** Full build from scratch (first table), ms. */
  readonly buildMs: { readonly median: number; readonly min: number; readonly runs: number }
  /** Build after one instance turned critical, given the previous table, ms. */
  readonly rebuildMs: number
  /** diffTables(previous, next) for that change: the sync computes it on every swap, ms. */
  readonly diffMs: number
  /** lookupRoute alone, ns per call. */
  readonly lookupNs: number
  /** normalizePath + lookupRoute + Balancer.pick, ns per request. */
  readonly requestRoutingNs: number
}

export interface RoutingOptions {
  readonly buildRuns: number
  readonly lookups: number
}

export async function routingBench(
  source: string,
  catalog: CatalogSnapshot,
  targets: readonly TargetEntry[],
  options: RoutingOptions,
): Promise<RoutingResult> {
  const { buildRouteTable, diffTables, lookupRoute, normalizePath, Balancer } = await routingCode()
  const instances = [...catalog.services.values()].reduce((n, list) => n + list.length, 0)
  // Warm-up: let the JIT see the builder before timing it.
  let current = structuredClone(catalog)
  let table = buildRouteTable(current, targets, BENCH_BUILD_CONFIG).table
  const times: number[] = []
  for (let i = 0; i < options.buildRuns; i++) {
    // Objects the builder has never seen, as at start-up: nothing derived from them is cached.
    current = structuredClone(catalog)
    const started = performance.now()
    table = buildRouteTable(current, targets, BENCH_BUILD_CONFIG).table
    times.push(performance.now() - started)
  }

  const rebuilds: number[] = []
  const diffs: number[] = []
  for (let i = 0; i < Math.max(3, Math.min(options.buildRuns, 10)); i++) {
    // As the watchers deliver it: one service's instances are new objects, the rest are as before.
    const changed = withOneCritical(current)
    let started = performance.now()
    const next = buildRouteTable(changed, targets, BENCH_BUILD_CONFIG, table).table
    rebuilds.push(performance.now() - started)
    started = performance.now()
    const diff = diffTables(table, next)
    diffs.push(performance.now() - started)
    if (diff.removed.length === 0) throw new Error('the health change did not change the table')
  }

  return {
    source,
    services: catalog.services.size,
    instances,
    routes: table.routes.length,
    buildMs: { median: median(times), min: Math.min(...times), runs: times.length },
    rebuildMs: median(rebuilds),
    diffMs: median(diffs),
    lookupNs: lookupCost(lookupRoute, table, options.lookups),
    requestRoutingNs: requestRoutingCost({ lookupRoute, normalizePath, Balancer }, table, options.lookups),
  }
}

/**
 * The catalog after one health change, as the watchers deliver it: the first
 * service's instances are new objects (its answer was parsed again), its first
 * instance now failing; every other service's list is the same object as before.
 */
function withOneCritical(catalog: CatalogSnapshot): CatalogSnapshot {
  const services = new Map(catalog.services)
  const [name, list] = [...services][0] ?? []
  if (name === undefined || list === undefined || list.length === 0) return catalog
  services.set(
    name,
    list.map((instance, i) => ({
      ...instance,
      checks: instance.checks.map((c) => ({ ...c, status: i === 0 ? 'critical' : c.status })),
    })),
  )
  return { services }
}

/** Request paths spread over every route, each below its route prefix. */
function requestPaths(table: RouteTable, count: number): string[] {
  const routes = table.routes.filter((r) => r.host === '')
  if (routes.length === 0) throw new Error('no host-less route to look up')
  const paths: string[] = []
  for (let i = 0; i < count; i++) {
    // A fixed stride, not Math.random: runs compare like with like.
    const route = routes[(i * 7919) % routes.length]
    paths.push(`${route?.path === '/' ? '' : route?.path}/items/${i}`)
  }
  return paths
}

function lookupCost(lookupRoute: typeof LookupRoute, table: RouteTable, lookups: number): number {
  const paths = requestPaths(table, 1024)
  let hits = 0
  const run = (n: number) => {
    for (let i = 0; i < n; i++) if (lookupRoute(table, 'localhost:9999', paths[i & 1023] as string)) hits++
  }
  run(Math.min(lookups, 100_000))
  const started = process.hrtime.bigint()
  run(lookups)
  const ns = Number(process.hrtime.bigint() - started) / lookups
  if (hits === 0) throw new Error('no lookup hit a route')
  return ns
}

function requestRoutingCost(
  { lookupRoute, normalizePath, Balancer }: Pick<RoutingCode, 'lookupRoute' | 'normalizePath' | 'Balancer'>,
  table: RouteTable,
  lookups: number,
): number {
  const paths = requestPaths(table, 1024)
  const balancer = new Balancer('round-robin')
  let picked = 0
  const run = (n: number) => {
    for (let i = 0; i < n; i++) {
      const path = normalizePath(paths[i & 1023] as string)
      if (path === null) continue
      const route = lookupRoute(table, 'localhost:9999', path)
      if (route && balancer.pick(route)) picked++
    }
  }
  run(Math.min(lookups, 100_000))
  const started = process.hrtime.bigint()
  run(lookups)
  const ns = Number(process.hrtime.bigint() - started) / lookups
  if (picked === 0) throw new Error('no request found an instance')
  return ns
}
