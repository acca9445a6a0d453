// `npm run demo`: a cutover on a real Consul, from a fresh clone, in a minute.
//
// Starts a Consul dev agent (ACLs on), four instances of a small app — blue
// 1.0 and green 2.0, two each, with HTTP health checks and `urlprefix-/demo`
// tags — and `switchyard serve` with a read-only token. Then it moves traffic
// 100/0 → 90/10 → 0/100 with the operator command, showing live counts per
// version, fails one instance's health check to show it leave the pool, rolls
// back to blue with a metric-guarded `switchyard rollout`, and keeps going
// until Ctrl-C. Everything it started is stopped on exit.
//
// `--ci` runs the same steps with fixed request counts, checks the splits it
// printed, and exits 0 only if they are right.
//
// Development tooling: lives in dev/, runs from the TypeScript source through
// tsx (`npm run demo`), is never compiled into dist/ nor shipped. It drives the
// compiled `switchyard` command in dist/, as an operator would.

import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { setTimeout as delay } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { Agent, request } from 'undici'
import { ConsulAgent, freePort } from '../consul/agent.js'
import { ConsulApi } from '../consul/api.js'

const CI = process.argv.includes('--ci') || process.env.SWITCHYARD_DEMO_CI === '1'
const ROOT = dirname(dirname(dirname(fileURLToPath(import.meta.url))))
const CLI = join(ROOT, 'dist/cli/main.js')
// SWITCHYARD_DEMO_LIVE=1 draws the live view into a pipe too (the tests read it).
const tty = (process.stdout.isTTY || process.env.SWITCHYARD_DEMO_LIVE === '1') && !CI
/** The live view counts the requests of this last stretch, so a change shows within it. */
const WINDOW_MS = 2_000

interface App {
  readonly name: string
  readonly version: string
  readonly server: Server
  readonly port: number
  healthy: boolean
}

// Piped through `tee`, Ctrl-C ends tee too: writes then fail with EPIPE. The
// demo must still stop everything it started, so output errors are dropped
// instead of ending the process before its clean-up.
let outputGone = false
process.stdout.on('error', () => {
  outputGone = true
})
const write = (text: string) => {
  if (!outputGone) process.stdout.write(text)
}
const say = (line = '') => write(`${line}\n`)
const cleanups: (() => Promise<void> | void)[] = []

async function startApp(name: string, version: string): Promise<App> {
  const app = { name, version, healthy: true } as App
  const server = createServer((req, res) => {
    if (req.url === '/health') {
      res.writeHead(app.healthy ? 200 : 503).end(app.healthy ? 'ok' : 'failing')
      return
    }
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ app: 'demo', version, instance: name, path: req.url }))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  Object.assign(app, { server, port: (server.address() as AddressInfo).port })
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return app
}

async function portOr(preferred: number): Promise<number> {
  const probe = createServer()
  probe.listen(preferred, '127.0.0.1')
  try {
    await once(probe, 'listening')
    await new Promise((resolve) => probe.close(resolve))
    return preferred
  } catch {
    return freePort()
  }
}

async function consulBinary(): Promise<string> {
  say('Finding Consul (built once from the Go module proxy if this machine has none; that takes minutes)…')
  const child = spawn('bash', [join(ROOT, 'scripts/consul')], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (d) => {
    out += d
  })
  const [code] = await once(child, 'exit')
  if (code !== 0) throw new Error('no Consul binary (see the messages above)')
  return out.trim()
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return
    await delay(100)
  }
  throw new Error(`timed out waiting for ${what}`)
}

type Counts = Map<string, number>

/** Sends `total` requests (or until `until` resolves), counting answers by `key`. */
/** Whether `until` settles within a second. */
async function interruptedSoon(until: Promise<unknown> | undefined): Promise<boolean> {
  if (until === undefined) return false
  return Promise.race([until.then(() => true), delay(1_000, false)])
}

async function traffic(
  url: string,
  dispatcher: Agent,
  key: (body: { version: string; instance: string }) => string,
  options: { total?: number; until?: Promise<unknown>; view?: LiveView },
): Promise<Counts> {
  const counts: Counts = new Map()
  let sent = 0
  let stop = false
  void options.until?.then(() => {
    stop = true
  })
  const worker = async () => {
    while (!stop && (options.total === undefined || sent < options.total)) {
      sent++
      let text: string
      let res: Awaited<ReturnType<typeof request>>
      try {
        res = await request(url, { dispatcher })
        text = await res.body.text()
      } catch (err) {
        // Ctrl-C reaches Switchyard too: it closes its idle connections as it
        // stops, so a request on one of them fails, maybe just before this
        // process sees the signal. That is the end, not an error.
        if (stop || (await interruptedSoon(options.until))) return
        throw err
      }
      const k = res.statusCode === 200 ? key(JSON.parse(text)) : `HTTP ${res.statusCode}`
      counts.set(k, (counts.get(k) ?? 0) + 1)
      // Interactive: a modest, steady rate; CI: as fast as the box allows.
      if (!CI) await delay(5)
    }
  }
  const ticker = options.view ? setInterval(() => options.view?.tick(counts), 250) : null
  try {
    await Promise.all(Array.from({ length: 4 }, worker))
  } finally {
    // Also on a failure: a live ticker would keep the demo from ever exiting.
    if (ticker) clearInterval(ticker)
  }
  options.view?.tick(counts)
  return counts
}

function bars(counts: Counts, keys: readonly string[]): string[] {
  const total = [...counts.values()].reduce((a, b) => a + b, 0) || 1
  const labels = [...new Set([...keys, ...counts.keys()])]
  const width = Math.max(8, ...labels.map((k) => k.length))
  return labels.map((k) => {
    const n = counts.get(k) ?? 0
    const share = n / total
    const filled = Math.round(share * 40)
    return `    ${k.padEnd(width)} ${'█'.repeat(filled)}${'░'.repeat(40 - filled)} ${(share * 100).toFixed(1).padStart(5)}%  (${n})`
  })
}

/** What the live view shows: lines printed above the bars, and the bars themselves. */
interface LiveView {
  readonly tick: (counts: Counts) => void
  /** Prints a line above the bars (an instance left or rejoined, say) and redraws them. */
  readonly announce: (line: string) => void
}

/**
 * On a terminal: redraws the bars in place, counting only the requests of the
 * last WINDOW_MS (counts are cumulative, so the window is the difference to
 * the snapshot taken WINDOW_MS ago). Off a terminal it only announces.
 */
function live(keys: readonly string[]): LiveView {
  const history: { at: number; counts: Counts }[] = [{ at: Date.now(), counts: new Map() }]
  let drawn = 0
  let last: string[] = []
  const draw = (lines: string[]) => {
    if (drawn > 0) write(`\x1b[${drawn}A`)
    for (const line of lines) write(`\x1b[2K${line}\n`)
    drawn = lines.length
  }
  return {
    tick: (counts) => {
      if (!tty) return
      const now = Date.now()
      history.push({ at: now, counts: new Map(counts) })
      while (history.length > 1 && (history[1]?.at ?? now) <= now - WINDOW_MS) history.shift()
      const base = history[0]?.counts ?? new Map()
      const recent: Counts = new Map([...counts].map(([k, n]) => [k, n - (base.get(k) ?? 0)]))
      last = [`    requests in the last ${WINDOW_MS / 1000} s:`, ...bars(recent, keys)]
      draw(last)
    },
    announce: (line) => {
      if (!tty) return say(line)
      if (drawn > 0) write(`\x1b[${drawn}A\x1b[J`)
      drawn = 0
      say(line)
      if (last.length > 0) draw(last)
    },
  }
}

/** Off a terminal (CI, a pipe): the phase's bars once. */
function final(counts: Counts, keys: readonly string[]): void {
  if (!tty) for (const line of bars(counts, keys)) say(line)
}

function share(counts: Counts, key: string): number {
  const total = [...counts.values()].reduce((a, b) => a + b, 0)
  return total === 0 ? 0 : (counts.get(key) ?? 0) / total
}

async function main(): Promise<number> {
  const failures: string[] = []
  const expect = (ok: boolean, what: string) => {
    if (!ok) failures.push(what)
  }

  const binary = await consulBinary()
  const consul = new ConsulAgent(binary)
  cleanups.push(() => consul.destroy())
  await consul.start()
  const api = new ConsulApi(consul.info)
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-demo-'))
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }))

  const operator = await api.createToken(
    'switchyard-operator',
    readFileSync(join(ROOT, 'config/acl/switchyard-operator.hcl'), 'utf8'),
  )
  const proxyTokenFile = join(dir, 'proxy-token')
  writeFileSync(proxyTokenFile, `${consul.proxyToken}\n`, { mode: 0o600 })

  const apps = await Promise.all([
    startApp('blue-1', '1.0'),
    startApp('blue-2', '1.0'),
    startApp('green-1', '2.0'),
    startApp('green-2', '2.0'),
  ])
  for (const app of apps) {
    await api.register({
      id: `demo-${app.name}`,
      name: 'demo',
      port: app.port,
      tags: ['urlprefix-/demo strip=/demo', `slice:${app.name.split('-')[0]}`],
      meta: { version: app.version },
      httpCheck: { url: `http://127.0.0.1:${app.port}/health`, interval: '1s' },
    })
  }

  const proxyPort = CI ? await freePort() : await portOr(9999)
  const adminPort = CI ? await freePort() : await portOr(9998)
  const env = { ...process.env, CONSUL_HTTP_ADDR: consul.address, CONSUL_HTTP_TOKEN: '' }
  const switchyard: ChildProcess = spawn(
    process.execPath,
    [
      CLI,
      'serve',
      '--listen',
      `127.0.0.1:${proxyPort}`,
      '--admin-listen',
      `127.0.0.1:${adminPort}`,
      '--consul-token-file',
      proxyTokenFile,
    ],
    { env, stdio: ['ignore', 'ignore', 'inherit'] },
  )
  cleanups.unshift(async () => {
    if (switchyard.exitCode !== null || switchyard.signalCode !== null) return
    const exit = once(switchyard, 'exit')
    switchyard.kill('SIGTERM')
    await exit
  })
  const admin = `http://127.0.0.1:${adminPort}`
  const proxy = `http://127.0.0.1:${proxyPort}/demo`
  await waitFor('every demo instance to pass its health check', async () => {
    const res = await fetch(`${admin}/api/routes`)
    const routes = (await res.json()) as { id: string; serving: number }[]
    return routes.find((r) => r.id === '/demo')?.serving === 4
  })

  say()
  say('Switchyard demo — Consul dev agent, four instances of "demo", Switchyard on a read-only token')
  say(`  proxy        ${proxy}`)
  say(`  status page  ${admin}/`)
  say(`  metrics      ${admin}/metrics        routes: ${admin}/api/routes`)
  say(`  consul       ${consul.address}  (management token ${consul.managementToken})`)
  say()

  const dispatcher = new Agent({ connections: 4, keepAliveTimeout: 10_000 })
  cleanups.unshift(() => dispatcher.close())
  const byVersion = (b: { version: string }) => b.version
  const perPhase = CI ? 1000 : undefined
  const phaseTime = () => delay(4000)

  const setTarget = async (args: string[]) => {
    say(`$ switchyard target set demo ${args.join(' ')} --wait --admin ${admin}`)
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [CLI, 'target', 'set', 'demo', ...args, '--wait', '--admin', admin],
      { env: { ...env, CONSUL_HTTP_TOKEN: operator.secret } },
    )
    for (const line of stdout.trim().split('\n')) say(`  ${line}`)
  }

  const phase = async (title: string, args: string[]): Promise<Counts> => {
    say(title)
    await setTarget(args)
    const counts = await traffic(proxy, dispatcher, byVersion, {
      total: perPhase,
      until: CI ? undefined : phaseTime(),
      view: live(['1.0', '2.0']),
    })
    final(counts, ['1.0', '2.0'])
    say()
    return counts
  }

  const all1 = await phase('1. All traffic on blue (version 1.0):', ['--weights', '1.0=100,2.0=0'])
  expect(share(all1, '1.0') === 1, 'phase 1: every request should reach 1.0')
  const canary = await phase('2. Canary: 10 % to green (version 2.0):', ['--weights', '1.0=90,2.0=10'])
  expect(Math.abs(share(canary, '2.0') - 0.1) <= 0.03, 'phase 2: about 10 % should reach 2.0')
  const all2 = await phase('3. Cut over: all traffic to green:', ['--weights', '1.0=0,2.0=100'])
  expect(share(all2, '2.0') === 1, 'phase 3: every request should reach 2.0')

  say('4. Instance green-2 starts failing its health check; Consul marks it critical, Switchyard drops it:')
  const green2 = apps[3] as App
  green2.healthy = false
  const failedAt = Date.now()
  await waitFor(
    'green-2 to leave the pool',
    async () => (await instanceStates(admin)).get('demo-green-2') === 'unhealthy',
  )
  say(
    `  green-2 left the pool ${((Date.now() - failedAt) / 1000).toFixed(1)} s after it started failing (Consul checks every 1 s)`,
  )
  const failed = await traffic(proxy, dispatcher, (b) => b.instance, {
    total: perPhase,
    until: CI ? undefined : phaseTime(),
    view: live(['green-1', 'green-2']),
  })
  final(failed, ['green-1', 'green-2'])
  expect(
    failed.get('green-2') === undefined && (failed.get('green-1') ?? 0) > 0,
    'phase 4: no request should reach green-2',
  )
  say()

  say('5. green-2 passes its health check again:')
  green2.healthy = true
  const recoveredAt = Date.now()
  await waitFor(
    'green-2 to rejoin the pool',
    async () => (await instanceStates(admin)).get('demo-green-2') === 'serving',
  )
  say(
    `  green-2 rejoined the pool ${((Date.now() - recoveredAt) / 1000).toFixed(1)} s after it passed again (Consul checks every 1 s)`,
  )
  say()

  say(
    '6. A guarded rollout back to blue (1.0): 25 %, 50 %, 100 %, each step checked for 2 s against a 1 % error rate and a 500 ms p99:',
  )
  const rolloutArgs = [
    'rollout',
    'demo',
    '--to',
    '1.0',
    '--steps',
    '25,50,100',
    '--interval',
    '2s',
    '--min-requests',
    '20',
    '--max-error-rate',
    '1%',
    '--max-p99',
    '500ms',
    '--admin',
    admin,
  ]
  say(`$ switchyard ${rolloutArgs.join(' ')}`)
  const rolloutView = live(['1.0', '2.0'])
  const rollout = spawn(process.execPath, [CLI, ...rolloutArgs], {
    env: { ...env, CONSUL_HTTP_TOKEN: operator.secret },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  cleanups.unshift(() => {
    if (rollout.exitCode === null && rollout.signalCode === null) rollout.kill('SIGTERM')
  })
  // Its lines appear above the live bars as the steps go by.
  for (const stream of [rollout.stdout, rollout.stderr])
    createInterface({ input: stream }).on('line', (line) => rolloutView.announce(`  ${line}`))
  const rolledOut = once(rollout, 'exit') as Promise<[number | null]>
  const during = await traffic(proxy, dispatcher, byVersion, { until: rolledOut, view: rolloutView })
  final(during, ['1.0', '2.0'])
  const [rolloutCode] = await rolledOut
  expect(rolloutCode === 0, 'phase 6: the rollout should go through every step')
  expect(
    during.get('HTTP 502') === undefined && during.get('HTTP 503') === undefined,
    'phase 6: no request should fail',
  )
  say()

  if (CI) {
    if (failures.length > 0) {
      for (const f of failures) say(`demo check FAILED: ${f}`)
      return 1
    }
    say('demo: all checks passed (100/0, 90/10, 0/100, failed instance left the pool, guarded rollout)')
    return 0
  }

  say('Live traffic per version and instance until Ctrl-C. Try, in another shell:')
  say(`  CONSUL_HTTP_ADDR=${consul.address} CONSUL_HTTP_TOKEN=${operator.secret} \\`)
  say(`    npx switchyard target set demo --version 1.0 --wait --admin ${admin}`)
  say(`    npx switchyard target toggle demo --wait --admin ${admin}     # then blue/green, back and forth`)
  say(
    `    npx switchyard rollout demo --to 2.0 --interval 5s --admin ${admin}     # and watch the status page`,
  )
  say()
  finishing = true
  const view = live(['1.0/blue-1', '1.0/blue-2', '2.0/green-1', '2.0/green-2'])
  const watching = announceChanges(admin, view, interrupted)
  await traffic(proxy, dispatcher, (b) => `${b.version}/${b.instance}`, { until: interrupted, view })
  await watching
  return 0
}

/** Each demo instance's state on the route, as the admin API names it (serving, unhealthy, not-selected…). */
async function instanceStates(admin: string): Promise<Map<string, string>> {
  // Bounded: Ctrl-C stops Switchyard too, and a read left hanging would hold the demo's exit.
  const routes = (await (
    await fetch(`${admin}/api/routes`, { signal: AbortSignal.timeout(5_000) })
  ).json()) as {
    id: string
    instances: { id: string; state: string }[]
  }[]
  return new Map((routes.find((r) => r.id === '/demo')?.instances ?? []).map((i) => [i.id, i.state]))
}

/** Until `until`: announces every instance that leaves the pool, rejoins it, appears or goes. */
async function announceChanges(admin: string, view: LiveView, until: Promise<void>): Promise<void> {
  let stop = false
  void until.then(() => {
    stop = true
  })
  let before = await instanceStates(admin).catch(() => new Map<string, string>())
  while (!stop) {
    await Promise.race([delay(500), until])
    if (stop) break
    const now = await instanceStates(admin).catch(() => null)
    if (now === null) continue
    for (const id of new Set([...before.keys(), ...now.keys()])) {
      const [was, is] = [before.get(id), now.get(id)]
      if (was === is) continue
      const name = id.replace(/^demo-/, '')
      if (is === 'serving' && was !== undefined) view.announce(`  ${name} rejoined the pool (was ${was})`)
      else if (is === undefined) view.announce(`  ${name} deregistered`)
      else if (was === undefined) view.announce(`  ${name} registered: ${is}`)
      else view.announce(`  ${name} left the pool: ${is}`)
    }
    before = now
  }
}

/** How long one clean-up step may take before the rest go ahead without it. */
const STEP_BOUND_MS = 10_000

async function cleanup(): Promise<void> {
  for (const step of cleanups.splice(0)) {
    // A step that hangs (a connection that never ends) must not keep the
    // others, and so Consul and the temporary files, from being cleaned up.
    const bound = new AbortController()
    try {
      await Promise.race([step(), delay(STEP_BOUND_MS, undefined, { signal: bound.signal })])
    } catch {
      // Keep stopping the rest.
    } finally {
      bound.abort()
    }
  }
}

// Ctrl-C ends the live traffic normally (exit 0); earlier it stops what was
// started so far (exit 130). Further Ctrl-Cs while stopping are ignored, so
// nothing is left running half-stopped.
let finishing = false
let signals = 0
let interrupt!: () => void
const interrupted = new Promise<void>((resolve) => {
  interrupt = resolve
})
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (++signals > 1) return say('Still stopping…')
    interrupt()
    if (finishing) return
    say('\nInterrupted: stopping Switchyard, the demo instances and Consul…')
    void cleanup().then(() => process.exit(130))
  })
}

main()
  .then(async (code) => {
    say('Stopping Switchyard, the demo instances and Consul…')
    await cleanup()
    process.exitCode = code
  })
  .catch(async (err) => {
    process.stderr.write(`demo failed: ${(err as Error).stack ?? err}\n`)
    await cleanup()
    process.exitCode = 1
  })
