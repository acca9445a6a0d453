// `npm run demo`: a cutover on a real Consul, from a fresh clone, in a minute.
//
// Starts a Consul dev agent (ACLs on), four instances of a small app — blue
// 1.0 and green 2.0, two each, with HTTP health checks and `urlprefix-/demo`
// tags — and `switchyard serve` with a read-only token. Then it moves traffic
// 100/0 → 90/10 → 0/100 with the operator command, showing live counts per
// version, fails one instance's health check to show it leave the pool, and
// keeps going until Ctrl-C. Everything it started is stopped on exit.
//
// `--ci` runs the same steps with fixed request counts, checks the splits it
// printed, and exits 0 only if they are right.

import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { Agent, request } from 'undici'
import { ConsulAgent, freePort } from './consul-agent.js'
import { ConsulApi } from './consul-api.js'

const CI = process.argv.includes('--ci') || process.env.SWITCHYARD_DEMO_CI === '1'
const DIST = dirname(dirname(fileURLToPath(import.meta.url)))
const ROOT = dirname(DIST)
const CLI = join(DIST, 'cli/main.js')
const tty = process.stdout.isTTY && !CI

interface App {
  readonly name: string
  readonly version: string
  readonly server: Server
  readonly port: number
  healthy: boolean
}

const say = (line = '') => process.stdout.write(`${line}\n`)
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
async function traffic(
  url: string,
  dispatcher: Agent,
  key: (body: { version: string; instance: string }) => string,
  options: { total?: number; until?: Promise<unknown>; onTick?: (counts: Counts) => void },
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
      const res = await request(url, { dispatcher })
      const text = await res.body.text()
      const k = res.statusCode === 200 ? key(JSON.parse(text)) : `HTTP ${res.statusCode}`
      counts.set(k, (counts.get(k) ?? 0) + 1)
      // Interactive: a modest, steady rate; CI: as fast as the box allows.
      if (!CI) await delay(5)
    }
  }
  const ticker = options.onTick ? setInterval(() => options.onTick?.(counts), 250) : null
  await Promise.all(Array.from({ length: 4 }, worker))
  if (ticker) clearInterval(ticker)
  options.onTick?.(counts)
  return counts
}

function bars(counts: Counts, keys: readonly string[]): string[] {
  const total = [...counts.values()].reduce((a, b) => a + b, 0) || 1
  return [...new Set([...keys, ...counts.keys()])].map((k) => {
    const n = counts.get(k) ?? 0
    const share = n / total
    const filled = Math.round(share * 40)
    return `    ${k.padEnd(8)} ${'█'.repeat(filled)}${'░'.repeat(40 - filled)} ${(share * 100).toFixed(1).padStart(5)}%  (${n})`
  })
}

/** On a terminal: redraws the bars in place as counts grow. */
function live(keys: readonly string[]): ((counts: Counts) => void) | undefined {
  if (!tty) return undefined
  let drawn = 0
  return (counts) => {
    if (drawn > 0) process.stdout.write(`\x1b[${drawn}A`)
    const lines = bars(counts, keys)
    for (const line of lines) process.stdout.write(`\x1b[2K${line}\n`)
    drawn = lines.length
  }
}

/** Off a terminal (CI, a pipe): the final bars once. */
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
    if (switchyard.exitCode !== null) return
    switchyard.kill('SIGTERM')
    await once(switchyard, 'exit')
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
    say(`$ switchyard target set demo ${args.join(' ')} --wait`)
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
      onTick: live(['1.0', '2.0']),
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
  await waitFor('green-2 to leave the pool', async () => {
    const routes = (await (await fetch(`${admin}/api/routes`)).json()) as {
      id: string
      instances: { id: string; state: string }[]
    }[]
    return (
      routes.find((r) => r.id === '/demo')?.instances.find((i) => i.id === 'demo-green-2')?.state ===
      'unhealthy'
    )
  })
  say(
    `  green-2 left the pool ${((Date.now() - failedAt) / 1000).toFixed(1)} s after it started failing (Consul checks every 1 s)`,
  )
  const failed = await traffic(proxy, dispatcher, (b) => b.instance, {
    total: perPhase,
    until: CI ? undefined : phaseTime(),
    onTick: live(['green-1', 'green-2']),
  })
  final(failed, ['green-1', 'green-2'])
  expect(
    failed.get('green-2') === undefined && (failed.get('green-1') ?? 0) > 0,
    'phase 4: no request should reach green-2',
  )
  green2.healthy = true
  say()

  if (CI) {
    if (failures.length > 0) {
      for (const f of failures) say(`demo check FAILED: ${f}`)
      return 1
    }
    say('demo: all checks passed (100/0, 90/10, 0/100, failed instance left the pool)')
    return 0
  }

  say('Live traffic per version and instance until Ctrl-C. Try, in another shell:')
  say(`  CONSUL_HTTP_ADDR=${consul.address} CONSUL_HTTP_TOKEN=${operator.secret} \\`)
  say('    npx switchyard target set demo --version 1.0 --wait')
  say()
  finishing = true
  await traffic(proxy, dispatcher, (b) => `${b.version}/${b.instance}`, {
    until: interrupted,
    onTick: live(['1.0/blue-1', '1.0/blue-2', '2.0/green-1', '2.0/green-2']),
  })
  return 0
}

async function cleanup(): Promise<void> {
  for (const step of cleanups.splice(0)) {
    try {
      await step()
    } catch {
      // Keep stopping the rest.
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
