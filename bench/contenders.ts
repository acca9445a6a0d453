// Everything the benchmark can put between the load generator and the
// backend. A contender says whether it can run on this machine (probe) and
// how to start it (start); the sections only ever see the list. A new mode of
// Switchyard (say `serve --workers N`) is one more entry made with
// switchyardContender(name, extra CLI arguments).

import { execFile } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { promisify } from 'node:util'
import { stringify } from 'yaml'
import { freePort } from '../dev/consul/agent.js'
import type { BenchConsul } from './consul.js'
import { startNginx } from './nginx.js'
import { Child, nodeTs, ROOT, waitForHttp } from './procs.js'
import { type BenchCertificate, waitForHttps } from './tls.js'

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
  /**
   * The run's certificate: contenders that can terminate TLS add a TLS
   * listener with it (null: no TLS workloads in this run).
   */
  readonly tls: BenchCertificate | null
  readonly say: (line: string) => void
}

export interface Running {
  readonly name: string
  /** Base URL for requests: `http://127.0.0.1:port`. */
  readonly url: string
  /** Base URL of its TLS listener (HTTP/1.1 and HTTP/2 by ALPN), `https://127.0.0.1:port`; absent without one. */
  readonly tlsUrl?: string
  /** Root of the processes behind `tlsUrl` when they are not `pid`'s (CPU and memory of the TLS workloads). */
  readonly tlsPid?: number
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
  /** `mayBuild`: whether a missing contender may be built now (Fabio, with Go; minutes). */
  probe(options?: { readonly mayBuild: boolean }): Promise<Probe>
  start(ctx: BenchContext): Promise<Running>
}

const exec = promisify(execFile)
const START_TIMEOUT_MS = 30_000
/** Enough for the 1,000-connection workload's clients plus upstream connections. */
export const PROXY_OPEN_FILES = 4_096

/** The backend itself: what a request costs with nothing in between. */
export const direct: Contender = {
  name: 'direct',
  role: 'baseline',
  what: 'no proxy: the load generator talks to the backend (the reference for what a proxy adds)',
  probe: async () => ({ ok: true, version: 'the backend' }),
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
  /** Adds an https listener serving this certificate (from a directory, as operators give files). */
  readonly tls?: BenchCertificate
  readonly onLine?: (line: string) => void
}

export interface SwitchyardProcess {
  readonly child: Child
  readonly url: string
  /** `https://127.0.0.1:port` of the https listener, when `tls` was given. */
  readonly tlsUrl?: string
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
  const tlsPort = options.tls ? await freePort() : null
  const configFile = join(options.dir, 'switchyard.yaml')
  writeFileSync(
    configFile,
    stringify({
      proxy:
        tlsPort === null
          ? { listen: `127.0.0.1:${port}` }
          : {
              listeners: [
                { address: `127.0.0.1:${port}`, protocol: 'http' },
                { address: `127.0.0.1:${tlsPort}`, protocol: 'https' },
              ],
            },
      admin: { listen: `127.0.0.1:${adminPort}` },
      consul: { address: options.consulAddress },
      log: { level: 'info' },
      // Certificates from the directory only: the benchmark's proxy token has
      // no read on the default KV prefix, which would only add a problem.
      ...(options.tls ? { tls: { certificates: { dir: options.tls.dir, consulPrefix: '' } } } : {}),
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
    { env, onLine: options.onLine, openFiles: PROXY_OPEN_FILES },
  )
  const adminUrl = `http://127.0.0.1:${adminPort}`
  try {
    await waitForHttp(`${adminUrl}/health`, START_TIMEOUT_MS, child)
  } catch (err) {
    await child.stop()
    throw err
  }
  return {
    child,
    url: `http://127.0.0.1:${port}`,
    tlsUrl: tlsPort === null ? undefined : `https://127.0.0.1:${tlsPort}`,
    adminUrl,
  }
}

/**
 * `switchyard serve` as a contender. `args` are extra CLI arguments (a later
 * `--workers N` mode is `switchyardContender('switchyard x2', ['--workers', '2'])`);
 * `dist` runs another compiled tree, to compare two builds in one run; `tls`
 * adds an https listener with the run's certificate (when the run has one).
 */
export function switchyardContender(
  name = 'switchyard',
  args: readonly string[] = [],
  what = 'switchyard serve --workers 1 (one process), otherwise the default config',
  dist?: string,
  tls = false,
  nodeArgs?: readonly string[],
): Contender {
  return {
    name,
    role: 'switchyard',
    what,
    probe: async () => {
      const tree = dist ?? join(ROOT, 'dist')
      const main = join(tree, 'cli/main.js')
      if (!existsSync(main)) return { ok: false, reason: `${main} is not built (npm run build)` }
      return { ok: true, version: `${await buildVersion(tree)} on node ${process.version}` }
    },
    start: async (ctx) => {
      const start = (suffix: string, cert?: BenchCertificate) =>
        startSwitchyardProcess({
          name: `${name}${suffix}`,
          dir: join(ctx.tmp, `${name}${suffix}`.replace(/[^\w.-]+/g, '_')),
          consulAddress: ctx.consul.info.address,
          token: ctx.consul.info.proxyToken,
          args,
          dist,
          tls: cert,
          nodeArgs,
        })
      const sy = await start('')
      // The TLS workloads get a second process with an https listener beside
      // the plain one: the plain workloads and the idle memory keep measuring
      // the plain configuration (loading TLS and HTTP/2 adds to the idle RSS).
      let secure: SwitchyardProcess | null = null
      try {
        await waitForHttp(`${sy.url}${ctx.probePath}`, START_TIMEOUT_MS, sy.child)
        if (tls && ctx.tls) {
          secure = await start(' tls', ctx.tls)
          await waitForHttps(`${secure.tlsUrl}${ctx.probePath}`, ctx.tls.cert, START_TIMEOUT_MS, secure.child)
        }
      } catch (err) {
        await secure?.child.stop()
        await sy.child.stop()
        throw err
      }
      return {
        name,
        url: sy.url,
        pid: sy.child.pid,
        tlsUrl: secure?.tlsUrl,
        tlsPid: secure?.child.pid,
        stop: async () => {
          await secure?.child.stop()
          await sy.child.stop()
        },
      }
    },
  }
}

/**
 * `0.1.0 (a1b2c3d, uncommitted changes)` for the checkout a dist/ folder was
 * built in, so a report says which build of Switchyard it measured.
 */
async function buildVersion(tree: string): Promise<string> {
  const checkout = dirname(tree)
  let version = '?'
  try {
    version = (JSON.parse(readFileSync(join(checkout, 'package.json'), 'utf8')) as { version: string })
      .version
  } catch {
    // a dist/ outside a checkout: no version to give
  }
  try {
    const head = (await exec('git', ['-C', checkout, 'rev-parse', '--short', 'HEAD'])).stdout.trim()
    const dirty = (await exec('git', ['-C', checkout, 'status', '--porcelain', '--', 'src'])).stdout.trim()
    return `${version} (${head}${dirty ? ', uncommitted changes in src/' : ''})`
  } catch {
    return version
  }
}

/** Starts a Node process that prints `listening <port>` when ready. */
export async function startListening(
  name: string,
  command: string,
  args: readonly string[],
): Promise<Running> {
  let resolvePort: (port: number) => void = () => {}
  const port = new Promise<number>((resolve) => {
    resolvePort = resolve
  })
  const child = new Child(name, command, args, {
    openFiles: PROXY_OPEN_FILES,
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

/**
 * Today's request path without Switchyard's routing: a node:http server
 * forwarding through an undici Pool (bench/forwarders/undici.ts, a copy of
 * that path kept in the benchmark so it stays measurable once the engine in
 * src/proxy/ replaces it).
 */
export const undiciForwarder: Contender = {
  name: 'node:http+undici',
  role: 'engine',
  what: 'the request path before the socket-level engine: node:http server + undici Pool dispatch handler, header rewriting; no table, lookup or pick (bench/forwarders/undici.ts)',
  probe: async () => {
    const pkg = (await import('undici/package.json', { with: { type: 'json' } })).default as {
      version: string
    }
    return { ok: true, version: `undici ${pkg.version} on node ${process.version}` }
  },
  start: async (ctx) => {
    const [cmd, args] = nodeTs('forwarders/undici.ts', [ctx.backendOrigin])
    return startListening('node:http+undici', cmd, args)
  },
}

export const httpProxyForwarder: Contender = {
  name: 'http-proxy',
  role: 'engine',
  what: 'minimal forwarder on the http-proxy package (node:http server, keep-alive agent, xfwd): no table, lookup or pick',
  probe: async () => {
    try {
      const pkg = (await import('http-proxy/package.json', { with: { type: 'json' } })).default as {
        version: string
      }
      return { ok: true, version: `http-proxy ${pkg.version} on node ${process.version}` }
    } catch {
      return { ok: false, reason: 'http-proxy is not installed (npm ci installs devDependencies)' }
    }
  },
  start: async (ctx) => {
    const [cmd, args] = nodeTs('forwarders/http-proxy.ts', [ctx.backendOrigin])
    return startListening('http-proxy', cmd, args)
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
  what:
    'NGINX (Debian package), upstream keepalive 1024 (no reconnects at 1,000 connections), request bodies streamed (proxy_request_buffering off), access log off, proxy_max_temp_file_size 0; ' +
    'TLS listener `ssl http2`, ssl_protocols TLSv1.2 TLSv1.3, session cache and tickets as NGINX defaults (no shared cache, tickets on)',
  probe: () => versionOf('nginx', ['-v'], /nginx\/(\S+)/),
  start: async (ctx) => {
    const port = await freePort()
    const tlsPort = ctx.tls ? await freePort() : null
    const upstream = new URL(ctx.backendOrigin)
    const url = `http://127.0.0.1:${port}`
    const tls =
      ctx.tls && tlsPort !== null
        ? `
    listen 127.0.0.1:${tlsPort} ssl http2;
    ssl_certificate ${ctx.tls.certFile};
    ssl_certificate_key ${ctx.tls.keyFile};
    # Switchyard's versions (TLS 1.2 and 1.3). NGINX 1.22's default list stops
    # at TLS 1.2 (1.3 joined it in 1.23.4), which would compare TLS 1.2
    # handshakes, cheaper to resume, with TLS 1.3 ones. Session cache and
    # tickets stay NGINX's defaults.
    ssl_protocols TLSv1.2 TLSv1.3;`
        : ''
    const p = await startNginx({
      name: 'nginx',
      dir: join(ctx.tmp, 'nginx'),
      workers: ctx.peerWorkers,
      probeUrl: `${url}${ctx.probePath}`,
      http: `  upstream backend {
    server ${upstream.host};
    # Idle upstream connections kept per worker: as many as the largest
    # workload has clients, so NGINX is measured forwarding, not reconnecting.
    keepalive 1024;
    keepalive_requests 10000000;
  }
  server {
    listen 127.0.0.1:${port};${tls}
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      # Stream large bodies rather than spill them to disk.
      proxy_max_temp_file_size 0;
      # Request bodies stream to the instance as they arrive, as every other
      # contender does. NGINX's default buffers a body first, and one larger
      # than client_body_buffer_size (8 KiB on x86-64: the 16 KiB POST) goes
      # through a temporary file: that would measure the disk, not forwarding.
      proxy_request_buffering off;
      client_body_buffer_size 64k;
    }
  }`,
    })
    const tlsUrl = tlsPort === null ? undefined : `https://127.0.0.1:${tlsPort}`
    if (tlsUrl && ctx.tls) {
      try {
        await waitForHttps(`${tlsUrl}${ctx.probePath}`, ctx.tls.cert, START_TIMEOUT_MS, p.child)
      } catch (err) {
        await p.stop()
        throw err
      }
    }
    return { name: 'nginx', url, tlsUrl, pid: p.child.pid, stop: () => p.stop() }
  },
}

export const haproxy: Contender = {
  name: 'haproxy',
  role: 'peer',
  what:
    'HAProxy (Debian package), HTTP mode, keep-alive both sides (http-reuse safe), no logging; ' +
    'TLS frontend `ssl crt <pem> alpn h2,http/1.1`, TLS settings and session cache/tickets as HAProxy defaults',
  probe: () => versionOf('haproxy', ['-v'], /HAProxy version (\S+)/),
  start: async (ctx) => {
    const dir = join(ctx.tmp, 'haproxy')
    mkdirSync(dir, { recursive: true })
    const port = await freePort()
    const tlsPort = ctx.tls ? await freePort() : null
    const upstream = new URL(ctx.backendOrigin)
    // The same routing behind a TLS bind: HTTP/2 and HTTP/1.1 by ALPN, as the others.
    const tls =
      ctx.tls && tlsPort !== null
        ? `
frontend bench_tls
  bind 127.0.0.1:${tlsPort} ssl crt ${ctx.tls.pemFile} alpn h2,http/1.1
  default_backend backend
`
        : ''
    const conf = `# generated by bench/contenders.ts
global
  nbthread ${ctx.peerWorkers}
  maxconn 4096

defaults
  mode http
  # Room for the 1,000-connection workload (a frontend's default is lower).
  maxconn 4096
  option http-keep-alive
  option forwardfor
  http-reuse safe
  timeout connect 5s
  timeout client 60s
  timeout server 60s

frontend bench
  bind 127.0.0.1:${port}
  default_backend backend
${tls}
backend backend
  server backend ${upstream.host}
`
    writeFileSync(join(dir, 'haproxy.cfg'), conf)
    // Two sockets per connection: HAProxy refuses a maxconn its file limit cannot hold.
    const child = new Child('haproxy', 'haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')], {
      openFiles: 2 * 4096 + 100,
    })
    const url = `http://127.0.0.1:${port}`
    const tlsUrl = tlsPort === null ? undefined : `https://127.0.0.1:${tlsPort}`
    try {
      await waitForHttp(`${url}${ctx.probePath}`, START_TIMEOUT_MS, child)
      if (tlsUrl && ctx.tls)
        await waitForHttps(`${tlsUrl}${ctx.probePath}`, ctx.tls.cert, START_TIMEOUT_MS, child)
    } catch (err) {
      await child.stop()
      throw err
    }
    return { name: 'haproxy', url, tlsUrl, pid: child.pid, stop: () => child.stop() }
  },
}

let fabioPath: Promise<string> | null = null

/**
 * The fabio binary (scripts/fabio: FABIO_BIN, PATH, cache, else a build with
 * Go unless `mayBuild` is false).
 */
export function fabioBinary(mayBuild = true): Promise<string> {
  if (fabioPath === null) {
    const env = mayBuild ? process.env : { ...process.env, FABIO_NO_BUILD: '1' }
    const found = exec('bash', [join(ROOT, 'scripts/fabio')], { timeout: 20 * 60_000, env }).then((r) =>
      r.stdout.trim(),
    )
    // A refusal to build is not remembered: a later caller may allow it.
    if (!mayBuild) return found
    fabioPath = found
  }
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
  const child = new Child(
    'fabio',
    await fabioBinary(),
    [
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
    ],
    { openFiles: PROXY_OPEN_FILES },
  )
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
  probe: async (options) => {
    try {
      const binary = await fabioBinary(options?.mayBuild ?? true)
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
 * Every contender, in report order. `dist` is the Switchyard build under test
 * (default: this checkout's dist/, `--dist DIR`); `compareDist` adds a second
 * Switchyard running another compiled tree (`--compare-dist DIR`), for
 * before/after figures of a change in one interleaved run.
 */
export function contenders(dist: string | null = null, compareDist: string | null = null): Contender[] {
  const from = dist ? ` from ${dist}` : ''
  // Node flags of the compared build, for before/after of a flag: SWITCHYARD_COMPARE_NODE_ARGS.
  const compareNodeArgs = process.env.SWITCHYARD_COMPARE_NODE_ARGS?.split(' ').filter((a) => a !== '')
  return [
    direct,
    switchyardContender(
      'switchyard',
      [],
      `switchyard serve --workers 1 (one process)${from}, otherwise the default config; ` +
        'the TLS workloads go to a second such process with an https listener (HTTP/2 and HTTP/1.1 by ALPN), certificate from a directory',
      dist ?? undefined,
      true,
    ),
    // One primary and two proxy workers: on a 2-core box they compete with
    // the load generator and the backend for the same cores (reported as such).
    switchyardContender(
      'switchyard x2',
      ['--workers', '2'],
      `switchyard serve --workers 2 (a primary and two proxy workers)${from}`,
      dist ?? undefined,
    ),
    ...(compareDist
      ? [
          switchyardContender(
            'switchyard (compared build)',
            [],
            `switchyard serve --workers 1 from ${compareDist}${compareNodeArgs ? ` with node flags [${compareNodeArgs.join(' ')}]` : ''}`,
            compareDist,
            false,
            compareNodeArgs,
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
