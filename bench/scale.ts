// Scale: a fleet of `services` x `perService` instances registered in a fresh
// Consul dev agent through the catalog API. Switchyard (and Fabio, when
// present) read Consul through a counting proxy. Measured: time to the first
// table, memory, then for a few single-instance health flips the Consul
// requests each one caused and the time until Switchyard serves the new table.

import { join } from 'node:path'
import { ConsulClient } from '../src/consul/client.js'
import { readSnapshotOnce } from '../src/consul/snapshot.js'
import { type BenchConsul, startBenchConsul } from './consul.js'
import { startFabioProcess, startSwitchyardProcess } from './contenders.js'
import { byEndpoint, CountingProxy } from './counting-proxy.js'
import { catalogRegistration, type FleetInstance, fleet, registerFleet } from './fleet.js'
import { treeRssBytes, waitFor } from './procs.js'
import { type RoutingResult, routingBench } from './routing.js'
import { median, sleep } from './stats.js'

export interface ScaleOptions {
  readonly services: number
  readonly perService: number
  /** Health flips to measure. */
  readonly changes: number
  readonly fabio: boolean
  /** The Switchyard build under test (null: this checkout's dist/). */
  readonly dist: string | null
  /** Another compiled tree to measure the same way, as `switchyard (compared build)`. */
  readonly compareDist: string | null
  readonly tmp: string
  readonly buildRuns: number
  readonly lookups: number
}

export interface HealthChange {
  readonly instance: string
  /** Consul requests that arrived from the write until the proxy was quiet again. */
  readonly requests: number
  readonly byEndpoint: Record<string, number>
  /** ms from the write to the new table being served (Switchyard's swap log line). */
  readonly toTableMs: number | null
}

export interface ProxyScale {
  readonly contender: string
  /** ms from process start to the first table serving (Fabio: to its routes covering every service). */
  readonly firstTableMs: number
  /** Consul requests made until the first table. */
  readonly startupRequests: number
  readonly rssBytes: number
  /** V8 heap in use, from the admin /metrics (nodejs_heap_size_used_bytes) when it has it. */
  readonly heapUsedBytes: number | null
  readonly changes: readonly HealthChange[]
  /** Medians over the changes. */
  readonly requestsPerChange: number
  readonly toTableMs: number | null
}

export interface ScaleResult {
  readonly services: number
  readonly perService: number
  readonly instances: number
  readonly registerSeconds: number
  readonly proxies: readonly ProxyScale[]
  /** buildRouteTable on the snapshot read from this Consul. */
  readonly routing: RoutingResult
}

interface LogLine {
  readonly msg?: string
  readonly time?: string
  readonly buildMs?: number
}

async function setHealth(consul: BenchConsul, instance: FleetInstance, status: 'passing' | 'critical') {
  const res = await consul.api.call('PUT', '/v1/catalog/register', catalogRegistration(instance, status))
  if (!res.ok) throw new Error(`catalog register ${instance.id}: ${res.status} ${await res.text()}`)
}

/**
 * Waits until no request has reached Consul for `quietMs`, counted from the
 * call at the earliest (a watch re-arms a few ms after the swap it caused),
 * bounded by `timeoutMs`; returns the last request's time.
 */
async function quiet(counter: CountingProxy, quietMs: number, timeoutMs: number): Promise<number> {
  const from = Date.now()
  await waitFor(
    'Consul requests to stop',
    () => Date.now() - Math.max(counter.lastAt, from) >= quietMs,
    timeoutMs,
    25,
  )
  return counter.lastAt
}

async function scaleSwitchyard(
  consul: BenchConsul,
  counter: CountingProxy,
  consulUrl: string,
  instances: readonly FleetInstance[],
  options: ScaleOptions,
  say: (line: string) => void,
  contender = 'switchyard',
  dist?: string,
): Promise<ProxyScale> {
  const swaps: { at: number; msg: string }[] = []
  const started = Date.now()
  const sy = await startSwitchyardProcess({
    name: 'switchyard-scale',
    dir: join(options.tmp, 'switchyard-scale'),
    consulAddress: consulUrl,
    token: consul.info.proxyToken,
    dist,
    onLine: (line) => {
      if (!line.startsWith('{')) return
      const entry = JSON.parse(line) as LogLine
      if (entry.msg === 'first routing table' || entry.msg === 'routing table changed') {
        swaps.push({ at: Date.parse(entry.time ?? ''), msg: entry.msg })
      }
    },
  })
  try {
    await waitFor('the first table', () => swaps.length > 0, 120_000, 10)
    const firstTableMs = (swaps[0]?.at ?? 0) - started
    const startupRequests = counter.since(started).length
    await quiet(counter, 1_000, 30_000)
    await sleep(1_000)
    const rssBytes = treeRssBytes(sy.child.pid)
    const heapUsedBytes = await heapUsed(sy.adminUrl)
    say(
      `scale ${options.services}x${options.perService}: ${contender} first table after ${firstTableMs} ms, ` +
        `${startupRequests} Consul requests, RSS ${(rssBytes / 2 ** 20).toFixed(0)} MiB`,
    )

    const changes: HealthChange[] = []
    for (let k = 0; k < options.changes; k++) {
      const instance = instances[((k * 7919) % options.services) * options.perService] as FleetInstance
      const swapsBefore = swaps.length
      const t0 = Date.now()
      await setHealth(consul, instance, 'critical')
      await waitFor('the table after a health change', () => swaps.length > swapsBefore, 30_000, 2)
      const swappedAt = swaps[swapsBefore]?.at ?? Number.NaN
      await quiet(counter, 500, 30_000)
      const noted = counter.since(t0)
      changes.push({
        instance: instance.id,
        requests: noted.length,
        byEndpoint: byEndpoint(noted),
        toTableMs: swappedAt - t0,
      })
      const restoreFrom = swaps.length
      await setHealth(consul, instance, 'passing')
      await waitFor('the table after restoring health', () => swaps.length > restoreFrom, 30_000, 2)
      await quiet(counter, 500, 30_000)
    }
    return {
      contender,
      firstTableMs,
      startupRequests,
      rssBytes,
      heapUsedBytes,
      changes,
      requestsPerChange: median(changes.map((c) => c.requests)),
      toTableMs: median(changes.map((c) => c.toTableMs ?? Number.NaN)),
    }
  } finally {
    await sy.child.stop()
  }
}

/** Switchyard's V8 heap in use as its /metrics reports it; null when it does not. */
async function heapUsed(adminUrl: string): Promise<number | null> {
  try {
    const text = await (await fetch(`${adminUrl}/metrics`, { signal: AbortSignal.timeout(5_000) })).text()
    const match = /^nodejs_heap_size_used_bytes(?:\{[^}]*\})? (\S+)/m.exec(text)
    return match ? Number(match[1]) : null
  } catch {
    return null
  }
}

/** Targets in Fabio's routing table (its `/api/routes?raw` lists one `route add` line per target). */
async function fabioTargets(uiUrl: string): Promise<number> {
  const res = await fetch(`${uiUrl}/api/routes?raw`, { signal: AbortSignal.timeout(5_000) })
  const text = await res.text()
  let n = 0
  for (let i = text.indexOf('route add'); i !== -1; i = text.indexOf('route add', i + 9)) n++
  return n
}

async function scaleFabio(
  consul: BenchConsul,
  counter: CountingProxy,
  consulUrl: string,
  instances: readonly FleetInstance[],
  options: ScaleOptions,
  say: (line: string) => void,
): Promise<ProxyScale> {
  const started = Date.now()
  const f = await startFabioProcess({ consulAddress: consulUrl, token: consul.fabioToken, gomaxprocs: 1 })
  // Fabio says nothing when its table changes: its route list is polled (every 25 ms).
  const targetsAre = (n: number, what: string, timeoutMs: number) =>
    waitFor(what, async () => (await fabioTargets(f.uiUrl)) === n, timeoutMs, 25)
  try {
    await targetsAre(instances.length, 'fabio to route every instance', 120_000)
    const firstTableMs = Date.now() - started
    const startupRequests = counter.since(started).length
    await quiet(counter, 1_000, 60_000)
    const rssBytes = treeRssBytes(f.child.pid)
    say(
      `scale ${options.services}x${options.perService}: fabio first table after ${firstTableMs} ms, ` +
        `${startupRequests} Consul requests, RSS ${(rssBytes / 2 ** 20).toFixed(0)} MiB`,
    )
    const changes: HealthChange[] = []
    for (let k = 0; k < options.changes; k++) {
      const instance = instances[((k * 7919) % options.services) * options.perService] as FleetInstance
      const t0 = Date.now()
      await setHealth(consul, instance, 'critical')
      await targetsAre(instances.length - 1, 'fabio to drop the failing instance', 60_000)
      const toTableMs = Date.now() - t0
      await quiet(counter, 500, 60_000)
      const noted = counter.since(t0)
      changes.push({
        instance: instance.id,
        requests: noted.length,
        byEndpoint: byEndpoint(noted),
        toTableMs,
      })
      await setHealth(consul, instance, 'passing')
      await targetsAre(instances.length, 'fabio to route the instance again', 60_000)
      await quiet(counter, 500, 60_000)
    }
    return {
      contender: 'fabio',
      firstTableMs,
      startupRequests,
      rssBytes,
      heapUsedBytes: null,
      changes,
      requestsPerChange: median(changes.map((c) => c.requests)),
      toTableMs: median(changes.map((c) => c.toTableMs ?? Number.NaN)),
    }
  } finally {
    await f.child.stop()
  }
}

export async function runScale(options: ScaleOptions, say: (line: string) => void): Promise<ScaleResult> {
  const consul = await startBenchConsul()
  const counter = new CountingProxy(consul.info.address)
  try {
    const instances = fleet(options.services, options.perService)
    const registerSeconds = await registerFleet(consul, instances)
    say(`scale: registered ${instances.length} instances in ${registerSeconds.toFixed(1)} s`)
    const consulUrl = await counter.start()

    const client = new ConsulClient({
      address: consul.info.address,
      token: consul.info.proxyToken,
      datacenter: '',
      tls: null,
    })
    let routing: RoutingResult
    try {
      const { catalog, targets } = await readSnapshotOnce(client, {
        tagPrefix: 'urlprefix-',
        targetPrefix: 'switchyard/targets',
        stale: false,
        timeoutMs: 60_000,
      })
      routing = await routingBench(`snapshot read from Consul`, catalog, targets, {
        buildRuns: options.buildRuns,
        lookups: options.lookups,
      })
    } finally {
      await client.close()
    }

    const proxies: ProxyScale[] = [
      await scaleSwitchyard(
        consul,
        counter,
        consulUrl,
        instances,
        options,
        say,
        'switchyard',
        options.dist ?? undefined,
      ),
    ]
    if (options.compareDist) {
      proxies.push(
        await scaleSwitchyard(
          consul,
          counter,
          consulUrl,
          instances,
          options,
          say,
          'switchyard (compared build)',
          options.compareDist,
        ),
      )
    }
    if (options.fabio) proxies.push(await scaleFabio(consul, counter, consulUrl, instances, options, say))
    return {
      services: options.services,
      perService: options.perService,
      instances: instances.length,
      registerSeconds,
      proxies,
      routing,
    }
  } finally {
    await counter.stop()
    await consul.stop()
  }
}
