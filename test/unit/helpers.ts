// Builds snapshots and tables for unit tests without Consul.

import { readFileSync } from 'node:fs'
import { parseHealthService, parseKvList } from '../../src/consul/normalize.js'
import type { RequestHead } from '../../src/proxy/exchange.js'
import { type BuildConfig, buildRouteTable } from '../../src/routing/build.js'
import type { CatalogSnapshot, InstanceSnapshot, RouteTable, TargetEntry } from '../../src/routing/types.js'

export const BUILD: BuildConfig = {
  tagPrefix: 'urlprefix-',
  healthyStatuses: ['passing'],
  targetPrefix: 'switchyard/targets',
  fallthrough: false,
}

export function fixture(name: string): string {
  return readFileSync(new URL(`../fixtures/consul/${name}`, import.meta.url), 'utf8')
}

/** The recorded catalog: every routed service of test/fixtures/consul. */
export function recordedCatalog(): CatalogSnapshot {
  const services = new Map<string, InstanceSnapshot[]>()
  for (const name of ['web', 'api', 'wild', 'legacy', 'bad'])
    services.set(name, parseHealthService(fixture(`health-${name}.json`)))
  return { services }
}

export function recordedTargets(): TargetEntry[] {
  return parseKvList(fixture('kv-targets.json'))
}

let port = 10_000
export function instance(
  service: string,
  tags: string[],
  extra: Partial<InstanceSnapshot> = {},
): InstanceSnapshot {
  port++
  const id = extra.id ?? `${service}-${port}`
  return {
    id,
    service,
    node: 'node-1',
    address: '127.0.0.1',
    port,
    tags,
    meta: {},
    checks: [
      { id: 'serfHealth', name: 'Serf', status: 'passing', serviceId: '' },
      { id: `service:${id}`, name: `${id} check`, status: 'passing', serviceId: id },
    ],
    ...extra,
  }
}

export function catalogOf(instances: InstanceSnapshot[]): CatalogSnapshot {
  const services = new Map<string, InstanceSnapshot[]>()
  for (const i of instances) services.set(i.service, [...(services.get(i.service) ?? []), i])
  return { services }
}

export function tableOf(
  instances: InstanceSnapshot[],
  targets: TargetEntry[] = [],
  config: Partial<BuildConfig> = {},
): RouteTable {
  return buildRouteTable(catalogOf(instances), targets, { ...BUILD, ...config }).table
}

export function target(service: string, value: unknown, modifyIndex = 1): TargetEntry {
  return {
    key: `switchyard/targets/${service}`,
    value: typeof value === 'string' ? value : JSON.stringify(value),
    modifyIndex,
  }
}

/** A request head as a listener would hand it over. */
export function requestHead(
  url: string,
  headers: Record<string, string> = {},
  overrides: Partial<RequestHead> = {},
): RequestHead {
  const flat = Object.entries(headers).flat()
  const host = Object.entries(headers).filter(([n]) => n.toLowerCase() === 'host')
  return {
    method: 'GET',
    url,
    httpMinor: 1,
    headers: flat,
    host: host[0]?.[1] ?? '',
    hostCount: host.length,
    userAgent: headers['user-agent'] ?? '',
    forwardedFor: headers['x-forwarded-for'] ?? null,
    authorization: headers.authorization ?? '',
    cookie: headers.cookie ?? '',
    client: { address: '127.0.0.1', localPort: 9999, proto: 'http' },
    upgrade: null,
    bodyLength: 0,
    ...overrides,
  }
}
