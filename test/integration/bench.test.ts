// Keeps the benchmark suite (bench/) from rotting: runs every section in its
// smallest form (a second per workload paced to 300 req/s, so it does not load
// a machine running other tests; three convergence trials; a 5 x 2 fleet; no
// peers) and checks the report is complete. No timing is asserted: timings
// belong in the benchmark's own report, never in a pass/fail test.

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, expect, it } from 'vitest'
import { renderMarkdown } from '../../bench/report.js'
import { preset, runBench } from '../../bench/run.js'
import { describeWithConsul } from '../harness/context.js'

describeWithConsul('benchmark suite, smoke run', () => {
  const artifacts = mkdtempSync(join(tmpdir(), 'switchyard-bench-test-'))
  afterAll(() => rmSync(artifacts, { recursive: true, force: true }))

  it('measures every section through real processes and reports ratios, goals and the machine', async () => {
    const said: string[] = []
    const options = {
      ...preset('smoke'),
      sections: [...preset('smoke').sections, 'profile' as const],
      artifacts,
    }
    const report = await runBench(options, (line) => said.push(line), 'npm run bench -- --smoke')

    // Peers are skipped with the reason, not silently.
    for (const peer of ['nginx', 'haproxy', 'fabio']) {
      expect(report.contenders.find((c) => c.name === peer)?.skipped).toBe('peers disabled (--no-peers)')
    }
    expect(said).toContain('skipping nginx: peers disabled (--no-peers)')

    // Every contender that ran served every request of every workload it takes part in.
    const ran = (report.throughput?.summaries ?? []).map((s) => `${s.workload} ${s.contender}`)
    expect(ran.sort()).toEqual(
      [
        '64k direct',
        '64k http-proxy engine',
        '64k switchyard',
        '64k switchyard x2',
        '64k undici engine',
        'small direct',
        'small http-proxy engine',
        'small switchyard',
        'small switchyard x2',
        'small undici engine',
        'small paced direct',
        'small paced switchyard',
        'small paced switchyard x2',
      ].sort(),
    )
    for (const sample of report.throughput?.samples ?? []) {
      expect(sample.load.requests, `${sample.workload} ${sample.contender}`).toBeGreaterThan(0)
      expect(sample.load.errors, `${sample.workload} ${sample.contender}`).toBe(0)
      // CPU is read for a contender's own processes; the backend alone has none.
      if (sample.contender === 'direct') expect(sample.proxyCpu).toBeNull()
      else expect(sample.proxyCpu).toEqual(expect.any(Number))
    }

    // Each convergence scenario converged in every trial.
    expect(report.convergence?.map((c) => `${c.scenario} ${c.contender}`)).toEqual([
      'a-target switchyard',
      'b-critical switchyard',
      'c-register switchyard',
    ])
    for (const c of report.convergence ?? []) {
      expect(c.timeouts, c.scenario).toBe(0)
      expect(c.primary.n, c.scenario).toBe(options.trials)
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
    for (const heading of [
      '## Machine',
      '## Goals',
      '## Throughput and latency',
      '## Convergence',
      '## Scale',
    ]) {
      expect(markdown).toContain(heading)
    }
    expect(markdown).toContain('## Forwarding engine: undici vs http-proxy')
    // Without the peers, ratios to them are stated as missing rather than invented.
    expect(markdown).toMatch(/\| switchyard \| [\d,]+ \(n\/a \/ n\/a\) \|/)
  }, 60_000)
})
