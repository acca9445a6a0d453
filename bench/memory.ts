// `npm run bench:memory [-- --out bench/results/memory-<label>.json]`: what
// Switchyard costs in memory on this runtime, and what a table change costs
// its workers. Against one Consul dev agent:
//   idle       one route, `--workers 1`: RSS and V8 heap once the first table
//              is served and Consul is quiet;
//   workers    the same with `--workers 2`: RSS of the whole process tree;
//   fleet      1,000 services x 10 instances (the scale section's fleet),
//              `--workers 1`, the same measurements, then again after
//              SCRAPED_MS of /metrics scrapes every SCRAPE_INTERVAL_MS, as
//              Prometheus would read it (a scrape at 1,000 services is 3.7 MB
//              of text, and what it leaves behind decides whether V8 ever
//              sees the process as idle and gives memory back);
//   handoff    at 1,000 x 10, in this process: the bytes a worker receives for
//              one instance's health change and the time to decode and apply
//              them, whole table (structured clone, as before) vs delta.
// Each process is measured 15 s after its table was served (SETTLE_MS), three
// samples 1 s apart (median). Node flags of the measured processes: the
// image's (SHIPPED_NODE_FLAGS) unless SWITCHYARD_NODE_ARGS says otherwise;
// another compiled tree: SWITCHYARD_DIST.

import { readFileSync, writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { deserialize, serialize } from 'node:v8'
import { buildRouteTable } from '../src/routing/build.js'
import type { InstanceSnapshot } from '../src/routing/types.js'
import { applyTableDelta, encodeTableDelta } from '../src/table/delta.js'
import { type BenchConsul, startBenchConsul } from './consul.js'
import { SHIPPED_NODE_FLAGS, startSwitchyardProcess } from './contenders.js'
import { type FleetInstance, fleet, fleetCatalog, registerFleet } from './fleet.js'
import { processTree, treeRssBytes, waitFor } from './procs.js'
import { median, sleep } from './stats.js'

const MB = 2 ** 20
/** The flags of the measured processes: SWITCHYARD_NODE_ARGS when set (even empty), else the shipped ones. */
const NODE_ARGS: readonly string[] =
  process.env.SWITCHYARD_NODE_ARGS === undefined
    ? SHIPPED_NODE_FLAGS
    : process.env.SWITCHYARD_NODE_ARGS.split(' ').filter((a) => a !== '')
const TMP = new URL('./results/tmp/memory/', import.meta.url).pathname

const SCRAPE_INTERVAL_MS = 15_000
const SCRAPED_MS = Number(process.env.SCRAPED_MS ?? 180_000)

interface Sampled {
  readonly rssMiB: number
  /** Proportional set size: pages shared between the processes (the node binary's code) counted once. */
  readonly pssMiB: number
  readonly heapUsedMiB: number | null
  /** What V8 holds for its heap (used or not), and memory outside it (Buffers, ArrayBuffers). */
  readonly heapTotalMiB: number | null
  readonly externalMiB: number | null
}

interface ProcessMemory extends Sampled {
  readonly case: string
  /** The same after SCRAPED_MS of scrapes every SCRAPE_INTERVAL_MS (fleet only). */
  readonly scraped?: Sampled
}

interface Handoff {
  readonly instances: number
  readonly wholeTableBytes: number
  readonly deltaBytes: number
  /** Decode (structured clone) and swap-in time per worker, medians over runs, ms. */
  readonly wholeTableApplyMs: number
  readonly deltaApplyMs: number
}

function metricValue(text: string, name: string): number | null {
  const match = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)`, 'm').exec(text)
  return match ? Number(match[1]) : null
}

/** RSS and PSS of the process tree (median of three, 1 s apart), then V8's figures from one scrape. */
async function sample(pid: number, adminUrl: string): Promise<Sampled> {
  const rss: number[] = []
  const pss: number[] = []
  for (let i = 0; i < 3; i++) {
    rss.push(treeRssBytes(pid))
    pss.push(treePssBytes(pid))
    await sleep(1_000)
  }
  const text = await (await fetch(`${adminUrl}/metrics`)).text()
  const mib = (metric: string) => {
    const bytes = metricValue(text, metric)
    return bytes === null ? null : Number((bytes / MB).toFixed(1))
  }
  return {
    rssMiB: Number((median(rss) / MB).toFixed(1)),
    pssMiB: Number((median(pss) / MB).toFixed(1)),
    heapUsedMiB: mib('nodejs_heap_size_used_bytes'),
    heapTotalMiB: mib('nodejs_heap_size_total_bytes'),
    externalMiB: mib('nodejs_external_memory_bytes'),
  }
}

async function measureProcess(
  consul: BenchConsul,
  label: string,
  routes: number,
  args: readonly string[],
  scrapedMs = 0,
): Promise<ProcessMemory> {
  const sy = await startSwitchyardProcess({
    name: `memory-${label}`,
    dir: `${TMP}${label}`,
    consulAddress: consul.info.address,
    token: consul.info.proxyToken,
    args,
    nodeArgs: NODE_ARGS,
    dist: process.env.SWITCHYARD_DIST,
  })
  try {
    await waitFor(
      `${routes} routes`,
      async () => {
        const res = await fetch(`${sy.adminUrl}/api/routes`)
        return res.ok && ((await res.json()) as unknown[]).length >= routes
      },
      120_000,
      200,
    )
    // Settled: V8's memory reducer gives back pages some seconds after start-up's burst.
    await sleep(Number(process.env.SETTLE_MS ?? 15_000))
    const settled = await sample(sy.child.pid, sy.adminUrl)
    if (scrapedMs === 0) return { case: label, ...settled }
    for (const end = Date.now() + scrapedMs; Date.now() < end; ) {
      await (await fetch(`${sy.adminUrl}/metrics`)).arrayBuffer()
      await sleep(SCRAPE_INTERVAL_MS)
    }
    return { case: label, ...settled, scraped: await sample(sy.child.pid, sy.adminUrl) }
  } finally {
    await sy.child.stop()
  }
}

function described(m: Sampled): string {
  return `RSS ${m.rssMiB} MiB, PSS ${m.pssMiB} MiB, heap ${m.heapUsedMiB} MiB used of ${m.heapTotalMiB}, external ${m.externalMiB} MiB`
}

function treePssBytes(root: number): number {
  let kib = 0
  for (const pid of processTree(root)) {
    try {
      kib += Number(/^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0)
    } catch {
      // exited meanwhile
    }
  }
  return kib * 1024
}

function handoff(services: number, perService: number): Handoff {
  const instances = fleet(services, perService)
  const catalog = fleetCatalog(instances)
  const before = buildRouteTable(catalog, [], {
    tagPrefix: 'urlprefix-',
    healthyStatuses: ['passing'],
    targetPrefix: 'switchyard/targets',
    fallthrough: false,
  }).table
  const victim = instances[Math.floor(services / 2) * perService] as FleetInstance
  const list = catalog.services.get(victim.service) as InstanceSnapshot[]
  const flipped = new Map(catalog.services).set(
    victim.service,
    list.map((i) =>
      i.id === victim.id ? { ...i, checks: i.checks.map((c) => ({ ...c, status: 'critical' })) } : i,
    ),
  )
  const config = {
    tagPrefix: 'urlprefix-',
    healthyStatuses: ['passing'],
    targetPrefix: 'switchyard/targets',
    fallthrough: false,
  }
  const after = buildRouteTable({ services: flipped }, [], config, before).table
  const whole = serialize(after)
  const delta = serialize(encodeTableDelta(before, after))
  const time = (work: () => void) => {
    const runs: number[] = []
    for (let i = 0; i < 15; i++) {
      const t = performance.now()
      work()
      runs.push(performance.now() - t)
    }
    return Number(median(runs).toFixed(3))
  }
  const workerTable = deserialize(serialize(before))
  return {
    instances: instances.length,
    wholeTableBytes: whole.byteLength,
    deltaBytes: delta.byteLength,
    wholeTableApplyMs: time(() => deserialize(whole)),
    deltaApplyMs: time(() => applyTableDelta(workerTable, deserialize(delta))),
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { out: { type: 'string' } } })
  const results: ProcessMemory[] = []
  const say = (line: string) => process.stdout.write(`${line}\n`)
  say(
    `memory: node ${process.version}, Switchyard from ${process.env.SWITCHYARD_DIST ?? 'dist'} with node flags [${NODE_ARGS.join(' ')}]`,
  )
  const consul = await startBenchConsul()
  try {
    await registerFleet(consul, fleet(1, 1))
    for (const [label, args] of [
      ['idle, 1 route', ['--workers', '1']],
      ['idle, 1 route, --workers 2 (tree)', ['--workers', '2']],
    ] as const) {
      const m = await measureProcess(consul, label.replace(/\W+/g, '-'), 1, args)
      results.push({ ...m, case: label })
      say(`memory: ${label}: ${described(m)}`)
    }
    await registerFleet(consul, fleet(1_000, 10))
    const m = await measureProcess(consul, 'fleet', 1_000, ['--workers', '1'], SCRAPED_MS)
    results.push({ ...m, case: '1,000 services x 10 instances' })
    say(`memory: 1,000 x 10: ${described(m)}`)
    if (m.scraped)
      say(
        `memory: 1,000 x 10 after ${SCRAPED_MS / 1000} s of scrapes every ${SCRAPE_INTERVAL_MS / 1000} s: ${described(m.scraped)}`,
      )
  } finally {
    await consul.stop()
  }
  const h = handoff(1_000, 10)
  say(
    `memory: handoff of one health change at 1,000 x 10: whole table ${(h.wholeTableBytes / 1024).toFixed(0)} KiB, ` +
      `${h.wholeTableApplyMs} ms to decode per worker; delta ${(h.deltaBytes / 1024).toFixed(1)} KiB, ${h.deltaApplyMs} ms to decode and apply`,
  )
  const report = {
    node: process.version,
    dist: process.env.SWITCHYARD_DIST ?? 'dist',
    nodeArgs: NODE_ARGS,
    results,
    handoff: h,
  }
  if (values.out) writeFileSync(values.out, `${JSON.stringify(report, null, 2)}\n`)
}

await main()
