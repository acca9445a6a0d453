// Certificates by SNI: which entries are served, which are set aside with a
// problem, and which certificate a handshake naming a host gets. Certificates
// are made by openssl in a temporary directory.

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config/load.js'
import { ConfigError } from '../../src/errors.js'
import { type CertificateEntry, checkCertificates } from '../../src/tls/certificates.js'
import { tlsSettingsOf } from '../../src/tls/server-options.js'
import { CertificateStore, type TlsSettings } from '../../src/tls/store.js'
import { createTestCa, hasOpenssl, type IssuedCertificate, type TestCa } from '../harness/certs.js'
import { eventually } from '../harness/wait.js'

const DAY = 86_400_000
const defaults = tlsSettingsOf(loadConfig([], {}, null).tls)
const settings = (over: Partial<TlsSettings> = {}): TlsSettings => ({ ...defaults, ...over })

const file = (name: string, pem: string): CertificateEntry => ({ source: 'file', name, pem })
const key = (name: string, pem: string): CertificateEntry => ({ source: 'consul', name, pem })

describe.runIf(hasOpenssl())('certificates', () => {
  let certs: TestCa
  let api: IssuedCertificate
  let wild: IssuedCertificate
  let apex: IssuedCertificate
  let cnOnly: IssuedCertificate
  let sanAndCn: IssuedCertificate
  let expired: IssuedCertificate
  let future: IssuedCertificate

  beforeAll(async () => {
    certs = createTestCa()
    ;[api, wild, apex, cnOnly, sanAndCn, expired, future] = await Promise.all([
      certs.issue({ dns: ['api.example.test'] }),
      certs.issue({ dns: ['*.example.test'] }),
      certs.issue({ dns: ['example.test', 'www.other.test'], keyType: 'rsa' }),
      certs.issue({ cn: 'Legacy.Example.TEST' }),
      certs.issue({ cn: 'cn.example.test', dns: ['san.example.test'] }),
      certs.issue({
        dns: ['old.example.test'],
        notBefore: new Date(Date.now() - 60 * DAY),
        notAfter: new Date(Date.now() - DAY),
      }),
      certs.issue({
        dns: ['soon.example.test'],
        notBefore: new Date(Date.now() + DAY),
        notAfter: new Date(Date.now() + 60 * DAY),
      }),
    ])
  })

  afterAll(async () => {
    certs?.remove()
  })

  describe('checkCertificates', () => {
    it('serves the DNS names of the subject alternative names, lower case', () => {
      const { certificates, problems } = checkCertificates(
        [file('/c/apex.pem', apex.pem), key('switchyard/certs/wild', wild.pem)],
        Date.now(),
      )
      expect(problems).toEqual([])
      expect(certificates.map((c) => [c.source, c.name, c.hosts])).toEqual([
        ['file', '/c/apex.pem', ['example.test', 'www.other.test']],
        ['consul', 'switchyard/certs/wild', ['*.example.test']],
      ])
      expect(certificates[0]?.fingerprint256).toBe(apex.fingerprint256)
    })

    it('uses the common name only when the certificate has no subject alternative names', () => {
      const { certificates } = checkCertificates(
        [file('cn.pem', cnOnly.pem), file('san.pem', sanAndCn.pem)],
        Date.now(),
      )
      expect(certificates.map((c) => c.hosts)).toEqual([['legacy.example.test'], ['san.example.test']])
    })

    it('sets aside each bad entry with a problem naming it and why; the good ones stay', async () => {
      const truncated = api.cert.replace(/\n[A-Za-z0-9+/]{20,}\n/, '\nAAAA\n') + api.key
      const wrongKey = api.cert + (await certs.otherKey())
      const entries = [
        key('switchyard/certs/garbage', 'hello, I am not a certificate'),
        key('switchyard/certs/truncated', truncated),
        key('switchyard/certs/no-key', api.cert),
        key('switchyard/certs/wrong-key', wrongKey),
        key('switchyard/certs/expired', expired.pem),
        key('switchyard/certs/not-yet', future.pem),
        key('switchyard/certs/good', wild.pem),
        file('/etc/certs/unreadable.pem', ''),
        { source: 'file', name: '/etc/certs/denied.pem', pem: '', error: 'EACCES: permission denied' },
        file('/etc/certs/good.pem', api.pem),
      ] satisfies CertificateEntry[]
      const { certificates, problems } = checkCertificates(entries, Date.now())
      expect(certificates.map((c) => c.name)).toEqual(['/etc/certs/good.pem', 'switchyard/certs/good'])
      const bySubject = Object.fromEntries(problems.map((p) => [p.subject, p.message]))
      expect(problems.every((p) => p.code === 'SWY_ERR_CERTIFICATE')).toBe(true)
      expect(bySubject).toEqual({
        'key switchyard/certs/garbage': expect.stringContaining('no certificate in it'),
        'key switchyard/certs/truncated': expect.stringMatching(/^the certificate does not parse: /),
        'key switchyard/certs/no-key': expect.stringContaining('no private key in it'),
        'key switchyard/certs/wrong-key': expect.stringContaining(
          'the private key does not match the certificate (api.example.test)',
        ),
        'key switchyard/certs/expired': expect.stringMatching(
          /^expired on \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(old\.example\.test\)$/,
        ),
        'key switchyard/certs/not-yet': expect.stringMatching(
          /^not valid before .* \(soon\.example\.test\)$/,
        ),
        'file /etc/certs/unreadable.pem': expect.stringContaining('no certificate in it'),
        'file /etc/certs/denied.pem': 'cannot be read: EACCES: permission denied',
      })
    })

    it('refuses encrypted keys and several keys in one entry', () => {
      // Only the block's label matters here (spelt in parts so no scanner takes it for a real key).
      const label = ['ENCRYPTED', 'PRIVATE', 'KEY'].join(' ')
      const encrypted = `${api.cert}-----BEGIN ${label}-----\nMIIB\n-----END ${label}-----\n`
      const { problems } = checkCertificates(
        [file('enc.pem', encrypted), file('two.pem', api.pem + wild.key)],
        Date.now(),
      )
      expect(problems.map((p) => p.message)).toEqual([
        expect.stringContaining('the private key is encrypted'),
        '2 private keys in it; expected one',
      ])
    })

    it('judges validity at the time given, and says when the result changes next', () => {
      const now = Date.now()
      const at = (t: number) => checkCertificates([file('a.pem', api.pem), file('soon.pem', future.pem)], t)
      const today = at(now)
      expect(today.certificates.map((c) => c.name)).toEqual(['a.pem'])
      const soonValidFrom = checkCertificates([file('soon.pem', future.pem)], now + 2 * DAY).certificates[0]
      expect(today.recheckAt).toBe(soonValidFrom?.notBefore)
      // After api's expiry (30 days), only the later one is left.
      const later = at(now + 40 * DAY)
      expect(later.certificates.map((c) => c.name)).toEqual(['soon.pem'])
      expect(later.problems[0]?.message).toMatch(/^expired on /)
    })
  })

  describe('CertificateStore', () => {
    it('picks the exact host (any case), then the wildcard one label up, then the default', () => {
      const store = new CertificateStore(settings())
      store.update([file('a-apex.pem', apex.pem), key('api', api.pem), key('wild', wild.pem)])
      const nameFor = (host: string | undefined) => store.certificateFor(host)?.name
      expect(nameFor('api.example.test')).toBe('api')
      expect(nameFor('API.Example.Test.')).toBe('api')
      expect(nameFor('www.example.test')).toBe('wild')
      expect(nameFor('example.test')).toBe('a-apex.pem')
      // A wildcard covers one label, as clients check it: the default answers deeper names.
      expect(nameFor('a.b.example.test')).toBe('a-apex.pem')
      expect(nameFor('unknown.test')).toBe('a-apex.pem')
      expect(nameFor(undefined)).toBe('a-apex.pem')
      expect(store.secureContextFor('api.example.test')).not.toBe(store.secureContextFor('www.example.test'))
      expect(store.list().certificates.map((c) => [c.name, c.serving, c.default])).toEqual([
        ['a-apex.pem', ['example.test', 'www.other.test'], true],
        ['api', ['api.example.test'], false],
        ['wild', ['*.example.test'], false],
      ])
    })

    it('defaults to the certificate of tls.defaultCertificate, or says that none serves it', () => {
      const store = new CertificateStore(settings({ defaultCertificate: 'Fallback.Example.Test' }))
      store.update([file('a-apex.pem', apex.pem), key('wild', wild.pem)])
      expect(store.certificateFor('unknown.test')?.name).toBe('wild')
      expect(store.list().problems).toEqual([])

      const missing = new CertificateStore(settings({ defaultCertificate: 'nowhere.test' }))
      missing.update([key('wild', wild.pem), file('z.pem', api.pem)])
      expect(missing.certificateFor('unknown.test')?.name).toBe('z.pem')
      expect(missing.list().problems).toEqual([
        {
          code: 'SWY_ERR_CERTIFICATE',
          subject: 'tls.defaultCertificate',
          message: expect.stringContaining(
            'no usable certificate serves nowhere.test; clients naming an unknown host get file z.pem',
          ),
        },
      ])
    })

    it('gives a name several certificates carry to the one that expires last', async () => {
      const longer = await certs.issue({
        dns: ['api.example.test'],
        notAfter: new Date(Date.now() + 90 * DAY),
      })
      const store = new CertificateStore(settings())
      store.update([file('a-old.pem', api.pem), key('new', longer.pem)])
      expect(store.certificateFor('api.example.test')?.fingerprint256).toBe(longer.fingerprint256)
      expect(store.list().certificates.map((c) => [c.name, c.serving])).toEqual([
        ['a-old.pem', []],
        ['new', ['api.example.test']],
      ])
    })

    it('keeps serving the good certificates while bad ones are listed as problems', () => {
      const store = new CertificateStore(settings())
      store.update([key('bad', 'garbage'), key('api', api.pem), key('old', expired.pem)])
      expect(store.certificateFor('api.example.test')?.name).toBe('api')
      expect(store.list().problems.map((p) => p.subject)).toEqual(['key bad', 'key old'])
    })

    it('builds a TLS context once per certificate change, not per update or handshake', () => {
      const store = new CertificateStore(settings())
      store.update([key('api', api.pem), key('wild', wild.pem)])
      const apiContext = store.secureContextFor('api.example.test')
      const wildContext = store.secureContextFor('www.example.test')
      expect(store.secureContextFor('api.example.test')).toBe(apiContext)

      store.update([key('api', api.pem), key('wild', apex.pem)])
      expect(store.secureContextFor('api.example.test')).toBe(apiContext)
      expect(store.secureContextFor('www.example.test')).not.toBe(wildContext)
      expect(store.certificateFor('www.example.test')?.name).toBe('api')
    })

    it('sets aside a certificate that parses but that TLS refuses (a key too weak)', async () => {
      const weak = await certs.issue({ dns: ['weak.example.test'], keyType: 'rsa-512' })
      const store = new CertificateStore(settings())
      store.update([key('weak', weak.pem), key('api', api.pem)])
      expect(store.list().certificates.map((c) => c.name)).toEqual(['api'])
      expect(store.list().problems).toEqual([
        {
          code: 'SWY_ERR_CERTIFICATE',
          subject: 'key weak',
          message: expect.stringMatching(/^TLS refuses it: .*key too small/),
        },
      ])
      expect(store.certificateFor('weak.example.test')?.name).toBe('api')
    })

    it('has nothing to serve without a usable certificate', () => {
      const store = new CertificateStore(settings())
      expect(store.secureContextFor('api.example.test')).toBeNull()
      store.update([key('bad', 'garbage')])
      expect(store.secureContextFor(undefined)).toBeNull()
      expect(store.defaultCertificate()).toBeNull()
    })

    it('tells listeners about every update', () => {
      const store = new CertificateStore(settings())
      const seen: (string | undefined)[] = []
      const off = store.onChange(() => seen.push(store.certificateFor(undefined)?.name))
      store.update([key('api', api.pem)])
      store.update([key('wild', wild.pem)])
      off()
      store.update([])
      expect(seen).toEqual(['api', 'wild'])
    })

    it('stops serving a certificate when it expires and starts one when it becomes valid, without an update', async () => {
      const now = Date.now()
      // openssl's dates have whole seconds: a window from ~2 s to ~4 s from now.
      const brief = await certs.issue({
        dns: ['brief.example.test'],
        notBefore: new Date(now + 2_000),
        notAfter: new Date(now + 4_000),
      })
      const store = new CertificateStore(settings())
      store.update([key('api', api.pem), key('brief', brief.pem)])
      expect(store.certificateFor('brief.example.test')?.name).toBe('api')
      expect(store.list().problems[0]?.message).toMatch(/^not valid before/)
      await eventually(() => expect(store.certificateFor('brief.example.test')?.name).toBe('brief'), 5_000)
      expect(store.list().problems).toEqual([])
      await eventually(() => expect(store.certificateFor('brief.example.test')?.name).toBe('api'), 5_000)
      expect(store.list().problems[0]?.message).toMatch(/^expired on/)
      store.close()
    })
  })
})

describe('tls configuration', () => {
  const load = (text: string) => loadConfig([], {}, { path: 'f.yaml', text })
  const error = (text: string) => {
    try {
      load(text)
    } catch (err) {
      if (err instanceof ConfigError) return err.message
      throw err
    }
    throw new Error('expected a ConfigError')
  }

  it('defaults to TLS 1.2+, a cipher list with TLS 1.3 suites, 300 s sessions, the KV prefix, no directory', () => {
    const tls = loadConfig([], {}, null).tls
    expect(tls).toMatchObject({
      certificates: { dir: '', consulPrefix: 'switchyard/certs' },
      defaultCertificate: '',
      minVersion: 'TLSv1.2',
      sessionTimeout: 300_000,
    })
    expect(tls.ciphers).toMatch(/^TLS_AES_128_GCM_SHA256:.*ECDHE-RSA-AES128-GCM-SHA256/)
    expect(tlsSettingsOf(tls).sessionTimeoutSeconds).toBe(300)
  })

  it('refuses values that would break every handshake, naming the field', () => {
    expect(error('tls:\n  ciphers: NOT-A-CIPHER\n')).toMatch(
      /^tls\.ciphers: "NOT-A-CIPHER": .*no cipher match/,
    )
    expect(error('tls:\n  minVersion: TLSv1.1\n')).toMatch(/^tls\.minVersion: /)
    expect(error('tls:\n  sessionTimeout: 0s\n')).toMatch(/^tls\.sessionTimeout: must be between 1s and 168h/)
    expect(error('tls:\n  certificates:\n    consulPrefix: /certs/\n')).toMatch(
      /^tls\.certificates\.consulPrefix: must not start or end with \//,
    )
    expect(load('tls:\n  certificates:\n    consulPrefix: ""\n').tls.certificates.consulPrefix).toBe('')
  })
})
