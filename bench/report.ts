// Renders a BenchReport as Markdown. Every throughput figure stands beside its
// ratio to NGINX from the same run (the median over the rounds of the
// per-round ratio, so a slow minute of the machine moves both sides); the
// headline table gives Switchyard / NGINX per workload with HAProxy and Fabio
// beside it; then the goals with where they stand, and the machine.

import type { ScenarioResult } from './convergence.js'
import type { BenchReport } from './run.js'
import { median, ratio } from './stats.js'
import { METRICS, type RoundRatios, roundRatio, type ThroughputSummary } from './throughput.js'

const int = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a')
const ms = (n: number | null | undefined, digits = 2) =>
  n === null || n === undefined || !Number.isFinite(n) ? 'n/a' : n.toFixed(digits)
const times = (r: number | null | undefined) =>
  r === null || r === undefined || !Number.isFinite(r) ? 'n/a' : `${r.toFixed(2)}×`
const bare = (r: number | null | undefined) =>
  r === null || r === undefined || !Number.isFinite(r) ? 'n/a' : r.toFixed(2)
const mb = (bytes: number | null | undefined) =>
  bytes === null || bytes === undefined ? 'n/a' : (bytes / 1e6).toFixed(0)

/** The contenders the goals and the headline table are about. */
const SWITCHYARD = 'switchyard'
const OLD_PATH = 'node:http+undici'

function summary(report: BenchReport, workload: string, contender: string): ThroughputSummary | undefined {
  return report.throughput?.summaries.find((s) => s.workload === workload && s.contender === contender)
}

function vs(report: BenchReport, workload: string, contender: string, ref: string): RoundRatios | null {
  if (contender === ref && summary(report, workload, contender)) {
    return {
      rounds: summary(report, workload, contender)?.rounds ?? 0,
      rps: 1,
      cpuUsPerRequest: 1,
      p50Ms: 1,
      p99Ms: 1,
    }
  }
  return summary(report, workload, contender)?.vs[ref] ?? null
}

/** Idle RSS of a contender and its ratio to NGINX's. */
function idle(report: BenchReport, contender: string): { bytes: number | null; vsNginx: number | null } {
  const list = report.throughput?.idle ?? []
  const bytes = list.find((i) => i.contender === contender)?.rssBytes ?? null
  const nginx = list.find((i) => i.contender === 'nginx')?.rssBytes ?? null
  return { bytes, vsNginx: ratio(bytes, nginx) }
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
  line(
    'Every throughput figure has its ratio to NGINX from the same run beside it: the median over the rounds ' +
      'of the ratio within each round. For req/s higher is better, for latency, CPU and memory lower is ' +
      'better. `n/a`: that peer did not run.',
  )
  line()

  line('## Machine')
  line()
  line('| | |')
  line('| --- | --- |')
  line(`| CPU | ${m.cores} × ${m.cpuModel} |`)
  line(`| memory | ${m.memoryGiB} GiB (${m.freeMemoryGiB} GiB free at start) |`)
  line(`| system | ${m.os}, Linux ${m.kernel} |`)
  line(`| load average at start | ${m.loadAverage} |`)
  const other = otherLoad(report)
  if (other !== null) {
    line(
      `| other CPU during the load windows | ${(other * 100).toFixed(0)} % of a core (median; anything but ` +
        'the contender, the backend and the load generator) |',
    )
  }
  line(`| Node.js | ${m.node} |`)
  line(`| Consul | ${report.consulVersion ?? 'not started'} (dev agent, ACLs on) |`)
  line(`| load generator | ${report.loadTool} (one thread; on the same cores as everything else) |`)
  if (report.backend) line(`| backend | ${report.backend} |`)
  line()
  line('| contender | version | configuration |')
  line('| --- | --- | --- |')
  for (const c of report.contenders) {
    line(`| ${c.name} | ${c.skipped ? `skipped: ${c.skipped}` : c.version} | ${c.what} |`)
  }
  line()

  renderGoals(report, line)
  renderHeadline(report, line)
  renderTls(report, line)
  renderThroughput(report, line)
  renderMemory(report, line)
  renderEngines(report, line)
  renderConvergence(report, line)
  renderScale(report, line)
  renderRouting(report, line)
  renderOptimisations(report, line)
  renderProfile(report, line)

  line('## Notes')
  line()
  for (const note of [...STANDING_NOTES, ...stalls(report), ...report.notes]) line(`- ${note}`)
  line()
  return out.join('\n')
}

/** A round in which a contender answered nothing is a fault to look at, not a slow figure. */
function stalls(report: BenchReport): string[] {
  const empty = (report.throughput?.samples ?? []).filter((s) => s.load.requests === 0)
  const names = [...new Set(empty.map((s) => `${s.contender} (${s.workload})`))]
  return names.length === 0
    ? []
    : [`**Answered nothing in at least one round** (stalled or not forwarding): ${names.join(', ')}.`]
}

/** Median share of a core used by other work during the load windows; null without throughput. */
function otherLoad(report: BenchReport): number | null {
  const samples = report.throughput?.samples ?? []
  if (samples.length === 0) return null
  return median(samples.map((s) => s.otherCpu / Math.max(s.load.seconds, 0.001)))
}

const STANDING_NOTES = [
  'Everything runs on one machine over loopback: the load generator (one thread), the backend ' +
    '(see Machine) and the proxy share the cores, so a proxy that uses less CPU leaves more to the ' +
    'others and gets more req/s. CPU µs per request (the contender’s whole process tree, user + system, ' +
    'from /proc/<pid>/stat before and after each load window) is the figure least disturbed by that.',
  'Peers run with one worker (NGINX worker_processes 1, HAProxy nbthread 1, Fabio GOMAXPROCS 1) to ' +
    'compare with one Switchyard process; `--peer-workers N` changes that.',
  'Throughput runs are closed-loop: each connection sends its next request when the answer to the ' +
    'previous one arrived, so latency at saturation mostly mirrors throughput (connections / req/s).',
  'RSS is the sum over the contender’s processes (shared pages count once per process): idle after ' +
    'start-up, before any load; under load the largest of a few samples per window, median over the rounds.',
  'Convergence times start just before the write is sent to Consul, so they include Consul’s own ' +
    'write (and, for agent checks and registrations, its anti-entropy sync). Its backends are Node.js ' +
    'servers in the benchmark process: they stamp each arrival on the clock of the write, which a ' +
    'separate backend cannot.',
]

type Line = (text?: string) => void

interface Goal {
  readonly goal: string
  readonly measured: string
  readonly met: boolean | null
}

function ratioGoal(goal: string, r: number | null, ok: (r: number) => boolean, detail = ''): Goal {
  return { goal, measured: r === null ? 'n/a' : `${times(r)}${detail}`, met: r === null ? null : ok(r) }
}

function renderGoals(report: BenchReport, line: Line): void {
  const goals: Goal[] = []
  const sv = (workload: string, ref: string) => vs(report, workload, SWITCHYARD, ref)
  const figure = (workload: string, contender: string, pick: (s: ThroughputSummary) => number | null) => {
    const s = summary(report, workload, contender)
    return s ? pick(s) : null
  }
  const cpu = (contender: string) =>
    ms(
      figure('small', contender, (s) => s.cpuUsPerRequest),
      1,
    )
  goals.push(
    ratioGoal(
      'small GET: CPU per request ≤ 1.5× NGINX',
      sv('small', 'nginx')?.cpuUsPerRequest ?? null,
      (r) => r <= 1.5,
      ` (${cpu(SWITCHYARD)} µs; NGINX ${cpu('nginx')} µs)`,
    ),
  )
  goals.push(ratioGoal('64 KiB GET: req/s ≥ 1.0× NGINX', sv('64k', 'nginx')?.rps ?? null, (r) => r >= 1.0))
  goals.push(ratioGoal('64 KiB GET: req/s ≥ 1.2× Fabio', sv('64k', 'fabio')?.rps ?? null, (r) => r >= 1.2))
  goals.push(
    ratioGoal('POST 16 KiB: req/s ≥ 0.75× NGINX', sv('post 16k', 'nginx')?.rps ?? null, (r) => r >= 0.75),
  )
  const p99 = (contender: string) => ms(figure('1000 conns', contender, (s) => s.p99Ms))
  goals.push(
    ratioGoal(
      'p99 at 1,000 connections ≤ 2× NGINX',
      sv('1000 conns', 'nginx')?.p99Ms ?? null,
      (r) => r <= 2,
      ` (${p99(SWITCHYARD)} ms; NGINX ${p99('nginx')} ms)`,
    ),
  )
  const rest = idle(report, SWITCHYARD)
  goals.push({
    goal: 'idle RSS ≤ 60 MB (`--workers 1`)',
    measured: rest.bytes === null ? 'n/a' : `${mb(rest.bytes)} MB (${times(rest.vsNginx)} NGINX)`,
    met: rest.bytes === null ? null : rest.bytes / 1e6 <= 60,
  })
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
    goals.push({
      goal: `RSS < 150 MB (${largest.instances.toLocaleString('en-US')} instances)`,
      measured: `${mb(sy.rssBytes)} MB`,
      met: sy.rssBytes / 1e6 < 150,
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
  line(
    'Goals steer the work; they are not pass/fail tests. Throughput goals are for `switchyard` (one process).',
  )
  line()
  line('| goal | measured | met |')
  line('| --- | --- | --- |')
  for (const g of goals)
    line(`| ${g.goal} | ${g.measured} | ${g.met === null ? 'not measured' : g.met ? 'yes' : '**no**'} |`)
  line()
}

/** `req/s · CPU per request · p99` ratios of one contender to a reference, for one workload. */
function triple(r: RoundRatios | null): string {
  return r === null ? 'n/a' : `${bare(r.rps)} · ${bare(r.cpuUsPerRequest)} · ${bare(r.p99Ms)}`
}

function renderHeadline(report: BenchReport, line: Line): void {
  if (!report.throughput) return
  line('## Against NGINX')
  line()
  line(
    'Each cell: req/s · CPU per request · p99, as ratios to NGINX in the same run (medians of per-round ' +
      'ratios). Above 1 is better for req/s, below 1 for CPU and p99.',
  )
  line()
  line(
    '| workload | NGINX | Switchyard / NGINX | Switchyard `--workers 2` / NGINX | HAProxy / NGINX | Fabio / NGINX | Switchyard / Fabio |',
  )
  line('| --- | --- | --- | --- | --- | --- | --- |')
  // TLS workloads have a table of their own (only Switchyard, NGINX and HAProxy run them).
  const plain = report.workloads.filter((w) => (w.protocol ?? 'http') === 'http')
  for (const w of plain) {
    const ng = summary(report, w.name, 'nginx')
    if (!summary(report, w.name, SWITCHYARD)) continue
    const base = ng
      ? `${int(ng.rps)} req/s · ${ms(ng.cpuUsPerRequest, 1)} µs · ${ms(ng.p99Ms)} ms`
      : 'did not run'
    line(
      `| ${w.name} | ${base} | ${triple(vs(report, w.name, SWITCHYARD, 'nginx'))} | ` +
        `${triple(vs(report, w.name, 'switchyard x2', 'nginx'))} | ${triple(vs(report, w.name, 'haproxy', 'nginx'))} | ` +
        `${triple(vs(report, w.name, 'fabio', 'nginx'))} | ${triple(vs(report, w.name, SWITCHYARD, 'fabio'))} |`,
    )
  }
  line()
  line(
    `Workloads: ${plain.map((w) => `**${w.name}**: ${w.what}`).join('; ')}. ` +
      'The NGINX column gives its own figures (median over the rounds) for scale.',
  )
  line()
}

const percent = (part: number, whole: number) =>
  whole === 0 ? 'n/a' : `${Math.round((part / whole) * 100)} %`

/** Share of the probe's handshakes a contender resumed; null without a probe. */
function resumedShare(report: BenchReport, contender: string): number | null {
  const t = report.tls?.probes.find((p) => p.contender === contender)?.tally
  return t && t.handshakes > 0 ? t.resumed / t.handshakes : null
}

function renderTls(report: BenchReport, line: Line): void {
  const tlsWorkloads = report.workloads.filter((w) => (w.protocol ?? 'http') !== 'http')
  const skipped = report.skippedWorkloads ?? []
  if (!report.throughput || (tlsWorkloads.length === 0 && skipped.length === 0)) return
  line('## HTTPS and HTTP/2 against NGINX')
  line()
  line(
    `Switchyard, NGINX and HAProxy terminate TLS with the same ${report.tls?.certificate ?? 'certificate'}, in front ` +
      'of the same plain-HTTP backend and route; each offers HTTP/2 and HTTP/1.1 on its TLS port by ALPN. ' +
      'Switchyard serves them from a second process with an https listener, so its plain figures and idle ' +
      'memory stay those of the plain configuration. Each cell: req/s · CPU per request · p99 as ratios to ' +
      'NGINX (medians of per-round ratios); above 1 is better for req/s, below 1 for CPU and p99.',
  )
  line()
  if (tlsWorkloads.length > 0) {
    line('| workload | NGINX | Switchyard / NGINX | HAProxy / NGINX |')
    line('| --- | --- | --- | --- |')
    for (const w of tlsWorkloads) {
      const ng = summary(report, w.name, 'nginx')
      const base = ng
        ? `${int(ng.rps)} req/s · ${ms(ng.cpuUsPerRequest, 1)} µs · ${ms(ng.p99Ms)} ms`
        : 'did not run'
      line(
        `| ${w.name} | ${base} | ${triple(vs(report, w.name, SWITCHYARD, 'nginx'))} | ` +
          `${triple(vs(report, w.name, 'haproxy', 'nginx'))} |`,
      )
    }
    line()
    line(`Workloads: ${tlsWorkloads.map((w) => `**${w.name}**: ${w.what}`).join('; ')}.`)
    line()
  }
  for (const s of skipped) line(`Not run: **${s.name}**, ${s.reason}.`)
  if (skipped.length > 0) line()

  const probes = report.tls?.probes ?? []
  if (probes.length > 0) {
    line(
      '**Full or resumed handshakes.** In `https handshakes` every request opens a connection, so every ' +
        'request costs a TLS handshake. wrk offers the session of its previous connection, so a handshake ' +
        'is resumed (TLS 1.3: a ticket, with a fresh X25519 key exchange but no certificate signature) ' +
        'when the server gave it a ticket it can use, else full. Which, per contender, comes from one ' +
        'second of the same client through a relay that reads every ServerHello (the probe, not the ' +
        'measured windows):',
    )
    line()
    const h2 = (contender: string) =>
      report.throughput?.samples.find((x) => x.contender === contender && x.load.negotiated)?.load.negotiated
    line('| contender | handshakes | resumed | full | negotiated (wrk) | negotiated (h2load) |')
    line('| --- | --- | --- | --- | --- | --- |')
    for (const p of probes) {
      const t = p.tally
      line(
        `| ${p.contender} | ${int(t.handshakes)} | ${int(t.resumed)} (${percent(t.resumed, t.handshakes)}) | ` +
          `${int(t.handshakes - t.resumed)} | ${Object.keys(t.negotiated).join(', ') || 'n/a'} | ${h2(p.contender) ?? 'n/a'} |`,
      )
    }
    line()
    const sy = resumedShare(report, SWITCHYARD)
    const ng = resumedShare(report, 'nginx')
    if (sy !== null && ng !== null && Math.abs(sy - ng) > 0.1) {
      line(
        `**Different handshakes:** wrk resumed ${Math.round(sy * 100)} % of its handshakes with Switchyard and ` +
          `${Math.round(ng * 100)} % with NGINX, so the \`https handshakes\` ratios compare different mixes of ` +
          'full and resumed handshakes, as a client that uses each ticket once would meet them.',
      )
      line()
    }
  }
  if (tlsWorkloads.some((w) => w.closeEachRequest)) {
    line(
      'Latency in `https handshakes` is wrk’s, from the request’s first byte, after the handshake: the ' +
        'handshake’s cost shows in req/s and CPU per request (a handshake and a request each), not in p50 or p99.',
    )
    line()
  }
}

function renderThroughput(report: BenchReport, line: Line): void {
  const t = report.throughput
  if (!t) return
  line('## Throughput and latency')
  line()
  line(
    `${report.options.rounds} round(s) of ${report.options.seconds} s per contender and workload, interleaved ` +
      `(each round starts with a different contender), after a ${report.options.warmupSeconds} s warm-up. ` +
      'Figures are medians over the rounds; `×` columns are medians of the per-round ratio to NGINX. ' +
      'CPU: the contender’s own processes, µs per request served.',
  )
  line()
  for (const w of report.workloads) {
    const rows = t.summaries.filter((s) => s.workload === w.name)
    if (rows.length === 0) continue
    line(`### ${w.name}: ${w.what}`)
    line()
    line(
      '| contender | req/s | × NGINX | p50 ms | × NGINX | p99 ms | × NGINX | max ms | CPU µs/req | × NGINX | RSS MB under load | × NGINX | errors |',
    )
    line('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |')
    const ngRss = summary(report, w.name, 'nginx')?.rssBytes ?? null
    for (const s of rows) {
      const r = vs(report, w.name, s.contender, 'nginx')
      line(
        `| ${s.contender} | ${int(s.rps)} | ${times(r?.rps)} | ${ms(s.p50Ms)} | ${times(r?.p50Ms)} | ` +
          `${ms(s.p99Ms)} | ${times(r?.p99Ms)} | ${ms(s.maxMs, 0)} | ${s.cpuUsPerRequest === null ? '—' : ms(s.cpuUsPerRequest, 1)} | ` +
          `${s.cpuUsPerRequest === null ? '—' : times(r?.cpuUsPerRequest)} | ${s.rssBytes === null ? '—' : mb(s.rssBytes)} | ` +
          `${s.rssBytes === null ? '—' : times(ratio(s.rssBytes, ngRss))} | ${s.errors} |`,
      )
    }
    line()
  }
}

function renderMemory(report: BenchReport, line: Line): void {
  const list = report.throughput?.idle ?? []
  if (list.length === 0) return
  line('## Memory at rest')
  line()
  line('Resident set after start-up and the first request, before any load.')
  line()
  line('| contender | idle RSS MB | × NGINX |')
  line('| --- | --- | --- |')
  for (const i of list)
    line(`| ${i.contender} | ${mb(i.rssBytes)} | ${times(idle(report, i.contender).vsNginx)} |`)
  line()
}

function renderEngines(report: BenchReport, line: Line): void {
  const t = report.throughput
  if (!t) return
  const names = [SWITCHYARD, OLD_PATH, 'http-proxy']
  const rows: string[] = []
  for (const w of report.workloads) {
    for (const name of names) {
      if (!summary(report, w.name, name) || !summary(report, w.name, OLD_PATH)) continue
      const old = (pick: (typeof METRICS)[keyof typeof METRICS]) =>
        name === OLD_PATH ? 1 : roundRatio(t.samples, w.name, name, OLD_PATH, pick)
      rows.push(
        `| ${w.name} | ${name} | ${triple(vs(report, w.name, name, 'nginx'))} | ` +
          `${bare(old(METRICS.rps))} · ${bare(old(METRICS.cpuUsPerRequest))} · ${bare(old(METRICS.p99Ms))} |`,
      )
    }
  }
  if (rows.length === 0) return
  line('## Request path: Switchyard vs the old path vs http-proxy')
  line()
  line(
    '`switchyard` is the whole proxy as built (routing, pick, metrics included). `node:http+undici` is the ' +
      'request path Switchyard had before its socket-level engine (a node:http server forwarding through an ' +
      'undici Pool, with its header rewriting; no routing), kept in `bench/forwarders/undici.ts` so the two ' +
      'stay comparable in one run. `http-proxy` is the same minimal forwarder on the `http-proxy` package. ' +
      'Cells: req/s · CPU per request · p99.',
  )
  line()
  line('| workload | contender | / NGINX | / node:http+undici |')
  line('| --- | --- | --- | --- |')
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
