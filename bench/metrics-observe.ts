// What request metrics cost per request, two ways:
//   prom-client  labelled Counter.inc + Histogram.observe on every request
//   children     the same with prom-client children bound once per label set
//   cells        Switchyard's RequestCounters: cells laid out per table swap,
//                read by prom-client only at scrape time (src/metrics)
// Part 1 times the observer call alone (ns per request, median of rounds).
// Part 2 runs real HTTP through the proxy on loopback and divides the proxy
// process's CPU time by the requests served, to show the share metrics take.
//
// Run: node --import tsx bench/metrics-observe.ts [--seconds 3] [--rounds 3] [--connections 16]
// Loopback only; bounded (a few seconds per variant); stops by itself.

import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import type { AddressInfo, Server } from 'node:net'
import { performance } from 'node:perf_hooks'
import { parseArgs, promisify } from 'node:util'
import { Counter, Histogram, Registry } from 'prom-client'
import { createLogger } from '../src/log.js'
import { RequestCounters } from '../src/metrics/request-counters.js'
import { createProxyListener } from '../src/proxy/listener.js'
import type { ProxyObserver } from '../src/proxy/observer.js'
import { Balancer } from '../src/proxy/pickers.js'
import { Sweeper } from '../src/proxy/sweeper.js'
import { Upstreams } from '../src/proxy/upstreams.js'
import { buildRouteTable } from '../src/routing/build.js'
import type { Backend, InstanceSnapshot, Route, RouteTable } from '../src/routing/types.js'
import { TableStore } from '../src/table/store.js'

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '3' },
    connections: { type: 'string', default: '16' },
    rounds: { type: 'string', default: '3' },
  },
})
const BUCKETS = [0.005, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5]
const CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx']

function table(upstreamPort: number): RouteTable {
  const services = new Map<string, InstanceSnapshot[]>()
  for (let s = 0; s < 20; s++) {
    const name = `svc-${s}`
    const instances: InstanceSnapshot[] = []
    for (let i = 0; i < 4; i++) {
      instances.push({
        id: `${name}-${i}`,
        service: name,
        node: 'node-1',
        address: '127.0.0.1',
        port: upstreamPort,
        tags: [`urlprefix-/${name}`],
        meta: { version: i % 2 === 0 ? '1.5.0' : '1.6.0' },
        checks: [
          { id: 'serfHealth', name: 'Serf', status: 'passing', serviceId: '' },
          { id: `service:${name}-${i}`, name: 'check', status: 'passing', serviceId: `${name}-${i}` },
        ],
      })
    }
    services.set(name, instances)
  }
  const config = {
    tagPrefix: 'urlprefix-',
    healthyStatuses: ['passing'],
    targetPrefix: 'x',
    fallthrough: false,
  }
  return buildRouteTable({ services }, [], config).table
}

function promClientObserver(): ProxyObserver {
  const registers = [new Registry()]
  const requests = new Counter({
    name: 'r_total',
    help: 'r',
    labelNames: ['service', 'route', 'version', 'status_class'],
    registers,
  })
  const duration = new Histogram({
    name: 'd',
    help: 'd',
    labelNames: ['service', 'route'],
    buckets: BUCKETS,
    registers,
  })
  return {
    request(route, target, status, seconds) {
      const service = target?.service ?? route?.services.join(',') ?? ''
      const routeId = route?.id ?? ''
      requests.inc({
        service,
        route: routeId,
        version: target?.version ?? '',
        status_class: CLASSES[((status / 100) | 0) - 1]!,
      })
      duration.observe({ service, route: routeId }, seconds)
    },
    upstreamError() {},
  }
}

function promChildrenObserver(t: RouteTable): ProxyObserver {
  const registers = [new Registry()]
  const requests = new Counter({
    name: 'r_total',
    help: 'r',
    labelNames: ['service', 'route', 'version', 'status_class'],
    registers,
  })
  const duration = new Histogram({
    name: 'd',
    help: 'd',
    labelNames: ['service', 'route'],
    buckets: BUCKETS,
    registers,
  })
  const bound = new WeakMap<Backend, { byClass: Counter.Internal[]; d: Histogram.Internal<string> }>()
  for (const route of t.routes) {
    const d = duration.labels(route.services.join(','), route.id)
    for (const target of [...route.backends, ...route.idle]) {
      bound.set(target, {
        byClass: CLASSES.map((c) => requests.labels(target.service, route.id, target.version, c)),
        d,
      })
    }
  }
  return {
    request(_route, target, status, seconds) {
      const b = target && bound.get(target)
      if (!b) return
      b.byClass[((status / 100) | 0) - 1]!.inc()
      b.d.observe(seconds)
    },
    upstreamError() {},
  }
}

function cellsObserver(t: RouteTable): ProxyObserver {
  const counters = new RequestCounters()
  counters.retain(t)
  return { request: (r, x, s, sec) => counters.request(r, x, s, sec), upstreamError() {} }
}

const NONE: ProxyObserver = { request() {}, upstreamError() {} }
const NO_REQUEST = null as unknown as Parameters<ProxyObserver['request']>[4]

// ---------------------------------------------------------------- part 1

function micro(t: RouteTable): Record<string, number> {
  const pairs = t.routes.flatMap((route) => route.backends.map((target): [Route, Backend] => [route, target]))
  const seconds = Array.from({ length: 1024 }, (_, i) => (i % 97) / 1000)
  const variants: Record<string, () => ProxyObserver> = {
    none: () => NONE,
    'prom-client': () => promClientObserver(),
    children: () => promChildrenObserver(t),
    cells: () => cellsObserver(t),
  }
  const n = 500_000
  const result: Record<string, number> = {}
  for (const [name, make] of Object.entries(variants)) {
    const observer = make()
    const rounds: number[] = []
    for (let round = 0; round < 7; round++) {
      const started = performance.now()
      for (let i = 0; i < n; i++) {
        const [route, target] = pairs[i % pairs.length]!
        observer.request(route, target, i % 50 === 0 ? 404 : 200, seconds[i & 1023]!, NO_REQUEST)
      }
      rounds.push(((performance.now() - started) * 1e6) / n)
    }
    rounds.sort((a, b) => a - b)
    result[name] = rounds[3]!
  }
  return result
}

// ---------------------------------------------------------------- part 2

async function startUpstreamProcess(): Promise<{ child: ChildProcess; port: number }> {
  const code = `require('http').createServer((q, s) => { q.resume(); q.on('end', () => s.end('ok')) })
    .listen(0, '127.0.0.1', function () { process.stdout.write(String(this.address().port) + '\\n') })`
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] })
  const [chunk] = await once(child.stdout!, 'data')
  return { child, port: Number(String(chunk).trim()) }
}

interface Measured {
  readonly cpuUsPerRequest: number
  readonly rps: number
  readonly errors: number
}

async function macro(
  t: RouteTable,
  seconds: number,
  connections: number,
  rounds: number,
): Promise<Record<string, Measured>> {
  const variants: Record<string, ProxyObserver> = {
    none: NONE,
    'prom-client': promClientObserver(),
    children: promChildrenObserver(t),
    cells: cellsObserver(t),
  }
  const servers: Record<
    string,
    {
      server: Server
      drain: (ms: number) => Promise<unknown>
      upstreams: Upstreams
      url: string
      runs: Measured[]
    }
  > = {}
  for (const [name, observer] of Object.entries(variants)) {
    const store = new TableStore()
    const sweeper = new Sweeper(1000)
    const upstreams = new Upstreams(
      {
        connectTimeoutMs: 5000,
        responseHeadersTimeoutMs: 10_000,
        idleTimeoutMs: 10_000,
        keepAliveTimeoutMs: 4000,
        maxConnections: 64,
        maxQueue: 1024,
        queueTimeoutMs: 10_000,
        maxHeaderSize: 65_536,
      },
      sweeper,
    )
    store.swap(t)
    const { server, drain } = createProxyListener({
      store,
      balancer: new Balancer('round-robin'),
      upstreams,
      log: createLogger('silent'),
      observer,
      retries: 0,
      sweeper,
      limits: {
        maxHeaderSize: 16_384,
        maxHeaderCount: 100,
        maxBodySize: 0,
        requestBuffer: 65_536,
        headersTimeoutMs: 10_000,
        bodyTimeoutMs: 60_000,
        keepAliveTimeoutMs: 5_000,
        sendTimeoutMs: 60_000,
      },
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    servers[name] = {
      server,
      drain,
      upstreams,
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/svc-3/x`,
      runs: [],
    }
  }
  const run = (url: string, d: number) =>
    promisify(execFile)(
      process.execPath,
      ['node_modules/autocannon/autocannon.js', '-c', String(connections), '-d', String(d), '--json', url],
      { maxBuffer: 1 << 24 },
    )
  for (const s of Object.values(servers)) await run(s.url, 1) // warm-up: JIT, keep-alive pools
  // Variants take turns, round after round, so drift in the machine's load hits all alike.
  for (let round = 0; round < rounds; round++) {
    for (const s of Object.values(servers)) {
      const cpu = process.cpuUsage()
      const { stdout } = await run(s.url, seconds)
      const used = process.cpuUsage(cpu)
      const report = JSON.parse(stdout) as {
        requests: { total: number; average: number }
        non2xx: number
        errors: number
      }
      s.runs.push({
        cpuUsPerRequest: (used.user + used.system) / report.requests.total,
        rps: report.requests.average,
        errors: report.non2xx + report.errors,
      })
    }
  }
  const result: Record<string, Measured> = {}
  for (const [name, s] of Object.entries(servers)) {
    const median = (f: (r: Measured) => number) =>
      s.runs.map(f).sort((a, b) => a - b)[Math.floor(s.runs.length / 2)]!
    result[name] = {
      cpuUsPerRequest: median((r) => r.cpuUsPerRequest),
      rps: Math.round(median((r) => r.rps)),
      errors: s.runs.reduce((n, r) => n + r.errors, 0),
    }
    await s.drain(0)
    s.upstreams.close()
  }
  return result
}

const t = table(1)
const ns = micro(t)
console.log('part 1: observer call alone, ns per request (median of 7 rounds of 500k)')
for (const [name, v] of Object.entries(ns)) console.log(`  ${name.padEnd(12)} ${v.toFixed(1).padStart(8)} ns`)

const upstream = await startUpstreamProcess()
try {
  const seconds = Number(args.seconds)
  const connections = Number(args.connections)
  const rounds = Number(args.rounds)
  const r = await macro(table(upstream.port), seconds, connections, rounds)
  console.log(
    `\npart 2: proxy process CPU per request, median of ${rounds} rounds of ${seconds}s, ${connections} connections, loopback`,
  )
  for (const [name, v] of Object.entries(r)) {
    console.log(
      `  ${name.padEnd(12)} ${v.cpuUsPerRequest.toFixed(1).padStart(6)} µs CPU/req  ${String(v.rps).padStart(6)} req/s  (${v.errors} errors)`,
    )
  }
  const per = r.none!.cpuUsPerRequest * 1000
  console.log('\nobserver cost (part 1, minus none) as a share of the per-request CPU (part 2, none):')
  for (const name of ['prom-client', 'children', 'cells'])
    console.log(`  ${name.padEnd(12)} ${(((ns[name]! - ns.none!) / per) * 100).toFixed(2)}%`)
} finally {
  upstream.child.kill()
}
