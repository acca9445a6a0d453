// Where the proxy's CPU goes per request: Switchyard runs with `node
// --cpu-prof` under the small-body load, and the profile (a .cpuprofile file,
// open it in Chrome DevTools or speedscope for the flame graph) is summarised
// by self time per function and per area of code.

import { mkdtempSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { BenchConsul } from './consul.js'
import { type Running, startSwitchyardProcess } from './contenders.js'
import { type LoadResult, type LoadTool, runLoad } from './load.js'
import { waitForHttp } from './procs.js'

export interface ProfileEntry {
  readonly name: string
  /** Share of all sampled time, 0..1. */
  readonly share: number
  readonly ms: number
}

export interface ProfileResult {
  readonly file: string
  readonly load: LoadResult
  /** Seconds of load summarised: the end of the profile, after a warm-up, without start-up. */
  readonly windowSeconds: number
  readonly warmupSeconds: number
  readonly totalMs: number
  /** Self time by area of code (Switchyard's own modules, undici, Node's HTTP, GC, idle...). */
  readonly areas: readonly ProfileEntry[]
  /** Functions with the most self time. */
  readonly functions: readonly ProfileEntry[]
  /** Inclusive time of Switchyard's per-request functions. */
  readonly inclusive: readonly ProfileEntry[]
}

interface CpuProfileNode {
  readonly id: number
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number }
  readonly children?: readonly number[]
}

interface CpuProfile {
  readonly nodes: readonly CpuProfileNode[]
  readonly samples: readonly number[]
  readonly timeDeltas: readonly number[]
}

/** Runs the load against a profiled Switchyard and summarises the profile it writes on exit. */
export async function profileSwitchyard(
  consul: BenchConsul,
  tmp: string,
  artifacts: string,
  path: string,
  tool: LoadTool,
  load: { seconds: number; warmupSeconds: number; connections: number; rate?: number; dist?: string },
): Promise<ProfileResult> {
  const { seconds, warmupSeconds, connections, rate, dist } = load
  const dir = mkdtempSync(join(artifacts, 'profile-'))
  const sy = await startSwitchyardProcess({
    name: 'switchyard-profiled',
    dir: join(tmp, 'switchyard-profiled'),
    consulAddress: consul.info.address,
    token: consul.info.proxyToken,
    nodeArgs: ['--cpu-prof', '--cpu-prof-dir', dir],
    dist,
  })
  let result: LoadResult
  let stopped = false
  const running: Running = { name: 'profiled', url: sy.url, pid: sy.child.pid, stop: () => sy.child.stop() }
  try {
    await waitForHttp(`${running.url}${path}`, 30_000, sy.child)
    // Warm-up outside the window summarised, so JIT compilation is not counted as the hot path.
    const spec = { url: `${running.url}${path}`, connections, rate }
    if (warmupSeconds > 0) await runLoad(tool, { ...spec, seconds: warmupSeconds }, tmp)
    result = await runLoad(tool, { ...spec, seconds }, tmp)
    // The profile is written when the process exits normally (SIGTERM drains, then exits).
    await running.stop()
    stopped = true
  } finally {
    if (!stopped) await running.stop()
  }
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'))
  if (!file) throw new Error(`no .cpuprofile written in ${dir}`)
  const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile
  return {
    file: join(dir, file),
    load: result,
    windowSeconds: seconds,
    warmupSeconds,
    ...summariseProfile(profile, seconds * 1e6),
  }
}

/** Area of code a frame belongs to, for the breakdown. */
export function areaOf(frame: CpuProfileNode['callFrame']): string {
  const { functionName, url } = frame
  if (functionName === '(garbage collector)') return 'garbage collector'
  if (functionName === '(idle)') return 'idle (waiting for I/O)'
  if (functionName === '(program)') return 'native (program)'
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)
  if (pkg) return `npm ${pkg[1]}`
  const dist = /\/dist\/([^/]+)\//.exec(url)
  if (dist) return `switchyard ${dist[1]}/`
  if (url.startsWith('node:')) {
    const area =
      url
        .slice(5)
        .replace(/^internal\//, '')
        .split('/')[0] ?? url
    return `node ${area.replace(/\.js$/, '').replace(/^_/, '')}`
  }
  if (url === '') return 'native (V8 builtins, C++)'
  return 'other'
}

function label(frame: CpuProfileNode['callFrame']): string {
  const file = frame.url.replace(/^.*\/(dist|node_modules)\//, '$1/').replace(/^file:\/\//, '')
  return `${frame.functionName || '(anonymous)'} ${file ? `${file}:${frame.lineNumber + 1}` : ''}`.trim()
}

/** Summary of the samples of the last `windowUs` of the profile (all when absent): the load, not start-up. */
export function summariseProfile(
  profile: CpuProfile,
  windowUs?: number,
): Omit<ProfileResult, 'file' | 'load' | 'windowSeconds' | 'warmupSeconds'> {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const self = new Map<number, number>()
  const end = profile.timeDeltas.reduce((a, b) => a + b, 0)
  const from = windowUs === undefined ? Number.NEGATIVE_INFINITY : end - windowUs
  let at = 0
  let totalUs = 0
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0
    at += dt
    if (at < from) return
    self.set(id, (self.get(id) ?? 0) + dt)
    totalUs += dt
  })

  const areas = new Map<string, number>()
  const functions = new Map<string, number>()
  for (const [id, us] of self) {
    const node = byId.get(id)
    if (!node) continue
    const area = areaOf(node.callFrame)
    areas.set(area, (areas.get(area) ?? 0) + us)
    const name = label(node.callFrame)
    functions.set(name, (functions.get(name) ?? 0) + us)
  }

  // Inclusive time of Switchyard's own functions (each counted once per stack).
  const inclusiveUs = new Map<string, number>()
  const parent = new Map<number, number>()
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  for (const [id, us] of self) {
    const seen = new Set<string>()
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const node = byId.get(at)
      if (!node || !/\/dist\//.test(node.callFrame.url)) continue
      const name = label(node.callFrame)
      if (seen.has(name)) continue
      seen.add(name)
      inclusiveUs.set(name, (inclusiveUs.get(name) ?? 0) + us)
    }
  }

  const entries = (map: Map<string, number>, limit: number): ProfileEntry[] =>
    [...map]
      .sort((a, b) => b[1] - a[1])
      .slice(0, limit)
      .map(([name, us]) => ({ name, ms: us / 1000, share: totalUs === 0 ? 0 : us / totalUs }))
  return {
    totalMs: totalUs / 1000,
    areas: entries(areas, 30),
    functions: entries(functions, 30),
    inclusive: entries(inclusiveUs, 20),
  }
}
