// Renders a BenchReport as Markdown: every figure next to its ratio to NGINX
// and to Fabio from the same run, the goals with where they stand, and the
// machine it was measured on.

import type { ScenarioResult } from './convergence.js'
import type { BenchReport } from './run.js'
import { ratio } from './stats.js'
import type { ThroughputSummary } from './throughput.js'

const int = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a')
const ms = (n: number | null | undefined, digits = 2) =>
  n === null || n === undefined || !Number.isFinite(n) ? 'n/a' : n.toFixed(digits)
const times = (r: number | null) => (r === null ? 'n/a' : `${r.toFixed(2)}×`)

function summary(report: BenchReport, workload: string, contender: string): ThroughputSummary | undefined {
  return report.throughput?.summaries.find((s) => s.workload === workload && s.contender === contender)
}

/** `value (× NGINX / × Fabio)` for one metric of one contender. */
function withRatios(
  report: BenchReport,
  s: ThroughputSummary,
  pick: (s: ThroughputSummary) => number | null,
  format: (n: number) => string,
): string {
  const value = pick(s)
  if (value === null) return '—'
  const peers = ['nginx', 'fabio'].map((peer) => {
    if (s.contender === peer) return '1×'
    const other = summary(report, s.workload, peer)
    return times(other ? ratio(value, pick(other)) : null)
  })
  return `${format(value)} (${peers.join(' / ')})`
}

export function renderMarkdown(report: BenchReport): string {
  const out: string[] = []
  const line = (text = '') => out.push(text)
  const m = report.machine

  line(`# Switchyard benchmark: ${m.kind}`)
  line()
  line(
    `Measured ${report.startedAt.slice(0, 16).replace('T', ' ')} UTC in ${report.durationSeconds} s ` +
      `(mode \`${report.options.mode}\`). Reproduce with \`${report.command}\`.`,
  )
  line()
  line('Ratios are to NGINX and to Fabio measured in the same run, written `(× NGINX / × Fabio)`;')
  line('for req/s higher is better, for latency and CPU lower is better. `n/a`: that peer did not run.')
  line()

  line('## Machine')
  line()
  line('| | |')
  line('| --- | --- |')
  line(`| CPU | ${m.cores} × ${m.cpuModel} |`)
  line(`| memory | ${m.memoryGiB} GiB (${m.freeMemoryGiB} GiB free at start) |`)
  line(`| system | ${m.os}, Linux ${m.kernel} |`)
  line(`| load average at start | ${m.loadAverage} |`)
  line(`| Node.js | ${m.node} |`)
  line(`| Consul | ${report.consulVersion ?? 'not started'} (dev agent, ACLs on) |`)
  line(`| load generator | ${report.loadTool} (one thread; on the same cores as everything else) |`)
  line()
  line('| contender | version | configuration |')
  line('| --- | --- | --- |')
  for (const c of report.contenders) {
    line(`| ${c.name} | ${c.skipped ? `skipped: ${c.skipped}` : c.version} | ${c.what} |`)
  }
  line()

  renderGoals(report, line)
  renderThroughput(report, line)
  renderEngines(report, line)
  renderConvergence(report, line)
  renderScale(report, line)
  renderRouting(report, line)
  renderOptimisations(report, line)
  renderProfile(report, line)

  line('## Notes')
  line()
  for (const note of [...STANDING_NOTES, ...report.notes]) line(`- ${note}`)
  line()
  return out.join('\n')
}

const STANDING_NOTES = [
  'Everything runs on one machine over loopback: the load generator, the backend (one Node.js ' +
    'process) and the proxy share the cores, so a proxy that uses less CPU leaves more to the others ' +
    'and gets more req/s. CPU µs per request is the figure least disturbed by that.',
  'Peers run with one worker (NGINX worker_processes 1, HAProxy nbthread 1, Fabio GOMAXPROCS 1) to ' +
    'compare with one Switchyard process; `--peer-workers N` changes that.',
  'Throughput runs are closed-loop: latency at saturation mostly mirrors throughput (connections / ' +
    'req/s). The paced workload shows latency below saturation.',
  'Convergence times start just before the write is sent to Consul, so they include Consul’s own ' +
    'write (and, for agent checks and registrations, its anti-entropy sync).',
]

type Line = (text?: string) => void

interface Goal {
  readonly goal: string
  readonly measured: string
  readonly met: boolean | null
}

function renderGoals(report: BenchReport, line: Line): void {
  const goals: Goal[] = []
  for (const workload of ['small', '64k']) {
    const sy = summary(report, workload, 'switchyard')
    const ng = summary(report, workload, 'nginx')
    const fb = summary(report, workload, 'fabio')
    const vsNginx = sy && ng ? ratio(sy.rps, ng.rps) : null
    const vsFabio = sy && fb ? ratio(sy.rps, fb.rps) : null
    goals.push({
      goal: `req/s ≥ 0.75× NGINX (${workload})`,
      measured: times(vsNginx),
      met: vsNginx === null ? null : vsNginx >= 0.75,
    })
    goals.push({
      goal: `req/s ≥ 1.2× Fabio (${workload})`,
      measured: times(vsFabio),
      met: vsFabio === null ? null : vsFabio >= 1.2,
    })
  }
  for (const workload of ['small paced', 'small', '64k']) {
    const sy = summary(report, workload, 'switchyard')
    const ng = summary(report, workload, 'nginx')
    const r = sy && ng ? ratio(sy.p99Ms, ng.p99Ms) : null
    goals.push({
      goal: `p99 ≤ 1.5× NGINX (${workload})`,
      measured: times(r),
      met: r === null ? null : r <= 1.5,
    })
  }
  for (const scenario of ['a-target', 'b-critical', 'c-register'] as const) {
    const r = report.convergence?.find((c) => c.contender === 'switchyard' && c.scenario === scenario)
    const worst = r ? Math.max(r.primary.p99, r.secondary?.p99 ?? 0) : null
    goals.push({
      goal: `convergence p99 < 100 ms (${scenario})`,
      measured:
        worst === null ? 'n/a' : `${ms(worst, 1)} ms${r && r.timeouts > 0 ? `, ${r.timeouts} timeouts` : ''}`,
      met: worst === null || !r ? null : worst < 100 && r.timeouts === 0,
    })
  }
  const largest = report.scale?.[report.scale.length - 1]
  // The build measured on the most instances, recorded from Consul or generated.
  const builds = [...(report.scale ?? []).map((s) => s.routing), ...(report.routing ? [report.routing] : [])]
  const build = builds.sort((a, b) => b.instances - a.instances)[0]
  if (build) {
    goals.push({
      goal: `table build < 50 ms (${build.instances.toLocaleString('en-US')} instances)`,
      measured: `${ms(build.buildMs.median, 1)} ms`,
      met: build.buildMs.median < 50,
    })
  }
  const sy = largest?.proxies.find((p) => p.contender === 'switchyard')
  if (largest && sy) {
    const mb = sy.rssBytes / 1e6
    goals.push({
      goal: `RSS < 150 MB (${largest.instances.toLocaleString('en-US')} instances)`,
      measured: `${mb.toFixed(0)} MB`,
      met: mb < 150,
    })
    const counts = (report.scale ?? []).map((s) => ({
      services: s.services,
      n: s.proxies.find((p) => p.contender === 'switchyard')?.requestsPerChange ?? Number.NaN,
    }))
    const constant = counts.length > 1 && counts.every((c) => c.n === counts[0]?.n)
    goals.push({
      goal: 'Consul requests per health change constant in the number of services',
      measured: counts.map((c) => `${c.n} at ${c.services.toLocaleString('en-US')} services`).join(', '),
      met: counts.length > 1 ? constant : null,
    })
  }
  line('## Goals')
  line()
  line('Goals steer the work; they are not pass/fail tests.')
  line()
  line('| goal | measured | met |')
  line('| --- | --- | --- |')
  for (const g of goals)
    line(`| ${g.goal} | ${g.measured} | ${g.met === null ? 'not measured' : g.met ? 'yes' : '**no**'} |`)
  line()
}

function renderThroughput(report: BenchReport, line: Line): void {
  const t = report.throughput
  if (!t) return
  line('## Throughput and latency')
  line()
  line(
    `${report.options.rounds} rounds of ${report.options.seconds} s per contender and workload, interleaved, ` +
      `after a ${report.options.warmupSeconds} s warm-up; medians over the rounds. CPU: the contender's own ` +
      'processes (from /proc), seconds per round and µs per request.',
  )
  line()
  for (const w of report.workloads) {
    const rows = t.summaries.filter((s) => s.workload === w.name)
    if (rows.length === 0) continue
    line(`### ${w.name}: ${w.what}`)
    line()
    line('| contender | req/s | p50 ms | p99 ms | p99.9 ms | CPU s | CPU µs/req | errors |')
    line('| --- | --- | --- | --- | --- | --- | --- | --- |')
    for (const s of rows) {
      line(
        `| ${s.contender} | ${withRatios(report, s, (x) => x.rps, int)} | ` +
          `${withRatios(
            report,
            s,
            (x) => x.p50Ms,
            (n) => ms(n),
          )} | ` +
          `${withRatios(
            report,
            s,
            (x) => x.p99Ms,
            (n) => ms(n),
          )} | ` +
          `${withRatios(
            report,
            s,
            (x) => x.p999Ms,
            (n) => ms(n),
          )} | ` +
          `${withRatios(
            report,
            s,
            (x) => x.cpuSeconds,
            (n) => ms(n),
          )} | ` +
          `${withRatios(
            report,
            s,
            (x) => x.cpuUsPerRequest,
            (n) => ms(n, 1),
          )} | ${s.errors} |`,
      )
    }
    line()
  }
}

function renderEngines(report: BenchReport, line: Line): void {
  const t = report.throughput
  if (!t) return
  const rows: string[] = []
  for (const w of report.workloads) {
    const und = summary(report, w.name, 'undici engine')
    const hp = summary(report, w.name, 'http-proxy engine')
    const sy = summary(report, w.name, 'switchyard')
    if (!und || !hp) continue
    rows.push(
      `| ${w.name} | ${int(und.rps)} | ${int(hp.rps)} | ${times(ratio(und.rps, hp.rps))} | ` +
        `${times(ratio(und.cpuUsPerRequest, hp.cpuUsPerRequest))} | ${sy ? times(ratio(sy.rps, hp.rps)) : 'n/a'} | ` +
        `${sy ? times(ratio(sy.cpuUsPerRequest, hp.cpuUsPerRequest)) : 'n/a'} |`,
    )
  }
  if (rows.length === 0) return
  line('## Forwarding engine: undici vs http-proxy')
  line()
  line(
    'Two minimal forwarders to the same backend, no routing: one on Switchyard’s own forwarding code ' +
      '(undici dispatch handler, keep-alive pool, header rewriting), one on the `http-proxy` package ' +
      '(keep-alive agent, `xfwd`). The full Switchyard (lookup, pick, observer) is compared with http-proxy too.',
  )
  line()
  line(
    '| workload | undici req/s | http-proxy req/s | undici / http-proxy req/s | undici / http-proxy CPU per req | switchyard / http-proxy req/s | switchyard / http-proxy CPU per req |',
  )
  line('| --- | --- | --- | --- | --- | --- | --- |')
  for (const r of rows) line(r)
  line()
}

function convergenceRow(
  r: ScenarioResult,
  which: 'primary' | 'secondary',
  label: string,
  fabio?: ScenarioResult,
) {
  const d = which === 'primary' ? r.primary : r.secondary
  if (!d) return ''
  const vsFabio =
    fabio && which === 'primary' && r.contender !== 'fabio' ? times(ratio(d.p99, fabio.primary.p99)) : ''
  return (
    `| ${r.scenario} | ${label} | ${r.contender} | ${d.n}/${r.trials} | ${ms(d.p50, 1)} | ${ms(d.p99, 1)} | ` +
    `${ms(d.max, 1)} | ${r.timeouts} | ${vsFabio} |`
  )
}

function renderConvergence(report: BenchReport, line: Line): void {
  const list = report.convergence
  if (!list) return
  line('## Convergence')
  line()
  line(
    'From the write to Consul until traffic moved, in ms, seen by four keep-alive connections sending ' +
      'requests back to back through the proxy; backends in the benchmark process stamp arrivals on the ' +
      'same clock as the write.',
  )
  line()
  line('| scenario | measured | contender | trials | p50 ms | p99 ms | max ms | timeouts | p99 × Fabio |')
  line('| --- | --- | --- | --- | --- | --- | --- | --- | --- |')
  for (const r of list) {
    const fabio = list.find((f) => f.contender === 'fabio' && f.scenario === r.scenario)
    if (r.scenario === 'a-target') {
      line(convergenceRow(r, 'primary', 'first response from the new version', fabio))
      line(convergenceRow(r, 'secondary', 'last response from the old version', fabio))
    } else if (r.scenario === 'b-critical') {
      line(convergenceRow(r, 'primary', 'last request to the failed instance', fabio))
    } else {
      line(convergenceRow(r, 'primary', 'first request to the new instance', fabio))
    }
  }
  line()
  line('Fabio has no target state, so (a) is Switchyard only.')
  line()
}

function renderScale(report: BenchReport, line: Line): void {
  const list = report.scale
  if (!list || list.length === 0) return
  line('## Scale')
  line()
  line(
    'A fleet registered through the catalog API of a fresh dev agent; the proxies read Consul through a ' +
      'counting HTTP proxy on loopback. A health change is one instance’s check turning critical; its ' +
      'requests are those that reached Consul from the write until the proxy was quiet for 500 ms.',
  )
  line()
  line(
    '| fleet | contender | first table ms | Consul requests at start | RSS MB | heap MB | Consul requests per health change | by endpoint | to new table ms |',
  )
  line('| --- | --- | --- | --- | --- | --- | --- | --- | --- |')
  for (const s of list) {
    for (const p of s.proxies) {
      const first = p.changes[0]
      const endpoints = first
        ? Object.entries(first.byEndpoint)
            .map(([k, v]) => `${k}: ${v}`)
            .join(', ')
        : ''
      line(
        `| ${s.services.toLocaleString('en-US')} × ${s.perService} | ${p.contender} | ${int(p.firstTableMs)} | ` +
          `${int(p.startupRequests)} | ${(p.rssBytes / 1e6).toFixed(0)} | ` +
          `${p.heapUsedBytes === null ? 'n/a' : (p.heapUsedBytes / 1e6).toFixed(0)} | ${p.requestsPerChange} | ${endpoints} | ` +
          `${p.toTableMs === null ? 'n/a' : ms(p.toTableMs, 0)} |`,
      )
    }
  }
  line()
  line(
    'First table and to new table: from process start or from the write until Switchyard logged the swap ' +
      '(millisecond log timestamps); for Fabio, which logs nothing then, until its route list ' +
      '(`/api/routes?raw`, polled every 25 ms) showed the change.',
  )
  line()
  line(
    'Pure table build on the snapshot read from each fleet’s Consul (`readSnapshotOnce`, then `buildRouteTable`):',
  )
  line()
  routingTable(
    list.map((s) => s.routing),
    line,
  )
}

function routingTable(rows: readonly NonNullable<BenchReport['routing']>[], line: Line): void {
  line(
    '| snapshot | instances | routes | build ms (median / min) | rebuild after a health change ms | diff for the log ms | lookup ns | normalise + lookup + pick ns |',
  )
  line('| --- | --- | --- | --- | --- | --- | --- | --- |')
  for (const r of rows) {
    line(
      `| ${r.source} | ${int(r.instances)} | ${int(r.routes)} | ${ms(r.buildMs.median, 1)} / ${ms(r.buildMs.min, 1)} | ` +
        `${ms(r.rebuildMs, 1)} | ${ms(r.diffMs, 1)} | ${int(r.lookupNs)} | ${int(r.requestRoutingNs)} |`,
    )
  }
  line()
}

function renderRouting(report: BenchReport, line: Line): void {
  if (!report.routing) return
  line('## Routing table and lookup (no network)')
  line()
  routingTable([report.routing], line)
}

function renderOptimisations(report: BenchReport, line: Line): void {
  line('## Optimisations')
  line()
  if (report.optimisations.length === 0) {
    line('None landed yet.')
    line()
    return
  }
  line('Figures recorded before and after each change, same machine, same command.')
  line()
  line('| change | where | measured with | before | after | after / before |')
  line('| --- | --- | --- | --- | --- | --- |')
  for (const o of report.optimisations) {
    line(
      `| ${o.what} | \`${o.where}\` | ${o.measure} | ${o.before} ${o.unit} | ${o.after} ${o.unit} | ${times(ratio(o.after, o.before))} |`,
    )
  }
  line()
}

function renderProfile(report: BenchReport, line: Line): void {
  const p = report.profile
  if (!p) return
  line('## CPU profile of the proxy (small workload)')
  line()
  line(
    `\`node --cpu-prof\` while serving ${int(p.load.rps)} req/s for ${p.windowSeconds} s after a ${p.warmupSeconds} s warm-up; ` +
      `the last ${ms(p.totalMs / 1000, 1)} s of samples (the load, not start-up) are summarised. ` +
      `Profile: \`${p.file}\` (open it in Chrome DevTools or speedscope for the flame graph). ` +
      'Time inside a system call (a socket write) counts as that native function; epoll and socket reads show as idle.',
  )
  line()
  line('| area (self time) | share |')
  line('| --- | --- |')
  for (const a of p.areas.slice(0, 15)) line(`| ${a.name} | ${(a.share * 100).toFixed(1)} % |`)
  line()
  line('| function (self time) | share |')
  line('| --- | --- |')
  for (const f of p.functions.slice(0, 20)) line(`| \`${f.name}\` | ${(f.share * 100).toFixed(1)} % |`)
  line()
  line('| Switchyard function (inclusive) | share |')
  line('| --- | --- |')
  for (const f of p.inclusive.slice(0, 15)) line(`| \`${f.name}\` | ${(f.share * 100).toFixed(1)} % |`)
  line()
}
