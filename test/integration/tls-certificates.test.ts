// Certificates from Consul KV and from a directory, served by SNI to real TLS
// handshakes: a certificate written or rotated serves new handshakes within a
// second while open connections stay open (through the proxy's https listener,
// under load, without a failed request), a bad one is a problem and the others
// keep serving, and a token without the certificate rule says which rule is
// missing.

import { once } from 'node:events'
import { mkdtemp, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises'
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect, createServer, type Server, type TLSSocket } from 'node:tls'
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest'
import { loadConfig } from '../../src/config/load.js'
import { ConsulClient } from '../../src/consul/client.js'
import { createLogger } from '../../src/log.js'
import type { CertificateEntry } from '../../src/tls/certificates.js'
import { tlsSettingsOf } from '../../src/tls/server-options.js'
import { CertificateSources, certificateReport } from '../../src/tls/sources.js'
import { CertificateStore } from '../../src/tls/store.js'
import { createTestCa, hasOpenssl, type IssuedCertificate, type TestCa } from '../harness/certs.js'
import type { ConsulInfo } from '../harness/consul-agent.js'
import { ConsulApi } from '../harness/consul-api.js'
import { describeWithConsul } from '../harness/context.js'
import { startTestProxy } from '../harness/switchyard.js'
import { startUpstream } from '../harness/upstream.js'
import { eventually, uniqueName } from '../harness/wait.js'

interface CertificateReportJson {
  certificates: { name: string; serving: string[]; default: boolean; fingerprint256: string }[]
}

const settings = tlsSettingsOf(loadConfig([], {}, null).tls)
const WATCH = {
  waitMs: 30_000,
  stale: false,
  cached: false,
  minIntervalMs: 5,
  backoffInitialMs: 50,
  backoffMaxMs: 500,
}

interface Frontend {
  readonly store: CertificateStore
  readonly sources: CertificateSources
  readonly server: Server
  readonly port: number
  readonly updates: (readonly CertificateEntry[])[]
  stop(): Promise<void>
}

/** A TLS echo server fed by CertificateSources, wired to the store as the proxy's https listener is. */
async function frontend(
  consul: ConsulInfo,
  options: { dir?: string; consulPrefix?: string; token?: string; enabled?: boolean },
): Promise<Frontend> {
  const client = new ConsulClient({
    address: consul.address,
    token: options.token ?? consul.proxyToken,
    datacenter: '',
    tls: null,
  })
  const store = new CertificateStore(settings)
  const updates: (readonly CertificateEntry[])[] = []
  const sources = new CertificateSources({
    dir: options.dir ?? '',
    consulPrefix: options.consulPrefix ?? '',
    enabled: options.enabled ?? true,
    client,
    watch: WATCH,
    log: createLogger('silent'),
    onChange: (entries) => {
      updates.push(entries)
      store.update(entries)
    },
  }).start()
  await sources.ready
  const server = createServer(
    {
      ...store.serverOptions(),
      SNICallback: (name, done) => done(null, store.secureContextFor(name) ?? undefined),
    },
    (socket) => socket.pipe(socket),
  )
  store.onChange(() => server.setSecureContext(store.serverOptions()))
  server.on('tlsClientError', (_err, socket) => socket.destroy())
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    store,
    sources,
    server,
    port: (server.address() as AddressInfo).port,
    updates,
    stop: async () => {
      server.close()
      await sources.stop()
      store.close()
      await client.close()
    },
  }
}

describeWithConsul('TLS certificates from Consul KV and a directory', (consul) => {
  const api = new ConsulApi(consul)
  let certs: TestCa
  const running: Frontend[] = []
  const sockets: TLSSocket[] = []

  beforeAll(async () => {
    if (!hasOpenssl()) throw new Error('these tests make certificates with the openssl command')
    certs = createTestCa()
  })

  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy()
    await Promise.all(running.splice(0).map((f) => f.stop()))
  })

  afterAll(() => {
    certs?.remove()
  })

  const start = async (options: Parameters<typeof frontend>[1]) => {
    const f = await frontend(consul, options)
    running.push(f)
    return f
  }

  /** A verified TLS connection naming `servername` (or none); its peer's fingerprint. */
  const open = async (port: number, servername: string | undefined, checkName = true): Promise<TLSSocket> => {
    const socket = connect({
      port,
      host: '127.0.0.1',
      servername,
      ca: certs.ca,
      // The chain is always verified; the name only where the certificate should carry it.
      ...(checkName && servername !== undefined ? {} : { checkServerIdentity: () => undefined }),
    })
    sockets.push(socket)
    await once(socket, 'secureConnect')
    return socket
  }
  const fingerprint = async (
    port: number,
    servername: string | undefined,
    checkName = true,
  ): Promise<string> => {
    const socket = await open(port, servername, checkName)
    const fp = socket.getPeerCertificate().fingerprint256
    socket.destroy()
    return fp
  }
  const echo = async (socket: TLSSocket, text: string): Promise<string> => {
    socket.write(text)
    const [data] = (await once(socket, 'data')) as [Buffer]
    return data.toString()
  }
  const put = (key: string, cert: IssuedCertificate | string) =>
    api.kvPut(key, typeof cert === 'string' ? cert : cert.pem)

  it('serves certificates written to KV by name within a second; a rotation reaches new handshakes while an open connection stays open', async () => {
    const prefix = `switchyard/certs/${uniqueName('kv')}`
    const [a, b, a2] = await Promise.all([
      certs.issue({ dns: ['a.switchyard.test'] }),
      certs.issue({ dns: ['*.b.switchyard.test'] }),
      certs.issue({ dns: ['a.switchyard.test'] }),
    ])
    const f = await start({ consulPrefix: prefix })
    expect(f.store.list().certificates).toEqual([])
    expect(certificateReport(f.store, f.sources).problems).toEqual([
      {
        code: 'SWY_ERR_CERTIFICATE',
        subject: 'tls.certificates',
        message: `no usable certificate in key prefix ${prefix}/: every TLS handshake fails`,
      },
    ])

    await put(`${prefix}/a`, a)
    await eventually(
      async () => expect(await fingerprint(f.port, 'a.switchyard.test')).toBe(a.fingerprint256),
      1_000,
    )
    expect(certificateReport(f.store, f.sources).problems).toEqual([])
    await put(`${prefix}/b`, b)
    await eventually(
      async () => expect(await fingerprint(f.port, 'www.b.switchyard.test')).toBe(b.fingerprint256),
      1_000,
    )
    // Each name its own certificate; a name none serves, and no name at all, get the default (the first key).
    expect(await fingerprint(f.port, 'A.Switchyard.Test')).toBe(a.fingerprint256)
    expect(await fingerprint(f.port, 'unknown.switchyard.test', false)).toBe(a.fingerprint256)
    expect(await fingerprint(f.port, undefined)).toBe(a.fingerprint256)

    const held = await open(f.port, 'a.switchyard.test')
    expect(await echo(held, 'before')).toBe('before')
    await put(`${prefix}/a`, a2)
    await eventually(
      async () => expect(await fingerprint(f.port, 'a.switchyard.test')).toBe(a2.fingerprint256),
      1_000,
    )
    expect(await fingerprint(f.port, undefined)).toBe(a2.fingerprint256)
    // The connection opened on the old certificate is untouched.
    expect(held.getPeerCertificate().fingerprint256).toBe(a.fingerprint256)
    expect(await echo(held, 'after')).toBe('after')
    expect(held.destroyed).toBe(false)
  })

  it('sets aside garbage, a wrong key and an expired certificate as problems; the others keep serving', async () => {
    const prefix = `switchyard/certs/${uniqueName('bad')}`
    const [good, expired, other] = await Promise.all([
      certs.issue({ dns: ['good.switchyard.test'] }),
      certs.issue({
        dns: ['expired.switchyard.test'],
        notBefore: new Date(Date.now() - 10 * 86_400_000),
        notAfter: new Date(Date.now() - 86_400_000),
      }),
      certs.issue({ dns: ['other.switchyard.test'] }),
    ])
    await put(`${prefix}/good`, good)
    const f = await start({ consulPrefix: prefix })
    expect(await fingerprint(f.port, 'good.switchyard.test')).toBe(good.fingerprint256)

    await put(`${prefix}/garbage`, 'not a certificate')
    await put(`${prefix}/wrong-key`, other.cert + (await certs.otherKey()))
    await put(`${prefix}/expired`, expired)
    await eventually(() => expect(f.store.list().problems).toHaveLength(3), 1_000)
    expect(f.store.list().problems).toEqual([
      {
        code: 'SWY_ERR_CERTIFICATE',
        subject: `key ${prefix}/expired`,
        message: expect.stringMatching(/^expired on /),
      },
      {
        code: 'SWY_ERR_CERTIFICATE',
        subject: `key ${prefix}/garbage`,
        message: expect.stringContaining('no certificate'),
      },
      {
        code: 'SWY_ERR_CERTIFICATE',
        subject: `key ${prefix}/wrong-key`,
        message: expect.stringContaining('private key does not match'),
      },
    ])
    expect(f.store.list().certificates.map((c) => c.name)).toEqual([`${prefix}/good`])
    expect(await fingerprint(f.port, 'good.switchyard.test')).toBe(good.fingerprint256)

    // Fixing the key clears its problem and serves it.
    await put(`${prefix}/wrong-key`, other)
    await eventually(
      async () => expect(await fingerprint(f.port, 'other.switchyard.test')).toBe(other.fingerprint256),
      1_000,
    )
    expect(f.store.list().problems.map((p) => p.subject)).toEqual([
      `key ${prefix}/expired`,
      `key ${prefix}/garbage`,
    ])
  })

  it('picks up a new, a rotated and a removed file in the directory within a second', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'switchyard-certdir-'))
    try {
      const [c, c2, d] = await Promise.all([
        certs.issue({ dns: ['c.switchyard.test'] }),
        certs.issue({ dns: ['c.switchyard.test'] }),
        certs.issue({ dns: ['d.switchyard.test'] }),
      ])
      await writeFile(join(dir, 'd.pem'), d.pem)
      await writeFile(join(dir, 'README.txt'), 'not a certificate file: ignored')
      const f = await start({ dir })
      expect(f.store.list().certificates.map((x) => x.name)).toEqual([join(dir, 'd.pem')])

      await writeFile(join(dir, 'c.pem'), c.pem)
      await eventually(
        async () => expect(await fingerprint(f.port, 'c.switchyard.test')).toBe(c.fingerprint256),
        1_000,
      )
      // Rotated the way deploy tools do it: written aside, renamed over the old file.
      await writeFile(join(dir, '.c.pem.tmp'), c2.pem)
      await rename(join(dir, '.c.pem.tmp'), join(dir, 'c.pem'))
      await eventually(
        async () => expect(await fingerprint(f.port, 'c.switchyard.test')).toBe(c2.fingerprint256),
        1_000,
      )
      // A file that cannot be read is its own problem; the others serve.
      await symlink(join(dir, 'missing-target'), join(dir, 'broken.pem'))
      await eventually(
        () =>
          expect(f.store.list().problems).toEqual([
            {
              code: 'SWY_ERR_CERTIFICATE',
              subject: `file ${join(dir, 'broken.pem')}`,
              message: expect.stringContaining('cannot be read: ENOENT'),
            },
          ]),
        1_000,
      )
      expect(await fingerprint(f.port, 'd.switchyard.test')).toBe(d.fingerprint256)

      await unlink(join(dir, 'c.pem'))
      await eventually(
        () => expect(f.store.list().certificates.map((x) => x.name)).toEqual([join(dir, 'd.pem')]),
        1_000,
      )
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('combines both sources, files first', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'switchyard-certdir-'))
    const prefix = `switchyard/certs/${uniqueName('both')}`
    try {
      const [e, g] = await Promise.all([
        certs.issue({ dns: ['e.switchyard.test'] }),
        certs.issue({ dns: ['g.switchyard.test'] }),
      ])
      await put(`${prefix}/g`, g)
      await writeFile(join(dir, 'e.pem'), e.pem)
      const f = await start({ dir, consulPrefix: prefix })
      expect(f.updates).toHaveLength(1)
      expect(f.updates[0]?.map((x) => [x.source, x.name])).toEqual([
        ['file', join(dir, 'e.pem')],
        ['consul', `${prefix}/g`],
      ])
      expect(await fingerprint(f.port, 'g.switchyard.test')).toBe(g.fingerprint256)
      expect(await fingerprint(f.port, undefined)).toBe(e.fingerprint256)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('a token without the certificate rule: files keep serving, and the problem names the rule to add', async () => {
    const prefix = `switchyard/certs/${uniqueName('denied')}`
    const dir = await mkdtemp(join(tmpdir(), 'switchyard-certdir-'))
    try {
      const h = await certs.issue({ dns: ['h.switchyard.test'] })
      await writeFile(join(dir, 'h.pem'), h.pem)
      await put(`${prefix}/secret`, await certs.issue({ dns: ['secret.switchyard.test'] }))
      const { secret } = await api.createToken(
        uniqueName('no-certs'),
        'key_prefix "switchyard/targets/" { policy = "read" }\nservice_prefix "" { policy = "read" }\n',
      )
      const f = await start({ dir, consulPrefix: prefix, token: secret })
      expect(await fingerprint(f.port, 'h.switchyard.test')).toBe(h.fingerprint256)
      await eventually(() =>
        expect(f.sources.problems()).toEqual([
          {
            code: 'SWY_ERR_CONSUL_PERMISSION',
            subject: 'watch certificates',
            message: expect.stringMatching(
              new RegExp(
                `^token cannot read key prefix ${prefix}/: 403 Permission denied.*; the proxy token's policy needs key_prefix "${prefix}/" \\{ policy = "read" \\} \\(see config/acl/switchyard-proxy\\.hcl\\)$`,
              ),
            ),
          },
        ]),
      )
      expect(f.store.list().certificates.map((c) => c.name)).toEqual([join(dir, 'h.pem')])
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('reads nothing without an https listener', async () => {
    const prefix = `switchyard/certs/${uniqueName('off')}`
    await put(`${prefix}/x`, await certs.issue({ dns: ['x.switchyard.test'] }))
    const f = await start({ consulPrefix: prefix, enabled: false })
    expect(f.updates).toEqual([[]])
    expect(f.sources.watches()).toEqual([])
    expect(certificateReport(f.store, f.sources)).toEqual({ certificates: [], problems: [] })
  })
  it('through the proxy: each host name its certificate and route on one https port; a rotation under load fails no request, reaches new handshakes within a second and leaves open connections be', async () => {
    const prefix = `switchyard/certs/${uniqueName('proxy')}`
    const tagPrefix = `${uniqueName('tls')}-`
    const [a, b, a2] = await Promise.all([
      certs.issue({ dns: ['a.proxy.test'] }),
      certs.issue({ dns: ['b.proxy.test'] }),
      certs.issue({ dns: ['a.proxy.test'] }),
    ])
    await put(`${prefix}/a`, a)
    await put(`${prefix}/b`, b)
    const [appA, appB] = await Promise.all([startUpstream('app-a'), startUpstream('app-b')])
    const [svcA, svcB] = [uniqueName('a'), uniqueName('b')]
    await api.register({ id: svcA, name: svcA, port: appA.port, tags: [`${tagPrefix}a.proxy.test/`] })
    await api.register({ id: svcB, name: svcB, port: appB.port, tags: [`${tagPrefix}b.proxy.test/`] })
    const proxy = await startTestProxy(consul, {
      routing: { tagPrefix },
      proxy: { listeners: [{ address: '127.0.0.1:0', protocol: 'https' }] },
      tls: { certificates: { consulPrefix: prefix } },
      log: { level: 'warn' },
    })
    const keepAlive = new HttpsAgent({ keepAlive: true, maxSockets: 1 })
    try {
      const port = Number(new URL(proxy.app.proxyUrls[0] as string).port)
      /** GET / naming `host` in SNI and Host; a new connection (a new handshake) unless an agent is given. */
      const get = (host: string, agent: HttpsAgent | false = false, checkName = true) =>
        new Promise<{ status: number; body: string; fingerprint: string; reused: boolean }>(
          (resolve, reject) => {
            const req = httpsRequest(
              {
                host: '127.0.0.1',
                port,
                path: '/',
                servername: host,
                headers: { host },
                ca: certs.ca,
                agent,
                ...(checkName ? {} : { checkServerIdentity: () => undefined }),
              },
              (res) => {
                const fingerprint = (res.socket as TLSSocket).getPeerCertificate().fingerprint256
                let body = ''
                res.on('data', (chunk: Buffer) => {
                  body += chunk
                })
                res.on('end', () =>
                  resolve({ status: res.statusCode ?? 0, body, fingerprint, reused: req.reusedSocket }),
                )
              },
            )
            req.on('error', reject)
            req.end()
          },
        )

      expect(await get('a.proxy.test')).toMatchObject({
        status: 200,
        body: 'app-a',
        fingerprint: a.fingerprint256,
      })
      expect(await get('b.proxy.test')).toMatchObject({
        status: 200,
        body: 'app-b',
        fingerprint: b.fingerprint256,
      })
      // A name no certificate carries gets the default one (the first key), and no route.
      expect(await get('c.proxy.test', false, false)).toMatchObject({
        status: 404,
        fingerprint: a.fingerprint256,
      })
      const held = await get('a.proxy.test', keepAlive)
      expect(held).toMatchObject({ body: 'app-a', fingerprint: a.fingerprint256, reused: false })

      // New connections keep coming while the certificate is rotated in KV.
      const results: { at: number; status: number; body: string; fingerprint: string }[] = []
      const failures: string[] = []
      let loading = true
      const load = async () => {
        while (loading) {
          try {
            results.push({ at: Date.now(), ...(await get('a.proxy.test')) })
          } catch (err) {
            failures.push((err as Error).message)
          }
        }
      }
      const clients = [load(), load(), load()]
      await new Promise((r) => setTimeout(r, 300))
      const rotatedAt = Date.now()
      await put(`${prefix}/a`, a2)
      await eventually(
        async () => expect((await get('a.proxy.test')).fingerprint).toBe(a2.fingerprint256),
        1_000,
      )
      await new Promise((r) => setTimeout(r, 300))
      loading = false
      await Promise.all(clients)

      expect(failures).toEqual([])
      expect(results.filter((r) => r.status !== 200 || r.body !== 'app-a')).toEqual([])
      const firstNew = results.find((r) => r.fingerprint === a2.fingerprint256)
      expect(firstNew?.at).toBeLessThan(rotatedAt + 1_000)
      expect(results.filter((r) => r.at > rotatedAt + 1_000 && r.fingerprint !== a2.fingerprint256)).toEqual(
        [],
      )
      expect(results.filter((r) => r.at < rotatedAt).length).toBeGreaterThan(5)

      // The connection opened before the rotation is still open, on the old certificate.
      expect(await get('a.proxy.test', keepAlive)).toMatchObject({
        status: 200,
        body: 'app-a',
        fingerprint: a.fingerprint256,
        reused: true,
      })

      // What an operator sees.
      const listed = JSON.parse((await proxy.admin('/api/certificates')).body) as CertificateReportJson
      expect(listed.certificates.map((c) => [c.name, c.serving, c.default, c.fingerprint256])).toEqual([
        [`${prefix}/a`, ['a.proxy.test'], true, a2.fingerprint256],
        [`${prefix}/b`, ['b.proxy.test'], false, b.fingerprint256],
      ])
      const metrics = (await proxy.admin('/metrics')).body
      expect(metrics).toMatch(
        /^switchyard_certificate_not_after_seconds\{host="b\.proxy\.test",source="consul"\} \d+$/m,
      )
      await put(`${prefix}/b`, 'garbage')
      await eventually(async () => {
        const problems = JSON.parse((await proxy.admin('/api/problems')).body) as {
          subject: string
          source: string
        }[]
        expect(problems).toContainEqual(
          expect.objectContaining({
            code: 'SWY_ERR_CERTIFICATE',
            subject: `key ${prefix}/b`,
            source: 'certificates',
          }),
        )
      }, 1_000)
      expect((await proxy.admin('/metrics')).body).not.toContain('host="b.proxy.test"')
      expect(await get('a.proxy.test')).toMatchObject({ status: 200, fingerprint: a2.fingerprint256 })
    } finally {
      keepAlive.destroy()
      await proxy.stop()
      await api.deregister(svcA)
      await api.deregister(svcB)
      await Promise.all([appA.close(), appB.close()])
    }
  })
})
