// The `switchyard` commands. Wiring only: parse, load config, call into the
// modules, print. Loaded by main.ts in every process but a proxy worker.

import {
  type CommandFlags,
  type ConfigFile,
  configPath,
  type Env,
  type FlagValues,
  loadConfig,
  parseFlags,
  type ResolvedConfig,
  sourceOf,
} from '../config/load.js'
import type { ConsulClient } from '../consul/client.js'
import { readSnapshotOnce } from '../consul/snapshot.js'
import { ConfigError, SwitchyardError, UsageError } from '../errors.js'
import { createLogger } from '../log.js'
import { buildRouteTable } from '../routing/build.js'
import { switchyardVersion } from '../version.js'
import { startPrimary, workerCount } from './cluster.js'
import { formatRoutes } from './format.js'
import {
  ROLLOUT_ACTIONS,
  type RolloutAction,
  rolloutAbort,
  rolloutPause,
  rolloutResume,
  rolloutStart,
  rolloutStatus,
} from './rollout.js'
import { buildConfigOf, consulClientFor, startSwitchyard } from './serve.js'
import {
  TARGET_ACTIONS,
  type TargetAction,
  targetClear,
  targetGet,
  targetSet,
  targetToggle,
} from './target.js'
import { resolveToken } from './token.js'
import { COMMAND_HELP, configArgs, distance, GENERAL_HELP, parseCommandLine } from './usage.js'

const { readFileSync } = process.getBuiltinModule('node:fs')

const COMMANDS: Readonly<Record<string, (argv: readonly string[], env: Env) => Promise<number>>> = {
  serve,
  routes,
  target,
  rollout,
  healthcheck,
}

export async function main(argv: readonly string[], env: Env): Promise<number> {
  const [command, ...rest] = argv
  if (command === '--version' || command === '-v' || command === '-V' || command === 'version') {
    process.stdout.write(`switchyard ${switchyardVersion()} (Node.js ${process.version})\n`)
    return 0
  }
  if (command === undefined) {
    process.stderr.write(GENERAL_HELP)
    return 2
  }
  if (command === 'help' || command === '--help' || command === '-h') {
    const topic = rest[0]
    process.stdout.write(topic !== undefined && COMMAND_HELP[topic] ? COMMAND_HELP[topic] : GENERAL_HELP)
    return 0
  }
  const run = COMMANDS[command]
  if (run === undefined) {
    const near = Object.keys(COMMANDS).find((c) => distance(c, command) <= 2)
    throw new UsageError(
      `unknown command "${command}"${near ? ` (did you mean ${near}?)` : ''}; see switchyard --help`,
    )
  }
  if (rest.some((a) => a === '--help' || a === '-h')) {
    process.stdout.write(COMMAND_HELP[command] ?? GENERAL_HELP)
    return 0
  }
  return run(rest, env)
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
      const from = parseFlags(argv, command).values.config === undefined ? 'SWITCHYARD_CONFIG' : '--config'
      throw new ConfigError(from, `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? err}`)
    }
  }
  return loadConfig(argv, env, file, command)
}

async function serve(argv: readonly string[], env: Env): Promise<number> {
  parseCommandLine('serve', argv, {}, { min: 0, max: 0, what: '' })
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

const ROUTES_FLAGS: CommandFlags = { json: { type: 'boolean' } }

async function routes(argv: readonly string[], env: Env): Promise<number> {
  const { values } = parseCommandLine('routes', argv, ROUTES_FLAGS, { min: 0, max: 0, what: '' })
  const { config, token } = readConfig(argv, env, ROUTES_FLAGS)
  return withConsul(config, token, async (client) => {
    const { catalog, targets } = await readSnapshotOnce(client, {
      tagPrefix: config.routing.tagPrefix,
      targetPrefix: config.routing.targetPrefix,
      stale: config.consul.stale,
    })
    const { table } = buildRouteTable(catalog, targets, buildConfigOf(config))
    process.stdout.write(values.json ? `${JSON.stringify(table.routes, null, 2)}\n` : formatRoutes(table))
    return 0
  })
}

async function target(argv: readonly string[], env: Env): Promise<number> {
  const [action, ...rest] = argv
  const actions = Object.keys(TARGET_ACTIONS)
  if (action === undefined || !actions.includes(action)) {
    throw new UsageError(
      `target: ${action === undefined ? 'give an action' : `unknown action "${action}"`}: get, set, toggle or clear; see switchyard target --help`,
    )
  }
  const flags: CommandFlags = TARGET_ACTIONS[action as TargetAction]
  const { values, positionals } = parseCommandLine(`target ${action}`, rest, flags, {
    min: 1,
    max: 1,
    what: `the service: switchyard target ${action} <service>`,
  })
  const service = positionals[0] as string
  const { config, token } = readConfig(rest, env, flags)
  const run = { get: targetGet, set: targetSet, toggle: targetToggle, clear: targetClear }[
    action as TargetAction
  ]
  return withConsul(config, token, (client) =>
    run(
      {
        config,
        client,
        out: (line) => process.stdout.write(`${line}\n`),
        err: (line) => process.stderr.write(`${line}\n`),
        configArgs: configArgs(values),
      },
      service,
      values as FlagValues,
    ),
  )
}

/** `rollout <service> --to V` starts one; `rollout status|pause|resume|abort <service>` acts on it. */
async function rollout(argv: readonly string[], env: Env): Promise<number> {
  const [first, ...others] = argv
  const named = first !== undefined && first in ROLLOUT_ACTIONS && others.some((a) => !a.startsWith('-'))
  const action: RolloutAction = named ? (first as RolloutAction) : 'start'
  const rest = named ? others : argv
  const flags: CommandFlags = ROLLOUT_ACTIONS[action]
  const { values, positionals } = parseCommandLine(
    action === 'start' ? 'rollout' : `rollout ${action}`,
    rest,
    flags,
    {
      min: 1,
      max: 1,
      what:
        action === 'start'
          ? 'the service: switchyard rollout <service> --to <version>'
          : `the service: switchyard rollout ${action} <service>`,
    },
  )
  const service = positionals[0] as string
  const { config, token } = readConfig(rest, env, flags)
  return withConsul(config, token, async (client) => {
    const ctx = {
      config,
      client,
      out: (line: string) => process.stdout.write(`${line}\n`),
      err: (line: string) => process.stderr.write(`${line}\n`),
      configArgs: configArgs(values),
    }
    switch (action) {
      case 'start':
        return await rolloutStart(ctx, service, values as FlagValues)
      case 'status':
        return await rolloutStatus(ctx, service, values as FlagValues)
      case 'pause':
        return await rolloutPause(ctx, service)
      case 'resume':
        return await rolloutResume(ctx, service)
      case 'abort':
        return await rolloutAbort(ctx, service)
    }
  })
}

async function healthcheck(argv: readonly string[], env: Env): Promise<number> {
  parseCommandLine('healthcheck', argv, {}, { min: 0, max: 0, what: '' })
  const { host, port } = readConfigOnly(argv, env).admin.listen
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

/** Runs a one-shot command with a Consul client, closed after; its Consul errors get withConsulHint's hint. */
async function withConsul<T>(
  config: ResolvedConfig,
  token: string,
  use: (client: ConsulClient) => Promise<T>,
): Promise<T> {
  const client = consulClientFor(config, token)
  try {
    return await use(client)
  } catch (err) {
    throw withConsulHint(err, config)
  } finally {
    await client.close()
  }
}

/**
 * Consul errors of a one-shot command, with where the address or token came
 * from: the fix is often a variable set (or not) in another shell.
 */
function withConsulHint(err: unknown, config: ResolvedConfig): unknown {
  if (!(err instanceof SwitchyardError)) return err
  let hint = ''
  if (err.code === 'SWY_ERR_CONSUL_UNREACHABLE') {
    const source = sourceOf(config, 'consul.address')
    hint = source ? `address ${source}` : 'the default address: set CONSUL_HTTP_ADDR or --consul-addr'
  } else if (/\b403\b/.test(err.message)) {
    const source = sourceOf(config, 'consul.tokenFile') ?? sourceOf(config, 'consul.token')
    hint = source ? `token ${source}` : 'no token given: set CONSUL_HTTP_TOKEN_FILE (or CONSUL_HTTP_TOKEN)'
  }
  return hint === '' ? err : new SwitchyardError(err.code, `${err.message} (${hint})`, { cause: err })
}
