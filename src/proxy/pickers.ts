// Choosing an instance for a request. The table carries the precomputed
// schedule and running weight sums; the state that changes per request (round
// robin positions, in-flight counts) lives here, keyed by route id and backend
// key, so it survives table swaps for routes and instances that stay.

import type { Backend, Pickable } from '../routing/types.js'

export type Strategy = 'round-robin' | 'random' | 'least-outstanding'

export class Balancer {
  private readonly strategy: Strategy
  private readonly random: () => number
  private readonly positions = new Map<string, number>()
  private readonly inFlight = new Map<string, number>()

  constructor(strategy: Strategy, random: () => number = Math.random) {
    this.strategy = strategy
    this.random = random
  }

  /**
   * A serving backend of the route (or of a pool of its backends: a match
   * rule's, a sticky version's, each with its own id), or null when none is usable. `usable`
   * filters out instances a request must avoid (already tried, ejected); when
   * it rejects all, null.
   */
  pick(route: Pickable, usable?: (backend: Backend) => boolean): Backend | null {
    const backends = route.backends
    if (backends.length === 0) return null
    if (this.strategy === 'least-outstanding') return this.leastOutstanding(route, usable)
    const first = this.strategy === 'random' ? this.randomBackend(route) : this.nextInSchedule(route)
    if (!usable || usable(first)) return first
    // Walk the schedule from here so the fallback keeps the weights' order.
    for (let n = 1; n < route.schedule.length; n++) {
      const candidate = this.nextInSchedule(route)
      if (usable(candidate)) return candidate
    }
    return null
  }

  /** Marks a request in flight to `backend` (for least-outstanding and metrics). */
  begin(backend: Backend): void {
    this.inFlight.set(backend.key, (this.inFlight.get(backend.key) ?? 0) + 1)
  }

  end(backend: Backend): void {
    const n = (this.inFlight.get(backend.key) ?? 1) - 1
    if (n <= 0) this.inFlight.delete(backend.key)
    else this.inFlight.set(backend.key, n)
  }

  outstanding(backend: Backend): number {
    return this.inFlight.get(backend.key) ?? 0
  }

  /** Drops state of routes that left the table, so churn cannot grow the maps. */
  retain(routeIds: ReadonlySet<string>): void {
    for (const id of this.positions.keys()) if (!routeIds.has(id)) this.positions.delete(id)
  }

  private nextInSchedule(route: Pickable): Backend {
    const schedule = route.schedule
    let position = this.positions.get(route.id)
    // Start each route at a random point so that many proxies (or workers)
    // do not all send their first request to the same instance.
    if (position === undefined) position = Math.floor(this.random() * schedule.length)
    const index = schedule[position % schedule.length] as number
    this.positions.set(route.id, (position + 1) % schedule.length)
    return route.backends[index] as Backend
  }

  private randomBackend(route: Pickable): Backend {
    const cumulative = route.cumulative
    const r = this.random() * (cumulative[cumulative.length - 1] as number)
    let lo = 0
    let hi = cumulative.length - 1
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if ((cumulative[mid] as number) > r) hi = mid
      else lo = mid + 1
    }
    return route.backends[lo] as Backend
  }

  /**
   * Fewest in-flight requests per unit of weight. The weighted round-robin
   * candidate wins unless another instance is strictly less loaded, so an idle
   * or lightly loaded route splits traffic exactly by weight (a plain
   * "lowest (n+1)/weight" would send every request to the heaviest instance
   * while nothing is in flight) and a busy one balances load per weight.
   */
  private leastOutstanding(route: Pickable, usable?: (backend: Backend) => boolean): Backend | null {
    const candidate = this.nextInSchedule(route)
    let best: Backend | null = null
    let bestScore = Number.POSITIVE_INFINITY
    if (!usable || usable(candidate)) {
      best = candidate
      bestScore = this.outstanding(candidate) / candidate.weight
      if (bestScore === 0) return best
    }
    for (const backend of route.backends) {
      if (backend === candidate || (usable && !usable(backend))) continue
      const score = this.outstanding(backend) / backend.weight
      if (score < bestScore) {
        best = backend
        bestScore = score
      }
    }
    return best
  }
}
