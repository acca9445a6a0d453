// Target state: which version or slice of a service should get traffic, as the
// operator wrote it into KV. Strict on purpose: a typo must not silently move
// traffic, so anything unexpected rejects the key and the previous selection
// stays in force.

import type { TargetSpec } from './types.js'

export type TargetParse =
  | { readonly ok: true; readonly spec: TargetSpec }
  | { readonly ok: false; readonly error: string }

const FIELDS = ['version', 'slice', 'weights'] as const

export function parseTarget(text: string): TargetParse {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    return { ok: false, error: `invalid JSON: ${(err as Error).message}` }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, error: 'must be a JSON object with one of "version", "slice" or "weights"' }
  }
  const record = value as Record<string, unknown>
  const keys = Object.keys(record)
  const unknown = keys.filter((k) => !(FIELDS as readonly string[]).includes(k))
  if (unknown.length > 0)
    return { ok: false, error: `unknown field ${unknown.map((k) => `"${k}"`).join(', ')}` }
  if (keys.length !== 1)
    return { ok: false, error: 'must have exactly one of "version", "slice" or "weights"' }

  if ('version' in record || 'slice' in record) {
    const field = 'version' in record ? 'version' : 'slice'
    const v = record[field]
    if (typeof v !== 'string' || v.trim() === '')
      return { ok: false, error: `"${field}" must be a non-empty string` }
    return field === 'version'
      ? { ok: true, spec: { kind: 'version', version: v } }
      : { ok: true, spec: { kind: 'slice', slice: v } }
  }

  const weights = record.weights
  if (typeof weights !== 'object' || weights === null || Array.isArray(weights)) {
    return { ok: false, error: '"weights" must be an object of version to weight' }
  }
  const entries = Object.entries(weights as Record<string, unknown>)
  if (entries.length === 0) return { ok: false, error: '"weights" names no version' }
  let sum = 0
  const out: Record<string, number> = {}
  for (const [version, w] of entries) {
    if (version.trim() === '') return { ok: false, error: '"weights" has an empty version name' }
    if (typeof w !== 'number' || !Number.isFinite(w) || w < 0) {
      return { ok: false, error: `weight of "${version}" must be a number >= 0` }
    }
    out[version] = w
    sum += w
  }
  if (sum <= 0) return { ok: false, error: '"weights" must not all be zero' }
  return { ok: true, spec: { kind: 'weights', weights: out } }
}

/** The canonical text of a target, used in logs, diffs and the CLI. */
export function formatTarget(spec: TargetSpec | null): string {
  if (spec === null) return 'all'
  switch (spec.kind) {
    case 'version':
      return `version=${spec.version}`
    case 'slice':
      return `slice=${spec.slice}`
    case 'weights':
      return `weights=${Object.entries(spec.weights)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([v, w]) => `${v}:${w}`)
        .join(',')}`
  }
}
