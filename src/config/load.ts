// loadConfig(argv, env, file): pure and validated. Layers, lowest first:
// defaults, the YAML file, environment variables (Consul's own names, so an
// agent-side shell just works), command-line flags. Any bad value throws a
// ConfigError that names the field, and the CLI exits 2.

import { parse as parseYaml } from 'yaml'
import type { z } from 'zod'
import { ConfigError } from '../errors.js'
import { type Config, configSchema } from './schema.js'

const { parseArgs } = process.getBuiltinModule('node:util')

export type Env = Readonly<Record<string, string | undefined>>

export interface ConfigFile {
  readonly path: string
  readonly text: string
}

export interface ResolvedConfig extends Config {
  readonly consul: Config['consul'] & {
    /** `http(s)://host:port` derived from address and tls.enabled. */
    readonly origin: string
  }
}

/** Command-line flags and the config field each one sets. */
export const CONFIG_FLAGS = {
  listen: { type: 'string', field: 'proxy.listen' },
  'admin-listen': { type: 'string', field: 'admin.listen' },
  strategy: { type: 'string', field: 'proxy.strategy' },
  workers: { type: 'string', field: 'proxy.workers' },
  'access-log': { type: 'boolean', field: 'proxy.accessLog' },
  'consul-addr': { type: 'string', field: 'consul.address' },
  'consul-token-file': { type: 'string', field: 'consul.tokenFile' },
  'consul-datacenter': { type: 'string', field: 'consul.datacenter' },
  'tag-prefix': { type: 'string', field: 'routing.tagPrefix' },
  'target-prefix': { type: 'string', field: 'routing.targetPrefix' },
  'log-level': { type: 'string', field: 'log.level' },
} as const

/** Environment variables and the config field each one sets. */
const CONFIG_ENV: Readonly<Record<string, string>> = {
  CONSUL_HTTP_ADDR: 'consul.address',
  CONSUL_HTTP_TOKEN: 'consul.token',
  CONSUL_HTTP_TOKEN_FILE: 'consul.tokenFile',
  CONSUL_HTTP_SSL: 'consul.tls.enabled',
  CONSUL_HTTP_SSL_VERIFY: 'consul.tls.verify',
  CONSUL_CACERT: 'consul.tls.caFile',
  CONSUL_CLIENT_CERT: 'consul.tls.certFile',
  CONSUL_CLIENT_KEY: 'consul.tls.keyFile',
  CONSUL_TLS_SERVER_NAME: 'consul.tls.serverName',
  CONSUL_DATACENTER: 'consul.datacenter',
  SWITCHYARD_LISTEN: 'proxy.listen',
  SWITCHYARD_WORKERS: 'proxy.workers',
  SWITCHYARD_ADMIN_LISTEN: 'admin.listen',
  SWITCHYARD_LOG_LEVEL: 'log.level',
  SWITCHYARD_TAG_PREFIX: 'routing.tagPrefix',
  SWITCHYARD_TARGET_PREFIX: 'routing.targetPrefix',
}

/** Flags a subcommand accepts besides the config flags, in node:util parseArgs form. */
export type CommandFlags = Readonly<
  Record<
    string,
    { readonly type: 'string' | 'boolean'; readonly short?: string; readonly multiple?: boolean }
  >
>

/** Parsed flag values: a repeatable flag (`multiple`) gives every value it was given. */
export type FlagValues = Record<string, string | boolean | string[] | boolean[] | undefined>

/** Where each value of a loaded config came from, for error messages (see sourceOf). */
const SOURCES = new WeakMap<ResolvedConfig, ReadonlyMap<string, string>>()

/**
 * Where `field` (a dotted path) of a config returned by loadConfig was set:
 * `set by CONSUL_HTTP_ADDR`, `set by --listen`, `set in <file>`; null for a default.
 */
export function sourceOf(config: ResolvedConfig, field: string): string | null {
  return SOURCES.get(config)?.get(field) ?? null
}

const PARSE_OPTIONS = {
  config: { type: 'string' },
  ...Object.fromEntries(Object.entries(CONFIG_FLAGS).map(([name, f]) => [name, { type: f.type }])),
} as const

/** Splits flags from positional arguments; unknown flags are a ConfigError. */
export function parseFlags(
  argv: readonly string[],
  command: CommandFlags = {},
): { values: FlagValues; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({
      args: [...argv],
      options: { ...command, ...PARSE_OPTIONS },
      allowPositionals: true,
      strict: true,
    })
    return { values: values as FlagValues, positionals }
  } catch (err) {
    throw new ConfigError('argv', (err as Error).message)
  }
}

/** The config file named by `--config` or SWITCHYARD_CONFIG, or null for defaults only. */
export function configPath(argv: readonly string[], env: Env, command: CommandFlags = {}): string | null {
  const flag = parseFlags(argv, command).values.config
  return typeof flag === 'string' ? flag : env.SWITCHYARD_CONFIG || null
}

export function loadConfig(
  argv: readonly string[],
  env: Env,
  file: ConfigFile | null,
  command: CommandFlags = {},
): ResolvedConfig {
  const raw: Record<string, unknown> = file ? parseFile(file) : {}
  const sources = new Map<string, string>()
  const sourceOfPath = (path: string) => sources.get(path) ?? (file ? `set in ${file.path}` : undefined)

  for (const [name, field] of Object.entries(CONFIG_ENV)) {
    const value = env[name]
    if (value !== undefined && value !== '') {
      setPath(raw, field, value, `env ${name}`)
      sources.set(field, `set by ${name}`)
    }
  }
  const { values } = parseFlags(argv, command)
  for (const [name, flag] of Object.entries(CONFIG_FLAGS)) {
    const value = values[name]
    if (value !== undefined) {
      setPath(raw, flag.field, value, `--${name}`)
      sources.set(flag.field, `set by --${name}`)
    }
  }

  const result = configSchema.safeParse(raw)
  if (!result.success) throw toConfigError(result.error, sourceOfPath)
  const config = result.data
  const resolved: ResolvedConfig = {
    ...config,
    consul: {
      ...config.consul,
      origin: consulOrigin(config.consul.address, config.consul.tls.enabled, sourceOfPath('consul.address')),
    },
  }
  SOURCES.set(resolved, sources)
  return resolved
}

function parseFile(file: ConfigFile): Record<string, unknown> {
  let doc: unknown
  try {
    doc = parseYaml(file.text)
  } catch (err) {
    throw new ConfigError(file.path, `not valid YAML: ${(err as Error).message.split('\n')[0]}`)
  }
  if (doc === null || doc === undefined) return {}
  if (typeof doc !== 'object' || Array.isArray(doc))
    throw new ConfigError(file.path, 'must be a YAML mapping')
  return doc as Record<string, unknown>
}

function setPath(target: Record<string, unknown>, dotted: string, value: unknown, source: string): void {
  const keys = dotted.split('.')
  let node = target
  for (const key of keys.slice(0, -1)) {
    const next = node[key]
    if (next === undefined) node[key] = {}
    else if (typeof next !== 'object' || next === null || Array.isArray(next)) {
      throw new ConfigError(
        keys.slice(0, keys.indexOf(key) + 1).join('.'),
        `must be a mapping (set by ${source})`,
      )
    }
    node = node[key] as Record<string, unknown>
  }
  node[keys[keys.length - 1] as string] = value
}

function toConfigError(error: z.ZodError, sourceOfPath: (path: string) => string | undefined): ConfigError {
  const issue = error.issues[0]
  if (issue === undefined) return new ConfigError('config', 'invalid')
  let path = issue.path.map(String).join('.')
  let message = issue.message
  if (issue.code === 'unrecognized_keys') {
    const key = issue.keys[0] ?? ''
    path = path ? `${path}.${key}` : key
    message = 'unknown option'
  }
  return new ConfigError(path || 'config', message, sourceOfPath(path))
}

function consulOrigin(address: string, tls: boolean, source?: string): string {
  const withScheme = /^[a-z]+:\/\//i.test(address) ? address : `${tls ? 'https' : 'http'}://${address}`
  let url: URL
  try {
    url = new URL(withScheme)
  } catch {
    throw new ConfigError('consul.address', `"${address}" is not host:port or an http(s) URL`, source)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError('consul.address', `"${address}": only http and https are supported`, source)
  }
  if (url.pathname !== '/' || url.search)
    throw new ConfigError('consul.address', `"${address}" must not have a path`, source)
  return url.port ? url.origin : `${url.protocol}//${url.hostname}:${url.protocol === 'https:' ? 8501 : 8500}`
}
