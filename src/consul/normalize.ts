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

/**
 * One copy of the values that repeat across services: node names and
 * addresses, tags, meta and check statuses.
 * JSON.parse makes a new string for every occurrence, so without it a fleet
 * of 1,000 services x 10 instances keeps 10 copies of each service's tags and
 * 1,000 of each node's name. Bounded: two generations of at most `capacity`
 * entries each; a value of an older generation is simply copied again.
 */
export class Interner {
  private readonly strings: Pool<string>
  private readonly tagLists: Pool<readonly string[]>
  private readonly metas: Pool<Readonly<Record<string, string>>>

  constructor(capacity = 4_096) {
    this.strings = new Pool(capacity)
    this.tagLists = new Pool(capacity)
    this.metas = new Pool(capacity)
  }

  string(value: string): string {
    return this.strings.get(value, () => value)
  }

  /** Tags with the same text are one (frozen) array. */
  tags(tags: readonly string[]): readonly string[] {
    if (tags.length === 0) return NO_TAGS
    return this.tagLists.get(JSON.stringify(tags), () => Object.freeze(tags.map((t) => this.string(t))))
  }

  /** Meta with the same keys and values (in the same order) is one (frozen) object. */
  meta(meta: Record<string, string>): Readonly<Record<string, string>> {
    const entries = Object.entries(meta)
    if (entries.length === 0) return NO_META
    return this.metas.get(JSON.stringify(entries), () => {
      const out: Record<string, string> = {}
      for (const [k, v] of entries) out[k] = this.string(v)
      return Object.freeze(out)
    })
  }
}

/** Values by key, in two generations of at most `capacity` entries. */
class Pool<T> {
  private readonly capacity: number
  private current = new Map<string, T>()
  private previous = new Map<string, T>()

  constructor(capacity: number) {
    this.capacity = capacity
  }

  get(key: string, make: () => T): T {
    const value = this.current.get(key)
    if (value !== undefined) return value
    const kept = this.previous.get(key) ?? make()
    if (this.current.size >= this.capacity) {
      this.previous = this.current
      this.current = new Map()
    }
    this.current.set(key, kept)
    return kept
  }
}

const NO_TAGS: readonly string[] = Object.freeze([])
const NO_META: Readonly<Record<string, string>> = Object.freeze({})

/**
 * `/v1/health/service/<name>`: every instance with its node and service checks.
 * `interner`: shares repeated values with earlier answers (a watcher keeps one).
 */
export function parseHealthService(body: string, interner: Interner = new Interner()): InstanceSnapshot[] {
  const json = JSON.parse(body) as unknown
  if (!Array.isArray(json)) throw new TypeError('health/service: expected an array')
  // Values that repeat across services go through the interner; those of
  // one service (its name, its check names) only need one copy per answer.
  const s = (v: unknown) => interner.string(str(v))
  const answer = new Map<string, string>()
  const local = (v: unknown) => {
    const text = str(v)
    const kept = answer.get(text)
    if (kept !== undefined) return kept
    answer.set(text, text)
    return text
  }
  return json.map((entry, i) => {
    if (!isRecord(entry) || !isRecord(entry.Node) || !isRecord(entry.Service)) {
      throw new TypeError(`health/service: entry ${i} lacks Node or Service`)
    }
    const node = entry.Node
    const svc = entry.Service
    const checks = Array.isArray(entry.Checks) ? entry.Checks : []
    const port = Number(svc.Port)
    const id = str(svc.ID)
    return {
      id,
      service: local(svc.Service),
      node: s(node.Node),
      address: s(str(svc.Address) || str(node.Address)),
      port: Number.isInteger(port) ? port : 0,
      tags: interner.tags(
        Array.isArray(svc.Tags) ? svc.Tags.filter((t): t is string => typeof t === 'string') : [],
      ),
      meta: interner.meta(isRecord(svc.Meta) ? stringRecord(svc.Meta) : {}),
      checks: checks.filter(isRecord).map((c) => {
        const serviceId = str(c.ServiceID)
        return {
          id: str(c.CheckID),
          name: local(c.Name),
          status: s(c.Status),
          // The instance's own id (one copy), or '' for a node check.
          serviceId: serviceId === id ? id : s(serviceId),
        }
      }),
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
