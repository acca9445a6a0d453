// Throughput and latency: every contender on every workload, interleaved
// (round r starts with a different contender), several rounds after a warm-up,
// so a disturbance on this shared machine hits all contenders alike rather
// than one. CPU seconds are read from /proc for the contender's own processes.
// Ratios to NGINX (and Fabio) are taken per round, against the peer's sample
// of the same round, and their median reported: a slow minute of the machine
// then moves both sides of a ratio, not one.

import type { Role, Running } from './contenders.js'
import { type LoadResult, type LoadTool, runLoad } from './load.js'
import { machineBusySeconds, processTree, rssBytesOf, treeCpuSeconds } from './procs.js'
import { median, sleep } from './stats.js'

export interface Workload {
  readonly name: string
  readonly what: string
  readonly path: string
  readonly connections: number
  /** Paced (requests/s, approximate) instead of as fast as possible. */
  readonly rate?: number
  /** GET when absent. */
  readonly method?: 'GET' | 'POST'
  /** Request body bytes (a POST's). */
  readonly bodyBytes?: number
  /**
   * http (the default): plain HTTP/1.1 to the contender's `url`, with the
   * chosen tool. https: HTTP/1.1 over TLS to its `tlsUrl`, with wrk. h2:
   * HTTP/2 over TLS (ALPN) to its `tlsUrl`, with h2load. Contenders without a
   * TLS listener skip the last two.
   */
  readonly protocol?: 'http' | 'https' | 'h2'
  /** A new connection (over TLS: a new handshake) for every request. */
  readonly closeEachRequest?: boolean
  /** Requests in flight per connection (h2 only). */
  readonly streams?: number
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
  /** proxyCpu per request served, in µs. */
  readonly cpuUsPerRequest: number | null
  /** Largest resident set of the contender's processes seen during the run (sampled), bytes. */
  readonly rssBytes: number | null
  readonly backendCpu: number
  /**
   * CPU seconds the machine spent on anything but the contender, the backend
   * and the load generator during the run: other work on a shared machine
   * (and the benchmark's own process), which the ratios cannot cancel.
   */
  readonly otherCpu: number
}

/** Medians over the rounds of (this contender's figure / the reference's figure in the same round). */
export interface RoundRatios {
  /** Rounds in which both ran. */
  readonly rounds: number
  readonly rps: number | null
  readonly cpuUsPerRequest: number | null
  readonly p50Ms: number | null
  readonly p99Ms: number | null
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
  readonly maxMs: number
  readonly errors: number
  /** CPU seconds per round (median); null without processes of its own. */
  readonly cpuSeconds: number | null
  /** CPU microseconds per request (median over the rounds). */
  readonly cpuUsPerRequest: number | null
  /** Resident set under this load (median over the rounds of the largest value sampled), bytes. */
  readonly rssBytes: number | null
  readonly backendCpuUsPerRequest: number
  readonly loadgenCpuSeconds: number
  /** CPU seconds of everything else on the machine per round (median): the noise. */
  readonly otherCpuSeconds: number
  /** Per-round ratios to the reference contenders (REFERENCES) that ran this workload. */
  readonly vs: Readonly<Record<string, RoundRatios>>
}

export interface IdleMemory {
  readonly contender: string
  /** Resident set of the contender's processes after start-up, before any load, bytes. */
  readonly rssBytes: number
}

export interface ThroughputResult {
  readonly samples: readonly Sample[]
  readonly summaries: readonly ThroughputSummary[]
  readonly idle: readonly IdleMemory[]
}

/** Contenders every other one is given per-round ratios to, in the JSON and the report. */
export const REFERENCES = ['nginx', 'fabio', 'node:http+undici'] as const

export async function runThroughput(
  contenders: readonly (Running & { role: Role })[],
  backend: Running,
  options: ThroughputOptions,
  say: (line: string) => void,
): Promise<ThroughputResult> {
  const run = async (workload: Workload, c: Running, seconds: number, round: number): Promise<Sample> => {
    // The tree is read once: a contender's processes do not change under load,
    // and walking /proc during the window would cost CPU beside it.
    const protocol = workload.protocol ?? 'http'
    // The processes that serve this workload: a contender may serve TLS from others.
    const pid = protocol === 'http' ? c.pid : (c.tlsPid ?? c.pid)
    const pids = pid === null ? null : processTree(pid)
    const cpu0 = pid === null ? null : treeCpuSeconds(pid)
    const backend0 = treeCpuSeconds(backend.pid as number)
    const busy0 = machineBusySeconds()
    let rss: number | null = null
    const sampleRss = () => {
      if (pids !== null) rss = Math.max(rss ?? 0, rssBytesOf(pids))
    }
    // A few samples spread over the window, the first once connections are up.
    const timer = setInterval(sampleRss, Math.max(250, (seconds * 1000) / 4))
    let load: LoadResult
    try {
      load = await runLoad(
        protocol === 'h2' ? 'h2load' : options.tool,
        {
          url: `${protocol === 'http' ? c.url : c.tlsUrl}${workload.path}`,
          connections: workload.connections,
          seconds,
          rate: workload.rate,
          method: workload.method,
          bodyBytes: workload.bodyBytes,
          closeEachRequest: workload.closeEachRequest,
          streams: workload.streams,
        },
        options.scratch,
      )
    } finally {
      clearInterval(timer)
    }
    const proxyCpu = cpu0 === null || pid === null ? null : treeCpuSeconds(pid) - cpu0
    const backendCpu = treeCpuSeconds(backend.pid as number) - backend0
    const busy = machineBusySeconds() - busy0
    const own = (proxyCpu ?? 0) + backendCpu + load.loadgenCpu
    if (rss === null) sampleRss()
    // Lets connections the load generator left close before the next run.
    await sleep(200)
    return {
      workload: workload.name,
      contender: c.name,
      round,
      load,
      proxyCpu,
      cpuUsPerRequest: proxyCpu === null || load.requests === 0 ? null : (proxyCpu / load.requests) * 1e6,
      rssBytes: rss,
      backendCpu,
      otherCpu: Math.max(0, busy - own),
    }
  }

  // Idle memory first: after start-up, before any request but the start probe.
  const idle: IdleMemory[] = []
  for (const c of contenders) {
    if (c.pid !== null) idle.push({ contender: c.name, rssBytes: rssBytesOf(processTree(c.pid)) })
  }

  const eligible = (w: Workload) =>
    contenders.filter((c) => w.roles.includes(c.role) && ((w.protocol ?? 'http') === 'http' || c.tlsUrl))
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
            (sample.cpuUsPerRequest === null ? '' : `  cpu ${sample.cpuUsPerRequest.toFixed(1)} µs/req`) +
            (sample.load.errors > 0 ? `  errors ${sample.load.errors}` : '') +
            (sample.load.requests === 0 ? '  NOTHING ANSWERED: stalled or not forwarding' : '') +
            (sample.otherCpu > 0.2 * options.seconds ? `  (other load ${sample.otherCpu.toFixed(1)} s)` : ''),
        )
      }
    }
  }
  return { samples, summaries: summarise(samples), idle }
}

const medianOrNull = (values: readonly (number | null)[]): number | null => {
  const known = values.filter((v): v is number => v !== null && Number.isFinite(v))
  return known.length === 0 ? null : median(known)
}

/**
 * Median over the rounds of `pick(a) / pick(b)` for the samples of
 * contenders `a` and `b` in the same round of `workload`; null when they
 * never ran in the same round.
 */
export function roundRatio(
  samples: readonly Sample[],
  workload: string,
  a: string,
  b: string,
  pick: (s: Sample) => number | null,
): number | null {
  const ratios: number[] = []
  for (const s of samples) {
    if (s.workload !== workload || s.contender !== a) continue
    const other = samples.find((o) => o.workload === workload && o.contender === b && o.round === s.round)
    const x = pick(s)
    const y = other ? pick(other) : null
    if (x !== null && y !== null && Number.isFinite(x) && Number.isFinite(y) && y > 0) ratios.push(x / y)
  }
  return ratios.length === 0 ? null : median(ratios)
}

export const METRICS = {
  rps: (s: Sample) => s.load.rps,
  cpuUsPerRequest: (s: Sample) => s.cpuUsPerRequest,
  p50Ms: (s: Sample) => s.load.p50Ms,
  p99Ms: (s: Sample) => s.load.p99Ms,
} as const

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
    const vs: Record<string, RoundRatios> = {}
    for (const ref of REFERENCES) {
      const rounds = list.filter((s) =>
        samples.some((o) => o.workload === s.workload && o.contender === ref && o.round === s.round),
      ).length
      if (rounds === 0) continue
      const r = (pick: (s: Sample) => number | null) =>
        roundRatio(samples, first.workload, first.contender, ref, pick)
      vs[ref] = {
        rounds,
        rps: r(METRICS.rps),
        cpuUsPerRequest: r(METRICS.cpuUsPerRequest),
        p50Ms: r(METRICS.p50Ms),
        p99Ms: r(METRICS.p99Ms),
      }
    }
    return {
      workload: first.workload,
      contender: first.contender,
      rounds: list.length,
      rps: median(list.map((s) => s.load.rps)),
      p50Ms: median(list.map((s) => s.load.p50Ms)),
      p99Ms: median(list.map((s) => s.load.p99Ms)),
      p999Ms: median(list.map((s) => s.load.p999Ms)),
      maxMs: Math.max(...list.map((s) => s.load.maxMs)),
      errors: list.reduce((n, s) => n + s.load.errors, 0),
      cpuSeconds: cpu === null ? null : median(cpu),
      cpuUsPerRequest: medianOrNull(list.map((s) => s.cpuUsPerRequest)),
      rssBytes: medianOrNull(list.map((s) => s.rssBytes)),
      backendCpuUsPerRequest:
        requests === 0 ? 0 : (list.reduce((a, s) => a + s.backendCpu, 0) / requests) * 1e6,
      loadgenCpuSeconds: median(list.map((s) => s.load.loadgenCpu)),
      otherCpuSeconds: median(list.map((s) => s.otherCpu)),
      vs,
    }
  })
}
