// `switchyard target get|set|clear`, the operator's commands, run as the
// compiled CLI with an operator token against the real Consul.

import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { promisify } from 'node:util'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { ConsulApi } from '../harness/consul-api.js'
import { describeWithConsul } from '../harness/context.js'
import { startTestProxy, type TestProxy } from '../harness/switchyard.js'
import { registerVersions, type Upstream } from '../harness/upstream.js'
import { uniqueName } from '../harness/wait.js'

const CLI = new URL('../../dist/cli/main.js', import.meta.url).pathname
const OPERATOR_POLICY = readFileSync(
  new URL('../../config/acl/switchyard-operator.hcl', import.meta.url),
  'utf8',
)

describeWithConsul('switchyard target', (consul) => {
  const api = new ConsulApi(consul)
  const prefix = `${uniqueName('tc')}-`
  const targetPrefix = `switchyard/targets/${uniqueName('t')}`
  const web = uniqueName('web')
  const upstreams: Upstream[] = []
  let operatorToken = ''
  let proxy: TestProxy

  async function cli(args: string[], token = operatorToken) {
    try {
      const { stdout, stderr } = await promisify(execFile)(
        process.execPath,
        [CLI, 'target', ...args, '--tag-prefix', prefix, '--target-prefix', targetPrefix],
        {
          env: { PATH: process.env.PATH ?? '', CONSUL_HTTP_ADDR: consul.address, CONSUL_HTTP_TOKEN: token },
          timeout: 30_000,
        },
      )
      return { code: 0, stdout, stderr }
    } catch (err) {
      const e = err as { code: number; stdout: string; stderr: string }
      return { code: e.code, stdout: e.stdout, stderr: e.stderr }
    }
  }

  beforeAll(async () => {
    operatorToken = (await api.createToken(uniqueName('operator'), OPERATOR_POLICY)).secret
    upstreams.push(
      ...(await registerVersions(api, web, `${prefix}/web`, [
        { id: `${web}-b`, answer: 'blue', version: '1.5.0' },
        { id: `${web}-g`, answer: 'green', version: '1.6.0' },
      ])),
    )
    proxy = await startTestProxy(consul, { routing: { tagPrefix: prefix, targetPrefix } })
  })

  afterAll(async () => {
    await proxy?.stop()
    await api.deregister(`${web}-b`)
    await api.deregister(`${web}-g`)
    await Promise.all(upstreams.map((u) => u.close()))
  })

  it('get shows that a service without a key sends traffic to every healthy instance', async () => {
    const r = await cli(['get', web])
    expect(r.code).toBe(0)
    expect(r.stdout).toContain(
      `${web}: no target (key ${targetPrefix}/${web} absent): every healthy instance gets traffic`,
    )
    expect(r.stdout).toContain('version 1.5.0: 1 serving, 0 idle')
    expect(r.stdout).toContain('version 1.6.0: 1 serving, 0 idle')
  })

  it('set --wait returns once this Switchyard serves the new version', async () => {
    const r = await cli(['set', web, '--version', '1.6.0', '--wait', '--admin', proxy.app.adminUrl])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(
      new RegExp(
        `^${web}: no target -> \\{"version":"1.6.0"\\} \\(key ${targetPrefix}/${web}, modify index \\d+\\)\\n`,
      ),
    )
    expect(r.stdout).toContain(`${web}: live: traffic follows version=1.6.0`)
    // --wait promised: by now every request goes to the new version.
    for (let i = 0; i < 10; i++) expect((await proxy.get('/web')).body).toBe('green')
  })

  it('set --wait with the value already in force returns at once (a new modify index is seen)', async () => {
    const r = await cli([
      'set',
      web,
      '--version',
      '1.6.0',
      '--wait',
      '--timeout',
      '5s',
      '--admin',
      proxy.app.adminUrl,
    ])
    expect(r.code).toBe(0)
    expect(r.stdout).toContain(`${web}: live: traffic follows version=1.6.0`)
  })

  it('set --weights writes a canary split that the dry run confirms', async () => {
    const r = await cli(['set', web, '--weights', '1.5.0=90,1.6.0=10', '--wait'])
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('live: traffic follows weights=1.5.0:90,1.6.0:10')
    const json = JSON.parse((await cli(['get', web, '--json'])).stdout)
    expect(json).toMatchObject({
      value: '{"weights":{"1.5.0":90,"1.6.0":10}}',
      ready: true,
      effective: 'weights=1.5.0:90,1.6.0:10',
    })
  })

  it('set --wait fails after its timeout and says what is missing', async () => {
    const r = await cli([
      'set',
      web,
      '--version',
      '9.9.9',
      '--wait',
      '--timeout',
      '1s',
      '--admin',
      proxy.app.adminUrl,
    ])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain('warning: not live yet: no healthy instance of version 9.9.9')
    expect(r.stderr).toContain(
      `SWY_ERR_TARGET_WAIT: timed out after 1s waiting for ${web} to serve version=9.9.9: no healthy instance of version 9.9.9`,
    )
    // Guarded cutover: traffic stayed where it was.
    expect((await proxy.get('/web')).status).toBe(200)
  })

  it('check-and-set refuses to overwrite a change made since it was read', async () => {
    const before = JSON.parse((await cli(['get', web, '--json'])).stdout) as { modifyIndex: number }
    await api.kvPut(`${targetPrefix}/${web}`, '{"version":"1.5.0"}')
    const r = await cli(['set', web, '--version', '1.6.0', '--cas', String(before.modifyIndex)])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain(`SWY_ERR_TARGET_WRITE: ${targetPrefix}/${web} changed since it was read`)
    expect(JSON.parse((await cli(['get', web, '--json'])).stdout).value).toBe('{"version":"1.5.0"}')
  })

  it('validates before writing', async () => {
    for (const [args, words] of [
      [['--version', '1.6.0', '--slice', 'blue'], 'give exactly one of --version, --slice or --weights'],
      [['--weights', '1.5.0=ninety'], '--weights: "1.5.0=ninety" is not version=weight'],
      [['--weights', '1.5.0=0'], '"weights" must not all be zero'],
      [['--weights', '1.5.0=-5'], 'weight of "1.5.0" must be a number >= 0'],
    ] as const) {
      const r = await cli(['set', web, ...args])
      expect(r.code).toBe(2)
      expect(r.stderr).toContain(`SWY_ERR_TARGET_INVALID: ${words}`)
    }
    expect(JSON.parse((await cli(['get', web, '--json'])).stdout).value).toBe('{"version":"1.5.0"}')
  })

  it('the proxy’s read-only token cannot set a target', async () => {
    const r = await cli(['set', web, '--version', '1.6.0'], consul.proxyToken)
    expect(r.code).toBe(1)
    expect(r.stderr).toContain(
      `SWY_ERR_TARGET_WRITE: token cannot write ${targetPrefix}/${web}: 403 Permission denied`,
    )
  })

  it('clear removes the key and every healthy instance serves again', async () => {
    const r = await cli(['clear', web])
    expect(r.code).toBe(0)
    expect(r.stdout).toContain(`${web}: {"version":"1.5.0"} -> no target`)
    const seen = new Set<string>()
    for (let i = 0; i < 30 && seen.size < 2; i++) seen.add((await proxy.get('/web')).body)
    expect([...seen].sort()).toEqual(['blue', 'green'])
  })
})
