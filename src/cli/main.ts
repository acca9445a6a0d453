#!/usr/bin/env node
// The `switchyard` command. Wiring only: parse, load config, call into the
// modules, print, exit. Exit codes: 0 done, 1 failed at run time, 2 bad usage
// or configuration (nothing was started).

import cluster from 'node:cluster'
import { readFileSync } from 'node:fs'
import {
  type CommandFlags,
  type ConfigFile,
  configPath,
  type Env,
  loadConfig,
  parseFlags,
} from '../config/load.js'
import { readSnapshotOnce } from '../consul/snapshot.js'
import { ConfigError, SwitchyardError } from '../errors.js'
import { createLogger } from '../log.js'
import { buildRouteTable } from '../routing/build.js'
import { runWorker, startPrimary, workerConfigFrom, workerCount } from './cluster.js'
import { formatRoutes } from './format.js'
import { buildConfigOf, consulClientFor, startSwitchyard } from './serve.js'
import { TARGET_FLAGS, targetClear, targetGet, targetSet } from './target.js'
import { resolveToken } from './token.js'

const USAGE = `usage: switchyard <command> [flags]

commands:
  serve                      run the proxy (and admin listener) until SIGTERM/SIGINT
  routes [--json]            print the routing table Switchyard would build now, then exit
  target get <service> [--json]
                             show a service's target state and whether it is live
  target set <service> (--version V | --slice S | --weights V1=90,V2=10)
             [--cas INDEX] [--wait [--timeout 30s] [--admin URL]]
                             write the target (check-and-set); --wait returns when traffic follows it
                             (as this Switchyard's admin at URL reports, else a dry-run build)
  target clear <service>     delete the target: every healthy instance gets traffic again
  healthcheck                exit 0 if this host's Switchyard answers /health on its admin listener
                             (the container HEALTHCHECK; needs nothing but node)

config flags (override the file and environment):
  --config <file>            YAML config file (default: none; env SWITCHYARD_CONFIG)
  --listen <host:port>       proxy listener (default 0.0.0.0:9999)
  --admin-listen <host:port> admin listener (default 127.0.0.1:9998)
  --consul-addr <addr>       Consul HTTP address (env CONSUL_HTTP_ADDR, default 127.0.0.1:8500)
  --consul-token-file <file> file holding the ACL token (env CONSUL_HTTP_TOKEN_FILE)
  --consul-datacenter <dc>   datacenter to read
  --tag-prefix <prefix>      route tag prefix (default urlprefix-)
  --target-prefix <prefix>   KV prefix of target state (default switchyard/targets)
  --strategy <name>          round-robin | random | least-outstanding
  --workers <n|auto>         proxy worker processes (default auto: one per core)
  --access-log               log every request
  --log-level <level>        fatal | error | warn | info | debug | trace | silent

The token itself is read from CONSUL_HTTP_TOKEN or the token file, never from a flag.
target set/clear need an operator token (config/acl/switchyard-operator.hcl), not the proxy's.
`

const ROUTES_FLAGS: CommandFlags = { json: { type: 'boolean' } }

export async function main(argv: readonly string[], env: Env): Promise<number> {
  const [command, ...rest] = argv
  switch (command) {
    case 'serve':
      return serve(rest, env)
    case 'routes':
      return routes(rest, env)
    case 'target':
      return target(rest, env)
    case 'healthcheck':
      return healthcheck(rest, env)
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE)
      return command === undefined ? 2 : 0
    default:
      process.stderr.write(`switchyard: unknown command "${command}"\n\n${USAGE}`)
      return 2
  }
}

function readConfig(argv: readonly string[], env: Env, command: CommandFlags = {}) {
  const config = readConfigOnly(argv, env, command)
  return { config, token: resolveToken(config) }
}

function readConfigOnly(argv: readonly string[], env: Env, command: CommandFlags = {}) {
  const path = configPath(argv, env, command)
  let file: ConfigFile | null = null
  if (path !== null) {
    try {
      file = { path, text: readFileSync(path, 'utf8') }
    } catch (err) {
      throw new ConfigError('--config', `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? err}`)
    }
  }
  return loadConfig(argv, env, file, command)
}

async function serve(argv: readonly string[], env: Env): Promise<number> {
  if (cluster.isWorker) {
    // A proxy worker forked by the primary: its config comes from the primary,
    // it has no Consul access (so no token), tables arrive over IPC.
    const config = workerConfigFrom(env)
    await runWorker(
      config,
      createLogger(config.log.level).child({ worker: cluster.worker?.id, pid: process.pid }),
    )
    return 0
  }
  const { config, token } = readConfig(argv, env)
  const log = createLogger(config.log.level)
  const workers = workerCount(config.proxy.workers)
  const app =
    workers > 1
      ? await startPrimary(config, log, token, workers)
      : await startSwitchyard(config, { log, token })
  return new Promise<number>((resolve, reject) => {
    const onSignal = (signal: NodeJS.Signals) => {
      log.info({ signal }, 'signal received')
      process.off('SIGTERM', onSignal)
      process.off('SIGINT', onSignal)
      void app.stop().then(() => resolve(0))
    }
    process.on('SIGTERM', onSignal)
    process.on('SIGINT', onSignal)
    if ('failed' in app) {
      void app.failed.then((err) => {
        process.off('SIGTERM', onSignal)
        process.off('SIGINT', onSignal)
        void app.stop().then(() => reject(err))
      })
    }
  })
}

async function routes(argv: readonly string[], env: Env): Promise<number> {
  const { config, token } = readConfig(argv, env, ROUTES_FLAGS)
  const { values } = parseFlags(argv, ROUTES_FLAGS)
  const client = consulClientFor(config, token)
  try {
    const { catalog, targets } = await readSnapshotOnce(client, {
      tagPrefix: config.routing.tagPrefix,
      targetPrefix: config.routing.targetPrefix,
      stale: config.consul.stale,
    })
    const { table } = buildRouteTable(catalog, targets, buildConfigOf(config))
    process.stdout.write(values.json ? `${JSON.stringify(table.routes, null, 2)}\n` : formatRoutes(table))
    return 0
  } finally {
    await client.close()
  }
}

async function target(argv: readonly string[], env: Env): Promise<number> {
  const [action, service, ...rest] = argv
  const run = { get: targetGet, set: targetSet, clear: targetClear }[action ?? '']
  if (run === undefined || service === undefined || service.startsWith('-')) {
    process.stderr.write(`switchyard: usage: switchyard target get|set|clear <service> [flags]\n`)
    return 2
  }
  const { config, token } = readConfig(rest, env, TARGET_FLAGS)
  const { values } = parseFlags(rest, TARGET_FLAGS)
  const client = consulClientFor(config, token)
  try {
    return await run(
      {
        config,
        client,
        out: (line) => process.stdout.write(`${line}\n`),
        err: (line) => process.stderr.write(`${line}\n`),
      },
      service,
      values,
    )
  } finally {
    await client.close()
  }
}

async function healthcheck(argv: readonly string[], env: Env): Promise<number> {
  const path = configPath(argv, env)
  const file = path === null ? null : { path, text: readFileSync(path, 'utf8') }
  const { host, port } = loadConfig(argv, env, file).admin.listen
  const target =
    host === '0.0.0.0' || host === ''
      ? '127.0.0.1'
      : host === '::'
        ? '[::1]'
        : host.includes(':')
          ? `[${host}]`
          : host
  try {
    const res = await fetch(`http://${target}:${port}/health`, { signal: AbortSignal.timeout(2_000) })
    return res.ok ? 0 : 1
  } catch {
    return 1
  }
}

function report(err: unknown): number {
  if (err instanceof SwitchyardError) {
    process.stderr.write(`switchyard: ${err.code}: ${err.message}\n`)
    const usage = ['SWY_ERR_CONFIG', 'SWY_ERR_TOKEN_FILE', 'SWY_ERR_TARGET_INVALID'].includes(err.code)
    return usage ? 2 : 1
  }
  process.stderr.write(`switchyard: ${(err as Error)?.stack ?? String(err)}\n`)
  return 1
}

main(process.argv.slice(2), process.env).then(
  (code) => {
    process.exitCode = code
  },
  (err) => {
    process.exitCode = report(err)
  },
)
