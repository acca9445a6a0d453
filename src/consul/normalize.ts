// Consul JSON → Switchyard snapshots. Pure; tested on recorded responses.
// Anything malformed throws, which the blocking-query loop counts as an error
// and retries, so a half-understood answer never becomes a routing table.

import type { InstanceSnapshot, TargetEntry } from '../routing/types.js'

/** `/v1/catalog/services`: service name → union of its instances' tags. */
export function parseServiceList(body: string): Map<string, string[]> {
  const json = JSON.parse(body) as unknown
  if (!isRecord(json)) throw new TypeError('catalog/services: expected an object')
  const out = new Map<string, string[]>()
  for (const [name, tags] of Object.entries(json)) {
    out.set(name, Array.isArray(tags) ? tags.filter((t): t is string => typeof t === 'string') : [])
  }
  return out
}

/** Names of services with at least one tag starting with `prefix`. */
export function routedServices(list: ReadonlyMap<string, readonly string[]>, prefix: string): string[] {
  return [...list].filter(([, tags]) => tags.some((t) => t.startsWith(prefix))).map(([name]) => name)
}

/** `/v1/health/service/<name>`: every instance with its node and service checks. */
export function parseHealthService(body: string): InstanceSnapshot[] {
  const json = JSON.parse(body) as unknown
  if (!Array.isArray(json)) throw new TypeError('health/service: expected an array')
  return json.map((entry, i) => {
    if (!isRecord(entry) || !isRecord(entry.Node) || !isRecord(entry.Service)) {
      throw new TypeError(`health/service: entry ${i} lacks Node or Service`)
    }
    const node = entry.Node
    const svc = entry.Service
    const checks = Array.isArray(entry.Checks) ? entry.Checks : []
    const port = Number(svc.Port)
    return {
      id: str(svc.ID),
      service: str(svc.Service),
      node: str(node.Node),
      address: str(svc.Address) || str(node.Address),
      port: Number.isInteger(port) ? port : 0,
      tags: Array.isArray(svc.Tags) ? svc.Tags.filter((t): t is string => typeof t === 'string') : [],
      meta: isRecord(svc.Meta) ? stringRecord(svc.Meta) : {},
      checks: checks.filter(isRecord).map((c) => ({
        id: str(c.CheckID),
        name: str(c.Name),
        status: str(c.Status),
        serviceId: str(c.ServiceID),
      })),
    }
  })
}

/** `/v1/kv/<prefix>?recurse`: keys with their decoded values (folders skipped). */
export function parseKvList(body: string): TargetEntry[] {
  const json = JSON.parse(body) as unknown
  if (!Array.isArray(json)) throw new TypeError('kv: expected an array')
  return json.filter(isRecord).flatMap((e) => {
    const key = str(e.Key)
    if (key === '' || key.endsWith('/')) return []
    const value = typeof e.Value === 'string' ? Buffer.from(e.Value, 'base64').toString('utf8') : ''
    return [{ key, value, modifyIndex: Number(e.ModifyIndex) || 0 }]
  })
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : ''
}

function stringRecord(r: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(r)) if (typeof v === 'string') out[k] = v
  return out
}
