// The request side of match rules and sticky splits: a route's compiled
// variants (variants.ts) against one request head. Called by the resolver
// only for routes whose `variants` is not null; each rule costs a header or
// cookie lookup, a sticky split one cookie lookup and one HMAC.

import type { RequestHead } from '../proxy/exchange.js'
import type { StickySigner } from './sticky.js'
import type { Backend, BackendPool, Pickable, Route, RouteVariants, StickySplit } from './types.js'

export interface VariantChoice {
  readonly backend: Backend
  /** Where a retry should pick from first: the rule's or the pinned version's pool, else the route. */
  readonly pool: Pickable
  /** A Set-Cookie field value to add to the response; null for none. */
  readonly setCookie: string | null
}

/**
 * The backend a request goes to because of a match rule or its sticky cookie,
 * or null for the route's default selection. `pick` is the balancer's pick
 * (with whatever instances the request must avoid); it returns null when a
 * pool has nothing usable, and the next rule, then the default, is tried.
 */
export function chooseVariant(
  route: Route,
  variants: RouteVariants,
  head: RequestHead,
  signer: StickySigner | null,
  pick: (pool: Pickable) => Backend | null,
  place: (slice: string) => number = spread,
): VariantChoice | null {
  for (const rule of variants.rules) {
    const hit =
      rule.source === 'header'
        ? headerEquals(head.headers, rule.name, rule.equals)
        : cookieValue(head.cookie, rule.name) === rule.equals
    if (!hit) continue
    const backend = pick(rule.pool)
    if (backend !== null) return { backend, pool: rule.pool, setCookie: null }
  }
  const split = variants.sticky
  if (split === null || signer === null) return null
  const secure = head.client.proto === 'https'
  const raw = cookieValue(head.cookie, split.cookie)
  const pin = raw === null ? null : signer.verify(split.service, raw)
  if (pin !== null) {
    const slice = sliceOf(split, pin.bucket)
    const backend = pick(slice.pool)
    // Nothing usable of that version on this route: the default selection
    // serves this request and the pin is kept for the next.
    if (backend === null) return null
    const renew = slice.version !== pin.version || !pin.current
    const setCookie = renew
      ? signer.setCookie(split.cookie, signer.value(split.service, slice.version, pin.bucket), secure)
      : null
    return { backend, pool: slice.pool, setCookie }
  }
  // A new client: the route's own pick (which keeps the split exact), then a
  // bucket in the slice of the version it got, so it stays there.
  const backend = pick(route)
  if (backend === null) return null
  const at = split.versions.findIndex((v) => v.version === backend.version)
  const from = at <= 0 ? 0 : (split.versions[at - 1]?.upTo as number)
  const to = split.versions[at]?.upTo ?? from
  if (at === -1 || to <= from) return { backend, pool: route, setCookie: null }
  const bucket =
    from + Math.min(to - from - 1, Math.floor(place(`${split.cookie} ${backend.version}`) * (to - from)))
  const value = signer.value(split.service, backend.version, bucket)
  return {
    backend,
    pool: poolOf(split, at) ?? route,
    setCookie: signer.setCookie(split.cookie, value, secure),
  }
}

/**
 * Where in its version's slice the next new client lands, in [0, 1): per
 * slice, steps of the golden ratio from a random start. The clients of a
 * slice then cover it evenly (random draws would leave clumps and gaps), so
 * when the weights change, the share of clients that moves is the share that
 * should, not a random one near it.
 */
export function spread(slice: string): number {
  if (positions.size > 10_000) positions.clear()
  const at = positions.get(slice) ?? Math.random()
  positions.set(slice, (at + GOLDEN) % 1)
  return at
}
const GOLDEN = 0.6180339887498949
const positions = new Map<string, number>()

/** The version slice a bucket falls in. */
export function sliceOf(split: StickySplit, bucket: number): StickySplit['versions'][number] {
  for (const v of split.versions) if (bucket < v.upTo) return v
  return split.versions[split.versions.length - 1] as StickySplit['versions'][number]
}

function poolOf(split: StickySplit, at: number): BackendPool | null {
  const pool = split.versions[at]?.pool
  return pool !== undefined && pool.backends.length > 0 ? pool : null
}

/** Whether any field named `name` (lower case) has exactly this value. */
function headerEquals(fields: readonly string[], name: string, value: string): boolean {
  for (let i = 0; i < fields.length; i += 2) {
    const n = fields[i] as string
    if (n.length === name.length && n.toLowerCase() === name && fields[i + 1] === value) return true
  }
  return false
}

/** The value of the first cookie called `name` in a Cookie field value, or null. */
export function cookieValue(cookie: string, name: string): string | null {
  if (cookie === '') return null
  let at = 0
  while (at < cookie.length) {
    let end = cookie.indexOf(';', at)
    if (end === -1) end = cookie.length
    while (cookie.charCodeAt(at) === 32) at++
    const eq = cookie.indexOf('=', at)
    if (eq !== -1 && eq < end && eq - at === name.length && cookie.startsWith(name, at)) {
      let value = cookie.slice(eq + 1, end).trim()
      if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1)
      return value
    }
    at = end + 1
  }
  return null
}
