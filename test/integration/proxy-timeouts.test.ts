// Each timeout is configurable, answered with the right status and counted:
// connect (504 when no other instance is left, else retried), response
// headers (504), idle response body (connection cut), and the client's own
// header timeout against slowloris (408).

import { connect } from 'node:net'
import { request } from 'undici'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { ConsulApi } from '../harness/consul-api.js'
import { describeWithConsul } from '../harness/context.js'
import {
  type Blackhole,
  countingObserver,
  rawRequest,
  sleep,
  startBlackhole,
} from '../harness/proxy-tools.js'
import { startTestProxy, type TestProxy } from '../harness/switchyard.js'
import { startUpstream, type Upstream } from '../harness/upstream.js'
import { eventually, uniqueName } from '../harness/wait.js'

describeWithConsul('timeouts', (consul) => {
  const api = new ConsulApi(consul)
  const prefix = `${uniqueName('tmo')}-`
  const ids: string[] = []
  const { observer, counts } = countingObserver()
  let blackhole: Blackhole
  let slow: Upstream
  let good: Upstream
  let proxy: TestProxy
  let port: number

  beforeAll(async () => {
    blackhole = await startBlackhole()
    slow = await startUpstream('slow', (req, res) => {
      if (req.url === '/slow/headers') return // never answers
      if (req.url === '/slow/body') {
        res.writeHead(200, { 'content-type': 'text/plain' })
        res.write('first part;') // then silence
        return
      }
      res.end('slow')
    })
    good = await startUpstream('good')
    const register = async (id: string, port: number, route: string) => {
      ids.push(id)
      await api.register({ id, name: id, port, tags: [`${prefix}${route}`] })
    }
    const hole = uniqueName('hole')
    await register(hole, blackhole.port, '/hole')
    await register(uniqueName('slow'), slow.port, '/slow')
    // One service with a black-holed and a good instance.
    const mixed = uniqueName('mixed')
    for (const [n, p] of [
      ['a', blackhole.port],
      ['b', good.port],
    ] as const) {
      ids.push(`${mixed}-${n}`)
      await api.register({ id: `${mixed}-${n}`, name: mixed, port: p, tags: [`${prefix}/mixed`] })
    }
    proxy = await startTestProxy(
      consul,
      {
        routing: { tagPrefix: prefix },
        proxy: {
          timeouts: { connect: '300ms', responseHeaders: '400ms', idle: '400ms', clientHeaders: '500ms' },
          passiveHealth: { failures: 0 },
        },
        log: { level: 'warn' },
      },
      { observer },
    )
    port = Number(new URL(proxy.app.proxyUrl).port)
  })

  afterAll(async () => {
    await proxy?.stop()
    for (const id of ids) await api.deregister(id).catch(() => {})
    blackhole?.close()
    await Promise.all([slow?.close(), good?.close()])
  })

  it('answers 504 when the only instance does not accept the connection in time, and counts it', async () => {
    const started = Date.now()
    const res = await proxy.get('/hole')
    expect(res.status).toBe(504)
    expect(res.headers['x-switchyard-error']).toBe('SWY_ERR_UPSTREAM_TIMEOUT')
    expect(res.body).toContain('connect timed out after 300 ms')
    expect(Date.now() - started).toBeLessThan(3_000)
    expect(counts.timeouts.filter((t) => t.kind === 'connect').length).toBeGreaterThanOrEqual(1)
  })

  it('retries a connect timeout on another instance: every GET succeeds', async () => {
    for (let i = 0; i < 6; i++) {
      const res = await proxy.get('/mixed')
      expect(res.status).toBe(200)
      expect(res.body).toBe('good')
    }
    // Round robin sent some of them to the black hole first.
    expect(
      counts.timeouts.filter((t) => t.kind === 'connect' && t.target?.includes('mixed')).length,
    ).toBeGreaterThan(0)
  })

  it('answers 504 when response headers do not come in time, and counts it', async () => {
    const started = Date.now()
    const res = await proxy.get('/slow/headers')
    expect(res.status).toBe(504)
    expect(res.body).toContain('no response head within 400 ms')
    expect(Date.now() - started).toBeGreaterThanOrEqual(350)
    expect(counts.timeouts.some((t) => t.kind === 'response-headers')).toBe(true)
  })

  it('cuts the client connection when the response body stalls, and counts it', async () => {
    const res = await request(`${proxy.app.proxyUrl}/slow/body`)
    expect(res.statusCode).toBe(200)
    const started = Date.now()
    await expect(res.body.text()).rejects.toThrow()
    expect(Date.now() - started).toBeLessThan(3_000)
    expect(counts.timeouts.some((t) => t.kind === 'idle')).toBe(true)
  })

  it('answers 408 to a client that sends its headers too slowly (slowloris), and counts it', async () => {
    const socket = connect(port, '127.0.0.1')
    const received: Buffer[] = []
    socket.on('data', (c: Buffer) => received.push(c))
    const closed = new Promise((resolve) => socket.on('close', resolve))
    socket.write('GET /mixed HTTP/1.1\r\nHost: x\r\n')
    const drip = setInterval(() => socket.write('X-Drip: 1\r\n'), 100)
    const started = Date.now()
    await closed
    clearInterval(drip)
    // 500 ms timeout, checked every 125 ms (Node's default check runs every 30 s).
    expect(Date.now() - started).toBeLessThan(2_000)
    expect(Buffer.concat(received).toString()).toMatch(/^HTTP\/1\.1 408 /)
    expect(Buffer.concat(received).toString()).toContain('SWY_ERR_CLIENT_TIMEOUT')
    expect(counts.timeouts.some((t) => t.kind === 'client-headers')).toBe(true)
  })

  it('closes a connection that never sends a byte after the header timeout', async () => {
    const raw = await rawRequest(port, '', 3_000)
    expect(raw.closed).toBe(true)
    expect(raw.status).toBe(408)
  })

  it('keeps serving after all of that', async () => {
    await eventually(async () => expect((await proxy.get('/mixed')).status).toBe(200))
    await sleep(10)
  })
})
