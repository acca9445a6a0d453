// Every option Switchyard reads, its type and default. config/switchyard.yaml
// documents the same options; a test checks that the two list the same keys.

import { createSecureContext } from 'node:tls'
import { z } from 'zod'
import { parseCidr } from '../routing/tags.js'

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

const SIZE = /^(\d+)\s*(B|KiB|MiB|GiB|KB|MB|GB)?$/
const UNIT_BYTES: Record<string, number> = {
  B: 1,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
  KB: 1000,
  MB: 1000 ** 2,
  GB: 1000 ** 3,
}

/** Bytes in `512`, `64KiB`, `10MB`; null when the text is not a size. */
export function parseSize(text: string): number | null {
  const m = SIZE.exec(text.trim())
  return m === null ? null : Number(m[1]) * (UNIT_BYTES[m[2] ?? 'B'] as number)
}

/** A size string, or a number of bytes. */
const size = z.union([z.number().int().nonnegative(), z.string()]).transform((value, ctx) => {
  if (typeof value === 'number') return value
  const bytes = parseSize(value)
  if (bytes === null) {
    ctx.addIssue({ code: 'custom', message: `"${value}" is not a size (use e.g. 512, 64KiB, 10MB)` })
    return z.NEVER
  }
  return bytes
})

/** `10.0.0.0/8`, `::1`, Fabio's `ip:10.0.0.0/8`. */
const cidr = z.string().transform((value, ctx) => {
  const parsed = parseCidr(value.startsWith('ip:') ? value.slice(3) : value)
  if (parsed === null) {
    ctx.addIssue({ code: 'custom', message: `"${value}" is not an IPv4/IPv6 address or CIDR` })
    return z.NEVER
  }
  return parsed
})

/** A KV key: Fabio writes `/fabio/config`, Consul's API `fabio/config`; '' turns the feature off. */
const kvKey = z
  .string()
  .transform((v) => v.replace(/^\/+/, ''))
  .refine((v) => !v.endsWith('/'), 'must not end with /')
/**
 * Mozilla's "intermediate" configuration (TLS 1.2 and 1.3, forward-secret AEAD
 * suites only), without its DHE suites: they need DH parameters Switchyard
 * does not configure. Node turns TLS 1.3 off when a cipher string names no
 * TLS_ suite, so those are listed too.
 */
export const DEFAULT_CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':')

/** An OpenSSL cipher string that selects at least one suite. */
const ciphers = z
  .string()
  .min(1)
  .superRefine((value, ctx) => {
    try {
      createSecureContext({ ciphers: value })
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: `"${value}": ${(err as Error).message}` })
    }
  })

const boolish = z
  .union([z.boolean(), z.enum(['true', 'false', '1', '0'])])
  .transform((v) => v === true || v === 'true' || v === '1')

export const configSchema = z
  .object({
    proxy: z
      .object({
        listen: listen.prefault('0.0.0.0:9999'),
        listeners: z
          .array(z.object({ address: listen, protocol: z.enum(['http', 'https']).default('http') }).strict())
          .default([]),
        workers: workers.prefault('auto'),
        strategy: z.enum(['round-robin', 'random', 'least-outstanding']).default('round-robin'),
        retries: z.number().int().min(0).max(3).default(1),
        maxHeaderSize: z.number().int().min(1024).max(1_048_576).default(16_384),
        connectionsPerUpstream: z.number().int().min(1).max(65_536).default(256),
        upstreamQueue: z.number().int().min(0).max(1_000_000).default(1024),
        limits: z
          .object({
            maxHeaderCount: z.number().int().min(8).max(10_000).default(100),
            maxBodySize: size.prefault(0),
            requestBuffer: size.prefault('64KiB'),
          })
          .strict()
          .prefault({}),
        accessLog: boolish.default(false),
        http2: z
          .object({
            maxConcurrentStreams: z.number().int().min(1).max(10_000).default(100),
            maxHeaderListSize: size.prefault('32KiB'),
            maxResetsPerSecond: z.number().int().min(1).max(100_000).default(200),
          })
          .strict()
          .prefault({}),
        trustedProxies: z.array(cidr).default([]),
        auth: z
          .array(
            z
              .object({
                name: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, _ . - only'),
                type: z.literal('basic').default('basic'),
                file: z.string().min(1),
                realm: z.string().default(''),
              })
              .strict(),
          )
          .default([]),
        timeouts: z
          .object({
            connect: duration.prefault('5s'),
            responseHeaders: duration.prefault('60s'),
            idle: duration.prefault('60s'),
            clientHeaders: duration.prefault('10s'),
            clientBody: duration.prefault('60s'),
            queue: duration.prefault('10s'),
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
        matcher: z.enum(['segment', 'prefix', 'iprefix', 'glob']).default('segment'),
        checksRequired: z.enum(['all', 'one']).default('all'),
        stickyKeyFile: z.string().default(''),
        stickyMaxAge: duration.prefault('24h'),
        fabio: z
          .object({
            kvPath: kvKey.default('fabio/config'),
            noRouteHtmlPath: kvKey.default('fabio/noroute.html'),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    tls: z
      .object({
        certificates: z
          .object({
            dir: z.string().default(''),
            consulPrefix: z
              .string()
              .regex(/^(?:[^/](?:.*[^/])?)?$/, 'must not start or end with /')
              .default('switchyard/certs'),
          })
          .strict()
          .prefault({}),
        defaultCertificate: z.string().default(''),
        minVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
        ciphers: ciphers.default(DEFAULT_CIPHERS),
        sessionTimeout: duration.prefault('300s'),
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
    if (c.tls.sessionTimeout < 1000 || c.tls.sessionTimeout > 604_800_000) {
      ctx.addIssue({
        code: 'custom',
        path: ['tls', 'sessionTimeout'],
        message: 'must be between 1s and 168h (TLS 1.3 caps a ticket at 7 days)',
      })
    }
    const ports = c.proxy.listeners.map((l) => `${l.address.host}:${l.address.port}`)
    const twice = ports.find(
      (p, i) => p !== `${c.proxy.listeners[i]?.address.host}:0` && ports.indexOf(p) !== i,
    )
    if (twice !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['proxy', 'listeners'], message: `${twice} is listed twice` })
    }
    const names = c.proxy.auth.map((a) => a.name)
    const twiceNamed = names.find((n, i) => names.indexOf(n) !== i)
    if (twiceNamed !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['proxy', 'auth'],
        message: `scheme name "${twiceNamed}" is used twice`,
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
