// Match rules and sticky splits, compiled at table build against a route's
// backends, so that a request only compares a header or cookie value and
// picks from a precomputed pool (see variant-pick.ts for the request side).

import type { ProblemList } from './problems.js'
import type { Candidate } from './routes.js'
import { buildCumulative, buildSchedule, groupShares } from './schedule.js'
import type { Backend, BackendPool, CompiledRule, RouteVariants, StickySplit, TargetSpec } from './types.js'

/**
 * Buckets a sticky client can be given: its cookie holds one, as an integer.
 * 10,000 makes a weight of 0.01 % the smallest slice a client can land in.
 */
export const STICKY_BUCKETS = 10_000

/** The versions a service's match rules name, for the `match-only` state. */
export function ruleVersions(spec: TargetSpec | null): ReadonlySet<string> {
  return new Set((spec?.match ?? []).map((r) => r.version))
}

/** One cookie per service; its name must be a token, whatever the service is called. */
export function stickyCookieName(service: string): string {
  return `switchyard_${service.replace(/[^A-Za-z0-9_-]/g, '_')}`
}

export function compileVariants(
  routeId: string,
  candidates: readonly Candidate[],
  backendOf: ReadonlyMap<Candidate, Backend>,
  effective: ReadonlyMap<string, TargetSpec | null>,
  problems: ProblemList,
): RouteVariants | null {
  const services = [...new Set(candidates.map((c) => c.instance.service))]
  const pools = new Map<string, BackendPool>()
  const poolOf = (service: string, version: string): BackendPool => {
    const key = `${service}\0${version}`
    let pool = pools.get(key)
    if (pool !== undefined) return pool
    const members = candidates.filter((c) => {
      const state = backendOf.get(c)?.state
      return (
        c.instance.service === service &&
        c.version === version &&
        (state === 'serving' || state === 'match-only' || state === 'zero-weight') &&
        c.spec.redirect === null
      )
    })
    // Fabio's weight= shares apply within the version, as under a weights target.
    const shares = groupShares(members.map((c) => c.fixedWeight))
    const kept = members.flatMap((c, i) => ((shares[i] as number) > 0 ? [c] : []))
    const weights = shares.filter((w) => w > 0)
    pool = {
      id: `${routeId} ${service} version ${version}`,
      service,
      version,
      backends: kept.map((c) => backendOf.get(c) as Backend),
      schedule: buildSchedule(weights),
      cumulative: buildCumulative(weights),
    }
    pools.set(key, pool)
    return pool
  }

  const rules: CompiledRule[] = []
  let sticky: StickySplit | null = null
  for (const service of services) {
    const spec = effective.get(service) ?? null
    if (spec === null) continue
    for (const rule of spec.match ?? []) {
      const pool = poolOf(service, rule.version)
      // A rule into a version with nothing to serve here is skipped: its
      // requests take the default selection (and the target says not ready).
      if (pool.backends.length > 0)
        rules.push({ source: rule.source, name: rule.name, equals: rule.equals, pool })
    }
    if (spec.kind !== 'weights' || !spec.sticky) continue
    if (services.length > 1) {
      problems.add(
        'SWY_ERR_ROUTE_CONFLICT',
        `route ${routeId}`,
        `shared by services ${services.join(', ')}: the sticky versions of ${service} do not apply on it`,
      )
      continue
    }
    const versions = Object.entries(spec.weights)
      .filter(([, w]) => w > 0)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    const total = versions.reduce((n, [, w]) => n + w, 0)
    let running = 0
    sticky = {
      service,
      cookie: stickyCookieName(service),
      versions: versions.map(([version, w], i) => {
        running += w
        // Whole buckets, the last ending exactly at STICKY_BUCKETS.
        const upTo =
          i === versions.length - 1 ? STICKY_BUCKETS : Math.round((running / total) * STICKY_BUCKETS)
        return { version, upTo, pool: poolOf(service, version) }
      }),
    }
  }
  return rules.length === 0 && sticky === null ? null : { rules, sticky }
}
