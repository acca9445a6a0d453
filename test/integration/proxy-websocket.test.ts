// WebSocket upgrades are proxied to the chosen instance: frames flow both
// ways, a close on either side reaches the other, and an instance that
// refuses the upgrade has its answer relayed, with no socket left open on
// either side of the proxy.

import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import type { AddressInfo, Server as NetServer } from 'node:net'
import { afterAll, beforeAll, expect, it } from 'vitest'
import WebSocket, { WebSocketServer } from 'ws'
import { freePort } from '../harness/consul-agent.js'
import { ConsulApi } from '../harness/consul-api.js'
import { describeWithConsul } from '../harness/context.js'
import { countingObserver } from '../harness/proxy-tools.js'
import { startTestProxy, type TestProxy } from '../harness/switchyard.js'
import { startUpstream, type Upstream } from '../harness/upstream.js'
import { eventually, uniqueName } from '../harness/wait.js'

interface WsApp {
  readonly server: Server
  readonly wss: WebSocketServer
  readonly port: number
  readonly closes: { code: number; reason: string }[]
  readonly handshakes: Record<string, string | string[] | undefined>[]
}

async function startWsApp(): Promise<WsApp> {
  const server = createServer((_req, res) => res.end('plain'))
  const wss = new WebSocketServer({ noServer: true })
  const closes: WsApp['closes'] = []
  const handshakes: WsApp['handshakes'] = []
  server.on('upgrade', (req, socket, head) => {
    if (req.url === '/ws/refuse') {
      socket.end('HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: 7\r\n\r\nno way\n')
      return
    }
    handshakes.push(req.headers)
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.send('hello from upstream')
      ws.on('message', (data, isBinary) => {
        const text = data.toString()
        if (!isBinary && text === 'close please') return ws.close(4000, 'bye')
        ws.send(data, { binary: isBinary })
      })
      ws.on('close', (code, reason) => closes.push({ code, reason: reason.toString() }))
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return { server, wss, port: (server.address() as AddressInfo).port, closes, handshakes }
}

function connections(server: Server | NetServer): Promise<number> {
  return new Promise((resolve, reject) => server.getConnections((err, n) => (err ? reject(err) : resolve(n))))
}

describeWithConsul('WebSocket upgrades', (consul) => {
  const api = new ConsulApi(consul)
  const prefix = `${uniqueName('ws')}-`
  const ids = [uniqueName('ws'), uniqueName('plain'), uniqueName('down')]
  const { observer, counts } = countingObserver()
  let app: WsApp
  let plain: Upstream
  let proxy: TestProxy
  let base: string

  beforeAll(async () => {
    app = await startWsApp()
    plain = await startUpstream('plain')
    await api.register({ id: ids[0]!, name: ids[0]!, port: app.port, tags: [`${prefix}/ws`] })
    await api.register({ id: ids[1]!, name: ids[1]!, port: plain.port, tags: [`${prefix}/plain`] })
    await api.register({ id: ids[2]!, name: ids[2]!, port: await freePort(), tags: [`${prefix}/down`] })
    proxy = await startTestProxy(
      consul,
      { routing: { tagPrefix: prefix }, log: { level: 'warn' } },
      { observer },
    )
    base = proxy.app.proxyUrl.replace('http:', 'ws:')
  })

  afterAll(async () => {
    await proxy?.stop()
    for (const id of ids) await api.deregister(id).catch(() => {})
    app?.wss.close()
    app?.server.closeAllConnections()
    app?.server.close()
    await plain?.close()
  })

  async function open(path: string): Promise<{ ws: WebSocket; messages: string[] }> {
    const ws = new WebSocket(`${base}${path}`)
    const messages: string[] = []
    ws.on('message', (data) => messages.push(data.toString()))
    await once(ws, 'open')
    return { ws, messages }
  }

  async function noSocketsLeft(): Promise<void> {
    await eventually(async () => {
      expect(await connections(proxy.app.proxy)).toBe(0)
      expect(app.wss.clients.size).toBe(0)
      expect(await connections(app.server)).toBeLessThanOrEqual(1) // at most one idle keep-alive in the pool
    }, 5_000)
  }

  it('carries text and binary frames both ways', async () => {
    const { ws, messages } = await open('/ws/echo')
    ws.send('ping 1')
    ws.send(Buffer.from([1, 2, 3, 255]))
    ws.send('x'.repeat(200_000))
    await eventually(() => expect(messages.length).toBe(4))
    expect(messages[0]).toBe('hello from upstream')
    expect(messages[1]).toBe('ping 1')
    expect([...Buffer.from(messages[2]!, 'latin1')].length).toBeGreaterThan(0)
    expect(messages[3]).toHaveLength(200_000)
    const headers = app.handshakes.at(-1)!
    expect(headers['x-forwarded-for']).toBe('127.0.0.1')
    expect(headers.upgrade).toBe('websocket')
    ws.close(1000, 'done')
    await once(ws, 'close')
    await eventually(() => expect(app.closes.at(-1)).toEqual({ code: 1000, reason: 'done' }))
    await noSocketsLeft()
  })

  it('passes a close from the upstream to the client', async () => {
    const { ws } = await open('/ws/echo')
    ws.send('close please')
    const [code, reason] = (await once(ws, 'close')) as [number, Buffer]
    expect(code).toBe(4000)
    expect(reason.toString()).toBe('bye')
    await noSocketsLeft()
  })

  it('closes the upstream side when the client vanishes without a close frame', async () => {
    const { ws } = await open('/ws/echo')
    ws.terminate()
    await eventually(() => expect(app.closes.at(-1)?.code).toBe(1006))
    await noSocketsLeft()
  })

  it('relays a refused upgrade to the client and leaks no socket', async () => {
    const ws = new WebSocket(`${base}/ws/refuse`)
    ws.on('error', () => {})
    const [, res] = (await once(ws, 'unexpected-response')) as [unknown, import('node:http').IncomingMessage]
    expect(res.statusCode).toBe(403)
    let body = ''
    for await (const chunk of res) body += chunk
    expect(body).toBe('no way\n')
    ws.terminate()
    await noSocketsLeft()
  })

  it('relays the plain answer of an instance that does not speak WebSocket, and leaks no socket', async () => {
    const ws = new WebSocket(`${base}/plain`)
    ws.on('error', () => {})
    const [, res] = (await once(ws, 'unexpected-response')) as [unknown, { statusCode: number }]
    expect(res.statusCode).toBe(200)
    ws.terminate()
    await eventually(async () => expect(await connections(proxy.app.proxy)).toBe(0))
  })

  it('answers 502 when the instance refuses the connection, 404 without a route', async () => {
    for (const [path, status] of [
      ['/down', 502],
      ['/nothing-here', 404],
    ] as const) {
      const ws = new WebSocket(`${base}${path}`)
      ws.on('error', () => {})
      const [, res] = (await once(ws, 'unexpected-response')) as [unknown, { statusCode: number }]
      expect(res.statusCode).toBe(status)
      ws.terminate()
    }
    await eventually(async () => expect(await connections(proxy.app.proxy)).toBe(0))
  })

  it('leaves nothing behind after 50 connections opened and closed', async () => {
    for (let i = 0; i < 50; i++) {
      const { ws, messages } = await open('/ws/echo')
      ws.send(`n${i}`)
      await eventually(() => expect(messages).toContain(`n${i}`))
      if (i % 2 === 0) ws.close()
      else ws.terminate()
    }
    await noSocketsLeft()
    const route = proxy.app.store.current.routes.find((r) => r.id === '/ws')!
    expect(proxy.app.balancer.outstanding(route.backends[0]!)).toBe(0)
    expect(counts.requests.filter((r) => r.status === 101).length).toBeGreaterThanOrEqual(50)
  })
})
