// The benchmark as a function: runs the chosen sections and returns one
// report object (written as Markdown and JSON by main.ts). Presets: `full` (the
// committed report, under 10 minutes), `quick` (a sanity run of about two
// minutes) and `smoke` (seconds, for the test that keeps the suite working).

import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { BACKEND_PATHS, POST_BODY_BYTES, startBenchBackend } from './backends.js'
import { type BenchConsul, consulBinary, startBenchConsul } from './consul.js'
import {
  contenders as allContenders,
  type BenchContext,
  type Contender,
  type Role,
  type Running,
  startFabioProcess,
  startSwitchyardProcess,
} from './contenders.js'
import { criticalScenario, registerScenario, type ScenarioResult, targetScenario } from './convergence.js'
import { fleet, fleetCatalog } from './fleet.js'
import { h2loadVersion, type LoadTool, runLoad, wrkVersion } from './load.js'
import { describeMachine, type Machine } from './machine.js'
import { OPTIMISATIONS, type Optimisation } from './optimisations.js'
import { waitForHttp } from './procs.js'
import { type ProfileResult, profileSwitchyard } from './profile.js'
import { BENCH_BUILD_CONFIG, type RoutingResult, routingBench } from './routing.js'
import { runScale, type ScaleResult } from './scale.js'
import { runThroughput, type ThroughputResult, type Workload } from './throughput.js'
import {
  type BenchCertificate,
  type HandshakeTally,
  makeBenchCertificate,
  opensslVersion,
  startHandshakeRelay,
} from './tls.js'

export const SECTIONS = ['throughput', 'convergence', 'scale', 'routing', 'profile'] as const
export type Section = (typeof SECTIONS)[number]
export type Mode = 'full' | 'quick' | 'smoke'

export interface BenchOptions {
  readonly mode: Mode
  readonly sections: readonly Section[]
  /** Start NGINX, HAProxy and Fabio when installed (false: baselines, Switchyard and engines only). */
  readonly peers: boolean
  /** Only these contenders (by name); empty for all. */
  readonly only: readonly string[]
  /** Only these throughput workloads (by name); empty for all. */
  readonly onlyWorkloads: readonly string[]
  readonly tool: LoadTool | 'auto'
  readonly seconds: number
  readonly warmupSeconds: number
  readonly rounds: number
  readonly connections: number
  /** Connections of the many-connections workload (1,000 but in the smoke run). */
  readonly manyConnections: number
  /**
   * Pace every workload to this many requests per second (null: as fast as
   * possible). The smoke run uses it: it checks that everything works without
   * loading a machine that runs other tests at the same time.
   */
  readonly rateCap: number | null
  readonly trials: number
  readonly scaleSizes: readonly (readonly [number, number])[]
  readonly scaleChanges: number
  readonly routingSize: readonly [number, number]
  readonly buildRuns: number
  readonly lookups: number
  readonly profileSeconds: number
  readonly peerWorkers: number
  /** The Switchyard build under test (a dist/ folder); null: this checkout's dist/. */
  readonly dist: string | null
  /** Another compiled tree (a dist/ folder) to run as a second Switchyard, for before/after figures. */
  readonly compareDist: string | null
  /** Where files worth keeping after the run go (the CPU profile). */
  readonly artifacts: string
}

export function preset(mode: Mode): BenchOptions {
  const common = {
    mode,
    peers: true,
    only: [],
    onlyWorkloads: [],
    tool: 'auto' as const,
    connections: 32,
    manyConnections: 1_000,
    rateCap: null,
    peerWorkers: 1,
    dist: null,
    compareDist: null,
    artifacts: join(new URL('results/tmp', import.meta.url).pathname),
  }
  switch (mode) {
    case 'full':
      // About 11 minutes on 2 cores: throughput is 8 contenders x 4 plain
      // workloads and 3 TLS contenders x 3 TLS workloads, each 3 rounds of 3 s
      // after a 1 s warm-up; the rest of the sections ~2.5 min.
      return {
        ...common,
        sections: ['throughput', 'convergence', 'scale', 'routing'],
        seconds: 3,
        warmupSeconds: 1,
        rounds: 3,
        trials: 50,
        scaleSizes: [
          [100, 10],
          [1_000, 10],
        ],
        scaleChanges: 6,
        routingSize: [1_000, 10],
        buildRuns: 20,
        lookups: 2_000_000,
        profileSeconds: 10,
      }
    case 'quick':
      // About a minute: everything runs once, briefly. A check that the
      // benchmark works and a first look, not figures to quote.
      return {
        ...common,
        sections: ['throughput', 'convergence', 'scale', 'routing'],
        seconds: 1,
        warmupSeconds: 0,
        rounds: 1,
        trials: 5,
        scaleSizes: [[50, 10]],
        scaleChanges: 1,
        routingSize: [1_000, 10],
        buildRuns: 3,
        lookups: 100_000,
        profileSeconds: 5,
      }
    case 'smoke':
      // The test suite's run (test/integration/bench.test.ts): the quick
      // run's machinery at a tiny scale, paced so it does not load a machine
      // that runs other tests; peers run when installed, never built.
      return {
        ...common,
        sections: ['throughput', 'convergence', 'scale', 'routing'],
        seconds: 1,
        warmupSeconds: 0,
        rounds: 1,
        connections: 8,
        manyConnections: 50,
        rateCap: 300,
        trials: 3,
        scaleSizes: [[5, 2]],
        scaleChanges: 1,
        routingSize: [20, 2],
        buildRuns: 2,
        lookups: 10_000,
        profileSeconds: 1,
      }
  }
}

export interface ContenderInfo {
  readonly name: string
  readonly role: Role
  readonly what: string
  readonly version: string | null
  /** Why it did not run, when it did not. */
  readonly skipped: string | null
}

/** What the TLS workloads ran with, and the handshakes wrk made against each contender. */
export interface TlsInfo {
  readonly certificate: string
  readonly openssl: string | null
  readonly h2load: string | null
  /**
   * A short run of the handshake workload's client (wrk, one request per
   * connection, 4 connections) through a relay that reads each ServerHello:
   * how many of its handshakes each contender resumed, and what was negotiated.
   */
  readonly probes: readonly { readonly contender: string; readonly tally: HandshakeTally }[]
}

export interface BenchReport {
  readonly startedAt: string
  /** What every throughput contender forwarded to; null when the throughput section did not run. */
  readonly backend: string | null
  readonly durationSeconds: number
  readonly command: string
  readonly options: BenchOptions
  readonly machine: Machine
  readonly loadTool: string
  readonly consulVersion: string | null
  readonly contenders: readonly ContenderInfo[]
  readonly workloads: readonly Workload[]
  /** Workloads that did not run, with the reason (a tool that is not installed). */
  readonly skippedWorkloads: readonly { readonly name: string; readonly reason: string }[]
  readonly tls: TlsInfo | null
  readonly throughput: ThroughputResult | null
  readonly convergence: readonly ScenarioResult[] | null
  readonly scale: readonly ScaleResult[] | null
  readonly routing: RoutingResult | null
  readonly profile: ProfileResult | null
  readonly optimisations: readonly Optimisation[]
  readonly notes: readonly string[]
}

export function workloadsFor(options: BenchOptions): Workload[] {
  const all: Role[] = ['baseline', 'switchyard', 'peer', 'engine']
  const tls: Role[] = ['switchyard', 'peer']
  const cap = options.rateCap
  const pace = cap === null ? 'as fast as possible' : `paced to about ${cap} req/s (--smoke)`
  const list: Workload[] = [
    {
      name: 'small',
      what: `GET, 50-byte response body, ${options.connections} connections, ${pace}`,
      path: BACKEND_PATHS.small,
      connections: options.connections,
      rate: cap ?? undefined,
      roles: all,
    },
    {
      name: '64k',
      what: `GET, 64 KiB response body, ${options.connections} connections, ${pace}`,
      path: BACKEND_PATHS.large,
      connections: options.connections,
      rate: cap ?? undefined,
      roles: all,
    },
    {
      name: 'post 16k',
      what: `POST, 16 KiB request body, 3-byte response body, ${options.connections} connections, ${pace}`,
      path: BACKEND_PATHS.post,
      connections: options.connections,
      rate: cap ?? undefined,
      method: 'POST',
      bodyBytes: POST_BODY_BYTES,
      roles: all,
    },
    {
      name: '1000 conns',
      what: `GET, 50-byte response body, ${options.manyConnections.toLocaleString('en-US')} connections, ${pace}`,
      path: BACKEND_PATHS.small,
      connections: options.manyConnections,
      rate: cap ?? undefined,
      roles: all,
    },
    // TLS: the contenders with a TLS listener (Switchyard, NGINX, HAProxy),
    // the run's certificate, the same plain-HTTP backend behind them.
    {
      name: 'https small',
      what: `HTTPS (HTTP/1.1 over TLS, wrk), GET, 50-byte response body, ${options.connections} keep-alive connections, ${pace}`,
      path: BACKEND_PATHS.small,
      connections: options.connections,
      rate: cap ?? undefined,
      protocol: 'https',
      roles: tls,
    },
    {
      name: 'https handshakes',
      what:
        `HTTPS (wrk), GET, 50-byte response body, \`Connection: close\`: a new connection and TLS handshake for every request, ` +
        `${options.connections} connections, ${pace}; full or resumed as the TLS section says`,
      path: BACKEND_PATHS.small,
      connections: options.connections,
      rate: cap ?? undefined,
      protocol: 'https',
      closeEachRequest: true,
      roles: tls,
    },
    {
      name: 'h2 small',
      what: `HTTP/2 over TLS (h2load, ALPN h2), GET, 50-byte response body, ${options.connections} connections × ${H2_STREAMS} streams, ${pace}`,
      path: BACKEND_PATHS.small,
      connections: options.connections,
      rate: cap ?? undefined,
      protocol: 'h2',
      streams: H2_STREAMS,
      roles: tls,
    },
  ]
  return list.filter((w) => options.onlyWorkloads.length === 0 || options.onlyWorkloads.includes(w.name))
}

/** Requests in flight per HTTP/2 connection (h2load -m): streams are what HTTP/2 adds. */
export const H2_STREAMS = 10

/**
 * Why a workload cannot run on this machine, or null: TLS needs openssl for
 * the certificate and wrk (HTTPS) or h2load (HTTP/2) for the load.
 */
function workloadBlocker(
  w: Workload,
  tools: { wrk: boolean; h2load: boolean; openssl: boolean },
): string | null {
  const protocol = w.protocol ?? 'http'
  if (protocol === 'http') return null
  if (!tools.openssl) return 'openssl is not installed (it makes the run’s certificate)'
  if (protocol === 'https' && !tools.wrk) {
    return 'HTTPS load needs wrk (apt-get install wrk), not autocannon'
  }
  if (protocol === 'h2' && !tools.h2load) return 'h2load is not installed (apt-get install nghttp2-client)'
  return null
}

export async function runBench(
  options: BenchOptions,
  say: (line: string) => void,
  command = 'npm run bench',
): Promise<BenchReport> {
  const started = Date.now()
  const machine = describeMachine()
  const notes: string[] = []
  const wrk = await wrkVersion()
  const tool: LoadTool = options.tool === 'auto' ? (wrk ? 'wrk' : 'autocannon') : options.tool
  if (tool === 'wrk' && !wrk) throw new Error('--tool wrk: wrk is not installed (apt-get install wrk)')
  if (!wrk) notes.push('wrk is not installed: autocannon generated the load (latency in whole milliseconds).')
  say(
    `machine: ${machine.cores} cores, ${machine.cpuModel}, node ${machine.node}, load ${machine.loadAverage}`,
  )
  say(`load generator: ${tool === 'wrk' ? wrk : 'autocannon'}`)
  const [h2load, openssl] = await Promise.all([h2loadVersion(), opensslVersion()])
  const skippedWorkloads: { name: string; reason: string }[] = []
  const workloads: Workload[] = []
  for (const w of workloadsFor(options)) {
    const reason = workloadBlocker(w, {
      wrk: tool === 'wrk',
      h2load: h2load !== null,
      openssl: openssl !== null,
    })
    if (reason === null) workloads.push(w)
    else {
      skippedWorkloads.push({ name: w.name, reason })
      notes.push(`Workload ${w.name} did not run: ${reason}.`)
      say(`skipping workload ${w.name}: ${reason}`)
    }
  }
  const tlsWanted = workloads.some((w) => (w.protocol ?? 'http') !== 'http')

  const wants = (s: Section) => options.sections.includes(s)
  const needsConsul = wants('throughput') || wants('convergence') || wants('profile') || wants('scale')
  if (needsConsul) {
    try {
      await consulBinary()
    } catch (err) {
      throw new Error(
        `no Consul binary (scripts/consul): ${(err as { stderr?: string }).stderr?.trim() ?? String(err)}`,
      )
    }
  }

  // Which contenders run: probed once, absent ones skipped with the reason.
  const contenders: ContenderInfo[] = []
  const usable: Contender[] = []
  for (const c of allContenders(options.dist, options.compareDist)) {
    let skipped: string | null = null
    let version: string | null = null
    if (options.only.length > 0 && !options.only.includes(c.name)) skipped = 'not selected (--only)'
    else if (c.role === 'peer' && !options.peers) skipped = 'peers disabled (--no-peers)'
    else {
      const probe = await c.probe({ mayBuild: options.mode !== 'smoke' })
      if (probe.ok) version = probe.version
      else skipped = probe.reason
    }
    contenders.push({ name: c.name, role: c.role, what: c.what, version, skipped })
    if (skipped === null) usable.push(c)
    else say(`skipping ${c.name}: ${skipped}`)
  }
  const fabioUsable = usable.some((c) => c.name === 'fabio')

  const tmp = mkdtempSync(join(tmpdir(), 'switchyard-bench-'))
  let consul: BenchConsul | null = null
  let throughput: ThroughputResult | null = null
  let convergence: ScenarioResult[] | null = null
  let scale: ScaleResult[] | null = null
  let routing: RoutingResult | null = null
  let profile: ProfileResult | null = null
  let backendWhat: string | null = null
  let tls: TlsInfo | null = null
  try {
    if (wants('throughput') || wants('convergence') || wants('profile')) {
      consul = await startBenchConsul()
      say(`consul ${consul.version} dev agent at ${consul.info.address}`)
    }

    if (wants('throughput') || wants('profile')) {
      const c = consul as BenchConsul
      const backend = await startBenchBackend(tmp, say)
      backendWhat = backend.what
      if (backend.kind === 'node') {
        notes.push(
          'NGINX is not installed, so a Node.js server was the backend: it costs more CPU than the ' +
            'proxies and shares their cores, so every ratio here understates the differences between proxies.',
        )
      }
      try {
        await c.api.register({
          id: 'bench-backend',
          name: 'bench-backend',
          port: Number(new URL(backend.url).port),
          tags: ['urlprefix-/bench'],
        })
        let certificate: BenchCertificate | null = null
        if (wants('throughput') && tlsWanted) certificate = await makeBenchCertificate(tmp)
        const ctx: BenchContext = {
          tmp,
          consul: c,
          backendOrigin: backend.url,
          probePath: BACKEND_PATHS.small,
          peerWorkers: options.peerWorkers,
          tls: certificate,
          say,
        }
        if (wants('throughput')) {
          const probes: TlsInfo['probes'][number][] = []
          throughput = await throughputSection(
            usable,
            ctx,
            backend,
            options,
            workloads,
            tool,
            say,
            notes,
            probes,
          )
          if (certificate) tls = { certificate: certificate.what, openssl, h2load, probes }
        }
        if (wants('profile')) {
          say(`profile: switchyard with --cpu-prof, ${options.profileSeconds}s of the small workload`)
          mkdirSync(options.artifacts, { recursive: true })
          profile = await profileSwitchyard(c, tmp, options.artifacts, BACKEND_PATHS.small, tool, {
            seconds: options.profileSeconds,
            warmupSeconds: options.mode === 'smoke' ? 0 : 2,
            connections: options.connections,
            rate: options.rateCap ?? undefined,
            dist: options.dist ?? undefined,
          })
          say(`profile written to ${profile.file}`)
        }
      } finally {
        await backend.stop()
      }
    }

    if (wants('convergence')) {
      convergence = await convergenceSection(consul as BenchConsul, tmp, options, fabioUsable, say)
    }

    if (wants('scale')) {
      scale = []
      for (const [services, perService] of options.scaleSizes) {
        say(`scale: ${services} services x ${perService} instances`)
        scale.push(
          await runScale(
            {
              services,
              perService,
              changes: options.scaleChanges,
              fabio: fabioUsable,
              dist: options.dist,
              compareDist: options.compareDist,
              tmp,
              buildRuns: options.buildRuns,
              lookups: options.lookups,
            },
            say,
          ),
        )
      }
    }

    if (wants('routing')) {
      const [services, perService] = options.routingSize
      say(`routing: table build and lookup on a generated ${services} x ${perService} snapshot`)
      routing = await routingBench(
        `generated ${services} x ${perService} (bench/fleet.ts)`,
        fleetCatalog(fleet(services, perService, BENCH_BUILD_CONFIG.tagPrefix)),
        [],
        { buildRuns: options.buildRuns, lookups: options.lookups },
      )
    }
  } finally {
    await consul?.stop()
    rmSync(tmp, { recursive: true, force: true })
  }

  return {
    startedAt: new Date(started).toISOString(),
    backend: backendWhat,
    durationSeconds: Math.round((Date.now() - started) / 1000),
    command,
    options,
    machine,
    loadTool: tool === 'wrk' ? (wrk ?? 'wrk') : 'autocannon',
    consulVersion: consul?.version ?? null,
    contenders,
    workloads,
    skippedWorkloads,
    tls,
    throughput,
    convergence,
    scale,
    routing,
    profile,
    optimisations: OPTIMISATIONS,
    notes,
  }
}

async function throughputSection(
  usable: readonly Contender[],
  ctx: BenchContext,
  backend: Running,
  options: BenchOptions,
  workloads: readonly Workload[],
  tool: LoadTool,
  say: (line: string) => void,
  notes: string[],
  probes: TlsInfo['probes'][number][],
): Promise<ThroughputResult> {
  const running: (Running & { role: Role })[] = []
  try {
    for (const c of usable) {
      say(`starting ${c.name}`)
      try {
        running.push({ ...(await c.start(ctx)), role: c.role })
      } catch (err) {
        // One contender that will not start must not cost the whole run.
        const why = `${c.name} did not start, so it is missing from the throughput tables: ${(err as Error).message.split('\n')[0]}`
        say(why)
        notes.push(why)
      }
    }
    if (workloads.some((w) => w.closeEachRequest)) {
      for (const r of running) {
        if (!r.tlsUrl) continue
        const tally = await probeHandshakes(r.tlsUrl, ctx.tmp, options.rateCap)
        probes.push({ contender: r.name, tally })
        say(
          `handshakes of wrk against ${r.name}: ${tally.handshakes}, ${tally.resumed} resumed; ` +
            Object.keys(tally.negotiated).join(', '),
        )
      }
    }
    return await runThroughput(
      running,
      backend,
      {
        tool,
        seconds: options.seconds,
        warmupSeconds: options.warmupSeconds,
        rounds: options.rounds,
        workloads,
        scratch: ctx.tmp,
      },
      say,
    )
  } finally {
    for (const r of running) await r.stop()
  }
}

async function convergenceSection(
  consul: BenchConsul,
  tmp: string,
  options: BenchOptions,
  fabio: boolean,
  say: (line: string) => void,
): Promise<ScenarioResult[]> {
  const convergenceOptions = { trials: options.trials, settleMs: 100, trialTimeoutMs: 5_000, connections: 4 }
  const results: ScenarioResult[] = []
  const report = (r: ScenarioResult) => {
    results.push(r)
    say(
      `convergence ${r.scenario} ${r.contender}: p50 ${r.primary.p50.toFixed(1)} ms, ` +
        `p99 ${r.primary.p99.toFixed(1)} ms, max ${r.primary.max.toFixed(1)} ms` +
        (r.timeouts > 0 ? `, ${r.timeouts} timeouts` : ''),
    )
  }
  const sy = await startSwitchyardProcess({
    name: 'switchyard-convergence',
    dir: join(tmp, 'switchyard-convergence'),
    consulAddress: consul.info.address,
    token: consul.info.proxyToken,
    dist: options.dist ?? undefined,
  })
  try {
    await waitForHttp(`${sy.adminUrl}/ready`, 30_000, sy.child)
    const env = {
      api: consul.api,
      contender: 'switchyard',
      proxyUrl: sy.url,
      options: convergenceOptions,
      say,
      prefix: 'sy-',
    }
    report(await targetScenario(env, 'switchyard/targets'))
    report(await criticalScenario(env))
    report(await registerScenario(env))
  } finally {
    await sy.child.stop()
  }
  if (fabio) {
    const f = await startFabioProcess({
      consulAddress: consul.info.address,
      token: consul.fabioToken,
      gomaxprocs: options.peerWorkers,
    })
    try {
      const env = {
        api: consul.api,
        contender: 'fabio',
        proxyUrl: f.url,
        options: convergenceOptions,
        say,
        prefix: 'fb-',
      }
      report(await criticalScenario(env))
      report(await registerScenario(env))
    } finally {
      await f.child.stop()
    }
  }
  return results
}

/**
 * One second of the handshake workload's client (wrk, `Connection: close`,
 * 4 connections, paced like the run) through a relay that reads every
 * ServerHello: whether wrk's handshakes against this contender were full or
 * resumed. wrk keeps the session of its last connection for the next one,
 * so the answer depends on the server too (does it send a fresh ticket after
 * a resumed handshake?), hence one probe per contender.
 */
async function probeHandshakes(
  tlsUrl: string,
  scratch: string,
  rate: number | null,
): Promise<HandshakeTally> {
  const relay = await startHandshakeRelay(new URL(tlsUrl))
  try {
    await runLoad(
      'wrk',
      {
        url: `${relay.url}${BACKEND_PATHS.small}`,
        connections: 4,
        seconds: 1,
        rate: rate ?? undefined,
        closeEachRequest: true,
      },
      scratch,
    )
    return relay.tally()
  } finally {
    await relay.close()
  }
}
