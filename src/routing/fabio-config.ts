// Fabio's route overrides from KV (`registry.consul.kvpath`, `/fabio/config`
// by default): the `route add`, `route del` and `route weight` lines a Fabio
// user keeps beside the tags, most often a canary such as
//
//   route weight web /web weight 0.1 tags "v2"
//
// The key and every key below it are read, in key order, and their lines are
// applied in order after the routes from tags, as Fabio appends them to the
// table it generates. A line that does not parse, or that Switchyard cannot
// apply, is a problem naming the key and line; the other lines still apply
// (Fabio drops the whole manual table instead).

import type { ProblemList } from './problems.js'
import type { Candidate } from './routes.js'
import { routeId } from './routes.js'
import { parseRouteTag } from './tags.js'
import type { InstanceSnapshot, PathMatcher, RouteSpec, TargetEntry } from './types.js'

export type FabioCommand =
  | {
      readonly kind: 'add'
      readonly service: string
      readonly src: string
      readonly dst: string
      readonly weight: number | null
      readonly tags: readonly string[]
      readonly opts: readonly string[]
    }
  | {
      readonly kind: 'del'
      readonly service: string
      readonly src: string
      readonly dst: string
      readonly tags: readonly string[]
    }
  | {
      readonly kind: 'weight'
      readonly service: string
      readonly src: string
      readonly weight: number | null
      readonly tags: readonly string[]
    }

export interface FabioLine {
  /** `key fabio/config, line 3`: where the line is, for problems. */
  readonly where: string
  readonly text: string
  readonly command: FabioCommand
}

const ADD =
  /^route\s+add\s+(\S+)\s+(\S+)\s+(\S+)(?:\s+weight\s+(\S+))?(?:\s+tags\s+"([^"]*)")?(?:\s+opts\s+"([^"]*)")?$/
const DEL_TAGS = /^route\s+del\s+tags\s+"([^"]*)"$/
const DEL_SERVICE_TAGS = /^route\s+del\s+(\S+)\s+tags\s+"([^"]*)"$/
const DEL = /^route\s+del\s+(\S+)(?:\s+(\S+)(?:\s+(\S+))?)?$/
const WEIGHT_SERVICE = /^route\s+weight\s+(\S+)\s+(\S+)\s+weight\s+(\S+)(?:\s+tags\s+"([^"]*)")?$/
const WEIGHT_SOURCE = /^route\s+weight\s+(\S+)\s+weight\s+(\S+)\s+tags\s+"([^"]*)"$/

/**
 * The override lines under `kvPath` (the key itself and the keys below it),
 * in key order. Comments (`#`, `//`) and blank lines are skipped; a line that
 * does not parse is a problem and is left out.
 */
export function readFabioConfig(
  entries: readonly TargetEntry[],
  kvPath: string,
  problems: ProblemList,
): FabioLine[] {
  if (kvPath === '') return []
  const lines: FabioLine[] = []
  const ours = entries
    .filter((e) => e.key === kvPath || e.key.startsWith(`${kvPath}/`))
    .sort((a, b) => (a.key < b.key ? -1 : 1))
  for (const entry of ours) {
    entry.value.split('\n').forEach((raw, i) => {
      const text = raw.trim()
      if (text === '' || text.startsWith('#') || text.startsWith('//')) return
      const where = `key ${entry.key}, line ${i + 1}`
      const parsed = parseFabioLine(text)
      if (typeof parsed === 'string')
        problems.add('SWY_ERR_FABIO_CONFIG', where, `"${text}": ${parsed}; ignored`)
      else lines.push({ where, text, command: parsed })
    })
  }
  return lines
}

/** One line as a command, or why it is not one. */
export function parseFabioLine(text: string): FabioCommand | string {
  let m = ADD.exec(text)
  if (m) {
    const weight = parseWeight(m[4])
    if (weight === undefined) return `weight "${m[4]}" is not a number`
    return {
      kind: 'add',
      service: m[1] as string,
      src: m[2] as string,
      dst: m[3] as string,
      weight,
      tags: parseTags(m[5]),
      opts: (m[6] ?? '').split(/\s+/).filter((o) => o !== ''),
    }
  }
  m = DEL_TAGS.exec(text)
  if (m) return { kind: 'del', service: '', src: '', dst: '', tags: parseTags(m[1]) }
  m = DEL_SERVICE_TAGS.exec(text)
  if (m) return { kind: 'del', service: m[1] as string, src: '', dst: '', tags: parseTags(m[2]) }
  m = DEL.exec(text)
  if (m) return { kind: 'del', service: m[1] as string, src: m[2] ?? '', dst: m[3] ?? '', tags: [] }
  m = WEIGHT_SERVICE.exec(text)
  const service = m ? (m[1] as string) : ''
  m ??= WEIGHT_SOURCE.exec(text)
  if (m) {
    const [src, value, tags] = service === '' ? [m[1], m[2], m[3]] : [m[2], m[3], m[4]]
    const weight = parseWeight(value)
    if (weight === undefined) return `weight "${value}" is not a number`
    return { kind: 'weight', service, src: src as string, weight, tags: parseTags(tags) }
  }
  if (/^route\s+(add|del|weight)\b/.test(text)) return `not a valid "route ${text.split(/\s+/)[1]}" line`
  return 'expected route add, route del or route weight'
}

/** Fabio: no weight, 0 or less is no fixed weight. undefined: not a number. */
function parseWeight(text: string | undefined): number | null | undefined {
  if (text === undefined) return null
  const w = Number(text)
  if (!Number.isFinite(w) || text === '') return undefined
  return w > 0 ? w : null
}

function parseTags(text: string | undefined): string[] {
  if (text === undefined || text === '') return []
  return text.split(',').map((t) => t.trim())
}

/** What the overrides work on: the candidates of every route, by route id. */
export interface OverrideContext {
  readonly tagPrefix: string
  readonly matcher: PathMatcher
  /** The candidates of a route, made (empty) when absent. */
  candidatesOf(id: string, create: boolean): Candidate[] | undefined
  /** Every route id with its candidates. */
  all(): Iterable<[string, Candidate[]]>
  /** Replaces a route's candidates (after a `route del`). */
  set(id: string, candidates: Candidate[]): void
}

/** Applies the lines in order, as Fabio applies its manual table after the generated one. */
export function applyFabioConfig(
  lines: readonly FabioLine[],
  ctx: OverrideContext,
  problems: ProblemList,
): void {
  for (const line of lines) {
    const why = applyLine(line.command, ctx)
    if (why !== '') problems.add('SWY_ERR_FABIO_CONFIG', line.where, `"${line.text}": ${why}`)
  }
}

function applyLine(cmd: FabioCommand, ctx: OverrideContext): string {
  switch (cmd.kind) {
    case 'add':
      return addRoute(cmd, ctx)
    case 'del': {
      const id = cmd.src === '' ? '' : sourceId(cmd.src, ctx)
      if (id === null) return `source "${cmd.src}" is not a route`
      const dst = cmd.dst === '' ? '' : originOf(cmd.dst)
      if (dst === null) return `"${cmd.dst}" is not an http or https URL`
      for (const [routeKey, candidates] of ctx.all()) {
        if (id !== '' && routeKey !== id) continue
        const kept = candidates.filter(
          (c) =>
            !(
              (cmd.service === '' || c.instance.service === cmd.service) &&
              hasTags(c, cmd.tags, ctx.tagPrefix) &&
              (dst === '' || candidateOrigin(c) === dst)
            ),
        )
        if (kept.length !== candidates.length) ctx.set(routeKey, kept)
      }
      return ''
    }
    case 'weight': {
      const id = sourceId(cmd.src, ctx)
      if (id === null) return `source "${cmd.src}" is not a route`
      const candidates = ctx.candidatesOf(id, false) ?? []
      const matching = candidates.filter(
        (c) =>
          (cmd.service === '' || c.instance.service === cmd.service) && hasTags(c, cmd.tags, ctx.tagPrefix),
      )
      // Fabio's table holds serving instances only: the weight is shared by
      // those that serve now.
      const serving = matching.filter((c) => c.health === 'healthy' && c.selected).length
      if (serving === 0) return `matches no serving instance on route ${id} now; not applied`
      for (const c of matching) c.fixedWeight = cmd.weight === null ? null : cmd.weight / serving
      return ''
    }
  }
}

function addRoute(cmd: Extract<FabioCommand, { kind: 'add' }>, ctx: OverrideContext): string {
  let url: URL
  try {
    url = new URL(cmd.dst)
  } catch {
    return `"${cmd.dst}" is not a URL`
  }
  const opts = cmd.opts.filter((o) => !o.startsWith('redirect='))
  const redirect = cmd.opts.find((o) => o.startsWith('redirect='))
  if (redirect !== undefined) {
    // Fabio writes the redirect's URL as the destination.
    opts.push(`${redirect},${cmd.dst}`)
  } else if (url.protocol === 'https:') {
    opts.push('proto=https')
  } else if (url.protocol !== 'http:') {
    return `only http and https destinations are supported, not ${url.protocol.slice(0, -1)}`
  }
  const parsed = parseRouteTag(`${ctx.tagPrefix}${cmd.src} ${opts.join(' ')}`, ctx.tagPrefix, ctx.matcher)
  if (parsed === null || !parsed.ok) return parsed?.error ?? 'not a route'
  if (parsed.warnings.length > 0) return parsed.warnings.join('; ')
  const spec: RouteSpec = parsed.spec
  const address = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname
  const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port)
  const instance: InstanceSnapshot = {
    id: `${cmd.service} ${url.protocol}//${url.host}`,
    service: cmd.service,
    node: 'kv',
    address,
    port,
    tags: cmd.tags,
    meta: {},
    checks: [],
  }
  const candidates = ctx.candidatesOf(routeId(spec), true) as Candidate[]
  if (candidates.some((c) => c.instance.node === 'kv' && c.instance.id === instance.id)) return ''
  candidates.push({
    instance,
    spec,
    // A route written in KV has no health check: Fabio serves it as long as
    // the line is there.
    health: 'healthy',
    selected: true,
    version: '',
    slice: '',
    fixedWeight: cmd.weight,
    tags: cmd.tags,
  })
  return ''
}

function sourceId(src: string, ctx: OverrideContext): string | null {
  const parsed = parseRouteTag(`${ctx.tagPrefix}${src}`, ctx.tagPrefix, ctx.matcher)
  return parsed?.ok ? routeId(parsed.spec) : null
}

/** Fabio matches a target's tags: every tag named must be among them. */
function hasTags(c: Candidate, wanted: readonly string[], tagPrefix: string): boolean {
  if (wanted.length === 0) return true
  const own = c.tags ?? c.instance.tags.map((t) => t.trim()).filter((t) => !t.startsWith(tagPrefix))
  return wanted.every((t) => own.includes(t))
}

function originOf(dst: string): string | null {
  try {
    const url = new URL(dst)
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return null
    const port = url.port === '' ? (url.protocol === 'https:' ? '443' : '80') : url.port
    return `${url.protocol}//${url.hostname}:${port}`
  } catch {
    return null
  }
}

function candidateOrigin(c: Candidate): string {
  const host = c.instance.address.includes(':') ? `[${c.instance.address}]` : c.instance.address
  return `${c.spec.proto}://${host}:${c.instance.port}`
}
