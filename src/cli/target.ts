// `switchyard target get|set|clear`: the operator's side of target state. Runs
// with the operator's own token (never the proxy's), validates before writing,
// writes with check-and-set, and can wait until traffic really follows.

import { setTimeout as delay } from 'node:timers/promises'
import type { ResolvedConfig } from '../config/load.js'
import { parseDuration } from '../config/schema.js'
import type { ConsulClient } from '../consul/client.js'
import { deleteKeyCas, type KvEntry, readKey, writeKeyCas } from '../consul/kv.js'
import { readSnapshotOnce } from '../consul/snapshot.js'
import { SwitchyardError } from '../errors.js'
import { buildRouteTable } from '../routing/build.js'
import { formatTarget, parseTarget } from '../routing/targets.js'
import type { RouteTable, TargetSpec, TargetStatus } from '../routing/types.js'
import { buildConfigOf } from './serve.js'

export const TARGET_FLAGS = {
  version: { type: 'string' },
  slice: { type: 'string' },
  weights: { type: 'string' },
  cas: { type: 'string' },
  wait: { type: 'boolean' },
  timeout: { type: 'string' },
  admin: { type: 'string' },
  json: { type: 'boolean' },
} as const

export type TargetFlags = Partial<Record<keyof typeof TARGET_FLAGS, string | boolean>>

interface Context {
  readonly config: ResolvedConfig
  readonly client: ConsulClient
  readonly out: (line: string) => void
  readonly err: (line: string) => void
}

function usage(message: string): SwitchyardError {
  return new SwitchyardError('SWY_ERR_TARGET_INVALID', message)
}

/** The target a `set` asks for, validated by the same parser the proxy uses. */
export function targetFromFlags(flags: TargetFlags): { spec: TargetSpec; json: string } {
  const given = (['version', 'slice', 'weights'] as const).filter((k) => typeof flags[k] === 'string')
  if (given.length !== 1) throw usage('give exactly one of --version, --slice or --weights')
  let body: unknown
  if (typeof flags.version === 'string') body = { version: flags.version }
  else if (typeof flags.slice === 'string') body = { slice: flags.slice }
  else {
    const weights: Record<string, number> = {}
    for (const pair of String(flags.weights).split(',')) {
      const eq = pair.lastIndexOf('=')
      const weight = Number(pair.slice(eq + 1))
      if (eq <= 0 || pair.slice(eq + 1).trim() === '' || Number.isNaN(weight)) {
        throw usage(`--weights: "${pair}" is not version=weight (e.g. --weights 1.5.0=90,1.6.0=10)`)
      }
      weights[pair.slice(0, eq)] = weight
    }
    body = { weights }
  }
  const json = JSON.stringify(body)
  const parsed = parseTarget(json)
  if (!parsed.ok) throw usage(parsed.error)
  return { spec: parsed.spec, json }
}

function keyOf(config: ResolvedConfig, service: string): string {
  if (service === '' || service.includes('/')) throw usage(`"${service}" is not a service name`)
  return `${config.routing.targetPrefix}/${service}`
}

/**
 * What Switchyard would do with the target state in Consul right now (a
 * dry-run build). `before` is the key's value before this command wrote it: a
 * running proxy that served it keeps serving it while the new target is not
 * ready, so the dry run builds from it first, as the proxy did.
 */
async function dryRun(
  ctx: Context,
  service: string,
  before?: KvEntry,
): Promise<{ status: TargetStatus | null; versions: Map<string, string> }> {
  const { config, client } = ctx
  const { catalog, targets } = await readSnapshotOnce(client, {
    tagPrefix: config.routing.tagPrefix,
    targetPrefix: config.routing.targetPrefix,
    stale: config.consul.stale,
  })
  const build = buildConfigOf(config)
  let previous: RouteTable | undefined
  if (before !== undefined) {
    const earlier = targets.filter((t) => t.key !== before.key)
    if (before.value !== null)
      earlier.push({ key: before.key, value: before.value, modifyIndex: before.modifyIndex })
    previous = buildRouteTable(catalog, earlier, build).table
  }
  const { table } = buildRouteTable(catalog, targets, build, previous)
  const counts = new Map<string, { serving: number; idle: number }>()
  for (const route of table.routes) {
    for (const t of [...route.backends, ...route.idle]) {
      if (t.service !== service) continue
      const c = counts.get(t.version || '(none)') ?? { serving: 0, idle: 0 }
      if (t.state === 'serving') c.serving++
      else c.idle++
      counts.set(t.version || '(none)', c)
    }
  }
  const versions = new Map(
    [...counts.keys()]
      .sort()
      .map((v) => [v, `${counts.get(v)?.serving ?? 0} serving, ${counts.get(v)?.idle ?? 0} idle`]),
  )
  return { status: table.targets.find((t) => t.service === service) ?? null, versions }
}

export async function targetGet(ctx: Context, service: string, flags: TargetFlags): Promise<number> {
  const key = keyOf(ctx.config, service)
  const entry = await readKey(ctx.client, key)
  const { status, versions } = await dryRun(ctx, service)
  if (flags.json) {
    ctx.out(
      JSON.stringify(
        {
          service,
          key,
          value: entry.value,
          modifyIndex: entry.modifyIndex,
          desired: formatTarget(status?.desired ?? null),
          effective: formatTarget(status?.effective ?? null),
          ready: status?.ready ?? true,
          reason: status?.reason ?? '',
          versions: Object.fromEntries(versions),
        },
        null,
        2,
      ),
    )
    return 0
  }
  if (entry.value === null)
    ctx.out(`${service}: no target (key ${key} absent): every healthy instance gets traffic`)
  else ctx.out(`${service}: ${entry.value} (key ${key}, modify index ${entry.modifyIndex})`)
  if (status && !status.ready) ctx.out(`NOT READY: ${status.reason}`)
  for (const [version, text] of versions) ctx.out(`  version ${version}: ${text}`)
  return 0
}

export async function targetSet(ctx: Context, service: string, flags: TargetFlags): Promise<number> {
  const key = keyOf(ctx.config, service)
  const { spec, json } = targetFromFlags(flags)
  const timeoutMs = parseTimeout(flags.timeout)
  const before = await readKey(ctx.client, key)
  const cas = flags.cas === undefined ? before.modifyIndex : Number(flags.cas)
  if (!Number.isSafeInteger(cas) || cas < 0) throw usage(`--cas: "${flags.cas}" is not a modify index`)
  await writeKeyCas(ctx.client, key, json, cas)
  const after = await readKey(ctx.client, key)
  ctx.out(
    `${service}: ${before.value ?? 'no target'} -> ${json} (key ${key}, modify index ${after.modifyIndex})`,
  )

  const { status } = await dryRun(ctx, service, before)
  if (status && !status.ready) ctx.err(`warning: not live yet: ${status.reason}`)
  if (!flags.wait) return 0

  const deadline = Date.now() + timeoutMs
  let missing = ''
  while (Date.now() < deadline) {
    missing =
      typeof flags.admin === 'string'
        ? await missingAtAdmin(flags.admin, service, spec, after.modifyIndex)
        : missingInDryRun(await dryRun(ctx, service, before), spec)
    if (missing === '') {
      ctx.out(`${service}: live: traffic follows ${formatTarget(spec)}`)
      return 0
    }
    await delay(250)
  }
  throw new SwitchyardError(
    'SWY_ERR_TARGET_WAIT',
    `timed out after ${Math.round(timeoutMs / 1000)}s waiting for ${service} to serve ${formatTarget(spec)}: ${missing}`,
  )
}

export async function targetClear(ctx: Context, service: string, flags: TargetFlags): Promise<number> {
  const key = keyOf(ctx.config, service)
  const before = await readKey(ctx.client, key)
  if (before.value === null) {
    ctx.out(`${service}: no target to clear`)
    return 0
  }
  await deleteKeyCas(ctx.client, key, flags.cas === undefined ? before.modifyIndex : Number(flags.cas))
  ctx.out(`${service}: ${before.value} -> no target: every healthy instance gets traffic`)
  return 0
}

function missingInDryRun(result: { status: TargetStatus | null }, spec: TargetSpec): string {
  const s = result.status
  if (s === null) return 'the target is not in Consul yet'
  if (formatTarget(s.desired) !== formatTarget(spec)) return `Consul holds ${formatTarget(s.desired)} now`
  return s.ready ? '' : s.reason
}

async function missingAtAdmin(
  admin: string,
  service: string,
  spec: TargetSpec,
  modifyIndex: number,
): Promise<string> {
  try {
    const res = await fetch(new URL('/api/targets', admin), { signal: AbortSignal.timeout(5_000) })
    const targets = (await res.json()) as {
      service: string
      desired: string
      effective: string
      ready: boolean
      reason: string
      modifyIndex: number
    }[]
    const t = targets.find((x) => x.service === service)
    if (t === undefined || t.modifyIndex < modifyIndex)
      return `Switchyard at ${admin} has not seen the new target yet`
    if (t.desired !== formatTarget(spec)) return `Switchyard at ${admin} holds ${t.desired} now`
    return t.ready && t.effective === t.desired ? '' : t.reason || `serving ${t.effective}`
  } catch (err) {
    return `Switchyard admin at ${admin} not reachable: ${(err as Error).message}`
  }
}

function parseTimeout(text: string | boolean | undefined): number {
  if (text === undefined) return 30_000
  const ms = parseDuration(String(text))
  if (ms === null) throw usage(`--timeout: "${text}" is not a duration like 30s or 2m`)
  return ms
}
