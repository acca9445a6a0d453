// A real `consul agent -dev` (or a one-node server with a data folder) for the
// demo, the tests and the benchmarks: free loopback ports, ACLs on with default
// deny, a management token for setting things up and a read-only token
// (config/acl/switchyard-proxy.hcl) for the proxy. Development tooling (dev/ is
// never compiled into dist/ nor shipped):
// `switchyard serve` never uses it.

import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

export interface ConsulInfo {
  /** `http://127.0.0.1:port` */
  readonly address: string
  readonly managementToken: string
  /** SecretID of the read-only token Switchyard uses. */
  readonly proxyToken: string
  readonly binary: string
}

/** The checkout (or installed package) root: the folder holding config/ and scripts/. */
const ROOT = findRoot(dirname(fileURLToPath(import.meta.url)))

function findRoot(from: string): string {
  let dir = from
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir)
    if (up === dir) throw new Error(`no package.json above ${from}`)
    dir = up
  }
  return dir
}

export async function freePort(): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** Runs scripts/consul (CONSUL_BIN, PATH, cache, else build) and returns the binary's path. */
export async function findConsulBinary(): Promise<string> {
  const { stdout } = await promisify(execFile)('bash', [join(ROOT, 'scripts/consul')], {
    maxBuffer: 1 << 20,
    timeout: 30 * 60_000,
  })
  return stdout.trim()
}

/** PEM files for an agent that also serves HTTPS. */
export interface AgentTls {
  readonly caFile: string
  readonly certFile: string
  readonly keyFile: string
}

export class ConsulAgent {
  readonly binary: string
  readonly managementToken = randomUUID()
  readonly proxyToken = randomUUID()
  private dir = ''
  private ports: { http: number; https: number; serfLan: number; serfWan: number; server: number } | null =
    null
  private child: ChildProcess | null = null
  private readonly tls: AgentTls | null
  private readonly server: boolean
  private tokensCreated = false

  /**
   * `tls`: also serve HTTPS with this certificate (see `httpsAddress`).
   * `server`: a single-node server with a data folder instead of `-dev`, so a
   * restart keeps its catalog, KV, tokens and index, as a production server does.
   */
  constructor(binary: string, options: { tls?: AgentTls; server?: boolean } = {}) {
    this.binary = binary
    this.tls = options.tls ?? null
    this.server = options.server ?? false
  }

  /** `https://127.0.0.1:port`, when started with TLS. */
  get httpsAddress(): string {
    if (!this.ports || !this.tls) throw new Error('consul agent not started with TLS')
    return `https://127.0.0.1:${this.ports.https}`
  }

  get address(): string {
    if (!this.ports) throw new Error('consul agent not started')
    return `http://127.0.0.1:${this.ports.http}`
  }

  get info(): ConsulInfo {
    return {
      address: this.address,
      managementToken: this.managementToken,
      proxyToken: this.proxyToken,
      binary: this.binary,
    }
  }

  /** Starts the agent (same ports and tokens on a restart) and waits until ACLs work. */
  async start(): Promise<void> {
    if (!this.ports) {
      this.dir = mkdtempSync(join(tmpdir(), 'switchyard-consul-'))
      this.ports = {
        http: await freePort(),
        https: this.tls ? await freePort() : -1,
        serfLan: await freePort(),
        serfWan: await freePort(),
        server: await freePort(),
      }
      writeFileSync(
        join(this.dir, 'agent.json'),
        JSON.stringify({
          node_name: 'switchyard-test',
          bind_addr: '127.0.0.1',
          client_addr: '127.0.0.1',
          advertise_addr: '127.0.0.1',
          disable_update_check: true,
          log_level: 'warn',
          ports: {
            http: this.ports.http,
            https: this.ports.https,
            dns: -1,
            grpc: -1,
            grpc_tls: -1,
            serf_lan: this.ports.serfLan,
            serf_wan: this.ports.serfWan,
            server: this.ports.server,
          },
          limits: { http_max_conns_per_client: 8192 },
          ...(this.server
            ? {
                server: true,
                bootstrap_expect: 1,
                data_dir: join(this.dir, 'data'),
                // Raft's fastest timings: a single local server elects itself in about a second.
                performance: { raft_multiplier: 1 },
              }
            : {}),
          ...(this.tls
            ? {
                tls: {
                  defaults: {
                    ca_file: this.tls.caFile,
                    cert_file: this.tls.certFile,
                    key_file: this.tls.keyFile,
                    verify_incoming: false,
                  },
                },
              }
            : {}),
          acl: {
            enabled: true,
            default_policy: 'deny',
            enable_token_persistence: false,
            tokens: { initial_management: this.managementToken, agent: this.managementToken },
          },
        }),
      )
    }
    const log = createWriteStream(join(this.dir, 'consul.log'), { flags: 'a' })
    const mode = this.server ? [] : ['-dev']
    const child = spawn(this.binary, ['agent', ...mode, '-config-file', join(this.dir, 'agent.json')], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    child.stdout?.pipe(log)
    child.stderr?.pipe(log)
    this.child = child
    // Never leave an agent behind, even when the parent dies of an error.
    const killOnExit = () => child.kill('SIGKILL')
    process.once('exit', killOnExit)
    child.once('exit', () => process.off('exit', killOnExit))
    const exited = once(child, 'exit').then(([code]) => {
      throw new Error(`consul agent exited with ${code}; log: ${this.logTail()}`)
    })
    await Promise.race([this.waitUntilUsable(), exited])
    exited.catch(() => {})
    // A dev agent restarts empty; a server keeps the token it made before.
    if (!this.server || !this.tokensCreated) await this.createProxyToken()
    this.tokensCreated = true
  }

  async stop(): Promise<void> {
    const child = this.child
    this.child = null
    // Exited already, by its own hand or a signal (Ctrl-C reaches the whole group): 'exit' has been emitted.
    if (!child || child.exitCode !== null || child.signalCode !== null) return
    const exit = once(child, 'exit').catch(() => {})
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000)
    await exit
    clearTimeout(timer)
  }

  /** Stops and removes the data folder. */
  async destroy(): Promise<void> {
    await this.stop()
    if (this.dir) rmSync(this.dir, { recursive: true, force: true })
  }

  logTail(): string {
    try {
      return readFileSync(join(this.dir, 'consul.log'), 'utf8').slice(-2000)
    } catch {
      return '(no log)'
    }
  }

  private async waitUntilUsable(): Promise<void> {
    const deadline = Date.now() + 60_000
    let last = ''
    while (Date.now() < deadline) {
      try {
        const leader = await fetch(`${this.address}/v1/status/leader`)
        const body = await leader.text()
        if (leader.ok && body.length > 2) {
          // The ACL system is up once the management token can read its own policy set.
          const self = await fetch(`${this.address}/v1/acl/token/self`, {
            headers: { 'x-consul-token': this.managementToken },
          })
          if (self.ok) return
          last = `acl: ${self.status}`
        }
      } catch (err) {
        last = String(err)
      }
      await new Promise((r) => setTimeout(r, 100))
    }
    throw new Error(`consul agent not ready in 60s (${last}); log: ${this.logTail()}`)
  }

  private async createProxyToken(): Promise<void> {
    const rules = readFileSync(join(ROOT, 'config/acl/switchyard-proxy.hcl'), 'utf8')
    const headers = { 'x-consul-token': this.managementToken }
    const policy = await fetch(`${this.address}/v1/acl/policy`, {
      method: 'PUT',
      headers,
      body: JSON.stringify({ Name: 'switchyard-proxy', Rules: rules }),
    })
    if (!policy.ok) throw new Error(`creating policy: ${policy.status} ${await policy.text()}`)
    const token = await fetch(`${this.address}/v1/acl/token`, {
      method: 'PUT',
      headers,
      body: JSON.stringify({
        SecretID: this.proxyToken,
        Description: 'switchyard proxy (tests)',
        Policies: [{ Name: 'switchyard-proxy' }],
      }),
    })
    if (!token.ok) throw new Error(`creating token: ${token.status} ${await token.text()}`)
  }
}
