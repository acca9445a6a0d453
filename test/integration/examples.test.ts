// The example files in config/ work as their comments say: registered with the
// real `consul services register`, routed as described, with the shipped ACL
// policies. The apps listen on free ports: each port an example names is
// replaced by a free one in a copy of the file, and nothing else is changed.

import { execFile } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { ConsulApi } from '../harness/consul-api.js'
import { describeWithConsul } from '../harness/context.js'
import { startTestProxy, type TestProxy } from '../harness/switchyard.js'
import { tempDir } from '../harness/temp.js'
import { eventually, uniqueName } from '../harness/wait.js'

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
  const dir = tempDir('examples')
  const files: Record<string, string> = {}
  let proxy: TestProxy
  let operatorToken = ''

  /**
   * Starts the apps an example names (answering `<name> <url>`), each on a free
   * port, and writes a copy of the example with each named port replaced by
   * its app's port.
   */
  async function startExample(file: string, apps: Record<number, string>): Promise<string> {
    let text = readFileSync(`${ROOT}config/consul/${file}`, 'utf8')
    for (const [named, body] of Object.entries(apps)) {
      const server = createServer((req, res) => res.end(`${body} ${req.url}`))
      server.listen(0, '127.0.0.1')
      await once(server, 'listening')
      servers.push(server)
      const port = (server.address() as AddressInfo).port
      const pattern = new RegExp(`\\b${named}\\b`, 'g')
      // The test must follow the example: a port it no longer names is a failure here.
      expect(text, `${file} names port ${named}`).toMatch(pattern)
      text = text.replace(pattern, String(port))
    }
    const path = join(dir, file)
    writeFileSync(path, text)
    return path
  }

  beforeAll(async () => {
    files.web = await startExample('web.hcl', { 8000: 'web-1', 8001: 'web-2' })
    files.blueGreen = await startExample('blue-green.hcl', { 9001: 'shop blue', 9002: 'shop green' })
    await consulCli('register', files.web)
    await consulCli('register', files.blueGreen)
    proxy = await startTestProxy(consul, { routing: { targetPrefix: 'switchyard/targets/examples' } })
    operatorToken = (
      await api.createToken(
        uniqueName('examples-operator'),
        readFileSync(`${ROOT}config/acl/switchyard-operator.hcl`, 'utf8'),
      )
    ).secret
  })

  afterAll(async () => {
    await proxy?.stop()
    if (files.web) await consulCli('deregister', files.web).catch(() => {})
    if (files.blueGreen) await consulCli('deregister', files.blueGreen).catch(() => {})
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

  it('blue-green.hcl: target toggle switches between the two slices', async () => {
    await api.kvPut('switchyard/targets/examples/shop', '{"slice":"green"}')
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [
        `${ROOT}dist/cli/main.js`,
        'target',
        'toggle',
        'shop',
        '--wait',
        '--admin',
        proxy.app.adminUrl,
        '--target-prefix',
        'switchyard/targets/examples',
      ],
      {
        env: {
          PATH: process.env.PATH ?? '',
          CONSUL_HTTP_ADDR: consul.address,
          CONSUL_HTTP_TOKEN: operatorToken,
        },
      },
    )
    expect(stdout).toContain('shop: {"slice":"green"} -> {"slice":"blue"}')
    expect(stdout).toContain('shop: live on 1 proxy: traffic follows slice=blue')
    for (let i = 0; i < 4; i++) expect((await proxy.get('/shop/')).body).toBe('shop blue /')
    await api.kvPut('switchyard/targets/examples/shop', '{"version":"1.5.0"}')
  })

  it('switchyard.hcl: registers a Switchyard whose /ready Consul checks and that --fleet asks', async () => {
    // The file as shipped, with this test proxy's admin port for 9998.
    const admin = new URL(proxy.app.adminUrl).port
    const file = join(dir, 'switchyard.hcl')
    writeFileSync(file, readFileSync(`${ROOT}config/consul/switchyard.hcl`, 'utf8').replaceAll('9998', admin))
    await consulCli('register', file)
    try {
      await eventually(
        async () => {
          const checks = (await (await api.call('GET', '/v1/health/checks/switchyard')).json()) as {
            Status: string
          }[]
          expect(checks.map((c) => c.Status)).toEqual(['passing'])
        },
        20_000,
        250,
      )
      const { stdout } = await promisify(execFile)(
        process.execPath,
        [
          `${ROOT}dist/cli/main.js`,
          'target',
          'get',
          'shop',
          '--fleet',
          '--target-prefix',
          'switchyard/targets/examples',
        ],
        {
          env: {
            PATH: process.env.PATH ?? '',
            CONSUL_HTTP_ADDR: consul.address,
            CONSUL_HTTP_TOKEN: operatorToken,
          },
        },
      )
      expect(stdout).toContain(
        `  proxy http://127.0.0.1:${admin} (switchyard-test/switchyard): serving version=1.5.0, desired version=1.5.0; ready`,
      )
    } finally {
      await consulCli('deregister', file).catch(() => {})
    }
  })
})
