// Each serving backend's share of its route's traffic.
//
// Fabio's rule, over a route's instances: one with a fixed weight (`weight=`
// in its tag, or a `route weight` override in KV) gets that share; the rest is
// split evenly over the others; fixed weights adding up to 1 or more are
// scaled to 1 and leave the others nothing. A service under a weights target
// is split by version first (the target's numbers), and Fabio's rule applies
// within each version. So the route's instances fall into pools: one per
// service under a weights target, and one for all other services together
// (which is Fabio's route-wide rule). Pools share the route in proportion to
// their instances, as instances without fixed weights would.

import { groupBy } from './problems.js'
import type { Candidate } from './routes.js'
import { groupShares } from './schedule.js'
import type { TargetSpec } from './types.js'

export function servingWeights(
  serving: readonly Candidate[],
  effective: ReadonlyMap<string, TargetSpec | null>,
): number[] {
  const result = new Array<number>(serving.length).fill(0)
  const weightsOf = (c: Candidate) => {
    const spec = effective.get(c.instance.service) ?? null
    return spec?.kind === 'weights' ? spec.weights : null
  }
  const pools = groupBy(
    serving.map((c, i) => ({ c, i })),
    ({ c }) => (weightsOf(c) === null ? '' : `service ${c.instance.service}`),
  )
  for (const members of pools.values()) {
    const poolShare = members.length / serving.length
    const weights = weightsOf((members[0] as { c: Candidate }).c)
    const groups = groupBy(members, ({ c }) => (weights === null ? '' : c.version))
    const groupWeight = (key: string) => (weights === null ? 1 : (weights[key] ?? 0))
    const totalGroupWeight = [...groups.keys()].reduce((a, k) => a + groupWeight(k), 0)
    for (const [key, group] of groups) {
      const versionShare = totalGroupWeight > 0 ? groupWeight(key) / totalGroupWeight : 0
      const shares = groupShares(group.map(({ c }) => c.fixedWeight))
      group.forEach(({ i }, n) => {
        result[i] = poolShare * versionShare * (shares[n] as number)
      })
    }
  }
  return result
}
