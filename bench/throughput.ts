// Throughput and latency: every contender on every workload, interleaved
// (round r starts with a different contender), several rounds after a warm-up,
// so a disturbance on this shared machine hits all contenders alike rather
// than one. CPU seconds are read from /proc for the contender's own processes.

import type { Role, Running } from './contenders.js'
import { type LoadResult, type LoadTool, runLoad } from './load.js'
import { treeCpuSeconds } from './procs.js'
import { median, sleep } from './stats.js'

export interface Workload {
  readonly name: string
  readonly what: string
  readonly path: string
  readonly connections: number
  /** Paced (requests/s, approximate) instead of as fast as possible. */
  readonly rate?: number
  /** Which kinds of contenders run it. */
  readonly roles: readonly Role[]
}

export interface ThroughputOptions {
  readonly tool: LoadTool
  readonly seconds: number
  readonly warmupSeconds: number
  readonly rounds: number
  readonly workloads: readonly Workload[]
  readonly scratch: string
}

export interface Sample {
  readonly workload: string
  readonly contender: string
  readonly round: number
  readonly load: LoadResult
  /** CPU seconds of the contender's own processes during the run; null when it has none. */
  readonly proxyCpu: number | null
  readonly backendCpu: number
}

export interface ThroughputSummary {
  readonly workload: string
  readonly contender: string
  readonly rounds: number
  /** Medians over the rounds. */
  readonly rps: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly p999Ms: number
  readonly errors: number
  /** CPU seconds per round (median); null without processes of its own. */
  readonly cpuSeconds: number | null
  /** CPU microseconds per request over all rounds. */
  readonly cpuUsPerRequest: number | null
  readonly backendCpuUsPerRequest: number
  readonly loadgenCpuSeconds: number
}

export interface ThroughputResult {
  readonly samples: readonly Sample[]
  readonly summaries: readonly ThroughputSummary[]
}

export async function runThroughput(
  contenders: readonly (Running & { role: Role })[],
  backend: Running,
  options: ThroughputOptions,
  say: (line: string) => void,
): Promise<ThroughputResult> {
  const run = async (workload: Workload, c: Running, seconds: number, round: number): Promise<Sample> => {
    const cpu0 = c.pid === null ? null : treeCpuSeconds(c.pid)
    const backend0 = treeCpuSeconds(backend.pid as number)
    const load = await runLoad(
      options.tool,
      { url: `${c.url}${workload.path}`, connections: workload.connections, seconds, rate: workload.rate },
      options.scratch,
    )
    const proxyCpu = cpu0 === null || c.pid === null ? null : treeCpuSeconds(c.pid) - cpu0
    const backendCpu = treeCpuSeconds(backend.pid as number) - backend0
    await sleep(200)
    return { workload: workload.name, contender: c.name, round, load, proxyCpu, backendCpu }
  }

  const eligible = (w: Workload) => contenders.filter((c) => w.roles.includes(c.role))
  if (options.warmupSeconds > 0) {
    say(`warm-up: ${options.warmupSeconds}s per contender and workload`)
    for (const workload of options.workloads) {
      for (const c of eligible(workload)) await run(workload, c, options.warmupSeconds, -1)
    }
  }

  const samples: Sample[] = []
  for (let round = 0; round < options.rounds; round++) {
    for (const workload of options.workloads) {
      const list = eligible(workload)
      const order = list.map((_, i) => list[(i + round) % list.length] as Running & { role: Role })
      for (const c of order) {
        const sample = await run(workload, c, options.seconds, round)
        samples.push(sample)
        say(
          `round ${round + 1}/${options.rounds} ${workload.name.padEnd(12)} ${c.name.padEnd(18)} ` +
            `${Math.round(sample.load.rps).toString().padStart(7)} req/s  p99 ${sample.load.p99Ms.toFixed(2)} ms` +
            (sample.proxyCpu === null ? '' : `  cpu ${sample.proxyCpu.toFixed(2)} s`) +
            (sample.load.errors > 0 ? `  errors ${sample.load.errors}` : ''),
        )
      }
    }
  }
  return { samples, summaries: summarise(samples) }
}

function summarise(samples: readonly Sample[]): ThroughputSummary[] {
  const groups = new Map<string, Sample[]>()
  for (const s of samples) {
    const key = `${s.workload}\u0000${s.contender}`
    const list = groups.get(key) ?? []
    if (list.length === 0) groups.set(key, list)
    list.push(s)
  }
  return [...groups.values()].map((list) => {
    const first = list[0] as Sample
    const requests = list.reduce((n, s) => n + s.load.requests, 0)
    const cpu = list.every((s) => s.proxyCpu !== null) ? list.map((s) => s.proxyCpu as number) : null
    return {
      workload: first.workload,
      contender: first.contender,
      rounds: list.length,
      rps: median(list.map((s) => s.load.rps)),
      p50Ms: median(list.map((s) => s.load.p50Ms)),
      p99Ms: median(list.map((s) => s.load.p99Ms)),
      p999Ms: median(list.map((s) => s.load.p999Ms)),
      errors: list.reduce((n, s) => n + s.load.errors, 0),
      cpuSeconds: cpu === null ? null : median(cpu),
      cpuUsPerRequest:
        cpu === null || requests === 0 ? null : (cpu.reduce((a, b) => a + b, 0) / requests) * 1e6,
      backendCpuUsPerRequest:
        requests === 0 ? 0 : (list.reduce((a, s) => a + s.backendCpu, 0) / requests) * 1e6,
      loadgenCpuSeconds: median(list.map((s) => s.load.loadgenCpu)),
    }
  })
}
