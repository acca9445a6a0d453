// Weighted picking, precomputed per table so that a request only advances a
// counter (round robin) or draws one number (random).

/** Resolution of the round-robin schedule: weights are exact to 1/RESOLUTION. */
const RESOLUTION = 1000

/**
 * Smooth weighted round robin (the order NGINX uses): for weights 5,1,1 it gives
 * a,a,b,a,c,a,a rather than a,a,a,a,a,b,c, so no instance gets a burst.
 * Returns indices into `weights`; zero weights never appear.
 */
export function buildSchedule(weights: readonly number[]): number[] {
  const positive = weights.filter((w) => w > 0)
  if (positive.length === 0) return []
  const first = positive[0] as number
  if (positive.length === weights.length && positive.every((w) => Math.abs(w - first) < 1e-12)) {
    return weights.map((_, i) => i)
  }

  let ints = integerRatio(weights) ?? apportion(weights)
  const divisor = ints.reduce((g, n) => (n === 0 ? g : gcd(g, n)), 0)
  ints = ints.map((n) => n / divisor)
  const sum = ints.reduce((a, b) => a + b, 0)

  const current = new Array<number>(ints.length).fill(0)
  const schedule: number[] = []
  for (let step = 0; step < sum; step++) {
    let best = -1
    for (let i = 0; i < ints.length; i++) {
      const w = ints[i] as number
      if (w === 0) continue
      current[i] = (current[i] as number) + w
      if (best === -1 || (current[i] as number) > (current[best] as number)) best = i
    }
    current[best] = (current[best] as number) - sum
    schedule.push(best)
  }
  return schedule
}

/** Running sums normalised to end at 1, for a binary search with one random draw. */
export function buildCumulative(weights: readonly number[]): number[] {
  const total = weights.reduce((a, b) => a + b, 0)
  let running = 0
  return weights.map((w) => {
    running += total > 0 ? w / total : 0
    return running
  })
}

/**
 * Fabio's weight semantics within one group of instances: an instance tagged
 * `weight=w` gets the fixed share w; the rest is split evenly among instances
 * without a weight. Fixed shares adding up to 1 or more are scaled to sum to 1
 * and leave nothing for the others; if every instance is fixed, the shares are
 * scaled to sum to 1.
 */
export function groupShares(fixed: readonly (number | null)[]): number[] {
  const free = fixed.filter((w) => w === null).length
  const sumFixed = fixed.reduce<number>((a, w) => a + (w ?? 0), 0)
  if (free === 0 || sumFixed >= 1) {
    return fixed.map((w) => (w === null || sumFixed === 0 ? 0 : w / sumFixed))
  }
  const each = (1 - sumFixed) / free
  return fixed.map((w) => w ?? each)
}

/**
 * Weights as whole shares of RESOLUTION that add up to it exactly (largest
 * remainder), at least one each. Rounding each weight on its own let the
 * rounding of the small ones dilute a large one: nine weights of which one is
 * 83.3 % gave it 83.05 %.
 */
function apportion(weights: readonly number[]): number[] {
  const total = weights.reduce((a, b) => a + b, 0)
  const exact = weights.map((w) => (w > 0 ? (w / total) * RESOLUTION : 0))
  const ints = exact.map((e) => (e > 0 ? Math.max(1, Math.floor(e)) : 0))
  const remainder = (i: number) => (exact[i] as number) - (ints[i] as number)
  // Largest remainder first for the units left over; when the one-each
  // minimum overshot, the smallest remainders give back first.
  const order = exact.map((_, i) => i).filter((i) => (exact[i] as number) > 0)
  order.sort((a, b) => remainder(b) - remainder(a))
  let left = RESOLUTION - ints.reduce((a, b) => a + b, 0)
  for (let k = 0; left > 0; k = (k + 1) % order.length, left--) {
    const i = order[k] as number
    ints[i] = (ints[i] as number) + 1
  }
  for (
    let k = order.length - 1, passed = 0;
    left < 0 && passed < order.length;
    k = k === 0 ? order.length - 1 : k - 1
  ) {
    const i = order[k] as number
    if ((ints[i] as number) > 1) {
      ints[i] = (ints[i] as number) - 1
      left++
      passed = 0
    } else passed++
  }
  return ints
}

/** Weights as small whole numbers when they are exact multiples of the smallest (90:10 -> 9:1). */
function integerRatio(weights: readonly number[]): number[] | null {
  const smallest = Math.min(...weights.filter((w) => w > 0))
  const ratios = weights.map((w) => w / smallest)
  if (ratios.some((r) => Math.abs(r - Math.round(r)) > 1e-9)) return null
  const ints = ratios.map((r) => Math.round(r))
  return ints.reduce((a, b) => a + b, 0) <= RESOLUTION ? ints : null
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b]
  return a
}
