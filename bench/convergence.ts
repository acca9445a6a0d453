// Convergence: how long from a change written to Consul until traffic moves.
// A few keep-alive connections send requests back to back through the proxy
// (bounded: the loop runs only while a scenario runs); backends in this
// process stamp every arrival on the same clock as the write, so
//   (a) KV target change -> first response from the new version, last from the old
//   (b) check turns critical -> last request that reached that instance
//   (c) new instance registered -> first request that reached it
// are read directly. t0 is taken just before the write is sent, so each time
// includes Consul's own write and (for agent checks) anti-entropy.

import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { performance } from 'node:perf_hooks'
import { Pool } from 'undici'
import type { ConsulApi } from '../src/demo/consul-api.js'
import { type Distribution, distribution, sleep } from './stats.js'

export interface ConvergenceOptions {
  readonly trials: number
  /** No request may reach the old instance for this long before a trial counts as settled. */
  readonly settleMs: number
  readonly trialTimeoutMs: number
  readonly connections: number
}

export interface ScenarioResult {
  readonly scenario: 'a-target' | 'b-critical' | 'c-register'
  readonly contender: string
  readonly what: string
  readonly trials: number
  /** Trials that did not converge within the timeout. */
  readonly timeouts: number
  /** ms, per trial. (a): first response from the new version. (b): last request to the failed instance. (c): first request to the new one. */
  readonly primary: Distribution
  /** (a) only: last response from the old version. */
  readonly secondary: Distribution | null
  readonly requests: number
  readonly errors: number
}

/** A backend in this process that remembers when requests arrived. */
export class StampingBackend {
  readonly name: string
  private server: Server | null = null
  port = 0
  last = Number.NEGATIVE_INFINITY
  firstSinceMark = Number.NaN
  count = 0

  constructor(name: string) {
    this.name = name
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      const now = performance.now()
      this.last = now
      if (Number.isNaN(this.firstSinceMark)) this.firstSinceMark = now
      this.count++
      req.resume()
      res.writeHead(200, { 'content-type': 'text/plain', 'x-upstream': this.name, 'content-length': 2 })
      res.end('ok')
    })
    this.server.keepAliveTimeout = 65_000
    this.server.listen(0, '127.0.0.1')
    await once(this.server, 'listening')
    this.port = (this.server.address() as AddressInfo).port
    return this
  }

  mark(): void {
    this.firstSinceMark = Number.NaN
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections()
    await new Promise((resolve) => this.server?.close(resolve))
  }
}

/** Requests back to back on `connections` keep-alive connections until stopped. */
export class RequestLoop {
  requests = 0
  errors = 0
  private stopped = false
  private readonly pool: Pool
  private readonly loops: Promise<void>[] = []
  private listener: (upstream: string, at: number) => void = () => {}

  constructor(origin: string, path: string, connections: number) {
    this.pool = new Pool(origin, { connections, pipelining: 1 })
    for (let i = 0; i < connections; i++) this.loops.push(this.run(path))
  }

  onResponse(listener: (upstream: string, at: number) => void): void {
    this.listener = listener
  }

  private async run(path: string): Promise<void> {
    while (!this.stopped) {
      try {
        const res = await this.pool.request({ method: 'GET', path })
        await res.body.dump()
        const at = performance.now()
        this.requests++
        if (res.statusCode !== 200) this.errors++
        this.listener(String(res.headers['x-upstream'] ?? ''), at)
      } catch {
        this.errors++
        await sleep(5)
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true
    await Promise.all(this.loops)
    await this.pool.close()
  }
}

async function until(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs
  while (performance.now() < deadline) {
    if (check()) return true
    await sleep(2)
  }
  return check()
}

export interface ScenarioEnv {
  readonly api: ConsulApi
  readonly contender: string
  readonly proxyUrl: string
  readonly options: ConvergenceOptions
  readonly say: (line: string) => void
  /** Service names get this prefix, so contenders never share instances. */
  readonly prefix: string
}

/** (a) Target state in KV flips between two versions; Switchyard only (Fabio has no target state). */
export async function targetScenario(env: ScenarioEnv, targetPrefix: string): Promise<ScenarioResult> {
  const { api, options } = env
  const service = `${env.prefix}conv-a`
  const blue = await new StampingBackend('v1').start()
  const green = await new StampingBackend('v2').start()
  const key = `${targetPrefix}/${service}`
  await api.kvPut(key, JSON.stringify({ version: '1' }))
  for (const [b, version] of [
    [blue, '1'],
    [green, '2'],
  ] as const) {
    await api.register({
      id: `${service}-${version}`,
      name: service,
      port: b.port,
      tags: [`urlprefix-/${service}`],
      meta: { version },
    })
  }
  const loop = new RequestLoop(env.proxyUrl, `/${service}/x`, options.connections)
  const firstNew: number[] = []
  const lastOld: number[] = []
  let timeouts = 0
  try {
    if (!(await until(() => blue.count > 0 && green.count === 0, 10_000))) {
      throw new Error(`(a) ${env.contender}: traffic did not settle on version 1 first`)
    }
    for (let trial = 0; trial < options.trials; trial++) {
      const next = trial % 2 === 0 ? '2' : '1'
      const newName = `v${next}`
      let t0 = Number.POSITIVE_INFINITY
      let first = Number.NaN
      let last = Number.NEGATIVE_INFINITY
      loop.onResponse((upstream, at) => {
        if (at < t0) return
        if (upstream === newName && Number.isNaN(first)) first = at
        else if (upstream !== newName) last = at
      })
      t0 = performance.now()
      await api.kvPut(key, JSON.stringify({ version: next }))
      const settled = await until(() => {
        const now = performance.now()
        return !Number.isNaN(first) && now - Math.max(first, last) > options.settleMs
      }, options.trialTimeoutMs)
      if (!settled) {
        timeouts++
        continue
      }
      firstNew.push(first - t0)
      lastOld.push(Math.max(0, last - t0))
    }
  } finally {
    await loop.stop()
    await Promise.all([blue.stop(), green.stop()])
  }
  return {
    scenario: 'a-target',
    contender: env.contender,
    what: 'KV target flips between versions: first response from the new version / last from the old',
    trials: options.trials,
    timeouts,
    primary: distribution(firstNew),
    secondary: distribution(lastOld),
    requests: loop.requests,
    errors: loop.errors,
  }
}

/** (b) One of three instances turns critical: the last request that still reaches it. */
export async function criticalScenario(env: ScenarioEnv): Promise<ScenarioResult> {
  const { api, options } = env
  const service = `${env.prefix}conv-b`
  const backends = await Promise.all([1, 2, 3].map((n) => new StampingBackend(`b${n}`).start()))
  for (const [n, b] of backends.entries()) {
    await api.register({
      id: `${service}-${n}`,
      name: service,
      port: b.port,
      tags: [`urlprefix-/${service}`],
    })
  }
  const victim = backends[0] as StampingBackend
  const victimId = `${service}-0`
  const loop = new RequestLoop(env.proxyUrl, `/${service}/x`, options.connections)
  const lastTo: number[] = []
  let timeouts = 0
  try {
    if (!(await until(() => backends.every((b) => b.count > 0), 10_000))) {
      throw new Error(`(b) ${env.contender}: not every instance got traffic at the start`)
    }
    for (let trial = 0; trial < options.trials; trial++) {
      const t0 = performance.now()
      await api.setCheck(victimId, 'critical')
      const settled = await until(
        () => performance.now() - Math.max(victim.last, t0) > options.settleMs,
        options.trialTimeoutMs,
      )
      if (settled) lastTo.push(Math.max(0, victim.last - t0))
      else timeouts++
      const back = performance.now()
      await api.setCheck(victimId, 'passing')
      if (!(await until(() => victim.last > back, options.trialTimeoutMs))) {
        throw new Error(`(b) ${env.contender}: the instance got no traffic after passing again`)
      }
    }
  } finally {
    await loop.stop()
    for (const n of [0, 1, 2]) await api.deregister(`${service}-${n}`).catch(() => {})
    await Promise.all(backends.map((b) => b.stop()))
  }
  return {
    scenario: 'b-critical',
    contender: env.contender,
    what: 'a check turns critical: last request to that instance',
    trials: options.trials,
    timeouts,
    primary: distribution(lastTo),
    secondary: null,
    requests: loop.requests,
    errors: loop.errors,
  }
}

/** (c) A new instance is registered (passing): the first request that reaches it. */
export async function registerScenario(env: ScenarioEnv): Promise<ScenarioResult> {
  const { api, options } = env
  const service = `${env.prefix}conv-c`
  const base = await new StampingBackend('c0').start()
  const fresh = await new StampingBackend('c1').start()
  await api.register({ id: `${service}-0`, name: service, port: base.port, tags: [`urlprefix-/${service}`] })
  const loop = new RequestLoop(env.proxyUrl, `/${service}/x`, options.connections)
  const firstTo: number[] = []
  let timeouts = 0
  try {
    if (!(await until(() => base.count > 0, 10_000))) {
      throw new Error(`(c) ${env.contender}: the first instance got no traffic`)
    }
    for (let trial = 0; trial < options.trials; trial++) {
      fresh.mark()
      const t0 = performance.now()
      await api.register({
        id: `${service}-1`,
        name: service,
        port: fresh.port,
        tags: [`urlprefix-/${service}`],
      })
      if (await until(() => !Number.isNaN(fresh.firstSinceMark), options.trialTimeoutMs)) {
        firstTo.push(fresh.firstSinceMark - t0)
      } else {
        timeouts++
      }
      await api.deregister(`${service}-1`)
      if (!(await until(() => performance.now() - fresh.last > options.settleMs, options.trialTimeoutMs))) {
        throw new Error(`(c) ${env.contender}: the deregistered instance kept getting traffic`)
      }
    }
  } finally {
    await loop.stop()
    for (const n of [0, 1]) await api.deregister(`${service}-${n}`).catch(() => {})
    await Promise.all([base.stop(), fresh.stop()])
  }
  return {
    scenario: 'c-register',
    contender: env.contender,
    what: 'a new instance is registered: first request to it',
    trials: options.trials,
    timeouts,
    primary: distribution(firstTo),
    secondary: null,
    requests: loop.requests,
    errors: loop.errors,
  }
}
