// The record `switchyard rollout` keeps beside a service's target, at
// `<target prefix>/<service>/rollout`. The rollout commands write it; proxies
// only show it (status page, /api/targets), so it is read leniently: a record
// a proxy cannot make sense of is not shown, and never affects routing.

import type { RolloutRecord } from './types.js'

/** Last path segment of the record's key, under the service's target key. */
export const ROLLOUT_KEY = 'rollout'

/** States in which a rollout still owns the target; a second one is refused meanwhile. */
export const ACTIVE_ROLLOUT_STATES: ReadonlySet<string> = new Set(['running', 'paused'])

export function parseRolloutRecord(text: string): RolloutRecord | null {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return null
  }
  if (typeof value !== 'object' || value === null) return null
  const r = value as Record<string, unknown>
  const str = (k: string) => (typeof r[k] === 'string' ? (r[k] as string) : null)
  const steps = Array.isArray(r.steps) && r.steps.every((s) => typeof s === 'number') ? r.steps : null
  const service = str('service')
  const to = str('to')
  const state = str('state')
  if (service === null || to === null || state === null || steps === null) return null
  return {
    service,
    to,
    state,
    steps: steps as number[],
    step: typeof r.step === 'number' ? r.step : -1,
    before: str('before') ?? '',
    startedAt: str('startedAt') ?? '',
    updatedAt: str('updatedAt') ?? '',
    message: str('message') ?? '',
  }
}

/** `running, step 2 of 4 (25 % to 1.7.0)`. */
export function formatRollout(r: RolloutRecord): string {
  const at = r.steps[r.step]
  const where =
    r.step < 0 || at === undefined
      ? 'before the first step'
      : `step ${r.step + 1} of ${r.steps.length} (${at} % to ${r.to})`
  return `${r.state}, ${where}`
}
