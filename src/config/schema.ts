// Every option Switchyard reads, its type and default. config/switchyard.yaml
// documents the same options; a test checks that the two list the same keys.

import { z } from 'zod'

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/** Milliseconds in `250ms`, `5s`, `1.5m` or `1h`; null when the text is not a duration. */
export function parseDuration(text: string): number | null {
  const m = DURATION.exec(text.trim())
  return m === null ? null : Number(m[1]) * (UNIT_MS[m[2] as string] as number)
}

/** A duration string, or a number of milliseconds. */
const duration = z.union([z.number().nonnegative(), z.string()]).transform((value, ctx) => {
  if (typeof value === 'number') return value
  const ms = parseDuration(value)
  if (ms === null) {
    ctx.addIssue({ code: 'custom', message: `"${value}" is not a duration (use e.g. 250ms, 5s, 2m)` })
    return z.NEVER
  }
  return ms
})

/** `host:port`, `:port` (all interfaces) or `[::1]:port`. */
const listen = z.string().transform((value, ctx) => {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(value.trim())
  const port = m ? Number(m[3]) : Number.NaN
  if (m === null || port > 65535) {
    ctx.addIssue({ code: 'custom', message: `"${value}" is not host:port` })
    return z.NEVER
  }
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port }
})

/** `auto` (one worker per core) or a count; flags and env give strings. */
const workers = z
  .union([
    z.literal('auto'),
    z.number().int().min(1).max(256),
    z.string().regex(/^\d+$/, 'must be auto or a number'),
  ])
  .transform((v, ctx) => {
    const n = v === 'auto' ? 'auto' : Number(v)
    if (n !== 'auto' && (n < 1 || n > 256)) {
      ctx.addIssue({ code: 'custom', message: 'must be auto or a number from 1 to 256' })
      return z.NEVER
    }
    return n
  })

const boolish = z
  .union([z.boolean(), z.enum(['true', 'false', '1', '0'])])
  .transform((v) => v === true || v === 'true' || v === '1')

export const configSchema = z
  .object({
    proxy: z
      .object({
        listen: listen.prefault('0.0.0.0:9999'),
        workers: workers.prefault('auto'),
        strategy: z.enum(['round-robin', 'random', 'least-outstanding']).default('round-robin'),
        retries: z.number().int().min(0).max(3).default(1),
        maxHeaderSize: z.number().int().min(1024).max(1_048_576).default(16_384),
        connectionsPerUpstream: z.number().int().min(1).max(65_536).default(256),
        accessLog: boolish.default(false),
        timeouts: z
          .object({
            connect: duration.prefault('5s'),
            responseHeaders: duration.prefault('60s'),
            idle: duration.prefault('60s'),
            clientHeaders: duration.prefault('10s'),
            clientKeepAlive: duration.prefault('5s'),
            upstreamKeepAlive: duration.prefault('4s'),
            shutdown: duration.prefault('30s'),
          })
          .strict()
          .prefault({}),
        passiveHealth: z
          .object({
            failures: z.number().int().min(0).max(100).default(3),
            ejectFor: duration.prefault('10s'),
            ejectForMax: duration.prefault('2m'),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    admin: z
      .object({
        listen: listen.prefault('127.0.0.1:9998'),
      })
      .strict()
      .prefault({}),
    consul: z
      .object({
        address: z.string().min(1).default('127.0.0.1:8500'),
        token: z.string().default(''),
        tokenFile: z.string().default(''),
        datacenter: z.string().default(''),
        stale: boolish.default(false),
        cached: boolish.default(false),
        wait: duration.prefault('5m'),
        minInterval: duration.prefault('20ms'),
        backoffInitial: duration.prefault('250ms'),
        backoffMax: duration.prefault('30s'),
        tls: z
          .object({
            enabled: boolish.default(false),
            caFile: z.string().default(''),
            certFile: z.string().default(''),
            keyFile: z.string().default(''),
            serverName: z.string().default(''),
            verify: boolish.default(true),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    routing: z
      .object({
        tagPrefix: z.string().min(1).default('urlprefix-'),
        healthyStatuses: z
          .array(z.enum(['passing', 'warning']))
          .min(1)
          .default(['passing']),
        targetPrefix: z
          .string()
          .regex(/^[^/](?:.*[^/])?$/, 'must not start or end with /')
          .default('switchyard/targets'),
        fallthrough: boolish.default(false),
      })
      .strict()
      .prefault({}),
    readiness: z
      .object({
        maxStale: duration.prefault('60s'),
      })
      .strict()
      .prefault({}),
    log: z
      .object({
        level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.consul.wait < 1000 || c.consul.wait > 600_000) {
      ctx.addIssue({
        code: 'custom',
        path: ['consul', 'wait'],
        message: 'must be between 1s and 10m (Consul caps it at 10m)',
      })
    }
    if (c.proxy.passiveHealth.ejectForMax < c.proxy.passiveHealth.ejectFor) {
      ctx.addIssue({
        code: 'custom',
        path: ['proxy', 'passiveHealth', 'ejectForMax'],
        message: 'must not be below proxy.passiveHealth.ejectFor',
      })
    }
    if (c.consul.backoffMax < c.consul.backoffInitial) {
      ctx.addIssue({
        code: 'custom',
        path: ['consul', 'backoffMax'],
        message: 'must not be below consul.backoffInitial',
      })
    }
  })

export type Config = z.output<typeof configSchema>
