// Everything the benchmark can put between the load generator and the
// backend. A contender says whether it can run on this machine (probe) and
// how to start it (start); the sections only ever see the list. A new mode of
// Switchyard (say `serve --workers N`) is one more entry made with
// switchyardContender(name, extra CLI arguments).

import { execFile } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { stringify } from 'yaml'
import { freePort } from '../src/demo/consul-agent.js'
import type { BenchConsul } from './consul.js'
import { Child, nodeTs, ROOT, waitForHttp } from './procs.js'

export interface BenchContext {
  /** Scratch folder of this run: generated configs, logs, profiles. */
  readonly tmp: string
  readonly consul: BenchConsul
  /** `http://127.0.0.1:port` of the backend process. */
  readonly backendOrigin: string
  /** A path every contender must answer 200 on before it counts as started. */
  readonly probePath: string
  /** Worker processes / threads for the peers (NGINX workers, HAProxy threads, Fabio GOMAXPROCS). */
  readonly peerWorkers: number
  readonly say: (line: string) => void
}

export interface Running {
  readonly name: string
  /** Base URL for requests: `http://127.0.0.1:port`. */
  readonly url: string
  /** Root of the contender's own processes (CPU and memory are read for its tree); null for none. */
  readonly pid: number | null
  stop(): Promise<void>
}

export type Probe =
  | { readonly ok: true; readonly version: string }
  | { readonly ok: false; readonly reason: string }

export type Role = 'baseline' | 'switchyard' | 'peer' | 'engine'

export interface Contender {
  readonly name: string
  readonly role: Role
  /** One line for the report: what runs and how it is configured. */
  readonly what: string
  probe(): Promise<Probe>
  start(ctx: BenchContext): Promise<Running>
}

const exec = promisify(execFile)
const START_TIMEOUT_MS = 30_000

/** The backend itself: what a request costs with nothing in between. */
export const direct: Contender = {
  name: 'direct',
  role: 'baseline',
  what: 'no proxy: the load generator talks to the backend',
  probe: async () => ({ ok: true, version: `node ${process.version}` }),
  start: async (ctx) => ({ name: 'direct', url: ctx.backendOrigin, pid: null, stop: async () => {} }),
}

/** Consul settings as an operator would leave them; only addresses and the token are set. */
export interface SwitchyardProcessOptions {
  readonly name: string
  readonly dir: string
  /** `http://host:port` of Consul (or of a counting proxy in front of it). */
  readonly consulAddress: string
  readonly token: string
  /** Extra `switchyard serve` arguments, e.g. `--workers 2` (the default here is one process). */
  readonly args?: readonly string[]
  /** Extra Node arguments, e.g. `--cpu-prof`. */
  /** Node flags; default SHIPPED_NODE_FLAGS. */
  readonly nodeArgs?: readonly string[]
  /** The compiled tree to run (default: this checkout's dist/), e.g. another build to compare with. */
  readonly dist?: string
  readonly onLine?: (line: string) => void
}

export interface SwitchyardProcess {
  readonly child: Child
  readonly url: string
  readonly adminUrl: string
}

/** Starts `node dist/cli/main.js serve` (what operators run) and waits until its listeners are up. */
/**
 * The Node flags Switchyard ships with: those of the image's ENTRYPOINT,
 * between `node` and the script (the Dockerfile is the one place they are
 * written), so the benchmarks measure what runs in production.
 */
export const SHIPPED_NODE_FLAGS: readonly string[] = (() => {
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
  const line = dockerfile.split('\n').find((l) => l.startsWith('ENTRYPOINT '))
  const words = line ? (JSON.parse(line.slice('ENTRYPOINT '.length)) as string[]) : []
  return words.slice(
    1,
    words.findIndex((w) => w.endsWith('.js')),
  )
})()

export async function startSwitchyardProcess(options: SwitchyardProcessOptions): Promise<SwitchyardProcess> {
  const main = join(options.dist ?? join(ROOT, 'dist'), 'cli/main.js')
  if (!existsSync(main)) throw new Error(`${main} is missing: run npm run build`)
  mkdirSync(options.dir, { recursive: true })
  const [port, adminPort] = [await freePort(), await freePort()]
  const configFile = join(options.dir, 'switchyard.yaml')
  writeFileSync(
    configFile,
    stringify({
      proxy: { listen: `127.0.0.1:${port}` },
      admin: { listen: `127.0.0.1:${adminPort}` },
      consul: { address: options.consulAddress },
      log: { level: 'info' },
    }),
  )
  const env: NodeJS.ProcessEnv = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('CONSUL_') && !key.startsWith('SWITCHYARD_')) env[key] = value
  }
  env.CONSUL_HTTP_ADDR = options.consulAddress
  env.CONSUL_HTTP_TOKEN = options.token
  // One process unless the arguments ask for workers (a flag wins over the
  // environment); a build from before --workers ignores the variable.
  env.SWITCHYARD_WORKERS = '1'
  const child = new Child(
    options.name,
    process.execPath,
    [
      ...(options.nodeArgs ?? SHIPPED_NODE_FLAGS),
      main,
      'serve',
      '--config',
      configFile,
      ...(options.args ?? []),
    ],
    { env, onLine: options.onLine },
  )
  const adminUrl = `http://127.0.0.1:${adminPort}`
  try {
    await waitForHttp(`${adminUrl}/health`, START_TIMEOUT_MS, child)
  } catch (err) {
    await child.stop()
    throw err
  }
  return { child, url: `http://127.0.0.1:${port}`, adminUrl }
}

/**
 * `switchyard serve` as a contender. `args` are extra CLI arguments (a later
 * `--workers N` mode is `switchyardContender('switchyard x2', ['--workers', '2'])`);
 * `dist` runs another compiled tree, to compare two builds in one run.
 */
export function switchyardContender(
  name = 'switchyard',
  args: readonly string[] = [],
  what = 'switchyard serve --workers 1 (one process), otherwise the default config',
  dist?: string,
): Contender {
  return {
    name,
    role: 'switchyard',
    what,
    probe: async () => {
      const main = join(dist ?? join(ROOT, 'dist'), 'cli/main.js')
      if (!existsSync(main)) return { ok: false, reason: `${main} is not built (npm run build)` }
      const pkg = (await import('../package.json', { with: { type: 'json' } })).default as { version: string }
      return { ok: true, version: `${pkg.version} on node ${process.version}` }
    },
    start: async (ctx) => {
      const sy = await startSwitchyardProcess({
        name,
        dir: join(ctx.tmp, name.replace(/[^\w.-]+/g, '_')),
        consulAddress: ctx.consul.info.address,
        token: ctx.consul.info.proxyToken,
        args,
        dist,
      })
      await waitForHttp(`${sy.url}${ctx.probePath}`, START_TIMEOUT_MS, sy.child)
      return { name, url: sy.url, pid: sy.child.pid, stop: () => sy.child.stop() }
    },
  }
}

/** Starts a Node process that prints `listening <port>` when ready. */
async function startListening(name: string, command: string, args: readonly string[]): Promise<Running> {
  let resolvePort: (port: number) => void = () => {}
  const port = new Promise<number>((resolve) => {
    resolvePort = resolve
  })
  const child = new Child(name, command, args, {
    onLine: (line) => {
      const match = /^listening (\d+)$/.exec(line)
      if (match) resolvePort(Number(match[1]))
    },
  })
  const failed = child.exited.then((code) => {
    throw new Error(`${name} exited (${code}) before listening: ${child.output().slice(-2_000)}`)
  })
  const timeout = new Promise<never>((_, reject) =>
    setTimeout(() => reject(new Error(`${name} did not listen in time`)), START_TIMEOUT_MS).unref(),
  )
  try {
    const p = await Promise.race([port, failed, timeout])
    return { name, url: `http://127.0.0.1:${p}`, pid: child.pid, stop: () => child.stop() }
  } catch (err) {
    await child.stop()
    throw err
  } finally {
    failed.catch(() => {})
  }
}

export async function startBackend(name = 'backend'): Promise<Running> {
  const [cmd, args] = nodeTs('backend.ts', [name])
  return startListening(name, cmd, args)
}

export const undiciForwarder: Contender = {
  name: 'undici engine',
  role: 'engine',
  what: "Switchyard's forwarding alone (src/proxy/forward.ts, upstreams, headers): no table, lookup or pick",
  probe: async () => {
    const pkg = (await import('undici/package.json', { with: { type: 'json' } })).default as {
      version: string
    }
    return { ok: true, version: `undici ${pkg.version}` }
  },
  start: async (ctx) => {
    const [cmd, args] = nodeTs('forwarders/undici.ts', [ctx.backendOrigin])
    return startListening('undici engine', cmd, args)
  },
}

export const httpProxyForwarder: Contender = {
  name: 'http-proxy engine',
  role: 'engine',
  what: 'minimal forwarder on the http-proxy package (keep-alive agent, xfwd): no table, lookup or pick',
  probe: async () => {
    try {
      const pkg = (await import('http-proxy/package.json', { with: { type: 'json' } })).default as {
        version: string
      }
      return { ok: true, version: `http-proxy ${pkg.version}` }
    } catch {
      return { ok: false, reason: 'http-proxy is not installed (npm ci installs devDependencies)' }
    }
  },
  start: async (ctx) => {
    const [cmd, args] = nodeTs('forwarders/http-proxy.ts', [ctx.backendOrigin])
    return startListening('http-proxy engine', cmd, args)
  },
}

async function versionOf(command: string, args: string[], pattern: RegExp): Promise<Probe> {
  try {
    const { stdout, stderr } = await exec(command, args, { timeout: 10_000 })
    const match = pattern.exec(`${stdout}\n${stderr}`)
    return { ok: true, version: match?.[1] ?? (stdout || stderr).trim().split('\n')[0] ?? '?' }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    return {
      ok: false,
      reason: code === 'ENOENT' ? `${command} is not installed` : `${command} failed: ${String(err)}`,
    }
  }
}

export const nginx: Contender = {
  name: 'nginx',
  role: 'peer',
  what: 'NGINX (Debian package), upstream keepalive 64, access log off, proxy_max_temp_file_size 0',
  probe: () => versionOf('nginx', ['-v'], /nginx\/(\S+)/),
  start: async (ctx) => {
    const dir = join(ctx.tmp, 'nginx')
    mkdirSync(dir, { recursive: true })
    const port = await freePort()
    const upstream = new URL(ctx.backendOrigin)
    const conf = `# generated by bench/contenders.ts
worker_processes ${ctx.peerWorkers};
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log error;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream backend {
    server ${upstream.host};
    keepalive 64;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      # Stream large bodies rather than spill them to disk.
      proxy_max_temp_file_size 0;
    }
  }
}
`
    writeFileSync(join(dir, 'nginx.conf'), conf)
    const child = new Child('nginx', 'nginx', [
      '-p',
      dir,
      '-c',
      join(dir, 'nginx.conf'),
      '-e',
      join(dir, 'error.log'),
    ])
    const url = `http://127.0.0.1:${port}`
    try {
      await waitForHttp(`${url}${ctx.probePath}`, START_TIMEOUT_MS, child)
    } catch (err) {
      await child.stop()
      throw err
    }
    return { name: 'nginx', url, pid: child.pid, stop: () => child.stop() }
  },
}

export const haproxy: Contender = {
  name: 'haproxy',
  role: 'peer',
  what: 'HAProxy (Debian package), HTTP mode, keep-alive both sides (http-reuse safe), no logging',
  probe: () => versionOf('haproxy', ['-v'], /HAProxy version (\S+)/),
  start: async (ctx) => {
    const dir = join(ctx.tmp, 'haproxy')
    mkdirSync(dir, { recursive: true })
    const port = await freePort()
    const upstream = new URL(ctx.backendOrigin)
    const conf = `# generated by bench/contenders.ts
global
  nbthread ${ctx.peerWorkers}
  maxconn 4096

defaults
  mode http
  option http-keep-alive
  option forwardfor
  http-reuse safe
  timeout connect 5s
  timeout client 60s
  timeout server 60s

frontend bench
  bind 127.0.0.1:${port}
  default_backend backend

backend backend
  server backend ${upstream.host}
`
    writeFileSync(join(dir, 'haproxy.cfg'), conf)
    const child = new Child('haproxy', 'haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')])
    const url = `http://127.0.0.1:${port}`
    try {
      await waitForHttp(`${url}${ctx.probePath}`, START_TIMEOUT_MS, child)
    } catch (err) {
      await child.stop()
      throw err
    }
    return { name: 'haproxy', url, pid: child.pid, stop: () => child.stop() }
  },
}

let fabioPath: Promise<string> | null = null

/** The fabio binary (scripts/fabio: FABIO_BIN, PATH, cache, else a build with Go). */
export function fabioBinary(): Promise<string> {
  fabioPath ??= exec('bash', [join(ROOT, 'scripts/fabio')], { timeout: 20 * 60_000 }).then((r) =>
    r.stdout.trim(),
  )
  return fabioPath
}

export interface FabioProcessOptions {
  readonly consulAddress: string
  readonly token: string
  readonly gomaxprocs: number
}

/** Starts Fabio on the same Consul and `urlprefix-` tags; resolves once its listeners are up. */
export async function startFabioProcess(
  options: FabioProcessOptions,
): Promise<{ child: Child; url: string; uiUrl: string }> {
  const [port, uiPort] = [await freePort(), await freePort()]
  const consul = new URL(options.consulAddress)
  const child = new Child('fabio', await fabioBinary(), [
    `-proxy.addr=127.0.0.1:${port}`,
    `-ui.addr=127.0.0.1:${uiPort}`,
    `-registry.consul.addr=${consul.host}`,
    `-registry.consul.token=${options.token}`,
    '-registry.consul.register.enabled=false',
    // Switchyard's rule: every check must pass.
    '-registry.consul.checksRequired=all',
    '-proxy.strategy=rr',
    `-runtime.gomaxprocs=${options.gomaxprocs}`,
    '-log.level=WARN',
  ])
  const uiUrl = `http://127.0.0.1:${uiPort}`
  try {
    await waitForHttp(`${uiUrl}/health`, START_TIMEOUT_MS, child)
  } catch (err) {
    await child.stop()
    throw err
  }
  return { child, url: `http://127.0.0.1:${port}`, uiUrl }
}

export const fabio: Contender = {
  name: 'fabio',
  role: 'peer',
  what: 'Fabio (release pinned in scripts/fabio), same Consul and urlprefix- tags, checksRequired=all, strategy rr',
  probe: async () => {
    try {
      const binary = await fabioBinary()
      const probe = await versionOf(binary, ['-v'], /^(\S+)/)
      // scripts/fabio caches release vX as fabio-X/fabio; v1.5.15 calls itself 1.5.14.
      const release = /fabio-([\d.]+)\/fabio$/.exec(binary)?.[1]
      return probe.ok && release ? { ok: true, version: `${release} (fabio -v: ${probe.version})` } : probe
    } catch (err) {
      return {
        ok: false,
        reason: `no fabio binary: ${String((err as { stderr?: string }).stderr ?? err).trim()}`,
      }
    }
  },
  start: async (ctx) => {
    const f = await startFabioProcess({
      consulAddress: ctx.consul.info.address,
      token: ctx.consul.fabioToken,
      gomaxprocs: ctx.peerWorkers,
    })
    try {
      await waitForHttp(`${f.url}${ctx.probePath}`, START_TIMEOUT_MS, f.child)
    } catch (err) {
      await f.child.stop()
      throw err
    }
    return { name: 'fabio', url: f.url, pid: f.child.pid, stop: () => f.child.stop() }
  },
}

/**
 * Every contender, in report order. `compareDist` adds a second Switchyard
 * running another compiled tree (`--compare-dist DIR`), for before/after
 * figures of a change in one interleaved run.
 */
export function contenders(compareDist: string | null = null): Contender[] {
  return [
    direct,
    switchyardContender(),
    // One primary and two proxy workers: on this 2-core box they compete with
    // the load generator and the backend for the same cores (reported as such).
    switchyardContender(
      'switchyard x2',
      ['--workers', '2'],
      'switchyard serve --workers 2 (a primary and two proxy workers)',
    ),
    ...(compareDist
      ? [
          switchyardContender(
            'switchyard (compared build)',
            [],
            `switchyard serve from ${compareDist}`,
            compareDist,
          ),
        ]
      : []),
    nginx,
    haproxy,
    fabio,
    undiciForwarder,
    httpProxyForwarder,
  ]
}
