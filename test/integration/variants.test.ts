// Header and cookie canaries and sticky versions, against the real Consul and
// real backends, with the proxy on the read-only token.

import { mkdtempSync, writeFileSync } from 'node:fs'
import { connect as h2connect } from 'node:http2'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createSecureContext } from 'node:tls'
import { Agent, request } from 'undici'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { createTestCa, type TestCa } from '../harness/certs.js'
import { ConsulApi } from '../harness/consul-api.js'
import { describeWithConsul } from '../harness/context.js'
import { startTestProxy, type TestProxy } from '../harness/switchyard.js'
import { registerVersions, type Upstream } from '../harness/upstream.js'
import { eventually, uniqueName } from '../harness/wait.js'

describeWithConsul('match rules and sticky versions', (consul) => {
  const api = new ConsulApi(consul)
  const prefix = `${uniqueName('vr')}-`
  const targetPrefix = `switchyard/targets/${uniqueName('t')}`
  const web = uniqueName('web')
  const key = `${targetPrefix}/${web}`
  const canaryId = `${web}-c1`
  let upstreams: Upstream[] = []
  let proxy: TestProxy
  let ca: TestCa
  const dispatcher = new Agent({ connections: 32, keepAliveTimeout: 10_000 })

  beforeAll(async () => {
    upstreams = await registerVersions(api, web, `${prefix}/web`, [
      { id: `${web}-s1`, answer: 'stable', version: '1.6.0' },
      { id: `${web}-s2`, answer: 'stable', version: '1.6.0' },
      { id: canaryId, answer: 'canary', version: '1.7.0' },
    ])
    const dir = mkdtempSync(join(tmpdir(), 'swy-sticky-'))
    const keyFile = join(dir, 'sticky.key')
    writeFileSync(keyFile, `${'k'.repeat(40)}\n`, { mode: 0o600 })
    ca = createTestCa()
    const leaf = ca.leaf(['a.example.test'])
    proxy = await startTestProxy(
      consul,
      {
        routing: { tagPrefix: prefix, targetPrefix, stickyKeyFile: keyFile },
        proxy: {
          listeners: [
            { address: '127.0.0.1:0', protocol: 'http' },
            { address: '127.0.0.1:0', protocol: 'https' },
          ],
        },
      },
      {
        tls: {
          serverOptions: () => ({ cert: leaf.cert, key: leaf.key }),
          secureContextFor: () => createSecureContext({ cert: leaf.cert, key: leaf.key }),
          onChange() {},
        },
      },
    )
  })

  afterAll(async () => {
    await proxy?.stop()
    for (const id of ['s1', 's2', 'c1']) await api.deregister(`${web}-${id}`).catch(() => {})
    await api.kvDelete(`${targetPrefix}?recurse`).catch(() => {})
    await Promise.all(upstreams.map((u) => u.close()))
    await dispatcher.close()
    ca?.remove()
  })

  async function get(headers: Record<string, string> = {}) {
    const res = await request(`${proxy.app.proxyUrl}/web`, { headers, dispatcher })
    const body = await res.body.text()
    const setCookie = res.headers['set-cookie']
    return {
      status: res.statusCode,
      body,
      cookie: typeof setCookie === 'string' ? (setCookie.split(';')[0] as string) : null,
    }
  }
  async function targetView() {
    const targets = JSON.parse((await proxy.admin('/api/targets')).body) as {
      service: string
      desired: string
      ready: boolean
      reason: string
      versions: { version: string; requests: number; successRate: number | null; p99Ms: number | null }[]
    }[]
    return targets.find((t) => t.service === web)
  }
  /** Runs `n` requests with bounded concurrency. */
  async function many<T>(n: number, one: (i: number) => Promise<T>, concurrency = 16): Promise<T[]> {
    const out: T[] = new Array(n)
    let next = 0
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < n) {
          const i = next++
          out[i] = await one(i)
        }
      }),
    )
    return out
  }

  it('header and cookie rules send matching requests to 1.7.0 and all others to 1.6.0', async () => {
    await api.kvPut(
      key,
      JSON.stringify({
        version: '1.6.0',
        match: [
          { header: 'x-canary', equals: '1', version: '1.7.0' },
          { cookie: 'canary', equals: 'always', version: '1.7.0' },
        ],
      }),
    )
    await eventually(async () => expect((await get({ 'x-canary': '1' })).body).toBe('canary'))
    const header = await many(100, () => get({ 'x-canary': '1' }))
    const cookie = await many(100, () => get({ cookie: 'session=abc; canary=always' }))
    const plain = await many(100, () => get())
    const near = await many(100, (i) => get(i % 2 ? { 'x-canary': '0' } : { cookie: 'canary=never' }))
    expect(new Set(header.map((r) => r.body))).toEqual(new Set(['canary']))
    expect(new Set(cookie.map((r) => r.body))).toEqual(new Set(['canary']))
    expect(new Set([...plain, ...near].map((r) => r.body))).toEqual(new Set(['stable']))
    expect(await targetView()).toMatchObject({ ready: true })
    // What an operator watching the canary sees: per version, from this proxy's counters.
    const versions = (await targetView())?.versions ?? []
    expect(versions.map((v) => v.version)).toEqual(['1.6.0', '1.7.0'])
    expect(versions.find((v) => v.version === '1.7.0')).toMatchObject({ successRate: 1 })
    expect(versions.find((v) => v.version === '1.7.0')?.requests).toBeGreaterThanOrEqual(200)
    expect(versions.find((v) => v.version === '1.6.0')?.requests).toBeGreaterThanOrEqual(200)
    expect(versions.every((v) => typeof v.p99Ms === 'number' && v.p99Ms < 1000)).toBe(true)
    const page = (await proxy.admin('/')).body
    expect(page).toMatch(
      /data-version="1\.7\.0"><code>1\.7\.0<\/code> <b>100%<\/b> ok &middot; p99 <b>[\d.]+ ms<\/b>/,
    )
  })

  it('1.7.0 unhealthy: matching requests fall back to 1.6.0 with no error, and the target is not ready', async () => {
    const results: { status: number; body: string }[] = []
    let running = true
    const load = many(4, async () => {
      while (running) results.push(await get(results.length % 2 ? { 'x-canary': '1' } : {}))
    })
    await new Promise((r) => setTimeout(r, 200))
    await api.setCheck(canaryId, 'critical')
    await eventually(async () => expect((await get({ 'x-canary': '1' })).body).toBe('stable'))
    const view = await eventually(async () => {
      const t = await targetView()
      expect(t?.ready).toBe(false)
      return t
    })
    await new Promise((r) => setTimeout(r, 200))
    running = false
    await load
    expect(view?.reason).toContain('no healthy instance of version 1.7.0')
    expect(results.length).toBeGreaterThan(100)
    expect(results.filter((r) => r.status !== 200)).toEqual([])
    const after = await many(50, () => get({ 'x-canary': '1' }))
    expect(new Set(after.map((r) => r.body))).toEqual(new Set(['stable']))

    await api.setCheck(canaryId, 'passing')
    await eventually(async () => expect((await get({ 'x-canary': '1' })).body).toBe('canary'))
    expect(await targetView()).toMatchObject({ ready: true })
  })

  it('sticky 80/20 over 2,000 clients: one version each, the split within 3 %; at 50/50 it follows', async () => {
    const CLIENTS = 2000
    const REQUESTS = 3
    await api.kvPut(key, JSON.stringify({ weights: { '1.6.0': 80, '1.7.0': 20 }, sticky: true }))
    await eventually(async () =>
      expect((await targetView())?.desired).toBe('weights=1.6.0:80,1.7.0:20 sticky'),
    )
    const cookies: string[] = new Array(CLIENTS).fill('')

    /** Each client sends REQUESTS requests with the cookie it holds; the versions it saw. */
    const phase = () =>
      many(CLIENTS, async (c) => {
        const seen = new Set<string>()
        for (let r = 0; r < REQUESTS; r++) {
          const res = await get(cookies[c] ? { cookie: cookies[c] as string } : {})
          expect(res.status).toBe(200)
          seen.add(res.body)
          if (res.cookie !== null) cookies[c] = res.cookie
        }
        return [...seen]
      })
    const report = (label: string, seen: string[][]) => {
      const split = seen.filter((s) => s[0] === 'canary').length / CLIENTS
      process.stdout.write(`sticky ${label}: ${(split * 100).toFixed(1)} % of ${CLIENTS} clients on 1.7.0\n`)
      return split
    }

    const first = await phase()
    expect(first.filter((s) => s.length !== 1)).toEqual([])
    expect(cookies.every((c) => c.startsWith('switchyard_'))).toBe(true)
    expect(Math.abs(report('80/20', first) - 0.2)).toBeLessThanOrEqual(0.03)

    await api.kvPut(key, JSON.stringify({ weights: { '1.6.0': 50, '1.7.0': 50 }, sticky: true }))
    await eventually(async () =>
      expect((await targetView())?.desired).toBe('weights=1.6.0:50,1.7.0:50 sticky'),
    )
    const second = await phase()
    expect(second.filter((s) => s.length !== 1)).toEqual([])
    expect(Math.abs(report('50/50', second) - 0.5)).toBeLessThanOrEqual(0.03)
    // Re-balanced, not re-shuffled: no client of 1.7.0 went back to 1.6.0.
    expect(first.filter((s, c) => s[0] === 'canary' && second[c]?.[0] !== 'canary')).toEqual([])
  })

  it('over HTTP/2: cookie fields are joined before matching, and the sticky cookie is Secure and pins', async () => {
    const session = h2connect(proxy.app.proxyUrls[1] as string, { ca: ca.ca, servername: 'a.example.test' })
    session.on('error', () => {})
    const call = (headers: Record<string, string | string[]>) =>
      new Promise<{ headers: Record<string, unknown>; body: string }>((resolve, reject) => {
        const stream = session.request({ ':path': '/web', ':authority': 'a.example.test', ...headers })
        let body = ''
        let head: Record<string, unknown> = {}
        stream.on('response', (h) => {
          head = h
        })
        stream.on('data', (c: Buffer) => {
          body += c
        })
        stream.on('end', () => resolve({ headers: head, body }))
        stream.on('error', reject)
      })
    try {
      // The sticky 50/50 split of the test before: a Secure cookie, then the same version.
      const first = await call({})
      const setCookie = (first.headers['set-cookie'] as string[] | undefined)?.[0] ?? ''
      expect(setCookie).toMatch(
        /^switchyard_[\w-]+=\S+; Path=\/; Max-Age=86400; HttpOnly; SameSite=Lax; Secure$/,
      )
      const cookie = setCookie.split(';')[0] as string
      for (let i = 0; i < 10; i++) {
        const again = await call({ cookie: ['session=1', cookie] })
        expect(again.body).toBe(first.body)
        expect(again.headers['set-cookie']).toBeUndefined()
      }
      await api.kvPut(
        key,
        JSON.stringify({
          version: '1.6.0',
          match: [{ cookie: 'canary', equals: 'always', version: '1.7.0' }],
        }),
      )
      // HTTP/2 sends each cookie as its own field; the rule still sees `canary`.
      await eventually(async () =>
        expect((await call({ cookie: ['a=b', 'canary=always'] })).body).toBe('canary'),
      )
      expect((await call({ cookie: ['a=b', 'canary=never'] })).body).toBe('stable')
    } finally {
      session.close()
    }
  })
})
