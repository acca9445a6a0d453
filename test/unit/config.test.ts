import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { loadConfig } from '../../src/config/load.js'
import { configSchema } from '../../src/config/schema.js'
import { ConfigError } from '../../src/errors.js'

const documented = readFileSync(new URL('../../config/switchyard.yaml', import.meta.url), 'utf8')

function leafPaths(value: unknown, prefix = ''): string[] {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return [prefix]
  return Object.entries(value).flatMap(([k, v]) => leafPaths(v, prefix ? `${prefix}.${k}` : k))
}

/** Option paths as the schema declares them (before transforms such as host:port parsing). */
function schemaPaths(schema: unknown, prefix = ''): string[] {
  const def = (
    schema as { _zod: { def: { type: string; innerType?: unknown; shape?: Record<string, unknown> } } }
  )._zod.def
  if ((def.type === 'default' || def.type === 'prefault') && def.innerType)
    return schemaPaths(def.innerType, prefix)
  if (def.type === 'object' && def.shape) {
    return Object.entries(def.shape).flatMap(([k, v]) => schemaPaths(v, prefix ? `${prefix}.${k}` : k))
  }
  return [prefix]
}

function configError(fn: () => unknown): ConfigError {
  try {
    fn()
  } catch (err) {
    if (err instanceof ConfigError) return err
    throw err
  }
  throw new Error('expected a ConfigError')
}

describe('config/switchyard.yaml', () => {
  it('documents exactly the options the code reads', () => {
    const fromFile = leafPaths(parse(documented)).sort()
    expect(fromFile).toEqual(schemaPaths(configSchema).sort())
  })

  it('states the real defaults', () => {
    expect(loadConfig([], {}, { path: 'switchyard.yaml', text: documented })).toEqual(
      loadConfig([], {}, null),
    )
  })
})

describe('loadConfig', () => {
  it('layers file < environment < flags', () => {
    const file = { path: 'f.yaml', text: 'proxy:\n  listen: 127.0.0.1:1000\nconsul:\n  address: file:8500\n' }
    const env = { CONSUL_HTTP_ADDR: 'env-host:8600', SWITCHYARD_LISTEN: '127.0.0.1:2000' }
    const config = loadConfig(['--listen', '127.0.0.1:3000'], env, file)
    expect(config.proxy.listen).toEqual({ host: '127.0.0.1', port: 3000 })
    expect(config.consul.origin).toBe('http://env-host:8600')
  })

  it('reads Consul conventions: CONSUL_HTTP_SSL and https addresses', () => {
    expect(
      loadConfig([], { CONSUL_HTTP_ADDR: 'consul:8501', CONSUL_HTTP_SSL: 'true' }, null).consul.origin,
    ).toBe('https://consul:8501')
    expect(loadConfig([], { CONSUL_HTTP_ADDR: 'https://consul' }, null).consul.origin).toBe(
      'https://consul:8501',
    )
    expect(loadConfig([], { CONSUL_HTTP_TOKEN_FILE: '/run/secrets/t' }, null).consul.tokenFile).toBe(
      '/run/secrets/t',
    )
  })

  it('parses durations', () => {
    const config = loadConfig(
      [],
      {},
      { path: 'f', text: 'proxy:\n  timeouts:\n    connect: 250ms\n    idle: 2m\n' },
    )
    expect(config.proxy.timeouts.connect).toBe(250)
    expect(config.proxy.timeouts.idle).toBe(120_000)
  })

  it.each([
    ['proxy:\n  listen: nonsense\n', 'proxy.listen', 'is not host:port'],
    ['proxy:\n  lisen: 127.0.0.1:1\n', 'proxy.lisen', 'unknown option'],
    ['proxy:\n  strategy: fastest\n', 'proxy.strategy', 'round-robin'],
    ['proxy:\n  timeouts:\n    connect: soon\n', 'proxy.timeouts.connect', 'not a duration'],
    ['consul:\n  wait: 20m\n', 'consul.wait', 'between 1s and 10m'],
    ['routing:\n  targetPrefix: /switchyard/\n', 'routing.targetPrefix', 'must not start or end with /'],
    ['routing:\n  healthyStatuses: [critical]\n', 'routing.healthyStatuses.0', 'passing'],
    ['- a list\n', 'f.yaml', 'must be a YAML mapping'],
    ['proxy: [\n', 'f.yaml', 'not valid YAML'],
  ])('rejects %j naming the field', (text, field, words) => {
    const err = configError(() => loadConfig([], {}, { path: 'f.yaml', text }))
    expect(err.code).toBe('SWY_ERR_CONFIG')
    expect(err.field).toBe(field)
    expect(err.message).toContain(words)
  })

  it('rejects an unknown flag and a bad Consul address', () => {
    expect(configError(() => loadConfig(['--nope'], {}, null)).message).toContain("Unknown option '--nope'")
    expect(configError(() => loadConfig([], { CONSUL_HTTP_ADDR: 'ftp://x:1' }, null)).field).toBe(
      'consul.address',
    )
  })
})
