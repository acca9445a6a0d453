// HTTPS listeners: TLS by SNI, HTTP/2 and HTTP/1.1 on one port by ALPN, all
// through the same routing and attempt path as plain HTTP, with the
// forwarded headers saying https; WebSockets over TLS; a client that resets
// HTTP/2 streams too fast is disconnected.

import { execFile } from 'node:child_process'
import { once } from 'node:events'
import { constants, connect as h2connect } from 'node:http2'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { createSecureContext, type SecureContext } from 'node:tls'
import { promisify } from 'node:util'
import { Agent, request } from 'undici'
import { afterAll, beforeAll, expect, it } from 'vitest'
import WebSocket, { WebSocketServer } from 'ws'
import type { TlsSource } from '../../src/proxy/listener.js'
import { createTestCa, type TestCa } from '../harness/certs.js'
import { ConsulApi } from '../harness/consul-api.js'
import { describeWithConsul } from '../harness/context.js'
import { countingObserver, sleep } from '../harness/proxy-tools.js'
import { startTestProxy, type TestProxy } from '../harness/switchyard.js'
import { startUpstream, type Upstream } from '../harness/upstream.js'
import { eventually, uniqueName } from '../harness/wait.js'

/** Two certificates by exact name, the first as the default. */
function fixedCertificates(ca: TestCa): TlsSource {
  const contexts = new Map<string, SecureContext>()
  const a = ca.leaf(['a.example.test'])
  const b = ca.leaf(['b.example.test'])
  contexts.set('a.example.test', createSecureContext({ cert: a.cert, key: a.key }))
  contexts.set('b.example.test', createSecureContext({ cert: b.cert, key: b.key }))
  return {
    serverOptions: () => ({ cert: a.cert, key: a.key, minVersion: 'TLSv1.2' }),
    secureContextFor: (name) => contexts.get(name.toLowerCase()) ?? null,
    onChange() {},
  }
}

describeWithConsul('https listeners: TLS, HTTP/2 and HTTP/1.1 on one port', (consul) => {
  const api = new ConsulApi(consul)
  const prefix = `${uniqueName('tls')}-`
  const service = uniqueName('tls')
  const { observer, counts } = countingObserver()
  let ca: TestCa
  let app: Upstream
  let wss: WebSocketServer
  let proxy: TestProxy
  let httpsUrl: string
  let httpsPort: number

  beforeAll(async () => {
    ca = createTestCa()
    app = await startUpstream('tls', (req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        res.writeHead(200, {
          'content-type': 'text/plain',
          'x-seen-proto': String(req.headers['x-forwarded-proto']),
          'x-seen-host': String(req.headers.host),
          'x-seen-cookie': String(req.headers.cookie),
          'set-cookie': ['a=1', 'b=2'],
        })
        res.end(`${req.method} ${req.url} ${Buffer.concat(chunks).length}`)
      })
    })
    wss = new WebSocketServer({ server: app.server })
    wss.on('connection', (ws) => ws.on('message', (m) => ws.send(`echo ${m}`)))
    await api.register({ id: service, name: service, port: app.port, tags: [`${prefix}/s`] })
    proxy = await startTestProxy(
      consul,
      {
        routing: { tagPrefix: prefix },
        proxy: {
          listeners: [
            { address: '127.0.0.1:0', protocol: 'https' },
            { address: '127.0.0.1:0', protocol: 'http' },
          ],
          http2: { maxResetsPerSecond: 20 },
        },
        log: { level: 'warn' },
      },
      { observer, tls: fixedCertificates(ca) },
    )
    httpsUrl = proxy.app.proxyUrls[0] as string
    httpsPort = Number(new URL(httpsUrl).port)
  })

  afterAll(async () => {
    await proxy?.stop()
    await api.deregister(service).catch(() => {})
    wss?.close()
    await app?.close()
    ca?.remove()
  })

  const agent = (servername: string) => new Agent({ connect: { ca: ca.ca, servername } })

  it('serves HTTP/1.1 over TLS with the certificate the SNI name asks for, and says https upstream', async () => {
    for (const name of ['a.example.test', 'b.example.test']) {
      const dispatcher = agent(name)
      const res = await request(`https://127.0.0.1:${httpsPort}/s/one`, {
        dispatcher,
        headers: { host: name },
      })
      expect(await res.body.text()).toBe('GET /s/one 0')
      expect(res.headers['x-seen-proto']).toBe('https')
      expect(res.headers['x-seen-host']).toBe(name)
      await dispatcher.close()
    }
    // A name no certificate has gets the default one (a.example.test's), which
    // a client checking for another name refuses.
    const strict = agent('c.example.test')
    await expect(request(`https://127.0.0.1:${httpsPort}/s/one`, { dispatcher: strict })).rejects.toThrow(
      /altnames|certificate/i,
    )
    await strict.close()
  })

  it('negotiates HTTP/2 with curl on the same port', async () => {
    const { stdout } = await promisify(execFile)('curl', [
      '--silent',
      '--http2',
      '--cacert',
      ca.caFile,
      '--resolve',
      `a.example.test:${httpsPort}:127.0.0.1`,
      '--write-out',
      '\\n%{http_version}',
      `https://a.example.test:${httpsPort}/s/curl`,
    ])
    expect(stdout).toBe('GET /s/curl 0\n2')
  })

  it('answers HTTP/2 streams through the same routing: bodies, cookies joined, repeated fields, HEAD, 404', async () => {
    const session = h2connect(`https://127.0.0.1:${httpsPort}`, { ca: ca.ca, servername: 'a.example.test' })
    session.on('error', () => {})
    const call = (headers: Record<string, string | string[]>, body?: Buffer) =>
      new Promise<{ headers: Record<string, unknown>; body: string }>((resolve, reject) => {
        const stream = session.request(headers, { endStream: body === undefined })
        let text = ''
        let head: Record<string, unknown> = {}
        stream.on('response', (h) => {
          head = h
        })
        stream.on('data', (c: Buffer) => {
          text += c
        })
        stream.on('end', () => resolve({ headers: head, body: text }))
        stream.on('error', reject)
        if (body !== undefined) stream.end(body)
      })
    const get = await call({ ':path': '/s/h2', ':authority': 'a.example.test', cookie: ['x=1', 'y=2'] })
    expect(get.headers[':status']).toBe(200)
    expect(get.body).toBe('GET /s/h2 0')
    expect(get.headers['x-seen-proto']).toBe('https')
    expect(get.headers['x-seen-host']).toBe('a.example.test')
    expect(get.headers['x-seen-cookie']).toBe('x=1; y=2')
    expect(get.headers['set-cookie']).toEqual(['a=1', 'b=2'])
    const post = await call(
      { ':method': 'POST', ':path': '/s/up', ':authority': 'a.example.test' },
      Buffer.alloc(100_000, 'z'),
    )
    expect(post.body).toBe('POST /s/up 100000')
    const head = await call({ ':method': 'HEAD', ':path': '/s/h', ':authority': 'a.example.test' })
    expect(head.headers[':status']).toBe(200)
    expect(head.body).toBe('')
    const missing = await call({ ':path': '/nothing', ':authority': 'a.example.test' })
    expect(missing.headers[':status']).toBe(404)
    expect(missing.headers['x-switchyard-error']).toBe('SWY_ERR_NO_ROUTE')
    session.close()
  })

  it('tunnels WebSockets over TLS (HTTP/1.1 by ALPN)', async () => {
    const tlsOptions = { ca: ca.ca, servername: 'a.example.test' }
    const ws = new WebSocket(`wss://127.0.0.1:${httpsPort}/s/ws`, tlsOptions as WebSocket.ClientOptions)
    await once(ws, 'open')
    ws.send('hi')
    const [message] = await once(ws, 'message')
    expect(String(message)).toBe('echo hi')
    ws.close()
  })

  it("runs Fabio's HTTP to HTTPS recipe: the plain listener's port route redirects, HTTPS is proxied", async () => {
    const plainPort = Number(new URL(proxy.app.proxyUrls[1] as string).port)
    const id = `${service}-recipe`
    await api.register({
      id,
      name: `${service}-recipe`,
      port: app.port,
      tags: [
        `${prefix}a.example.test:${plainPort}/r redirect=301,https://$host$path`,
        `${prefix}a.example.test/r`,
      ],
    })
    try {
      await eventually(async () => {
        const plain = await request(`http://127.0.0.1:${plainPort}/r/page?q=1`, {
          headers: { host: 'a.example.test' },
        })
        await plain.body.text()
        expect(plain.statusCode).toBe(301)
        expect(plain.headers.location).toBe('https://a.example.test/r/page?q=1')
      })
      const dispatcher = agent('a.example.test')
      const secure = await request(`https://127.0.0.1:${httpsPort}/r/page?q=1`, {
        dispatcher,
        headers: { host: 'a.example.test' },
      })
      expect(secure.statusCode).toBe(200)
      expect(await secure.body.text()).toBe('GET /r/page?q=1 0')
      await dispatcher.close()
    } finally {
      await api.deregister(id).catch(() => {})
    }
  })

  it('HTTPS instances: a certificate that does not verify is 502 SWY_ERR_UPSTREAM_TLS; tlsskipverify=true passes', async () => {
    // The test CA is not one Node trusts: verification must fail, and say so.
    const leaf = ca.leaf(['localhost'])
    const secure = createHttpsServer({ cert: leaf.cert, key: leaf.key }, (req, res) =>
      res.end(`tls ${req.url}`),
    )
    secure.listen(0, '127.0.0.1')
    await once(secure, 'listening')
    const port = (secure.address() as AddressInfo).port
    const ids = [`${service}-tls-verify`, `${service}-tls-skip`]
    await api.register({ id: ids[0]!, name: ids[0]!, port, tags: [`${prefix}/tlsup proto=https`] })
    await api.register({
      id: ids[1]!,
      name: ids[1]!,
      port,
      tags: [`${prefix}/tlsskip proto=https tlsskipverify=true`],
    })
    try {
      const plain = proxy.app.proxyUrls[1] as string
      await eventually(async () => {
        const res = await request(`${plain}/tlsup/x`)
        expect(res.statusCode).toBe(502)
        expect(res.headers['x-switchyard-error']).toBe('SWY_ERR_UPSTREAM_TLS')
        expect(await res.body.text()).toMatch(/certificate/i)
      })
      await eventually(async () => {
        const res = await request(`${plain}/tlsskip/y`)
        expect(await res.body.text()).toBe('tls /tlsskip/y')
      })
    } finally {
      for (const id of ids) await api.deregister(id).catch(() => {})
      secure.close()
    }
  })

  it('disconnects an HTTP/2 client that resets streams faster than the limit', async () => {
    const before = counts.rejected.get('h2-rapid-reset')?.length ?? 0
    const session = h2connect(`https://127.0.0.1:${httpsPort}`, { ca: ca.ca, servername: 'a.example.test' })
    session.on('error', () => {})
    await once(session, 'connect')
    const closed = new Promise((resolve) => session.once('close', resolve))
    for (let i = 0; i < 60 && !session.destroyed; i++) {
      const stream = session.request({ ':path': '/s/reset', ':authority': 'a.example.test' })
      stream.on('error', () => {})
      stream.close(constants.NGHTTP2_CANCEL)
      await sleep(1)
    }
    await closed
    await eventually(() => expect(counts.rejected.get('h2-rapid-reset')?.length ?? 0).toBe(before + 1))
    // Other clients are served meanwhile.
    const res = await request(`${proxy.app.proxyUrls[1]}/s/plain`)
    expect(await res.body.text()).toBe('GET /s/plain 0')
  })
})
