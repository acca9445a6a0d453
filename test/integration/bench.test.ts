// Keeps the benchmark suite (bench/) from rotting: runs the quick run's
// machinery at a tiny scale (`--smoke`: one second per contender and workload,
// paced to 300 req/s so it does not load a machine running other tests; three
// convergence trials; a 5 x 2 fleet) with every peer that is installed, and
// checks the report is complete and its figures are positive. The TLS
// workloads (HTTPS with wrk, HTTP/2 with h2load) run when their tools are
// installed and are otherwise reported as skipped, with the reason. No timing
// is asserted: timings belong in the benchmark's own report, never in a
// pass/fail test.

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, expect, it } from 'vitest'
import { renderMarkdown } from '../../bench/report.js'
import { preset, runBench } from '../../bench/run.js'
import { describeWithConsul } from '../harness/context.js'

const WORKLOADS = ['small', '64k', 'post 16k', '1000 conns']
const TLS_WORKLOADS = ['https small', 'https handshakes', 'h2 small']
/** The contenders with a TLS listener. */
const TLS_CONTENDERS = ['switchyard', 'nginx', 'haproxy']
const PEERS = ['nginx', 'haproxy', 'fabio']
const ALWAYS = ['direct', 'switchyard', 'switchyard x2', 'node:http+undici', 'http-proxy']

describeWithConsul('benchmark suite, smoke run', () => {
  const artifacts = mkdtempSync(join(tmpdir(), 'switchyard-bench-test-'))
  afterAll(() => rmSync(artifacts, { recursive: true, force: true }))

  it('measures every workload through real processes and reports ratios to NGINX, goals and the machine', async () => {
    const said: string[] = []
    const options = {
      ...preset('smoke'),
      sections: [...preset('smoke').sections, 'profile' as const],
      artifacts,
    }
    const report = await runBench(options, (line) => said.push(line), 'npm run bench -- --smoke')

    // A peer that is not installed is skipped with the reason, said and reported.
    const ran = report.contenders.filter((c) => c.skipped === null).map((c) => c.name)
    for (const name of PEERS) {
      const c = report.contenders.find((x) => x.name === name)
      expect(c, name).toBeDefined()
      if (c?.skipped) {
        expect(c.skipped, name).toMatch(/\S/)
        expect(said).toContain(`skipping ${name}: ${c.skipped}`)
      }
    }
    for (const name of ALWAYS) expect(ran, name).toContain(name)

    // A TLS workload runs, or is skipped with the reason (its tool is not installed).
    const tlsRan = TLS_WORKLOADS.filter((w) => report.workloads.some((x) => x.name === w))
    for (const w of TLS_WORKLOADS) {
      const skipped = report.skippedWorkloads.find((s) => s.name === w)
      if (tlsRan.includes(w)) expect(skipped, w).toBeUndefined()
      else {
        expect(skipped?.reason, w).toMatch(/not installed|needs wrk/)
        expect(said).toContain(`skipping workload ${w}: ${skipped?.reason}`)
      }
    }
    const secure = ran.filter((c) => TLS_CONTENDERS.includes(c))

    // Every contender that ran served every workload it is meant for, without
    // errors, and every figure the report is built on is there and positive.
    const t = report.throughput
    expect(t).not.toBeNull()
    const summaries = t?.summaries ?? []
    expect(summaries.map((s) => `${s.workload} ${s.contender}`).sort()).toEqual(
      [
        ...WORKLOADS.flatMap((w) => ran.map((c) => `${w} ${c}`)),
        ...tlsRan.flatMap((w) => secure.map((c) => `${w} ${c}`)),
      ].sort(),
    )
    for (const sample of t?.samples ?? []) {
      const what = `${sample.workload} ${sample.contender}`
      expect(sample.load.requests, what).toBeGreaterThan(0)
      expect(sample.load.errors, what).toBe(0)
      expect(sample.load.p99Ms, what).toBeGreaterThan(0)
      // CPU and memory are read for a contender's own processes; the backend alone has none.
      if (sample.contender === 'direct') {
        expect(sample.proxyCpu, what).toBeNull()
        expect(sample.rssBytes, what).toBeNull()
      } else {
        // CPU time comes in 10 ms ticks: a second at 300 req/s may cost NGINX none.
        expect(sample.cpuUsPerRequest, what).toBeGreaterThanOrEqual(0)
        expect(sample.rssBytes, what).toBeGreaterThan(0)
      }
    }
    for (const i of t?.idle ?? []) expect(i.rssBytes, i.contender).toBeGreaterThan(0)
    expect(t?.idle.map((i) => i.contender)).toContain('switchyard')
    // HTTP/2 really was HTTP/2: h2load says what ALPN chose.
    for (const sample of (t?.samples ?? []).filter((s) => s.workload === 'h2 small')) {
      expect(sample.load.negotiated, sample.contender).toMatch(/^h2 TLSv1\.[23] /)
    }
    // The handshake probe saw each TLS contender's handshakes through the relay.
    if (tlsRan.includes('https handshakes')) {
      expect(report.tls?.probes.map((p) => p.contender).sort()).toEqual([...secure].sort())
      for (const p of report.tls?.probes ?? []) {
        expect(p.tally.handshakes, p.contender).toBeGreaterThan(0)
        expect(p.tally.unreadable, p.contender).toBe(0)
        expect(p.tally.resumed, p.contender).toBeLessThanOrEqual(p.tally.handshakes)
        // TLS 1.3 everywhere: NGINX is configured for it, the others default to it.
        expect(Object.keys(p.tally.negotiated).join(','), p.contender).toMatch(/^TLSv1\.3 /)
      }
    }
    // Per-round ratios to NGINX whenever NGINX ran.
    if (ran.includes('nginx')) {
      for (const w of [...WORKLOADS, ...tlsRan]) {
        const vs = summaries.find((s) => s.workload === w && s.contender === 'switchyard')?.vs.nginx
        expect(vs?.rps, w).toBeGreaterThan(0)
        expect(vs?.p99Ms, w).toBeGreaterThan(0)
        // No ratio rather than a division by zero when NGINX's CPU rounded to no tick.
        if (vs?.cpuUsPerRequest !== null) expect(vs?.cpuUsPerRequest, w).toBeGreaterThan(0)
      }
    }
    expect(report.backend).toMatch(/NGINX|Node\.js/)

    // Each convergence scenario converged in every trial.
    const convergence = (report.convergence ?? []).filter((c) => c.contender === 'switchyard')
    expect(convergence.map((c) => c.scenario)).toEqual(['a-target', 'b-critical', 'c-register'])
    for (const c of report.convergence ?? []) {
      expect(c.timeouts, `${c.scenario} ${c.contender}`).toBe(0)
      expect(c.primary.n, `${c.scenario} ${c.contender}`).toBe(options.trials)
    }

    // A health change cost Switchyard one health read of that service, nothing else.
    const scale = report.scale?.[0]
    expect(scale?.instances).toBe(10)
    const sy = scale?.proxies.find((p) => p.contender === 'switchyard')
    expect(sy?.changes.map((c) => c.byEndpoint)).toEqual([{ 'health/service/*': 1 }])
    expect(sy?.rssBytes).toBeGreaterThan(0)
    expect(scale?.routing.routes).toBe(5)

    expect(report.routing?.instances).toBe(40)
    expect(report.routing?.routes).toBe(20)
    expect(report.profile?.functions.length).toBeGreaterThan(0)

    const markdown = renderMarkdown(report)
    if (tlsRan.length > 0) {
      expect(markdown).toContain('## HTTPS and HTTP/2 against NGINX')
      for (const w of tlsRan) expect(markdown).toMatch(new RegExp(`^\\| ${w} \\| `, 'm'))
    }
    for (const heading of [
      '## Machine',
      '## Goals',
      '## Against NGINX',
      '## Throughput and latency',
      '## Memory at rest',
      '## Request path: Switchyard vs the old path vs http-proxy',
      '## Convergence',
      '## Scale',
    ]) {
      expect(markdown).toContain(heading)
    }
    for (const goal of [
      'small GET: CPU per request ≤ 1.5× NGINX',
      '64 KiB GET: req/s ≥ 1.0× NGINX',
      '64 KiB GET: req/s ≥ 1.2× Fabio',
      'POST 16 KiB: req/s ≥ 0.75× NGINX',
      'p99 at 1,000 connections ≤ 2× NGINX',
      'idle RSS ≤ 60 MB',
    ]) {
      expect(markdown).toContain(goal)
    }
    // Every figure has its ratio to NGINX beside it: a number when NGINX ran,
    // stated as missing (never invented) when it did not; in every workload's table.
    const detail = markdown.slice(
      markdown.indexOf('## Throughput and latency'),
      markdown.indexOf('## Memory at rest'),
    )
    const rows = detail.split('\n').filter((l) => l.startsWith('| switchyard | ') && /\| [\d,]+ \| /.test(l))
    expect(rows).toHaveLength(WORKLOADS.length + tlsRan.length)
    for (const row of rows) {
      expect(row).toMatch(
        ran.includes('nginx')
          ? /^\| switchyard \| [\d,]+ \| \d+\.\d\d× \|/
          : /^\| switchyard \| [\d,]+ \| n\/a \|/,
      )
    }
  }, 180_000)
})
