// The example files in config/ work as their comments say: registered with the
// real `consul services register`, routed as described, with the shipped ACL
// policies.

import { execFile } from 'node:child_process'
import { createServer, type Server } from 'node:http'
import { promisify } from 'node:util'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { ConsulApi } from '../harness/consul-api.js'
import { describeWithConsul } from '../harness/context.js'
import { startTestProxy, type TestProxy } from '../harness/switchyard.js'
import { eventually } from '../harness/wait.js'

const ROOT = new URL('../../', import.meta.url).pathname

describeWithConsul('config/consul examples', (consul) => {
  const api = new ConsulApi(consul)
  // `consul services register|deregister <file>`, flags before the file as the CLI wants.
  const consulCli = (verb: string, file: string) =>
    promisify(execFile)(consul.binary, [
      'services',
      verb,
      `-http-addr=${consul.address}`,
      `-token=${consul.managementToken}`,
      file,
    ])
  const servers: Server[] = []
  let proxy: TestProxy

  beforeAll(async () => {
    // The apps the examples describe, on the ports they name.
    for (const [port, body] of [
      [8000, 'web-1'],
      [8001, 'web-2'],
      [9001, 'shop blue'],
      [9002, 'shop green'],
    ] as const) {
      const server = createServer((req, res) => res.end(`${body} ${req.url}`))
      await new Promise<void>((resolve, reject) =>
        server.once('error', reject).listen(port, '127.0.0.1', resolve),
      )
      servers.push(server)
    }
    await consulCli('register', `${ROOT}config/consul/web.hcl`)
    await consulCli('register', `${ROOT}config/consul/blue-green.hcl`)
    proxy = await startTestProxy(consul, { routing: { targetPrefix: 'switchyard/targets/examples' } })
  })

  afterAll(async () => {
    await proxy?.stop()
    await consulCli('deregister', `${ROOT}config/consul/web.hcl`).catch(() => {})
    await consulCli('deregister', `${ROOT}config/consul/blue-green.hcl`).catch(() => {})
    await api.kvDelete('switchyard/targets/examples/shop').catch(() => {})
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))))
  })

  it('web.hcl: both instances serve /web once their HTTP checks pass', async () => {
    await eventually(
      async () => {
        const seen = new Set<string>()
        for (let i = 0; i < 6; i++) seen.add((await proxy.get('/web/')).body)
        expect([...seen].sort()).toEqual(['web-1 /web/', 'web-2 /web/'])
      },
      20_000,
      200,
    )
  })

  it('blue-green.hcl: the target picks the slice, and strip=/shop removes the prefix', async () => {
    await api.kvPut('switchyard/targets/examples/shop', '{"slice":"green"}')
    await eventually(
      async () => {
        for (let i = 0; i < 4; i++) expect((await proxy.get('/shop/cart')).body).toBe('shop green /cart')
      },
      20_000,
      200,
    )
    await api.kvPut('switchyard/targets/examples/shop', '{"version":"1.5.0"}')
    await eventually(async () => expect((await proxy.get('/shop/')).body).toBe('shop blue /'), 5_000)
  })
})
