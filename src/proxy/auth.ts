// Basic auth for routes tagged `auth=<scheme>` (Fabio's `auth=`), against
// htpasswd files named in `proxy.auth`. The hash formats are the ones Fabio
// accepts (its htpasswd library): bcrypt ($2a$, $2b$, $2y$), MD5 crypt
// ($apr1$, $1$), SHA-256 and SHA-512 crypt ($5$, $6$), {SHA}, {SSHA}, and
// plain text. A file is read at start (unreadable: a configuration error) and
// again whenever it changes; a file that disappears leaves its scheme with no
// user, so its routes refuse every request until it is back (as in Fabio).
//
// Verifying bcrypt and the crypt formats is deliberately slow, and a request
// is resolved synchronously: a verified (user, password) pair is remembered
// (as a digest, never the password) until the file changes, so a client that
// sends the same credentials on every request pays the cost once.

import apacheMd5 from 'apache-md5'
import bcrypt from 'bcryptjs'
import { verify as verifyShaCrypt } from 'unixcrypt'
import { ConfigError } from '../errors.js'

const { createHash, timingSafeEqual } = process.getBuiltinModule('node:crypto')
const { readFileSync } = process.getBuiltinModule('node:fs')

// A CommonJS function export whose typings declare an ES default export: as
// imported by Node (and by the single executable's bundle) the default is the
// function itself; TypeScript's view of it may wrap it in `default`.
type AprMd5 = (password: string, salt: string) => string
const aprMd5 = ((apacheMd5 as unknown as { default?: AprMd5 }).default ?? apacheMd5) as unknown as AprMd5

export interface AuthSchemeConfig {
  readonly name: string
  readonly file: string
  /** Realm of the challenge; the scheme's name when empty. */
  readonly realm: string
}

export type AuthOutcome =
  | { readonly ok: true }
  /** No or wrong credentials: 401 with `WWW-Authenticate: Basic realm="…"`. */
  | { readonly ok: false; readonly status: 401; readonly challenge: string; readonly message: string }
  /** The route names a scheme that is not configured: refused (fail closed). */
  | { readonly ok: false; readonly status: 503; readonly message: string }

export interface AuthLog {
  warn(fields: Record<string, unknown>, message: string): void
}

/**
 * How often a file is read again. The content is compared, not the mtime: a
 * rewrite of the same size within one file-system timestamp tick changes no
 * stat field, and a replaced file (atomic rename) is read like any other.
 */
const WATCH_INTERVAL_MS = 1000
/** Remembered verifications per scheme; beyond that the oldest are forgotten. */
const VERIFIED_MAX = 10_000

interface Scheme {
  readonly config: AuthSchemeConfig
  readonly challenge: string
  /** The text the users were parsed from; null after a failed read. */
  text: string | null
  users: ReadonlyMap<string, string>
  verified: Set<string>
}

export class BasicAuth {
  private readonly schemes = new Map<string, Scheme>()
  private readonly log: AuthLog | null
  private readonly timer: NodeJS.Timeout | null

  /** Reads every file now; throws a ConfigError naming the scheme when one cannot be read. */
  constructor(configs: readonly AuthSchemeConfig[], log: AuthLog | null = null, watch = true) {
    this.log = log
    for (const config of configs) {
      let text: string
      try {
        text = readFileSync(config.file, 'utf8')
      } catch (err) {
        throw new ConfigError(
          `proxy.auth.${config.name}.file`,
          `cannot read ${config.file}: ${(err as Error).message}`,
        )
      }
      const realm = (config.realm || config.name).replace(/["\\]/g, '')
      const scheme: Scheme = {
        config,
        challenge: `Basic realm="${realm}"`,
        text,
        users: this.parse(config, text),
        verified: new Set(),
      }
      this.schemes.set(config.name, scheme)
    }
    this.timer =
      watch && configs.length > 0
        ? setInterval(() => {
            for (const scheme of this.schemes.values()) this.reload(scheme)
          }, WATCH_INTERVAL_MS).unref()
        : null
  }

  get names(): string[] {
    return [...this.schemes.keys()]
  }

  /** Whether the `Authorization` header value passes every scheme the route names. */
  check(schemes: readonly string[], authorization: string | undefined): AuthOutcome {
    for (const name of schemes) {
      const scheme = this.schemes.get(name)
      if (scheme === undefined) {
        return { ok: false, status: 503, message: `auth=${name} names no proxy.auth scheme` }
      }
      const credentials = parseBasic(authorization)
      if (credentials === null || !this.verify(scheme, credentials.user, credentials.password)) {
        return {
          ok: false,
          status: 401,
          challenge: scheme.challenge,
          message: credentials === null ? 'basic auth credentials required' : 'invalid credentials',
        }
      }
    }
    return { ok: true }
  }

  close(): void {
    if (this.timer !== null) clearInterval(this.timer)
  }

  /** Reads the file again and takes its users when the text changed. */
  private reload(scheme: Scheme): void {
    let text: string | null = null
    try {
      text = readFileSync(scheme.config.file, 'utf8')
    } catch (err) {
      if (scheme.text !== null) {
        this.log?.warn(
          { scheme: scheme.config.name, file: scheme.config.file, err: (err as Error).message },
          'htpasswd file cannot be read; the scheme has no users until it can',
        )
      }
    }
    if (text === scheme.text) return
    scheme.text = text
    scheme.users = this.parse(scheme.config, text ?? '')
    scheme.verified = new Set()
  }

  private parse(config: AuthSchemeConfig, text: string): Map<string, string> {
    const users = new Map<string, string>()
    text.split('\n').forEach((raw, i) => {
      const line = raw.trim()
      if (line === '' || line.startsWith('#')) return
      const colon = line.indexOf(':')
      if (colon <= 0) {
        // Never log the line: it may hold a password.
        this.log?.warn(
          { scheme: config.name, file: config.file, line: i + 1 },
          'htpasswd line without user:hash; ignored',
        )
        return
      }
      users.set(line.slice(0, colon), line.slice(colon + 1))
    })
    return users
  }

  private verify(scheme: Scheme, user: string, password: string): boolean {
    const hash = scheme.users.get(user)
    if (hash === undefined) return false
    const key = createHash('sha256').update(`${user}\u0000${password}\u0000${hash}`).digest('base64')
    if (scheme.verified.has(key)) return true
    if (!matchesHash(password, hash)) return false
    if (scheme.verified.size >= VERIFIED_MAX) scheme.verified.clear()
    scheme.verified.add(key)
    return true
  }
}

/** Whether `password` matches an htpasswd hash in any of the formats Fabio accepts. */
export function matchesHash(password: string, hash: string): boolean {
  if (/^\$2[aby]\$/.test(hash)) return bcrypt.compareSync(password, hash)
  if (hash.startsWith('$apr1$') || hash.startsWith('$1$')) return sameText(aprMd5(password, hash), hash)
  if (hash.startsWith('$5$') || hash.startsWith('$6$')) {
    try {
      return verifyShaCrypt(password, hash)
    } catch {
      return false
    }
  }
  if (hash.startsWith('{SHA}')) {
    return sameText(createHash('sha1').update(password).digest('base64'), hash.slice(5))
  }
  if (hash.startsWith('{SSHA}')) {
    const raw = Buffer.from(hash.slice(6), 'base64')
    if (raw.length <= 20) return false
    const digest = createHash('sha1').update(password).update(raw.subarray(20)).digest()
    return timingSafeEqual(digest, raw.subarray(0, 20))
  }
  return sameText(password, hash)
}

/** User and password of a `Basic` Authorization header, or null. */
export function parseBasic(header: string | undefined): { user: string; password: string } | null {
  if (header === undefined) return null
  const m = /^basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header)
  if (m === null) return null
  const decoded = Buffer.from(m[1] as string, 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  if (colon === -1) return null
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) }
}

function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}
