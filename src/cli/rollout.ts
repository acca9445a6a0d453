// `switchyard rollout <service> --to <version>` and `rollout status|pause|
// resume|abort <service>`: a metric-guarded walk of the weights from the
// version in force to a new one. Each step's target is written with
// check-and-set; between steps the new version's error rate and p99 over the
// interval are read from the proxies (or Prometheus) and, when a threshold is
// crossed, the target from before the rollout is written back.
//
// The rollout's state is a record beside the target (`<target>/rollout`):
// every operator reads it (`rollout status`, `target get`), every proxy shows
// it on its status page, and it is how `pause` and `abort`, run from another
// shell, reach the running command. Creating the record with check-and-set is
// what refuses a second rollout of the same service.

import { hostname } from 'node:os'
import { setTimeout as delay } from 'node:timers/promises'
import type { CommandFlags, FlagValues } from '../config/load.js'
import { type KvEntry, readKey } from '../consul/kv.js'
import { ConsulHttpError, SwitchyardError, TargetRefusedError, UsageError } from '../errors.js'
import type { VersionSummary } from '../metrics/scrape.js'
import { type MetricsSource, prometheusMetrics, proxyMetrics } from '../rollout/metrics-source.js'
import {
  describeSummary,
  fromVersions,
  judge,
  percent,
  planFromFlags,
  type RolloutPlan,
  stepTarget,
} from '../rollout/plan.js'
import { instanceVersion } from '../routing/identity.js'
import {
  ACTIVE_ROLLOUT_STATES,
  formatRollout,
  parseRolloutRecord,
  ROLLOUT_KEY,
} from '../routing/rollout-record.js'
import { parseTarget } from '../routing/targets.js'
import type { RolloutRecord, TargetSpec } from '../routing/types.js'
import {
  type Context,
  distinct,
  formatSeconds,
  keyOf,
  missingNow,
  type ProxyAdmin,
  proxiesToAsk,
  registeredInstances,
  unknownService,
} from './target.js'

const ASK: CommandFlags = { admin: { type: 'string', multiple: true }, fleet: { type: 'boolean' } }

/** The flags of each rollout action, besides the config flags. */
export const ROLLOUT_ACTIONS = {
  start: {
    ...ASK,
    to: { type: 'string' },
    steps: { type: 'string' },
    interval: { type: 'string' },
    'max-error-rate': { type: 'string' },
    'max-p99': { type: 'string' },
    'min-requests': { type: 'string' },
    sticky: { type: 'boolean' },
    prometheus: { type: 'string' },
    timeout: { type: 'string' },
  },
  status: { json: { type: 'boolean' } },
  pause: {},
  resume: {},
  abort: {},
} as const satisfies Record<string, CommandFlags>

export type RolloutAction = keyof typeof ROLLOUT_ACTIONS

/** The record as the rollout command keeps it; proxies read the RolloutRecord part. */
interface RunRecord extends RolloutRecord {
  /** Modify index of the target the rollout last wrote; 0 before its first write. */
  readonly targetIndex: number
  readonly intervalMs: number
  readonly thresholds: RolloutPlan['thresholds']
  /** Where the numbers come from. */
  readonly metrics: string
  /** Who runs it: host and process. */
  readonly runner: string
  /** One line per finished check, oldest first. */
  readonly checks: readonly string[]
}

/** The running command was told to stop (abort from another shell, or a signal). */
class Stop extends Error {
  constructor(
    readonly by: 'abort' | 'signal',
    message: string,
  ) {
    super(message)
  }
}

function recordKeyOf(targetKey: string): string {
  return `${targetKey}/${ROLLOUT_KEY}`
}

function kvPath(key: string): string {
  return `/v1/kv/${key.split('/').map(encodeURIComponent).join('/')}`
}

/** Check-and-set write: false when the key moved on since `index` (someone else wrote). */
async function casPut(ctx: Context, key: string, value: string, index: number): Promise<boolean> {
  const res = await ctx.client.put(kvPath(key), { cas: index }, value, { timeoutMs: 10_000 })
  if (res.status === 403)
    throw new SwitchyardError(
      'SWY_ERR_TARGET_WRITE',
      `token cannot write ${key}: 403 ${res.body.trim() || 'Permission denied'} (use an operator token: config/acl/switchyard-operator.hcl)`,
    )
  if (res.status !== 200) throw new ConsulHttpError(kvPath(key), res.status, res.body, 'SWY_ERR_TARGET_WRITE')
  return res.body.trim() === 'true'
}

async function readRecord(ctx: Context, key: string): Promise<{ record: RunRecord | null; index: number }> {
  const entry = await readKey(ctx.client, key)
  if (entry.value === null) return { record: null, index: 0 }
  const base = parseRolloutRecord(entry.value)
  if (base === null) return { record: null, index: entry.modifyIndex }
  const raw = JSON.parse(entry.value) as Partial<RunRecord>
  return {
    record: {
      ...base,
      targetIndex: typeof raw.targetIndex === 'number' ? raw.targetIndex : 0,
      intervalMs: typeof raw.intervalMs === 'number' ? raw.intervalMs : 0,
      thresholds: raw.thresholds ?? { maxErrorRate: 0, maxP99: null, minRequests: 0 },
      metrics: typeof raw.metrics === 'string' ? raw.metrics : '',
      runner: typeof raw.runner === 'string' ? raw.runner : '',
      checks: Array.isArray(raw.checks) ? raw.checks.map(String) : [],
    },
    index: entry.modifyIndex,
  }
}

/**
 * Read, change, write back with check-and-set, again while someone else
 * writes in between (a pause from another shell, the runner's heartbeat).
 */
async function updateRecord(
  ctx: Context,
  key: string,
  change: (r: RunRecord) => RunRecord,
): Promise<RunRecord> {
  for (let attempt = 0; ; attempt++) {
    const { record, index } = await readRecord(ctx, key)
    if (record === null)
      throw new SwitchyardError('SWY_ERR_ROLLOUT_STOPPED', `the rollout record ${key} is gone`)
    const next = { ...change(record), updatedAt: new Date().toISOString() }
    if (await casPut(ctx, key, JSON.stringify(next), index)) return next
    if (attempt >= 20)
      throw new SwitchyardError('SWY_ERR_TARGET_WRITE', `${key} keeps changing; could not update it`)
    await delay(20 + Math.random() * 50)
  }
}

// ------------------------------------------------------------------ start

export async function rolloutStart(ctx: Context, service: string, flags: FlagValues): Promise<number> {
  const plan = planFromFlags(flags)
  const key = keyOf(ctx.config, service)
  const recordKey = recordKeyOf(key)
  const proxies = await proxiesToAsk(ctx, flags)
  let source: MetricsSource
  if (typeof flags.prometheus === 'string') source = prometheusMetrics(service, flags.prometheus)
  else if (proxies !== null)
    source = proxyMetrics(service, async () => (await proxiesToAsk(ctx, flags)) ?? [])
  else
    throw new UsageError(
      'rollout: give where to read the metrics checked between steps: --fleet, --admin URL or --prometheus URL',
    )

  const instances = await registeredInstances(ctx, service)
  if (instances.length === 0)
    throw new TargetRefusedError(`${await unknownService(ctx, service)}; nothing written`)
  const versions = distinct(instances.map(instanceVersion))
  if (!versions.includes(plan.to))
    throw new TargetRefusedError(
      `no registered instance of ${service} carries version ${plan.to} (registered: ${versions.join(', ') || 'none'}); nothing written`,
    )
  const before = await readKey(ctx.client, key)
  if (before.value === null)
    throw new TargetRefusedError(
      `${service} has no target, so there is no version in force to move traffic from: set one first (switchyard target set ${service} --version <version>)`,
    )
  const parsed = parseTarget(before.value)
  if (!parsed.ok)
    throw new TargetRefusedError(`the target of ${service} is not valid (${parsed.error}); fix it first`)
  fromVersions(parsed.spec, plan.to)

  const existing = await readRecord(ctx, recordKey)
  const active = existing.record !== null && ACTIVE_ROLLOUT_STATES.has(existing.record.state)
  const refuse = (r: RolloutRecord) =>
    new SwitchyardError(
      'SWY_ERR_ROLLOUT_ACTIVE',
      `a rollout of ${service} to ${r.to} is ${formatRollout(r)} (started ${r.startedAt}, last written ${r.updatedAt}); nothing written. See switchyard rollout status ${service}; end it with switchyard rollout abort ${service}`,
    )
  if (active) throw refuse(existing.record as RunRecord)
  const now = new Date().toISOString()
  const record: RunRecord = {
    service,
    to: plan.to,
    state: 'running',
    steps: plan.steps,
    step: -1,
    before: before.value,
    startedAt: now,
    updatedAt: now,
    message: 'starting',
    targetIndex: 0,
    intervalMs: plan.intervalMs,
    thresholds: plan.thresholds,
    metrics: source.name,
    runner: `${hostname()} pid ${process.pid}`,
    checks: [],
  }
  if (!(await casPut(ctx, recordKey, JSON.stringify(record), existing.index))) {
    const now = (await readRecord(ctx, recordKey)).record
    throw now !== null
      ? refuse(now)
      : new SwitchyardError(
          'SWY_ERR_ROLLOUT_ACTIVE',
          `${recordKey} changed as this rollout started; nothing written`,
        )
  }
  ctx.out(
    `${service}: rollout to ${plan.to} in steps of ${plan.steps.map((s) => `${s} %`).join(', ')}, every ${formatSeconds(plan.intervalMs)}; ` +
      `limits: error rate ${percent(plan.thresholds.maxErrorRate)}${plan.thresholds.maxP99 === null ? '' : `, p99 ${Number((plan.thresholds.maxP99 * 1000).toFixed(1))} ms`}, at least ${plan.thresholds.minRequests} requests; metrics from ${source.name}`,
  )
  ctx.out(`  from: ${before.value} (key ${key}, modify index ${before.modifyIndex}); record ${recordKey}`)
  return new Runner(
    ctx,
    service,
    key,
    recordKey,
    plan,
    parsed.spec,
    before.value,
    before.modifyIndex,
    proxies,
    source,
  ).run()
}

class Runner {
  private lastIndex: number
  private signal: NodeJS.Signals | null = null
  /** The step in progress, as messages name it. */
  private label = 'before the first step'

  constructor(
    private readonly ctx: Context,
    private readonly service: string,
    private readonly key: string,
    private readonly recordKey: string,
    private readonly plan: RolloutPlan,
    private readonly from: TargetSpec,
    private readonly before: string,
    beforeIndex: number,
    private readonly proxies: readonly ProxyAdmin[] | null,
    private readonly source: MetricsSource,
  ) {
    this.lastIndex = beforeIndex
  }

  async run(): Promise<number> {
    const onSignal = (signal: NodeJS.Signals) => {
      this.signal = signal
    }
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
    try {
      for (const [i, percentage] of this.plan.steps.entries()) await this.step(i, percentage)
      const done = await updateRecord(this.ctx, this.recordKey, (r) => ({
        ...r,
        state: 'completed',
        message: `${this.plan.to} serves all traffic`,
      }))
      this.ctx.out(
        `${this.service}: rollout to ${this.plan.to} complete after ${done.steps.length} steps (key ${this.key}, modify index ${this.lastIndex})`,
      )
      return 0
    } catch (err) {
      if (!(err instanceof Stop)) throw err
      // Stopped from outside: the target from before goes back unless someone else changed it since.
      const wrote = await casPut(this.ctx, this.key, this.before, this.lastIndex)
      await updateRecord(this.ctx, this.recordKey, (r) => ({
        ...r,
        state: 'aborted',
        message: err.message,
      })).catch(() => undefined)
      throw new SwitchyardError(
        'SWY_ERR_ROLLOUT_STOPPED',
        `${err.message}; ${wrote ? `wrote back ${this.before}` : 'the target from before was written back already, or changed by someone else: left as it is'} (key ${this.key})`,
      )
    } finally {
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
    }
  }

  private async step(i: number, percentage: number): Promise<void> {
    const { ctx, service, plan } = this
    const label = `step ${i + 1}/${plan.steps.length} (${percentage} % to ${plan.to})`
    const body = stepTarget(this.from, plan.to, percentage, plan.sticky)
    const json = JSON.stringify(body)
    const parsed = parseTarget(json)
    if (!parsed.ok) throw new Error(`rollout built an invalid target ${json}: ${parsed.error}`)
    this.label = label
    await this.checkStop()
    if (!(await casPut(ctx, this.key, json, this.lastIndex))) return this.interrupted()
    const written = await readKey(ctx.client, this.key)
    // Someone else's write right after ours must not be taken for ours (and overwritten later).
    if (written.value !== json)
      throw new SwitchyardError(
        'SWY_ERR_ROLLOUT_STOPPED',
        `${label}: the target was changed by someone else right after the rollout wrote it (now ${written.value ?? 'no key'}); the rollout stops and leaves it as it is`,
      )
    this.lastIndex = written.modifyIndex
    ctx.out(`${service}: ${label}: ${json} (modify index ${this.lastIndex})`)
    await updateRecord(ctx, this.recordKey, (r) => {
      if (r.state === 'aborted') return r
      return {
        ...r,
        step: i,
        targetIndex: this.lastIndex,
        message: `${label}: waiting for the proxies to serve it`,
      }
    })
    await this.checkStop()

    const missing = await this.waitServed(parsed.spec)
    if (missing !== '')
      return this.rollBack(
        label,
        `not served by every proxy after ${formatSeconds(plan.serveTimeoutMs)} (--timeout): ${missing}`,
        'served',
      )

    let quiet = 0
    for (;;) {
      await this.source.begin()
      const started = Date.now()
      await this.sleepWatching(plan.intervalMs)
      const seconds = (Date.now() - started) / 1000
      let reading: Awaited<ReturnType<MetricsSource['end']>>
      try {
        reading = await this.source.end(seconds)
      } catch (err) {
        return this.rollBack(label, `the metrics could not be read: ${(err as Error).message}`, 'metrics')
      }
      for (const warning of reading.warnings) ctx.err(`warning: ${warning}`)
      const canary: VersionSummary = reading.versions.get(plan.to) ?? {
        requests: 0,
        errors: 0,
        errorRate: null,
        p99: null,
      }
      const others = [...reading.versions]
        .filter(([v]) => v !== plan.to)
        .map(([v, s]) => `${v}: ${describeSummary(s, seconds)}`)
      const numbers = `${plan.to}: ${describeSummary(canary, seconds)}${others.length > 0 ? `; ${others.join('; ')}` : ''}`
      const verdict = judge(canary, plan.thresholds, quiet)
      if (verdict.kind === 'fail')
        return this.rollBack(label, `${plan.to} ${verdict.message} (${numbers})`, verdict.metric)
      const line = `${label}, ${Math.round(seconds)}s: ${numbers}`
      const record = await updateRecord(ctx, this.recordKey, (r) => ({
        ...r,
        message: verdict.kind === 'quiet' ? `${line}: ${verdict.message}` : `${line}: ok`,
        checks: [...r.checks, `${line}: ${verdict.kind === 'quiet' ? verdict.message : 'ok'}`].slice(-50),
      }))
      if (record.state === 'aborted')
        throw new Stop('abort', `aborted with switchyard rollout abort ${service}`)
      if (verdict.kind === 'quiet') {
        quiet++
        ctx.out(`${service}: ${line}: ${verdict.message}; waiting another ${formatSeconds(plan.intervalMs)}`)
        continue
      }
      quiet = 0
      ctx.out(`${service}: ${line}: ok`)
      if (record.state !== 'paused') return
      ctx.out(
        `${service}: paused at ${label}; checking every ${formatSeconds(plan.intervalMs)} until switchyard rollout resume ${service}`,
      )
    }
  }

  /** Writes the target from before back and fails the command naming what crossed which limit. */
  private async rollBack(label: string, why: string, metric: string): Promise<never> {
    const { ctx } = this
    const wrote = await casPut(ctx, this.key, this.before, this.lastIndex)
    const after = await readKey(ctx.client, this.key)
    const outcome = wrote
      ? `wrote back ${this.before} (key ${this.key}, modify index ${after.modifyIndex})`
      : `the target was changed by someone else since the rollout wrote it, so it is left as it is (${after.value ?? 'no key'})`
    await updateRecord(ctx, this.recordKey, (r) => ({
      ...r,
      state: 'rolled-back',
      message: `${label}: ${why}; ${wrote ? `wrote back ${this.before}` : 'target left as it is'}`,
    }))
    throw new SwitchyardError('SWY_ERR_ROLLOUT_FAILED', `${label}: ${metric}: ${why}; ${outcome}`)
  }

  /** '' once every proxy asked (or the dry run) serves `spec`; else why not, after --timeout. */
  private async waitServed(spec: TargetSpec): Promise<string> {
    const deadline = Date.now() + this.plan.serveTimeoutMs
    for (;;) {
      const missing = await missingNow(this.ctx, this.service, spec, this.lastIndex, this.proxies)
      if (missing.length === 0) return ''
      if (Date.now() >= deadline) return missing.join('; ')
      await this.checkStop()
      await delay(100)
    }
  }

  /** Sleeps `ms`, looking at the record (abort) and for signals twice a second. */
  private async sleepWatching(ms: number): Promise<void> {
    const until = Date.now() + ms
    for (;;) {
      await this.checkStop()
      const left = until - Date.now()
      if (left <= 0) return
      await delay(Math.min(500, left))
    }
  }

  /**
   * Throws when the rollout must stop: a signal, an abort from another shell,
   * or a target someone else changed since the rollout wrote it (which is
   * then theirs: the rollout leaves it alone).
   */
  private async checkStop(): Promise<void> {
    if (this.signal !== null) throw new Stop('signal', `interrupted (${this.signal})`)
    const [{ record }, target] = await Promise.all([
      readRecord(this.ctx, this.recordKey),
      readKey(this.ctx.client, this.key),
    ])
    if (record?.state === 'aborted')
      throw new Stop('abort', `aborted with switchyard rollout abort ${this.service}`)
    if (target.modifyIndex !== this.lastIndex) return this.interrupted(target)
  }

  /** Someone else wrote the target: the rollout records it and stops without touching it. */
  private async interrupted(seen?: KvEntry): Promise<never> {
    const now = seen ?? (await readKey(this.ctx.client, this.key))
    const what = `the target was changed by someone else since the rollout wrote it (now ${now.value ?? 'no key'}, modify index ${now.modifyIndex})`
    await updateRecord(this.ctx, this.recordKey, (r) => ({
      ...r,
      state: 'interrupted',
      message: `${this.label}: ${what}; left as it is`,
    }))
    throw new SwitchyardError(
      'SWY_ERR_ROLLOUT_STOPPED',
      `${this.label}: ${what}; the rollout stops and leaves it as it is`,
    )
  }
}

// ------------------------------------------------------------------ status, pause, resume, abort

export async function rolloutStatus(ctx: Context, service: string, flags: FlagValues): Promise<number> {
  const key = keyOf(ctx.config, service)
  const recordKey = recordKeyOf(key)
  const [{ record }, target] = await Promise.all([readRecord(ctx, recordKey), readKey(ctx.client, key)])
  if (flags.json) {
    ctx.out(
      JSON.stringify(
        { service, key: recordKey, rollout: record, target: target.value, modifyIndex: target.modifyIndex },
        null,
        2,
      ),
    )
    return 0
  }
  if (record === null) {
    ctx.out(`${service}: no rollout (key ${recordKey} absent)`)
    return 0
  }
  ctx.out(`${service}: rollout to ${record.to} ${formatRollout(record)}`)
  ctx.out(`  started ${record.startedAt} by ${record.runner || 'unknown'}; last written ${record.updatedAt}`)
  ctx.out(
    `  steps ${record.steps.join(', ')} % every ${formatSeconds(record.intervalMs)}; metrics from ${record.metrics}`,
  )
  ctx.out(`  ${record.message}`)
  const quietMs = Date.now() - Date.parse(record.updatedAt)
  if (ACTIVE_ROLLOUT_STATES.has(record.state) && quietMs > 2 * record.intervalMs + 60_000)
    ctx.out(
      `  warning: the rollout command has written nothing for ${formatSeconds(Math.round(quietMs / 1000) * 1000)}: it may have been stopped; switchyard rollout abort ${service} writes back the target from before`,
    )
  ctx.out(
    `  target now: ${target.value ?? 'none'} (modify index ${target.modifyIndex}); before the rollout: ${record.before}`,
  )
  for (const line of record.checks) ctx.out(`    ${line}`)
  return 0
}

async function setState(
  ctx: Context,
  service: string,
  from: string,
  to: string,
  verb: string,
): Promise<number> {
  const key = recordKeyOf(keyOf(ctx.config, service))
  const { record } = await readRecord(ctx, key)
  if (record === null || !ACTIVE_ROLLOUT_STATES.has(record.state))
    throw new SwitchyardError(
      'SWY_ERR_ROLLOUT_STOPPED',
      `no rollout of ${service} is running${record === null ? '' : ` (the last one: ${formatRollout(record)})`}: nothing to ${verb}`,
    )
  if (record.state !== from) {
    ctx.out(`${service}: the rollout to ${record.to} is ${record.state} already`)
    return 0
  }
  const next = await updateRecord(ctx, key, (r) => (r.state === from ? { ...r, state: to } : r))
  ctx.out(`${service}: rollout to ${next.to} ${formatRollout(next)}`)
  return 0
}

export const rolloutPause = (ctx: Context, service: string) =>
  setState(ctx, service, 'running', 'paused', 'pause')
export const rolloutResume = (ctx: Context, service: string) =>
  setState(ctx, service, 'paused', 'running', 'resume')

/**
 * Ends a rollout from any shell: marks it aborted (the running command sees it
 * within half a second and stops) and writes the target from before back,
 * unless someone other than the rollout changed the target since.
 */
export async function rolloutAbort(ctx: Context, service: string): Promise<number> {
  const key = keyOf(ctx.config, service)
  const recordKey = recordKeyOf(key)
  const { record } = await readRecord(ctx, recordKey)
  if (record === null || !ACTIVE_ROLLOUT_STATES.has(record.state))
    throw new SwitchyardError(
      'SWY_ERR_ROLLOUT_STOPPED',
      `no rollout of ${service} is running${record === null ? '' : ` (the last one: ${formatRollout(record)})`}: nothing to abort`,
    )
  await updateRecord(ctx, recordKey, (r) => ({
    ...r,
    state: 'aborted',
    message: `aborted from ${hostname()} pid ${process.pid}`,
  }))
  // The running command may be writing a step right now: wait for its record
  // to name the target it wrote, then put the old one back over exactly that.
  for (let attempt = 0; attempt < 25; attempt++) {
    const [target, { record: now }] = await Promise.all([
      readKey(ctx.client, key),
      readRecord(ctx, recordKey),
    ])
    if (target.value === record.before) {
      ctx.out(
        `${service}: rollout to ${record.to} aborted; the target is ${record.before} (key ${key}, modify index ${target.modifyIndex})`,
      )
      return 0
    }
    if (
      now !== null &&
      target.modifyIndex === now.targetIndex &&
      (await casPut(ctx, key, record.before, target.modifyIndex))
    ) {
      const after = await readKey(ctx.client, key)
      ctx.out(
        `${service}: rollout to ${record.to} aborted; wrote back ${record.before} (key ${key}, modify index ${after.modifyIndex})`,
      )
      return 0
    }
    await delay(200)
  }
  const target = await readKey(ctx.client, key)
  ctx.err(
    `warning: the target was changed by someone else since the rollout wrote it; left as it is: ${target.value ?? 'no key'} (before the rollout: ${record.before})`,
  )
  ctx.out(`${service}: rollout to ${record.to} aborted`)
  return 0
}
