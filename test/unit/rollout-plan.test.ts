// What `switchyard rollout` decides without I/O: flags, step targets, verdicts.

import { describe, expect, it } from 'vitest'
import { fromVersions, judge, parseSteps, planFromFlags, stepTarget } from '../../src/rollout/plan.js'
import { parseTarget } from '../../src/routing/targets.js'
import type { TargetSpec } from '../../src/routing/types.js'

const spec = (value: unknown): TargetSpec => {
  const parsed = parseTarget(JSON.stringify(value))
  if (!parsed.ok) throw new Error(parsed.error)
  return parsed.spec
}

describe('rollout flags', () => {
  it('has defaults and reads percentages and durations', () => {
    expect(planFromFlags({ to: '1.7.0' })).toEqual({
      to: '1.7.0',
      steps: [10, 25, 50, 100],
      intervalMs: 60_000,
      thresholds: { maxErrorRate: 0.01, maxP99: null, minRequests: 100 },
      sticky: false,
      serveTimeoutMs: 30_000,
    })
    const plan = planFromFlags({
      to: 'x',
      'max-error-rate': '0.5%',
      'max-p99': '250ms',
      interval: '2s',
      'min-requests': '20',
    })
    expect(plan.thresholds).toEqual({ maxErrorRate: 0.005, maxP99: 0.25, minRequests: 20 })
    expect(plan.intervalMs).toBe(2000)
  })

  it.each([
    [{}, '--to <version>'],
    [{ to: 'x', steps: '10,5,100' }, 'must increase'],
    [{ to: 'x', steps: '10,50' }, 'must end at 100'],
    [{ to: 'x', steps: '0,100' }, 'above 0'],
    [{ to: 'x', 'max-error-rate': '1' }, 'is not a percentage like 1%'],
    [{ to: 'x', interval: 'soon' }, 'is not a duration'],
    [{ to: 'x', 'min-requests': '0' }, 'whole number of requests above 0'],
  ])('refuses %j', (flags, message) => {
    expect(() => planFromFlags(flags)).toThrow(message)
  })

  it('reads steps with or without %', () => {
    expect(parseSteps('5%, 20%,100')).toEqual([5, 20, 100])
  })
})

describe('step targets', () => {
  it('moves weight from the version in force, keeping rules, and ends on the new version alone', () => {
    const before = spec({ version: '1.6.0', match: [{ header: 'x-canary', equals: '1', version: '1.7.0' }] })
    expect(stepTarget(before, '1.7.0', 10, false)).toEqual({
      weights: { '1.6.0': 90, '1.7.0': 10 },
      match: [{ header: 'x-canary', equals: '1', version: '1.7.0' }],
    })
    expect(stepTarget(before, '1.7.0', 100, false)).toEqual({ version: '1.7.0' })
    expect(stepTarget(spec({ version: '1.6.0' }), '1.7.0', 25, true)).toEqual({
      weights: { '1.6.0': 75, '1.7.0': 25 },
      sticky: true,
    })
  })

  it('from weights, the other versions keep their proportions', () => {
    const before = spec({ weights: { a: 3, b: 1, c: 0 }, sticky: true })
    expect(stepTarget(before, 'c', 20, false)).toEqual({ weights: { a: 60, b: 20, c: 20 }, sticky: true })
    expect(() => fromVersions(spec({ weights: { c: 1 } }), 'c')).toThrow('sends everything to c already')
    expect(() => fromVersions(spec({ version: 'c' }), 'c')).toThrow('is version c already')
    expect(() => fromVersions(spec({ slice: 'blue' }), 'c')).toThrow('names slice blue')
  })
})

describe('judging a step', () => {
  const t = { maxErrorRate: 0.01, maxP99: 0.5, minRequests: 50 }
  it('passes, waits for traffic, or fails naming the metric and the values', () => {
    expect(judge({ requests: 400, errors: 2, errorRate: 0.005, p99: 0.1 }, t, 0)).toEqual({ kind: 'pass' })
    expect(judge({ requests: 400, errors: 20, errorRate: 0.05, p99: 0.1 }, t, 0)).toEqual({
      kind: 'fail',
      metric: 'error rate',
      message: 'error rate 5 % (20 of 400 requests answered 5xx) is above --max-error-rate 1 %',
    })
    expect(judge({ requests: 400, errors: 0, errorRate: 0, p99: 0.75 }, t, 0)).toEqual({
      kind: 'fail',
      metric: 'p99',
      message: 'p99 750 ms is above --max-p99 500 ms',
    })
    expect(judge({ requests: 10, errors: 0, errorRate: 0, p99: 0.01 }, t, 0).kind).toBe('quiet')
    expect(judge({ requests: 10, errors: 0, errorRate: 0, p99: 0.01 }, t, 2)).toMatchObject({
      kind: 'fail',
      metric: 'requests',
    })
  })
})
