// `switchyard target get|set|toggle|clear`: the operator's side of target
// state. Runs with the operator's own token (never the proxy's), refuses
// targets no registered instance could serve, writes with check-and-set, says
// how to undo every write, and asks the running proxies (--admin URL, --fleet)
// what they really serve, because that, not Consul, is what traffic follows.

import { setTimeout as delay } from 'node:timers/promises'
import type { CommandFlags, FlagValues, ResolvedConfig } from '../config/load.js'
import { parseDuration } from '../config/schema.js'
import { type ConsulClient, readBody } from '../consul/client.js'
import { deleteKeyCas, type KvEntry, readKey, writeKeyCas } from '../consul/kv.js'
import { parseHealthService, parseServiceList } from '../consul/normalize.js'
import { readSnapshotOnce } from '../consul/snapshot.js'
import { SwitchyardError, TargetRefusedError, UsageError } from '../errors.js'
import { buildRouteTable } from '../routing/build.js'
import { instanceSlice, instanceVersion } from '../routing/identity.js'
import { formatRollout, parseRolloutRecord, ROLLOUT_KEY } from '../routing/rollout-record.js'
import { formatTarget, parseTarget, targetVersions } from '../routing/targets.js'
import type {
  InstanceSnapshot,
  InstanceState,
  RouteTable,
  TargetSpec,
  TargetStatus,
} from '../routing/types.js'
import { buildConfigOf } from './serve.js'
import { distance } from './usage.js'

/** The Consul service name under which Switchyard proxies are registered for `--fleet`. */
export const FLEET_SERVICE = 'switchyard'
/** Service meta key holding a registered proxy's admin port. */
export const FLEET_ADMIN_PORT_META = 'admin_port'

const ASK: CommandFlags = { admin: { type: 'string', multiple: true }, fleet: { type: 'boolean' } }
const WAIT: CommandFlags = { wait: { type: 'boolean' }, timeout: { type: 'string' } }

/** The flags of each `target` action, besides the config flags. */
export const TARGET_ACTIONS = {
  get: { ...ASK, json: { type: 'boolean' } },
  set: {
    ...ASK,
    ...WAIT,
    version: { type: 'string' },
    slice: { type: 'string' },
    weights: { type: 'string' },
    match: { type: 'string', multiple: true },
    sticky: { type: 'boolean' },
    cas: { type: 'string' },
    force: { type: 'boolean' },
  },
  toggle: { ...ASK, ...WAIT, to: { type: 'string' }, cas: { type: 'string' } },
  clear: { cas: { type: 'string' } },
} as const satisfies Record<string, CommandFlags>

export type TargetAction = keyof typeof TARGET_ACTIONS

export interface Context {
  readonly config: ResolvedConfig
  readonly client: ConsulClient
  readonly out: (line: string) => void
  readonly err: (line: string) => void
  /** The config flags this command was given (--config, prefixes…), repeated in the undo command. */
  readonly configArgs: readonly string[]
}

function invalid(message: string): SwitchyardError {
  return new SwitchyardError('SWY_ERR_TARGET_INVALID', message)
}

/** The target a `set` asks for, validated by the same parser the proxy uses. */
export function targetFromFlags(flags: FlagValues): { spec: TargetSpec; json: string } {
  const given = (['version', 'slice', 'weights'] as const).filter((k) => typeof flags[k] === 'string')
  if (given.length !== 1) throw invalid('give exactly one of --version, --slice or --weights')
  let body: unknown
  if (typeof flags.version === 'string') body = { version: flags.version }
  else if (typeof flags.slice === 'string') body = { slice: flags.slice }
  else {
    const weights: Record<string, number> = {}
    for (const pair of String(flags.weights).split(',')) {
      const eq = pair.lastIndexOf('=')
      const weight = Number(pair.slice(eq + 1))
      if (eq <= 0 || pair.slice(eq + 1).trim() === '' || Number.isNaN(weight)) {
        throw invalid(`--weights: "${pair}" is not version=weight (e.g. --weights 1.5.0=90,1.6.0=10)`)
      }
      weights[pair.slice(0, eq)] = weight
    }
    body = { weights, ...(flags.sticky ? { sticky: true } : {}) }
  }
  if (flags.sticky && typeof flags.weights !== 'string') throw invalid('--sticky goes with --weights')
  const rules = Array.isArray(flags.match) ? flags.match.map((m) => parseMatchFlag(String(m))) : []
  if (rules.length > 0) body = { ...(body as object), match: rules }
  return toTarget(body)
}

/** `header:x-canary=1->1.7.0` or `cookie:canary=always->1.7.0` as a rule of the target's JSON. */
export function parseMatchFlag(text: string): Record<string, string> {
  const m = /^(header|cookie):([^=]+)=(.*)->([^>]+)$/.exec(text)
  if (m === null)
    throw invalid(`--match: "${text}" is not header:NAME=VALUE->VERSION or cookie:NAME=VALUE->VERSION`)
  const [, source, name, equals, version] = m as unknown as [string, string, string, string, string]
  return { [source]: name, equals, version }
}

/** The --match flags that write these rules. */
function matchFlags(spec: TargetSpec): string[] {
  return (spec.match ?? []).flatMap((r) => ['--match', `${r.source}:${r.name}=${r.equals}->${r.version}`])
}

function toTarget(body: unknown): { spec: TargetSpec; json: string } {
  const json = JSON.stringify(body)
  const parsed = parseTarget(json)
  if (!parsed.ok) throw invalid(parsed.error)
  return { spec: parsed.spec, json }
}

export function keyOf(config: ResolvedConfig, service: string): string {
  if (service === '' || service.includes('/')) throw invalid(`"${service}" is not a service name`)
  return `${config.routing.targetPrefix}/${service}`
}

// ------------------------------------------------------------------ get

export async function targetGet(ctx: Context, service: string, flags: FlagValues): Promise<number> {
  const key = keyOf(ctx.config, service)
  const proxies = await proxiesToAsk(ctx, flags)
  const entry = await readKey(ctx.client, key)
  const rolloutEntry = await readKey(ctx.client, `${key}/${ROLLOUT_KEY}`)
  const rollout = rolloutEntry.value === null ? null : parseRolloutRecord(rolloutEntry.value)
  const answers = proxies === null ? null : await Promise.all(proxies.map((p) => askProxy(p, service)))
  const dry = answers === null ? await dryRun(ctx, service) : null
  if (flags.json) {
    ctx.out(
      JSON.stringify(
        {
          service,
          key,
          value: entry.value,
          modifyIndex: entry.modifyIndex,
          rollout,
          proxies: answers?.map(answerJson) ?? null,
          dryRun: dry && {
            desired: formatTarget(dry.status?.desired ?? null),
            effective: formatTarget(dry.status?.effective ?? null),
            ready: dry.status?.ready ?? true,
            reason: dry.status?.reason ?? '',
            versions: versionsJson(dry.versions),
          },
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
  if (rollout !== null)
    ctx.out(
      `  rollout to ${rollout.to}: ${formatRollout(rollout)}${rollout.message ? `: ${rollout.message}` : ''}`,
    )
  if (answers !== null) {
    for (const a of answers) {
      ctx.out(proxyLine(a, entry))
      for (const line of versionLines(a.versions)) ctx.out(`    ${line}`)
    }
    return 0
  }
  const s = dry?.status ?? null
  ctx.out('dry run from Consul (no proxy asked; --fleet or --admin URL asks the running proxies):')
  if (s === null || s.ready) ctx.out(`  a proxy would serve ${formatTarget(s?.effective ?? null)}`)
  else
    ctx.out(
      `  NOT READY: ${s.reason.replace(/; serving all$/, '')}; a proxy starting now would serve all, running proxies keep what they served before`,
    )
  for (const line of versionLines(dry?.versions ?? new Map())) ctx.out(`    ${line}`)
  return 0
}

function proxyLine(a: ProxyAnswer, entry: KvEntry): string {
  const head = `  proxy ${a.name}:`
  if (a.error !== null) return `${head} NOT ANSWERING: ${a.error}`
  const t = a.target
  if (t === null)
    return entry.value === null
      ? `${head} no target: serving all`
      : `${head} has no target for this service yet (Consul holds modify index ${entry.modifyIndex}): serving all`
  const seen = t.modifyIndex < entry.modifyIndex ? ` (has seen modify index ${t.modifyIndex} only)` : ''
  const state = t.ready ? 'ready' : `NOT READY: ${t.reason}`
  return `${head} serving ${t.effective}, desired ${t.desired}${seen}; ${state}`
}

// ------------------------------------------------------------------ set

export async function targetSet(ctx: Context, service: string, flags: FlagValues): Promise<number> {
  const key = keyOf(ctx.config, service)
  const { spec, json } = targetFromFlags(flags)
  const timeoutMs = parseTimeout(flags.timeout)
  const proxies = await proxiesToAsk(ctx, flags)
  const instances = await registeredInstances(ctx, service)
  const refusal =
    instances.length === 0 ? await unknownService(ctx, service) : unservable(service, spec, instances)
  if (refusal !== '') {
    if (!flags.force) throw new TargetRefusedError(`${refusal}; nothing written (--force writes it anyway)`)
    ctx.err(`warning: --force: ${refusal}`)
  }
  const before = await readKey(ctx.client, key)
  return write(ctx, {
    service,
    key,
    spec,
    json,
    before,
    cas: casOf(flags, before),
    proxies,
    timeoutMs,
    flags,
  })
}

/** Why no registered instance could ever serve `spec`, or ''. */
function unservable(service: string, spec: TargetSpec, instances: readonly InstanceSnapshot[]): string {
  const versions = distinct(instances.map(instanceVersion))
  const slices = distinct(instances.map(instanceSlice))
  const list = (values: string[]) => (values.length === 0 ? 'none' : values.join(', '))
  if (spec.kind === 'slice' && !slices.includes(spec.slice))
    return `no registered instance of ${service} carries slice ${spec.slice} (registered: ${list(slices)})`
  // Every version the target sends to, those its match rules name too.
  const absent = targetVersions(spec).filter((v) => !versions.includes(v))
  return absent.length === 0
    ? ''
    : `no registered instance of ${service} carries version ${absent.join(', ')} (registered: ${list(versions)})`
}

/** The refusal for a service with no registered instance, naming look-alikes from the catalog. */
export async function unknownService(ctx: Context, service: string): Promise<string> {
  const path = '/v1/catalog/services'
  const names = [
    ...parseServiceList(
      readBody(path, await ctx.client.get(path, {}, { timeoutMs: 10_000 }), 'the service catalog'),
    ).keys(),
  ]
  const near = names
    .filter((n) => n !== FLEET_SERVICE && n !== 'consul')
    .map((n) => ({ n, d: distance(n.toLowerCase(), service.toLowerCase()) }))
    .filter(({ n, d }) => d <= 2 || n.includes(service) || service.includes(n))
    .sort((a, b) => a.d - b.d)
    .slice(0, 3)
    .map(({ n }) => n)
  return `service ${service} is not in the Consul catalog${near.length > 0 ? ` (did you mean ${near.join(', ')}?)` : ''}`
}

// ------------------------------------------------------------------ toggle

/**
 * Environment Manager's blue/green toggle: with exactly two versions (or
 * slices) registered, point the target at the one it does not name now.
 * `--to` names the one wanted, so running it twice changes nothing.
 */
export async function targetToggle(ctx: Context, service: string, flags: FlagValues): Promise<number> {
  const key = keyOf(ctx.config, service)
  const timeoutMs = parseTimeout(flags.timeout)
  const to = typeof flags.to === 'string' ? flags.to : null
  const proxies = await proxiesToAsk(ctx, flags)
  const instances = await registeredInstances(ctx, service)
  if (instances.length === 0)
    throw new TargetRefusedError(`${await unknownService(ctx, service)}; nothing written`)
  const before = await readKey(ctx.client, key)
  const parsed = before.value === null ? null : parseTarget(before.value)
  const current = parsed?.ok ? parsed.spec : null
  const versions = distinct(instances.map(instanceVersion))
  const slices = distinct(instances.map(instanceSlice))
  const refuse = (why: string) => new TargetRefusedError(`cannot toggle ${service}: ${why}; nothing written`)

  let axis: 'version' | 'slice'
  if (current?.kind === 'version' || current?.kind === 'slice') axis = current.kind
  else if (to !== null && (versions.includes(to) || slices.includes(to)))
    axis = versions.includes(to) ? 'version' : 'slice'
  else {
    const now =
      before.value === null
        ? 'it has no target (every healthy instance serves)'
        : parsed?.ok
          ? `its target is ${formatTarget(current)}, not one version or slice`
          : `its key holds an invalid value (${before.value})`
    throw refuse(
      to === null
        ? `${now}, so there is no "other one": give --to <version or slice>`
        : `no registered instance carries version or slice ${to} (versions: ${versions.join(', ') || 'none'}; slices: ${slices.join(', ') || 'none'})`,
    )
  }
  const choices = axis === 'version' ? versions : slices
  if (choices.length !== 2) {
    throw refuse(
      `it has ${choices.length} ${axis}${choices.length === 1 ? '' : 's'} registered (${choices.join(', ') || 'none'}), a toggle needs exactly two; use target set ${service} --${axis} <${axis}>`,
    )
  }
  const now =
    current === null
      ? null
      : current.kind === 'version'
        ? current.version
        : current.kind === 'slice'
          ? current.slice
          : null
  let next: string
  if (to !== null) {
    if (!choices.includes(to))
      throw refuse(`${axis} ${to} is not one of the two registered (${choices.join(', ')})`)
    next = to
  } else {
    if (now === null || !choices.includes(now))
      throw refuse(
        `its target ${formatTarget(current)} is neither of the two registered ${axis}s (${choices.join(', ')}): give --to`,
      )
    next = choices.find((c) => c !== now) as string
  }
  if (now === next) {
    ctx.out(
      `${service}: already ${axis}=${next} (key ${key}, modify index ${before.modifyIndex}); nothing written`,
    )
    if (flags.wait)
      return waitUntilServed(
        ctx,
        service,
        current as TargetSpec,
        before.modifyIndex,
        proxies,
        timeoutMs,
        null,
      )
    return 0
  }
  const { spec, json } = toTarget(axis === 'version' ? { version: next } : { slice: next })
  return write(ctx, {
    service,
    key,
    spec,
    json,
    before,
    cas: casOf(flags, before),
    proxies,
    timeoutMs,
    flags,
  })
}

// ------------------------------------------------------------------ clear

export async function targetClear(ctx: Context, service: string, flags: FlagValues): Promise<number> {
  const key = keyOf(ctx.config, service)
  const before = await readKey(ctx.client, key)
  if (before.value === null) {
    ctx.out(`${service}: no target to clear`)
    return 0
  }
  await deleteKeyCas(ctx.client, key, casOf(flags, before))
  ctx.out(`${service}: ${before.value} -> no target: every healthy instance gets traffic`)
  ctx.out(`  undo: ${restoreCommand(ctx, service, before, 0)}`)
  return 0
}

// ------------------------------------------------------------------ writing and waiting

interface Write {
  readonly service: string
  readonly key: string
  readonly spec: TargetSpec
  readonly json: string
  readonly before: KvEntry
  readonly cas: number
  readonly proxies: readonly ProxyAdmin[] | null
  readonly timeoutMs: number
  readonly flags: FlagValues
}

async function write(ctx: Context, w: Write): Promise<number> {
  await writeKeyCas(ctx.client, w.key, w.json, w.cas)
  const after = await readKey(ctx.client, w.key)
  const undo = restoreCommand(ctx, w.service, w.before, after.modifyIndex)
  ctx.out(
    `${w.service}: ${w.before.value ?? 'no target'} -> ${w.json} (key ${w.key}, modify index ${after.modifyIndex})`,
  )
  ctx.out(`  undo: ${undo}`)
  if (w.flags.wait)
    return waitUntilServed(ctx, w.service, w.spec, after.modifyIndex, w.proxies, w.timeoutMs, undo, w.before)
  // Without --wait, a dry run says at once when the target cannot be served
  // yet. (Proxies asked this instant would not have seen the write.)
  if (w.proxies === null) {
    const missing = await missingNow(ctx, w.service, w.spec, after.modifyIndex, null, w.before)
    if (missing.length > 0) ctx.err(`warning: not live yet (dry run): ${missing.join('; ')}`)
  }
  return 0
}

async function waitUntilServed(
  ctx: Context,
  service: string,
  spec: TargetSpec,
  modifyIndex: number,
  proxies: readonly ProxyAdmin[] | null,
  timeoutMs: number,
  undo: string | null,
  before?: KvEntry,
): Promise<number> {
  const deadline = Date.now() + timeoutMs
  let warned = false
  let missing: string[] = []
  for (;;) {
    missing = await missingNow(ctx, service, spec, modifyIndex, proxies, before)
    if (missing.length === 0) {
      ctx.out(
        proxies === null
          ? `${service}: live (dry run from Consul, no proxy asked): traffic follows ${formatTarget(spec)}`
          : `${service}: live on ${proxies.length} ${proxies.length === 1 ? 'proxy' : 'proxies'}: traffic follows ${formatTarget(spec)}`,
      )
      return 0
    }
    if (Date.now() >= deadline) break
    if (!warned) {
      ctx.err(`warning: not live yet${proxies === null ? ' (dry run)' : ''}: ${missing.join('; ')}`)
      warned = true
    }
    await delay(Math.min(250, Math.max(0, deadline - Date.now())))
  }
  const where = proxies === null ? '' : ` on every proxy; not serving it: ${missing.join('; ')}`
  throw new SwitchyardError(
    'SWY_ERR_TARGET_WAIT',
    `timed out after ${formatSeconds(timeoutMs)} waiting for ${service} to serve ${formatTarget(spec)}${where || `: ${missing.join('; ')}`}${undo === null ? '' : `; the new target stays in Consul (undo: ${undo})`}`,
  )
}

/** What stands between `spec` and traffic following it, one entry per proxy (or the dry run); empty when live. */
export async function missingNow(
  ctx: Context,
  service: string,
  spec: TargetSpec,
  modifyIndex: number,
  proxies: readonly ProxyAdmin[] | null,
  before?: KvEntry,
): Promise<string[]> {
  const want = formatTarget(spec)
  if (proxies === null) {
    const s = (await dryRun(ctx, service, before)).status
    if (s === null) return ['the target is not in Consul yet']
    if (formatTarget(s.desired) !== want) return [`Consul holds ${formatTarget(s.desired)} now`]
    return s.ready ? [] : [s.reason]
  }
  const answers = await Promise.all(proxies.map((p) => askProxy(p, service)))
  return answers.flatMap((a) => {
    const why = proxyMissing(a, want, modifyIndex)
    return why === '' ? [] : [`${a.name} (${why})`]
  })
}

function proxyMissing(a: ProxyAnswer, want: string, modifyIndex: number): string {
  if (a.error !== null) return `not answering: ${a.error}`
  const t = a.target
  if (t === null || t.modifyIndex < modifyIndex) return 'has not seen the new target yet'
  if (t.desired !== want) return `holds ${t.desired} now`
  if (!t.ready) return t.reason
  return t.effective === t.desired ? '' : `serving ${t.effective}`
}

/** The command that puts back `before`, checked against the index the write left. */
function restoreCommand(ctx: Context, service: string, before: KvEntry, modifyIndex: number): string {
  const cas = ['--cas', String(modifyIndex)]
  if (before.value === null)
    return shellLine(['switchyard', 'target', 'clear', service, ...cas, ...ctx.configArgs])
  const parsed = parseTarget(before.value)
  if (!parsed.ok)
    return shellLine([
      'consul',
      'kv',
      'put',
      '-cas',
      `-modify-index=${modifyIndex}`,
      before.key,
      before.value,
    ])
  const spec = parsed.spec
  const flags =
    spec.kind === 'version'
      ? ['--version', spec.version]
      : spec.kind === 'slice'
        ? ['--slice', spec.slice]
        : [
            '--weights',
            Object.entries(spec.weights)
              .map(([v, w]) => `${v}=${w}`)
              .join(','),
            ...(spec.sticky ? ['--sticky'] : []),
          ]
  flags.push(...matchFlags(spec))
  // --force: the undo must work even if that version has no instance left by then.
  return shellLine(['switchyard', 'target', 'set', service, ...flags, ...cas, '--force', ...ctx.configArgs])
}

export function shellLine(words: readonly string[]): string {
  return words.map((w) => (/^[\w@%+=:,./-]+$/.test(w) ? w : `'${w.replaceAll("'", `'\\''`)}'`)).join(' ')
}

// ------------------------------------------------------------------ the running proxies

export interface ProxyAdmin {
  /** How the output names it: its admin URL, with the Consul node for a fleet member. */
  readonly name: string
  /** Admin base URL; null for a fleet member registered without its admin port. */
  readonly url: string | null
  readonly problem?: string
}

/** A target as a proxy's /api/targets shows it. */
interface ProxyTarget {
  readonly service: string
  readonly desired: string
  readonly effective: string
  readonly ready: boolean
  readonly reason: string
  readonly modifyIndex: number
}

interface ProxyAnswer {
  readonly name: string
  readonly url: string | null
  readonly error: string | null
  /** Null when the proxy has no target for the service (no key, or not seen yet). */
  readonly target: ProxyTarget | null
  /** Instances of the service by version and state, as this proxy sees them. */
  readonly versions: Map<string, Map<InstanceState, number>>
}

/** The proxies named by --admin and found by --fleet; null when none was asked for (a dry run). */
export async function proxiesToAsk(ctx: Context, flags: FlagValues): Promise<ProxyAdmin[] | null> {
  const admins = Array.isArray(flags.admin) ? flags.admin.map(String) : []
  const proxies: ProxyAdmin[] = admins.map((a) => ({ name: adminUrl(a), url: adminUrl(a) }))
  if (flags.fleet) proxies.push(...(await fleet(ctx)))
  return proxies.length === 0 ? null : proxies
}

function adminUrl(text: string): string {
  const withScheme = /^https?:\/\//.test(text) ? text : `http://${text}`
  try {
    const url = new URL(withScheme)
    if (url.pathname === '/' && !url.search) return url.origin
  } catch {}
  throw new UsageError(`--admin: "${text}" is not an admin address like http://127.0.0.1:9998`)
}

/** Every Switchyard registered in Consul as service FLEET_SERVICE, at the admin port its meta names. */
async function fleet(ctx: Context): Promise<ProxyAdmin[]> {
  const path = `/v1/catalog/service/${FLEET_SERVICE}`
  const body = readBody(
    path,
    await ctx.client.get(path, {}, { timeoutMs: 10_000 }),
    `service ${FLEET_SERVICE}`,
  )
  const entries = JSON.parse(body) as {
    Node: string
    Address: string
    ServiceID: string
    ServiceAddress: string
    ServiceMeta: Record<string, string> | null
  }[]
  if (entries.length === 0) {
    throw new SwitchyardError(
      'SWY_ERR_NO_FLEET',
      `--fleet: no Switchyard is registered in Consul as service "${FLEET_SERVICE}" (register each proxy with config/consul/switchyard.hcl, or name them with --admin URL)`,
    )
  }
  return entries.map((e) => {
    const host = e.ServiceAddress || e.Address
    const port = Number(e.ServiceMeta?.[FLEET_ADMIN_PORT_META])
    const where = `${e.Node}/${e.ServiceID}`
    if (!Number.isInteger(port) || port <= 0 || port > 65535)
      return { name: where, url: null, problem: `registered without meta ${FLEET_ADMIN_PORT_META}` }
    const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`
    return { name: `${url} (${where})`, url }
  })
}

async function askProxy(proxy: ProxyAdmin, service: string): Promise<ProxyAnswer> {
  const base = { name: proxy.name, url: proxy.url, target: null, versions: new Map() }
  if (proxy.url === null) return { ...base, error: proxy.problem ?? 'no admin address' }
  try {
    const get = async <T>(path: string): Promise<T> => {
      const res = await fetch(`${proxy.url}${path}`, { signal: AbortSignal.timeout(5_000) })
      if (!res.ok) throw new Error(`${path} answered ${res.status}`)
      return (await res.json()) as T
    }
    const [targets, routes] = await Promise.all([
      get<ProxyTarget[]>('/api/targets'),
      get<{ instances: { id: string; service: string; version: string; state: InstanceState }[] }[]>(
        '/api/routes',
      ),
    ])
    const target = targets.find((t) => t.service === service)
    const seen = new Set<string>()
    const versions = new Map<string, Map<InstanceState, number>>()
    for (const r of routes) {
      for (const i of r.instances) {
        if (i.service !== service || seen.has(`${i.id}\0${i.state}`)) continue
        seen.add(`${i.id}\0${i.state}`)
        const byState = versions.get(i.version) ?? new Map<InstanceState, number>()
        byState.set(i.state, (byState.get(i.state) ?? 0) + 1)
        versions.set(i.version, byState)
      }
    }
    return { ...base, error: null, target: target ?? null, versions }
  } catch (err) {
    const e = err as Error & { cause?: { code?: string } }
    return {
      ...base,
      error: e.cause?.code ?? (e.name === 'TimeoutError' ? 'no answer within 5s' : e.message),
    }
  }
}

function answerJson(a: ProxyAnswer) {
  return {
    name: a.name,
    url: a.url,
    answering: a.error === null,
    error: a.error,
    desired: a.target?.desired ?? null,
    effective: a.target?.effective ?? (a.error === null ? 'all' : null),
    ready: a.target?.ready ?? a.error === null,
    reason: a.target?.reason ?? '',
    modifyIndex: a.target?.modifyIndex ?? null,
    versions: versionsJson(a.versions),
  }
}

// ------------------------------------------------------------------ Consul reads and the dry run

/** Every registered instance of the service, whatever its health. */
export async function registeredInstances(ctx: Context, service: string): Promise<InstanceSnapshot[]> {
  const path = `/v1/health/service/${encodeURIComponent(service)}`
  const res = await ctx.client.get(path, { stale: ctx.config.consul.stale }, { timeoutMs: 10_000 })
  return parseHealthService(readBody(path, res, `service ${service}`))
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
): Promise<{ status: TargetStatus | null; versions: Map<string, Map<InstanceState, number>> }> {
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
  const versions = new Map<string, Map<InstanceState, number>>()
  const seen = new Set<string>()
  for (const route of table.routes) {
    for (const b of [...route.backends, ...route.idle]) {
      if (b.service !== service || seen.has(`${b.instanceId}\0${b.state}`)) continue
      seen.add(`${b.instanceId}\0${b.state}`)
      const byState = versions.get(b.version) ?? new Map<InstanceState, number>()
      byState.set(b.state, (byState.get(b.state) ?? 0) + 1)
      versions.set(b.version, byState)
    }
  }
  return { status: table.targets.find((t) => t.service === service) ?? null, versions }
}

/** `version 1.6.0: 1 serving, 1 unhealthy`, in the states' API names, one line per version. */
function versionLines(versions: ReadonlyMap<string, ReadonlyMap<InstanceState, number>>): string[] {
  return [...versions.keys()].sort().map((v) => {
    const states = [...(versions.get(v) ?? new Map())].map(([state, n]) => `${n} ${state}`).join(', ')
    return `version ${v || '(none)'}: ${states}`
  })
}

function versionsJson(versions: ReadonlyMap<string, ReadonlyMap<InstanceState, number>>) {
  return Object.fromEntries([...versions].map(([v, states]) => [v || '(none)', Object.fromEntries(states)]))
}

// ------------------------------------------------------------------ small helpers

function casOf(flags: FlagValues, before: KvEntry): number {
  if (flags.cas === undefined) return before.modifyIndex
  const cas = Number(flags.cas)
  if (typeof flags.cas !== 'string' || !Number.isSafeInteger(cas) || cas < 0)
    throw new UsageError(`--cas: "${flags.cas}" is not a modify index (as target get prints it)`)
  return cas
}

function parseTimeout(text: FlagValues[string]): number {
  if (text === undefined) return 30_000
  const ms = parseDuration(String(text))
  if (ms === null) throw new UsageError(`--timeout: "${text}" is not a duration like 30s or 2m`)
  return ms
}

export function formatSeconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${(ms / 1000).toFixed(1)}s`
}

export function distinct(values: readonly string[]): string[] {
  return [...new Set(values.filter((v) => v !== ''))].sort()
}
