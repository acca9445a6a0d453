// Signed sticky cookies. A sticky client carries `<version>:<bucket>:<mac>`
// in a cookie per service: the version it was last sent to (for people and
// for knowing when to re-issue it) and its bucket, which decides the version
// (see variants.ts). The MAC (HMAC-SHA256 over service, version and bucket)
// stops a client from choosing its version by editing the cookie.
//
// Keys come from routing.stickyKeyFile: the first line signs and verifies, a
// second line (the previous key) only verifies, so keys rotate without
// re-bucketing clients (README, Rollouts). Every proxy of a fleet, and every
// worker process, must hold the same keys: a cookie one signed, another must
// accept. The file is read again when it changes, like the htpasswd files.

import { ConfigError } from '../errors.js'
import { STICKY_BUCKETS } from './variants.js'

const { createHmac, timingSafeEqual } = process.getBuiltinModule('node:crypto')
const { readFileSync } = process.getBuiltinModule('node:fs')

/** Fewer characters than this is too guessable to sign with. */
export const MIN_KEY_LENGTH = 32
const MAC_LENGTH = 22
const WATCH_INTERVAL_MS = 1000

export interface StickyPin {
  readonly version: string
  readonly bucket: number
  /** Signed with the current key (else with the previous one: re-issue it). */
  readonly current: boolean
}

/** What the request path needs of the keys. */
export interface StickySigner {
  /** The cookie's value for this pin. */
  value(service: string, version: string, bucket: number): string
  /** The pin in a cookie value, or null when it is malformed or not signed by a key we hold. */
  verify(service: string, value: string): StickyPin | null
  /** The Set-Cookie field value. */
  setCookie(name: string, value: string, secure: boolean): string
}

interface KeyLog {
  warn(fields: Record<string, unknown>, message: string): void
}

/** Keys as one or two non-empty lines (`#` comments allowed); throws with what is wrong. */
export function parseKeys(text: string): Buffer[] {
  const lines = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
  if (lines.length === 0) throw new Error('holds no key')
  if (lines.length > 2)
    throw new Error(`holds ${lines.length} keys; at most 2 (the current one, then the previous)`)
  for (const [i, line] of lines.entries()) {
    if (line.length < MIN_KEY_LENGTH)
      throw new Error(
        `key on line ${i + 1} has ${line.length} characters, at least ${MIN_KEY_LENGTH} are needed (e.g. openssl rand -hex 32)`,
      )
  }
  return lines.map((l) => Buffer.from(l, 'utf8'))
}

export class StickyKeys implements StickySigner {
  private readonly file: string
  private readonly maxAgeSeconds: number
  private readonly log: KeyLog | null
  private text: string
  private keys: Buffer[]
  private readonly timer: NodeJS.Timeout | null

  /** Reads the file now; a file that cannot be read or holds no valid key is a configuration error. */
  constructor(file: string, maxAgeMs: number, log: KeyLog | null = null, watch = true) {
    this.file = file
    this.maxAgeSeconds = Math.round(maxAgeMs / 1000)
    this.log = log
    try {
      this.text = readFileSync(file, 'utf8')
      this.keys = parseKeys(this.text)
    } catch (err) {
      throw new ConfigError(
        'routing.stickyKeyFile',
        `${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      )
    }
    this.timer = watch ? setInterval(() => this.reload(), WATCH_INTERVAL_MS).unref() : null
  }

  value(service: string, version: string, bucket: number): string {
    return `${encodeURIComponent(version)}:${bucket}:${mac(this.keys[0] as Buffer, service, version, bucket)}`
  }

  verify(service: string, value: string): StickyPin | null {
    const first = value.indexOf(':')
    const second = value.indexOf(':', first + 1)
    if (first <= 0 || second === -1 || value.length - second - 1 !== MAC_LENGTH) return null
    const bucketText = value.slice(first + 1, second)
    if (!/^\d{1,6}$/.test(bucketText)) return null
    const bucket = Number(bucketText)
    if (bucket >= STICKY_BUCKETS) return null
    let version: string
    try {
      version = decodeURIComponent(value.slice(0, first))
    } catch {
      return null
    }
    const given = Buffer.from(value.slice(second + 1))
    for (const [i, key] of this.keys.entries()) {
      const expected = Buffer.from(mac(key, service, version, bucket))
      if (expected.length === given.length && timingSafeEqual(expected, given))
        return { version, bucket, current: i === 0 }
    }
    return null
  }

  setCookie(name: string, value: string, secure: boolean): string {
    return `${name}=${value}; Path=/; Max-Age=${this.maxAgeSeconds}; HttpOnly; SameSite=Lax${secure ? '; Secure' : ''}`
  }

  close(): void {
    if (this.timer !== null) clearInterval(this.timer)
  }

  private reload(): void {
    let text: string
    try {
      text = readFileSync(this.file, 'utf8')
    } catch (err) {
      if (this.text !== '') {
        this.log?.warn(
          { file: this.file, err: (err as Error).message },
          'sticky key file cannot be read; keeping the keys read before',
        )
        this.text = ''
      }
      return
    }
    if (text === this.text) return
    this.text = text
    try {
      this.keys = parseKeys(text)
    } catch (err) {
      this.log?.warn(
        { file: this.file, err: (err as Error).message },
        'sticky key file is not valid; keeping the keys read before',
      )
    }
  }
}

function mac(key: Buffer, service: string, version: string, bucket: number): string {
  return createHmac('sha256', key)
    .update(`${service}\n${version}\n${bucket}`)
    .digest('base64url')
    .slice(0, MAC_LENGTH)
}
