import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { buildCumulative, buildSchedule, groupShares } from '../../src/routing/schedule.js'

describe('buildSchedule', () => {
  it('is plain round robin for equal weights', () => {
    expect(buildSchedule([0.25, 0.25, 0.25, 0.25])).toEqual([0, 1, 2, 3])
  })

  it('interleaves unequal weights smoothly', () => {
    expect(buildSchedule([5, 1, 1])).toEqual([0, 0, 1, 0, 2, 0, 0])
  })

  it('never schedules a zero weight', () => {
    expect(buildSchedule([0, 1, 0, 1])).toEqual([1, 3])
    expect(buildSchedule([0, 0])).toEqual([])
  })

  const shareErrors = (weights: number[]) => {
    const schedule = buildSchedule(weights)
    const total = weights.reduce((a, b) => a + b, 0)
    return weights.map((w, i) =>
      Math.abs(schedule.filter((x) => x === i).length / schedule.length - w / total),
    )
  }

  it('gives every target its share within 2/1000 (1/1000 unless the one-slot minimum of tiny weights takes a slot)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: 0.001, max: 1, noNaN: true }), { minLength: 1, maxLength: 12 }),
        (weights) => {
          // (1e-12: the shares are ratios of doubles; a bound met exactly may round either way.)
          for (const error of shareErrors(weights)) expect(error).toBeLessThan(0.002 + 1e-12)
        },
      ),
      { numRuns: 1_000 },
    )
  })

  it('does not let the rounding of small weights dilute a large one', () => {
    // Found by the property above: rounded one by one, the 83.3 % weight got 83.05 %.
    const weights = [0.001, 0.001, 0.001, 0.00525055, 0.001, 0.00802008, 0.001, 0.09612615, 0.001]
    for (const error of shareErrors(weights)) expect(error).toBeLessThan(0.001)
  })
})

describe('buildCumulative', () => {
  it('ends at 1', () => {
    expect(buildCumulative([1, 1, 2])).toEqual([0.25, 0.5, 1])
  })
})

describe('groupShares (Fabio weight= semantics)', () => {
  it('splits evenly when nobody sets a weight', () => {
    expect(groupShares([null, null])).toEqual([0.5, 0.5])
  })
  it('gives fixed shares and spreads the rest', () => {
    expect(groupShares([0.2, null, null])).toEqual([0.2, 0.4, 0.4])
  })
  it('scales fixed shares that add up to 1 or more and leaves the rest nothing', () => {
    expect(groupShares([0.8, 0.8, null])).toEqual([0.5, 0.5, 0])
  })
  it('scales when every instance is fixed', () => {
    const [a, b] = groupShares([0.1, 0.3])
    expect(a).toBeCloseTo(0.25)
    expect(b).toBeCloseTo(0.75)
    expect(groupShares([0, 0])).toEqual([0, 0])
  })
})
