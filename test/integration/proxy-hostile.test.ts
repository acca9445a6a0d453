// Hostile and malformed input, sent on raw sockets because no HTTP client
// would send it: each gets a clean 4xx with a Switchyard error code, is
// counted, never reaches an instance, and the proxy keeps serving.

import { afterAll, beforeAll, expect, it } from 'vitest'
import type { RejectReason } from '../../src/proxy/resolve.js'
import { ConsulApi } from '../harness/consul-api.js'
import { describeWithConsul } from '../harness/context.js'
import { countingObserver, type RawResponse, rawRequest } from '../harness/proxy-tools.js'
import { startTestProxy, type TestProxy } from '../harness/switchyard.js'
import { startUpstream, type Upstream } from '../harness/upstream.js'
import { uniqueName } from '../harness/wait.js'

describeWithConsul('hostile and malformed input', (consul) => {
  const api = new ConsulApi(consul)
  const prefix = `${uniqueName('hostile')}-`
  const pub = uniqueName('public')
  const adm = uniqueName('admin')
  const { observer, counts } = countingObserver()
  let publicApp: Upstream
  let adminApp: Upstream
  let proxy: TestProxy
  let port: number

  beforeAll(async () => {
    publicApp = await startUpstream('public')
    adminApp = await startUpstream('admin')
    await api.register({ id: pub, name: pub, port: publicApp.port, tags: [`${prefix}/public`] })
    // The admin route refuses loopback clients: reaching its instance from the test is an escape.
    await api.register({
      id: adm,
      name: adm,
      port: adminApp.port,
      tags: [`${prefix}/admin deny=127.0.0.0/8,::1/128`],
    })
    proxy = await startTestProxy(
      consul,
      { routing: { tagPrefix: prefix }, proxy: { maxHeaderSize: 4096 }, log: { level: 'warn' } },
      { observer },
    )
    port = Number(new URL(proxy.app.proxyUrl).port)
  })

  afterAll(async () => {
    await proxy?.stop()
    for (const id of [pub, adm]) await api.deregister(id).catch(() => {})
    await Promise.all([publicApp?.close(), adminApp?.close()])
  })

  const send = (raw: string) => rawRequest(port, raw)
  const rejected = (reason: RejectReason) => counts.rejected.get(reason) ?? []

  async function expectRefused(
    raw: string,
    status: number,
    reason: RejectReason,
    code = 'SWY_ERR_BAD_REQUEST',
  ): Promise<RawResponse> {
    const before = rejected(reason).length
    const seen = publicApp.seen.length + adminApp.seen.length
    const res = await send(raw)
    expect(res.status, res.text).toBe(status)
    expect(res.text.toLowerCase()).toContain(`x-switchyard-error: ${code.toLowerCase()}`)
    expect(res.closed).toBe(true)
    expect(rejected(reason).length).toBe(before + 1)
    expect(rejected(reason).at(-1)).toBe(status)
    expect(publicApp.seen.length + adminApp.seen.length).toBe(seen)
    return res
  }

  it('answers 431 to oversized headers', async () => {
    await expectRefused(
      `GET /public HTTP/1.1\r\nHost: h\r\nX-Big: ${'x'.repeat(5000)}\r\n\r\n`,
      431,
      'headers-too-large',
      'SWY_ERR_HEADERS_TOO_LARGE',
    )
  })

  it('answers 400 to malformed request lines', async () => {
    await expectRefused('GARBAGE\r\n\r\n', 400, 'method')
    await expectRefused('GET /a b HTTP/1.1\r\nHost: h\r\n\r\n', 400, 'request-line')
    await expectRefused('GET /public HTTP/1.x\r\nHost: h\r\n\r\n', 400, 'request-line')
    await expectRefused('GET /public HTTP/1.1\nHost: h\n\n', 400, 'request-line')
  })

  it('answers 400 to unknown methods and 405 to CONNECT', async () => {
    await expectRefused('FOO /public HTTP/1.1\r\nHost: h\r\n\r\n', 400, 'method')
    await expectRefused(
      'CONNECT internal.example:443 HTTP/1.1\r\nHost: internal.example:443\r\n\r\n',
      405,
      'method',
      'SWY_ERR_METHOD_NOT_ALLOWED',
    )
  })

  it('refuses conflicting Content-Length / Transfer-Encoding: nothing is smuggled through', async () => {
    const smuggled = 'GET /admin HTTP/1.1\r\nHost: h\r\n\r\n'
    await expectRefused(
      `POST /public HTTP/1.1\r\nHost: h\r\nContent-Length: ${5 + smuggled.length}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${smuggled}`,
      400,
      'framing',
    )
    await expectRefused(
      'POST /public HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 40\r\n\r\nhello',
      400,
      'framing',
    )
    await expectRefused(
      'POST /public HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n',
      400,
      'framing',
    )
    // Node lets this one through to the handler; Switchyard refuses it (RFC 9112 §6.1).
    await expectRefused(
      `POST /public HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n${smuggled}`,
      400,
      'framing',
    )
    await expectRefused(
      'POST /public HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n',
      400,
      'header',
    )
    expect(adminApp.seen).toEqual([])
  })

  it('answers 400 to a missing, duplicated or invalid Host', async () => {
    await expectRefused('GET /public HTTP/1.1\r\n\r\n', 400, 'host')
    await expectRefused('GET /public HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n', 400, 'host')
    await expectRefused('GET /public HTTP/1.1\r\nHost: evil.example/admin\r\n\r\n', 400, 'host')
    await expectRefused('GET /public HTTP/1.1\r\nHost: a b\r\n\r\n', 400, 'host')
    // HTTP/1.0 needs no Host.
    const old = await send('GET /public HTTP/1.0\r\n\r\n')
    expect(old.status).toBe(200)
  })

  it('answers 400 to CR, LF or NUL inside header values', async () => {
    await expectRefused('GET /public HTTP/1.1\r\nHost: h\r\nX-A: b\rX-Injected: 1\r\n\r\n', 400, 'header')
    await expectRefused('GET /public HTTP/1.1\r\nHost: h\r\nX-A: b\nX-Injected: 1\r\n\r\n', 400, 'header')
    await expectRefused('GET /public HTTP/1.1\r\nHost: h\r\nX-A: b\0c\r\n\r\n', 400, 'header')
    // Obsolete line folding.
    await expectRefused('GET /public HTTP/1.1\r\nHost: h\r\nX-A: b\r\n folded\r\n\r\n', 400, 'header')
  })

  it('matches and forwards the same normalised path, so path tricks cannot leave a route', async () => {
    const get = (path: string) => send(`GET ${path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n`)
    // Dot segments, encoded dots and doubled slashes resolve to /admin, whose rules then apply.
    for (const path of [
      '/public/../admin',
      '/public/%2e%2e/admin',
      '/public/%2E%2E/admin/',
      '//admin',
      '/public/.%2e//admin',
    ]) {
      const res = await get(path)
      expect(res.status, path).toBe(403)
      expect(res.text).toContain('SWY_ERR_ACCESS_DENIED')
    }
    // An encoded slash is a character, not a separator: it stays inside the public route.
    const before = publicApp.seen.length
    const res = await get('/public/..%2fadmin')
    expect(res.status).toBe(200)
    expect(res.text).toContain('x-upstream: public')
    expect(publicApp.seen.slice(before).map((r) => r.url)).toEqual(['/public/..%2Fadmin'])
    // What the instance sees is what was matched.
    await get('/public/./a/../b//c')
    expect(publicApp.seen.at(-1)?.url).toBe('/public/b/c')
    // An encoded slash never creates the /admin route's prefix.
    expect((await get('/%2fadmin')).status).toBe(404)
    expect(adminApp.seen).toEqual([])
  })

  it('answers 400 to paths that cannot be normalised safely', async () => {
    await expectRefused('GET /public/..\\admin HTTP/1.1\r\nHost: h\r\n\r\n', 400, 'path')
    await expectRefused('GET /public/%5c..%5cadmin HTTP/1.1\r\nHost: h\r\n\r\n', 400, 'path')
    await expectRefused('GET /public/%00 HTTP/1.1\r\nHost: h\r\n\r\n', 400, 'path')
    await expectRefused('GET /public/%zz HTTP/1.1\r\nHost: h\r\n\r\n', 400, 'path')
  })

  it('keeps serving, on fresh and on kept-alive connections', async () => {
    expect((await proxy.get('/public')).status).toBe(200)
    const res = await send(
      'GET /public HTTP/1.1\r\nHost: h\r\n\r\nGET /public HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n',
    )
    expect(res.text.match(/HTTP\/1\.1 200 OK/g)).toHaveLength(2)
  })
})
