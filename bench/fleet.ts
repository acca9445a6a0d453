// A synthetic fleet for the scale section: `services` routed services with
// `perService` instances each, one instance of every service per node (as a
// fleet of identical hosts would have). The same description feeds both the
// Consul registration (catalog API) and the offline snapshot the table-build
// micro-benchmark uses, so the two measure the same shape.

import type { CatalogSnapshot, InstanceSnapshot } from '../src/routing/types.js'
import type { BenchConsul } from './consul.js'

export interface FleetInstance {
  readonly node: string
  readonly nodeAddress: string
  readonly id: string
  readonly service: string
  readonly port: number
  readonly tags: readonly string[]
  readonly meta: Readonly<Record<string, string>>
  readonly checkId: string
}

export function serviceName(index: number): string {
  return `svc-${String(index).padStart(4, '0')}`
}

export function fleet(services: number, perService: number, tagPrefix = 'urlprefix-'): FleetInstance[] {
  const out: FleetInstance[] = []
  for (let s = 0; s < services; s++) {
    const service = serviceName(s)
    for (let n = 0; n < perService; n++) {
      const id = `${service}-${n}`
      out.push({
        node: `fleet-node-${n}`,
        // Documentation range (RFC 5737): nothing ever connects to these.
        nodeAddress: `192.0.2.${(n % 250) + 1}`,
        id,
        service,
        port: 20_000 + s,
        tags: [`${tagPrefix}/${service}`, 'version:1.0.0'],
        meta: { version: '1.0.0' },
        checkId: `check-${id}`,
      })
    }
  }
  return out
}

/** What Switchyard's watchers would hold for this fleet with every check at `status`. */
export function fleetCatalog(instances: readonly FleetInstance[], status = 'passing'): CatalogSnapshot {
  const services = new Map<string, InstanceSnapshot[]>()
  for (const i of instances) {
    const list = services.get(i.service) ?? []
    if (list.length === 0) services.set(i.service, list)
    list.push({
      id: i.id,
      service: i.service,
      node: i.node,
      address: i.nodeAddress,
      port: i.port,
      tags: i.tags,
      meta: i.meta,
      checks: [{ id: i.checkId, name: `${i.id} check`, status, serviceId: i.id }],
    })
  }
  return { services }
}

/**
 * Body of `PUT /v1/catalog/register` for one instance and its check.
 * SkipNodeUpdate keeps a re-registration (a health flip) from touching the
 * node, so only that instance's service sees a change, as with a real check.
 */
export function catalogRegistration(i: FleetInstance, status: 'passing' | 'critical'): unknown {
  return {
    Node: i.node,
    Address: i.nodeAddress,
    SkipNodeUpdate: true,
    Service: {
      ID: i.id,
      Service: i.service,
      Address: i.nodeAddress,
      Port: i.port,
      Tags: i.tags,
      Meta: i.meta,
    },
    Check: {
      Node: i.node,
      CheckID: i.checkId,
      Name: `${i.id} check`,
      Status: status,
      ServiceID: i.id,
    },
  }
}

/** Registers every instance in the catalog, 32 at a time; the seconds it took. */
export async function registerFleet(
  consul: BenchConsul,
  instances: readonly FleetInstance[],
): Promise<number> {
  const started = Date.now()
  let next = 0
  const worker = async () => {
    while (next < instances.length) {
      const instance = instances[next++] as FleetInstance
      const res = await consul.api.call(
        'PUT',
        '/v1/catalog/register',
        catalogRegistration(instance, 'passing'),
      )
      if (!res.ok) throw new Error(`catalog register ${instance.id}: ${res.status} ${await res.text()}`)
      await res.arrayBuffer()
    }
  }
  await Promise.all(Array.from({ length: 32 }, worker))
  return (Date.now() - started) / 1000
}
