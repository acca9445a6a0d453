// Each serving backend's share of its route's traffic.

import { groupBy } from './problems.js'
import type { Candidate } from './routes.js'
import { groupShares } from './schedule.js'
import type { TargetSpec } from './types.js'

/**
 * Share of the route's traffic for each serving candidate: services in
 * proportion to their instance count, then versions by the target's weights,
 * then instances by their `weight=` tags.
 */
export function servingWeights(
  serving: readonly Candidate[],
  effective: ReadonlyMap<string, TargetSpec | null>,
): number[] {
  const result = new Array<number>(serving.length).fill(0)
  const byService = groupBy(
    serving.map((c, i) => ({ c, i })),
    ({ c }) => c.instance.service,
  )
  for (const [service, members] of byService) {
    const serviceShare = members.length / serving.length
    const spec = effective.get(service) ?? null
    const groups = groupBy(members, ({ c }) => (spec?.kind === 'weights' ? c.version : ''))
    const groupWeight = (key: string) => (spec?.kind === 'weights' ? (spec.weights[key] ?? 0) : 1)
    const totalGroupWeight = [...groups.keys()].reduce((a, k) => a + groupWeight(k), 0)
    for (const [key, group] of groups) {
      const versionShare = totalGroupWeight > 0 ? groupWeight(key) / totalGroupWeight : 0
      const shares = groupShares(group.map(({ c }) => c.spec.weight))
      group.forEach(({ i }, n) => {
        result[i] = serviceShare * versionShare * (shares[n] as number)
      })
    }
  }
  return result
}
