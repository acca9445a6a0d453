import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import bcrypt from 'bcryptjs'
import { afterEach, describe, expect, it } from 'vitest'
import { ConfigError } from '../../src/errors.js'
import { BasicAuth, matchesHash } from '../../src/proxy/auth.js'
import { eventually } from '../harness/wait.js'

const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

// Hashes of "secret" made with `openssl passwd` (-apr1, -1, -5, -6, salt abcdefgh).
const OPENSSL = {
  apr1: '$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/',
  md5: '$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1',
  sha256crypt: '$5$abcdefgh$gruCpC7VkOTspMQTTSAR8mtlO9Upms.fwqE5y16JVM.',
  sha512crypt:
    '$6$abcdefgh$ltjgWl6579NluT/Vi1nwEvcil.G5Nbc4NiXZaNGStk8PSwGfQv72N2CKPPrVACtLtip/cZ/1GM/O6IND4WQhG.',
}

function ssha(password: string, salt: Buffer): string {
  const digest = createHash('sha1').update(password).update(salt).digest()
  return `{SSHA}${Buffer.concat([digest, salt]).toString('base64')}`
}

describe('matchesHash: the htpasswd formats Fabio accepts', () => {
  it.each([
    ['bcrypt $2y$', bcrypt.hashSync('secret', 4).replace('$2b$', '$2y$')],
    ['bcrypt $2a$', bcrypt.hashSync('secret', 4).replace('$2b$', '$2a$')],
    ['bcrypt $2b$', bcrypt.hashSync('secret', 4)],
    ['MD5 $apr1$', OPENSSL.apr1],
    ['MD5 $1$', OPENSSL.md5],
    ['SHA-256 crypt $5$', OPENSSL.sha256crypt],
    ['SHA-512 crypt $6$', OPENSSL.sha512crypt],
    ['{SHA}', `{SHA}${createHash('sha1').update('secret').digest('base64')}`],
    ['{SSHA}', ssha('secret', Buffer.from('salty'))],
    ['plain text', 'secret'],
  ])('%s', (_format, hash) => {
    expect(matchesHash('secret', hash)).toBe(true)
    expect(matchesHash('Secret', hash)).toBe(false)
    expect(matchesHash('', hash)).toBe(false)
  })
})

describe('BasicAuth', () => {
  const dirs: string[] = []
  const auths: BasicAuth[] = []
  afterEach(() => {
    for (const a of auths.splice(0)) a.close()
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
  })
  function file(text: string): string {
    const dir = mkdtempSync(join(tmpdir(), 'swy-auth-'))
    dirs.push(dir)
    const path = join(dir, 'users.htpasswd')
    writeFileSync(path, text)
    return path
  }
  function auth(configs: { name: string; file: string; realm?: string }[]) {
    const a = new BasicAuth(configs.map((c) => ({ realm: '', ...c })))
    auths.push(a)
    return a
  }

  it('lets right credentials through and challenges the others with the realm', () => {
    const a = auth([
      { name: 'admins', file: file(`# admins\nalice:${OPENSSL.apr1}\nbob:${bcrypt.hashSync('pw', 4)}\n`) },
    ])
    expect(a.check(['admins'], basic('alice', 'secret'))).toEqual({ ok: true })
    expect(a.check(['admins'], basic('bob', 'pw'))).toEqual({ ok: true })
    for (const header of [
      undefined,
      'malformed',
      basic('alice', 'wrong'),
      basic('carol', 'secret'),
      'Bearer x',
    ]) {
      expect(a.check(['admins'], header)).toMatchObject({
        ok: false,
        status: 401,
        challenge: 'Basic realm="admins"',
      })
    }
    const named = auth([{ name: 'x', file: file('u:p\n'), realm: 'Staff only' }])
    expect(named.check(['x'], undefined)).toMatchObject({ challenge: 'Basic realm="Staff only"' })
  })

  it('refuses (503) a route whose scheme is not configured: fail closed', () => {
    const a = auth([{ name: 'admins', file: file('u:p\n') }])
    expect(a.check(['other'], basic('u', 'p'))).toMatchObject({ ok: false, status: 503 })
  })

  it('a route naming two schemes needs credentials valid in both', () => {
    const a = auth([
      { name: 'one', file: file('u:p\n') },
      { name: 'two', file: file('u:q\n') },
    ])
    expect(a.check(['one', 'two'], basic('u', 'p'))).toMatchObject({ ok: false, status: 401 })
  })

  it('reads a changed file again, and a deleted one leaves no user', async () => {
    const path = file('u:old\n')
    const a = auth([{ name: 's', file: path }])
    expect(a.check(['s'], basic('u', 'old')).ok).toBe(true)
    writeFileSync(path, 'u:new\n')
    await eventually(() => expect(a.check(['s'], basic('u', 'new')).ok).toBe(true), 5000)
    expect(a.check(['s'], basic('u', 'old')).ok).toBe(false)
    rmSync(path)
    await eventually(() => expect(a.check(['s'], basic('u', 'new')).ok).toBe(false), 5000)
    writeFileSync(path, 'u:back\n')
    await eventually(() => expect(a.check(['s'], basic('u', 'back')).ok).toBe(true), 5000)
  })

  it('a file that cannot be read at start is a configuration error naming the scheme', () => {
    expect(() => auth([{ name: 'gone', file: '/nonexistent/users' }])).toThrow(ConfigError)
    expect(() => auth([{ name: 'gone', file: '/nonexistent/users' }])).toThrow(/proxy\.auth\.gone\.file/)
  })
})
