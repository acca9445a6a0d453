// gRPC through Switchyard with a real @grpc/grpc-js server and client: a route
// tagged proto=grpc forwards over HTTP/2 to the instance; clients reach the
// proxy over TLS (ALPN h2) or cleartext HTTP/2 with prior knowledge. Unary,
// server, client and bidirectional streaming pass with their status codes,
// messages and trailers; a deadline and a cancelled call propagate to the
// server; grpc-status is counted in /metrics.

import { createSecureContext } from 'node:tls'
import {
  type Client,
  credentials,
  type handleBidiStreamingCall,
  type handleClientStreamingCall,
  type handleServerStreamingCall,
  type handleUnaryCall,
  Metadata,
  makeGenericClientConstructor,
  Server,
  ServerCredentials,
  type ServiceDefinition,
  status,
} from '@grpc/grpc-js'
import { afterAll, beforeAll, expect, it } from 'vitest'
import type { TlsSource } from '../../src/proxy/listener.js'
import { createTestCa, type TestCa } from '../harness/certs.js'
import { ConsulApi } from '../harness/consul-api.js'
import { describeWithConsul } from '../harness/context.js'
import { startTestProxy, type TestProxy } from '../harness/switchyard.js'
import { eventually, uniqueName } from '../harness/wait.js'

// Messages are raw bytes: no protobuf needed to test the transport.
const raw = {
  requestSerialize: (b: Buffer) => b,
  requestDeserialize: (b: Buffer) => b,
  responseSerialize: (b: Buffer) => b,
  responseDeserialize: (b: Buffer) => b,
}
const SERVICE = {
  echo: { path: '/test.Echo/Echo', requestStream: false, responseStream: false, ...raw },
  count: { path: '/test.Echo/Count', requestStream: false, responseStream: true, ...raw },
  sum: { path: '/test.Echo/Sum', requestStream: true, responseStream: false, ...raw },
  chat: { path: '/test.Echo/Chat', requestStream: true, responseStream: true, ...raw },
  slow: { path: '/test.Echo/Slow', requestStream: false, responseStream: false, ...raw },
} satisfies ServiceDefinition
const EchoClient = makeGenericClientConstructor(SERVICE, 'Echo')

type Unary = (
  req: Buffer,
  md: Metadata,
  opts: { deadline?: number },
  cb: (err: { code: number; details: string; metadata: Metadata } | null, res?: Buffer) => void,
) => { cancel(): void; on(e: string, f: (...a: unknown[]) => void): void }

function call(client: Client, method: keyof typeof SERVICE) {
  return (client as unknown as Record<string, unknown>)[method] as (...args: unknown[]) => unknown
}

describeWithConsul('gRPC through proto=grpc routes', (consul) => {
  const api = new ConsulApi(consul)
  const prefix = `${uniqueName('grpc')}-`
  const service = uniqueName('grpc')
  const cancelledOnServer: string[] = []
  let ca: TestCa
  let server: Server
  let proxy: TestProxy
  let plainTarget: string
  let tlsTarget: string

  beforeAll(async () => {
    ca = createTestCa()
    server = new Server()
    const echo: handleUnaryCall<Buffer, Buffer> = (callObj, cb) => {
      const text = callObj.request.toString()
      if (text === 'missing') {
        const md = new Metadata()
        md.set('x-reason', 'no such thing')
        return cb({ code: status.NOT_FOUND, details: 'nothing called missing', metadata: md })
      }
      const trailer = new Metadata()
      trailer.set('x-trailer', 'from-server')
      cb(null, Buffer.from(`echo:${text}:${callObj.metadata.get('x-forwarded-proto')[0]}`), trailer)
    }
    const count: handleServerStreamingCall<Buffer, Buffer> = (callObj) => {
      const n = Number(callObj.request.toString())
      for (let i = 1; i <= n; i++) callObj.write(Buffer.from(String(i)))
      callObj.end()
    }
    const sum: handleClientStreamingCall<Buffer, Buffer> = (callObj, cb) => {
      let total = 0
      callObj.on('data', (b: Buffer) => {
        total += Number(b.toString())
      })
      callObj.on('end', () => cb(null, Buffer.from(String(total))))
    }
    const chat: handleBidiStreamingCall<Buffer, Buffer> = (callObj) => {
      callObj.on('data', (b: Buffer) => callObj.write(Buffer.from(`re:${b}`)))
      callObj.on('end', () => callObj.end())
    }
    const slow: handleUnaryCall<Buffer, Buffer> = (callObj, cb) => {
      const timer = setTimeout(() => cb(null, Buffer.from('late')), 3_000)
      callObj.on('cancelled', () => {
        clearTimeout(timer)
        cancelledOnServer.push(callObj.request.toString())
      })
    }
    server.addService(SERVICE, { echo, count, sum, chat, slow })
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    )
    await api.register({ id: service, name: service, port, tags: [`${prefix}/test.Echo proto=grpc`] })
    const leaf = ca.leaf(['grpc.example.test'])
    const tls: TlsSource = {
      serverOptions: () => ({ cert: leaf.cert, key: leaf.key }),
      secureContextFor: () => createSecureContext({ cert: leaf.cert, key: leaf.key }),
      onChange() {},
    }
    proxy = await startTestProxy(
      consul,
      {
        routing: { tagPrefix: prefix },
        proxy: {
          listeners: [
            { address: '127.0.0.1:0', protocol: 'http' },
            { address: '127.0.0.1:0', protocol: 'https' },
          ],
        },
        log: { level: 'warn' },
      },
      { tls },
    )
    plainTarget = new URL(proxy.app.proxyUrls[0] as string).host
    tlsTarget = new URL(proxy.app.proxyUrls[1] as string).host
  })

  afterAll(async () => {
    await proxy?.stop()
    await api.deregister(service).catch(() => {})
    server?.forceShutdown()
    ca?.remove()
  })

  const clients = () => [
    { name: 'cleartext HTTP/2', client: new EchoClient(plainTarget, credentials.createInsecure()) },
    {
      name: 'TLS',
      client: new EchoClient(tlsTarget, credentials.createSsl(Buffer.from(ca.ca)), {
        'grpc.ssl_target_name_override': 'grpc.example.test',
      }),
    },
  ]

  /** A unary call: its answer or error, and the trailer metadata of its final status. */
  const unary = (client: Client, text: string) =>
    new Promise<{ value?: string; code: number; details?: string; trailer?: string; reason?: string }>(
      (resolve) => {
        let result: { value?: string; code: number; details?: string; reason?: string } | null = null
        let trailer: string | null = null
        const settle = () => {
          if (result !== null && trailer !== null)
            resolve(result.code === 0 ? { ...result, trailer } : result)
        }
        const c = (call(client, 'echo') as unknown as Unary).call(
          client,
          Buffer.from(text),
          new Metadata(),
          {},
          (err, res) => {
            result = err
              ? { code: err.code, details: err.details, reason: String(err.metadata.get('x-reason')[0]) }
              : { value: res?.toString(), code: 0 }
            settle()
          },
        )
        c.on('status', (s) => {
          trailer = String((s as { metadata: Metadata }).metadata.get('x-trailer')[0])
          settle()
        })
      },
    )

  it('unary calls: answers, errors with their status, details and metadata, trailers', async () => {
    for (const { name, client } of clients()) {
      const ok = await unary(client, 'hello')
      expect(ok, name).toEqual({
        value: `echo:hello:${name === 'TLS' ? 'https' : 'http'}`,
        code: 0,
        trailer: 'from-server',
      })
      const missing = await unary(client, 'missing')
      expect(missing, name).toEqual({
        code: status.NOT_FOUND,
        details: 'nothing called missing',
        reason: 'no such thing',
      })
      client.close()
    }
  })

  it('server, client and bidirectional streaming', async () => {
    for (const { name, client } of clients()) {
      const stream = call(client, 'count').call(client, Buffer.from('5')) as NodeJS.ReadableStream
      const got: string[] = []
      for await (const b of stream) got.push(String(b))
      expect(got, name).toEqual(['1', '2', '3', '4', '5'])

      const total = await new Promise<string>((resolve, reject) => {
        const up = call(client, 'sum').call(client, (err: Error | null, res: Buffer) =>
          err ? reject(err) : resolve(String(res)),
        ) as NodeJS.WritableStream
        for (const n of [1, 2, 3, 4]) up.write(Buffer.from(String(n)))
        up.end()
      })
      expect(total, name).toBe('10')

      const duplex = call(client, 'chat').call(client) as NodeJS.ReadWriteStream
      const replies: string[] = []
      const done = new Promise<void>((resolve) => {
        duplex.on('data', (b: Buffer) => {
          replies.push(String(b))
          if (replies.length < 3) duplex.write(Buffer.from(`m${replies.length + 1}`))
          else duplex.end()
        })
        duplex.on('end', () => resolve())
      })
      duplex.write(Buffer.from('m1'))
      await done
      expect(replies, name).toEqual(['re:m1', 're:m2', 're:m3'])
      client.close()
    }
  })

  it('a deadline and a cancelled call reach the server as cancellations', async () => {
    const { client } = clients()[0] as { client: Client }
    const late = await new Promise<{ code: number }>((resolve) => {
      ;(call(client, 'slow') as unknown as Unary).call(
        client,
        Buffer.from('deadline'),
        new Metadata(),
        { deadline: Date.now() + 300 },
        (err) => resolve({ code: err?.code ?? 0 }),
      )
    })
    expect(late.code).toBe(status.DEADLINE_EXCEEDED)
    const cancelled = await new Promise<{ code: number }>((resolve) => {
      const c = (call(client, 'slow') as unknown as Unary).call(
        client,
        Buffer.from('cancel'),
        new Metadata(),
        {},
        (err) => resolve({ code: err?.code ?? 0 }),
      )
      setTimeout(() => c.cancel(), 200)
    })
    expect(cancelled.code).toBe(status.CANCELLED)
    await eventually(() => expect(cancelledOnServer.sort()).toEqual(['cancel', 'deadline']))
    client.close()
  })

  it('counts grpc-status per route in /metrics', async () => {
    const text = (await proxy.admin('/metrics')).body
    const line = (code: string) =>
      new RegExp(`^switchyard_grpc_responses_total\\{[^}]*grpc_status="${code}"[^}]*\\} (\\d+)$`, 'm').exec(
        text,
      )
    expect(Number(line('0')?.[1])).toBeGreaterThanOrEqual(2)
    expect(Number(line('5')?.[1])).toBe(2)
  })
})
