// Target state: which version or slice of a service should get traffic, as the
// operator wrote it into KV. Strict on purpose: a typo must not silently move
// traffic, so anything unexpected rejects the key and the previous selection
// stays in force.

import type { MatchRule, TargetSpec } from './types.js'

export type TargetParse =
  | { readonly ok: true; readonly spec: TargetSpec }
  | { readonly ok: false; readonly error: string }

const SELECTORS = ['version', 'slice', 'weights'] as const
const FIELDS = [...SELECTORS, 'match', 'sticky'] as const
const RULE_FIELDS = ['header', 'cookie', 'equals', 'version'] as const
/** More rules than this is a mistake (each is checked on every request of the service's routes). */
export const MAX_MATCH_RULES = 32
/** RFC 9110 token: what a header or cookie name may be made of. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

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
  if (keys.filter((k) => (SELECTORS as readonly string[]).includes(k)).length !== 1)
    return { ok: false, error: 'must have exactly one of "version", "slice" or "weights"' }

  let match: MatchRule[] | undefined
  if ('match' in record) {
    const rules = parseRules(record.match)
    if (typeof rules === 'string') return { ok: false, error: rules }
    match = rules
  }
  const extras = match === undefined ? {} : { match }
  if ('sticky' in record) {
    if (typeof record.sticky !== 'boolean') return { ok: false, error: '"sticky" must be true or false' }
    if (!('weights' in record)) return { ok: false, error: '"sticky" applies to a "weights" split only' }
  }

  if ('version' in record || 'slice' in record) {
    const field = 'version' in record ? 'version' : 'slice'
    const v = record[field]
    if (typeof v !== 'string' || v.trim() === '')
      return { ok: false, error: `"${field}" must be a non-empty string` }
    return field === 'version'
      ? { ok: true, spec: { kind: 'version', version: v, ...extras } }
      : { ok: true, spec: { kind: 'slice', slice: v, ...extras } }
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
  const sticky = record.sticky === true ? { sticky: true } : {}
  return { ok: true, spec: { kind: 'weights', weights: out, ...sticky, ...extras } }
}

/** The rules of a `match` list, or what is wrong with it. */
function parseRules(value: unknown): MatchRule[] | string {
  if (!Array.isArray(value)) return '"match" must be a list of rules'
  if (value.length > MAX_MATCH_RULES) return `"match" has ${value.length} rules, at most ${MAX_MATCH_RULES}`
  const rules: MatchRule[] = []
  for (const [i, item] of value.entries()) {
    const where = `match rule ${i + 1}`
    if (typeof item !== 'object' || item === null || Array.isArray(item))
      return `${where} must be an object like {"header":"x-canary","equals":"1","version":"1.7.0"}`
    const rule = item as Record<string, unknown>
    const unknown = Object.keys(rule).filter((k) => !(RULE_FIELDS as readonly string[]).includes(k))
    if (unknown.length > 0) return `${where}: unknown field ${unknown.map((k) => `"${k}"`).join(', ')}`
    if ('header' in rule === 'cookie' in rule) return `${where}: give exactly one of "header" or "cookie"`
    const source = 'header' in rule ? 'header' : 'cookie'
    const name = rule[source]
    if (typeof name !== 'string' || !TOKEN.test(name))
      return `${where}: "${source}" must be a ${source} name (letters, digits and -._ and the like)`
    if (typeof rule.equals !== 'string') return `${where}: "equals" must be a string`
    if (typeof rule.version !== 'string' || rule.version.trim() === '')
      return `${where}: "version" must be a non-empty string`
    rules.push({
      source,
      // Header names are case-insensitive; cookie names are not.
      name: source === 'header' ? name.toLowerCase() : name,
      equals: rule.equals,
      version: rule.version,
    })
  }
  return rules
}

/** Every version a target sends traffic to: those it selects by default and those its rules name. */
export function targetVersions(spec: TargetSpec): string[] {
  const versions =
    spec.kind === 'version'
      ? [spec.version]
      : spec.kind === 'weights'
        ? Object.entries(spec.weights)
            .filter(([, w]) => w > 0)
            .map(([v]) => v)
        : []
  for (const rule of spec.match ?? []) versions.push(rule.version)
  return [...new Set(versions)]
}

/** The target as the JSON object its key holds (canonical field order). */
export function targetJson(spec: TargetSpec): Record<string, unknown> {
  const body: Record<string, unknown> =
    spec.kind === 'version'
      ? { version: spec.version }
      : spec.kind === 'slice'
        ? { slice: spec.slice }
        : { weights: { ...spec.weights }, ...(spec.sticky ? { sticky: true } : {}) }
  if (spec.match !== undefined && spec.match.length > 0)
    body.match = spec.match.map((r) => ({ [r.source]: r.name, equals: r.equals, version: r.version }))
  return body
}

/** `header x-canary=1 -> 1.7.0`. */
export function formatRule(rule: MatchRule): string {
  return `${rule.source} ${rule.name}=${rule.equals} -> ${rule.version}`
}

/** The canonical text of a target, used in logs, diffs and the CLI. */
export function formatTarget(spec: TargetSpec | null): string {
  if (spec === null) return 'all'
  let text: string
  switch (spec.kind) {
    case 'version':
      text = `version=${spec.version}`
      break
    case 'slice':
      text = `slice=${spec.slice}`
      break
    case 'weights':
      text = `weights=${Object.entries(spec.weights)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([v, w]) => `${v}:${w}`)
        .join(',')}${spec.sticky ? ' sticky' : ''}`
      break
  }
  for (const rule of spec.match ?? []) text += `; ${formatRule(rule)}`
  return text
}
