// What `switchyard rollout` decides, without any I/O: the flags, the target of
// each step, and whether a step's metrics let it go on. Unit-tested; the
// command (src/cli/rollout.ts) only reads, writes and waits around it.

import { parseDuration } from '../config/schema.js'
import { TargetRefusedError, UsageError } from '../errors.js'
import type { VersionSummary } from '../metrics/scrape.js'
import { targetJson } from '../routing/targets.js'
import type { TargetSpec } from '../routing/types.js'

export interface Thresholds {
  /** Largest share of 5xx answers of the new version, 0..1. */
  readonly maxErrorRate: number
  /** Largest p99 of the new version, in seconds; null: not checked. */
  readonly maxP99: number | null
  /** Fewest requests of the new version in a step's interval for its numbers to count. */
  readonly minRequests: number
}

export interface RolloutPlan {
  readonly to: string
  /** Percent of traffic to `to`, increasing, ending at 100. */
  readonly steps: readonly number[]
  readonly intervalMs: number
  readonly thresholds: Thresholds
  /** Pin clients to a version while the weights move (a sticky split). */
  readonly sticky: boolean
  /** How long each step waits for the proxies to serve it. */
  readonly serveTimeoutMs: number
}

/** Intervals a step may wait for enough requests before the rollout gives up on it. */
export const MAX_QUIET_INTERVALS = 3

export const DEFAULT_STEPS = '10,25,50,100'

export function planFromFlags(flags: Record<string, unknown>): RolloutPlan {
  const to = flags.to
  if (typeof to !== 'string' || to.trim() === '')
    throw new UsageError('rollout: give the version to roll out: --to <version>')
  const text = (name: string, fallback: string) =>
    typeof flags[name] === 'string' ? (flags[name] as string) : fallback
  const duration = (name: string, fallback: string) => {
    const ms = parseDuration(text(name, fallback))
    if (ms === null || ms <= 0)
      throw new UsageError(`--${name}: "${text(name, fallback)}" is not a duration like 60s or 2m`)
    return ms
  }
  const p99 = flags['max-p99'] === undefined ? null : duration('max-p99', '') / 1000
  const minRequests = Number(text('min-requests', '100'))
  if (!Number.isSafeInteger(minRequests) || minRequests < 1)
    throw new UsageError(
      `--min-requests: "${text('min-requests', '')}" is not a whole number of requests above 0`,
    )
  return {
    to,
    steps: parseSteps(text('steps', DEFAULT_STEPS)),
    intervalMs: duration('interval', '60s'),
    thresholds: {
      maxErrorRate: parsePercent('max-error-rate', text('max-error-rate', '1%')),
      maxP99: p99,
      minRequests,
    },
    sticky: flags.sticky === true,
    serveTimeoutMs: duration('timeout', '30s'),
  }
}

/** `10,25,50,100`: percentages, increasing, ending at 100. */
export function parseSteps(text: string): number[] {
  const steps = text.split(',').map((s) => Number(s.trim().replace(/%$/, '')))
  const bad = (why: string) => new UsageError(`--steps: "${text}" ${why} (e.g. --steps ${DEFAULT_STEPS})`)
  if (steps.some((s) => !Number.isFinite(s) || s <= 0 || s > 100))
    throw bad('must be percentages above 0, at most 100')
  if (steps.some((s, i) => i > 0 && s <= (steps[i - 1] as number))) throw bad('must increase')
  if (steps[steps.length - 1] !== 100) throw bad('must end at 100')
  return steps
}

/** `1%` or `0.5%` as a fraction. */
export function parsePercent(flag: string, text: string): number {
  const m = /^(\d+(?:\.\d+)?)%$/.exec(text.trim())
  const value = m === null ? Number.NaN : Number(m[1]) / 100
  if (!(value >= 0 && value <= 1))
    throw new UsageError(`--${flag}: "${text}" is not a percentage like 1% or 0.5%`)
  return value
}

/**
 * The target of a step: `percent` of the traffic to `to`, the rest to the
 * versions the rollout started from in their proportions; at 100, `to` alone.
 * Match rules of the starting target are kept (at 100, except those that
 * name `to`: all traffic goes there anyway).
 */
export function stepTarget(
  before: TargetSpec,
  to: string,
  percent: number,
  sticky: boolean,
): Record<string, unknown> {
  const match = before.match ?? []
  if (percent >= 100) {
    const rules = match.filter((r) => r.version !== to)
    return targetJson({ kind: 'version', version: to, ...(rules.length > 0 ? { match: rules } : {}) })
  }
  const others = fromVersions(before, to)
  const total = Object.values(others).reduce((a, b) => a + b, 0)
  const weights: Record<string, number> = {}
  for (const [version, w] of Object.entries(others)) weights[version] = round((w / total) * (100 - percent))
  weights[to] = percent
  const keepSticky = sticky || (before.kind === 'weights' && before.sticky === true)
  return targetJson({
    kind: 'weights',
    weights,
    ...(keepSticky ? { sticky: true } : {}),
    ...(match.length > 0 ? { match } : {}),
  })
}

/** The versions traffic moves away from, with their weights; throws when the target has none. */
export function fromVersions(before: TargetSpec, to: string): Record<string, number> {
  if (before.kind === 'slice')
    throw new TargetRefusedError(
      `a rollout moves weights between versions; the target names slice ${before.slice}: set a version first (target set --version)`,
    )
  if (before.kind === 'version') {
    if (before.version === to)
      throw new TargetRefusedError(`the target is version ${to} already: nothing to roll out`)
    return { [before.version]: 1 }
  }
  const others = Object.fromEntries(Object.entries(before.weights).filter(([v, w]) => v !== to && w > 0))
  if (Object.keys(others).length === 0)
    throw new TargetRefusedError(`the target sends everything to ${to} already: nothing to roll out`)
  return others
}

export type Verdict =
  | { readonly kind: 'pass' }
  /** Too few requests of the new version to judge yet. */
  | { readonly kind: 'quiet'; readonly message: string }
  | { readonly kind: 'fail'; readonly metric: 'error rate' | 'p99' | 'requests'; readonly message: string }

/** Whether the new version's numbers over a step's interval let the rollout go on. */
export function judge(canary: VersionSummary, t: Thresholds, quietIntervals: number): Verdict {
  if (canary.requests < t.minRequests) {
    const message = `only ${Math.round(canary.requests)} requests reached the new version, --min-requests is ${t.minRequests}`
    return quietIntervals + 1 >= MAX_QUIET_INTERVALS
      ? { kind: 'fail', metric: 'requests', message: `${message} (after ${MAX_QUIET_INTERVALS} intervals)` }
      : { kind: 'quiet', message }
  }
  const rate = canary.errorRate ?? 0
  if (rate > t.maxErrorRate)
    return {
      kind: 'fail',
      metric: 'error rate',
      message: `error rate ${percent(rate)} (${Math.round(canary.errors)} of ${Math.round(canary.requests)} requests answered 5xx) is above --max-error-rate ${percent(t.maxErrorRate)}`,
    }
  if (t.maxP99 !== null && canary.p99 !== null && canary.p99 > t.maxP99)
    return {
      kind: 'fail',
      metric: 'p99',
      message: `p99 ${ms(canary.p99)} is above --max-p99 ${ms(t.maxP99)}`,
    }
  return { kind: 'pass' }
}

/** `412 requests (6.9/s), 0.24 % 5xx, p99 23.1 ms`. */
export function describeSummary(s: VersionSummary | undefined, seconds: number): string {
  if (s === undefined || s.requests === 0) return 'no requests'
  const perSecond = seconds > 0 ? ` (${(s.requests / seconds).toFixed(1)}/s)` : ''
  return `${Math.round(s.requests)} requests${perSecond}, ${percent(s.errorRate ?? 0)} 5xx, p99 ${s.p99 === null ? '–' : ms(s.p99)}`
}

export function percent(fraction: number): string {
  return `${Number((fraction * 100).toFixed(2))} %`
}

function ms(seconds: number): string {
  return `${Number((seconds * 1000).toFixed(1))} ms`
}

function round(n: number): number {
  return Number(n.toFixed(4))
}
