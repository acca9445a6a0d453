// `switchyard target get|set|toggle|clear`, the operator's commands, run as
// the compiled CLI with an operator token against the real Consul and a real
// running Switchyard (asked with --admin, or found with --fleet).

import { afterAll, beforeAll, expect, it } from 'vitest'
import { type CliRun, OPERATOR_POLICY, runCli } from '../harness/cli.js'
import { freePort } from '../harness/consul-agent.js'
import { ConsulApi } from '../harness/consul-api.js'
import { describeWithConsul } from '../harness/context.js'
import { startTestProxy, type TestProxy } from '../harness/switchyard.js'
import { registerVersions, startUpstream, type Upstream } from '../harness/upstream.js'
import { eventually, uniqueName } from '../harness/wait.js'

describeWithConsul('switchyard target', (consul) => {
  const api = new ConsulApi(consul)
  const prefix = `${uniqueName('tc')}-`
  const targetPrefix = `switchyard/targets/${uniqueName('t')}`
  const web = uniqueName('web')
  const key = `${targetPrefix}/${web}`
  const upstreams: Upstream[] = []
  const registered: string[] = []
  let operatorToken = ''
  let proxy: TestProxy

  const exec = (args: string[], token = operatorToken): Promise<CliRun> =>
    runCli(args, { CONSUL_HTTP_ADDR: consul.address, CONSUL_HTTP_TOKEN: token })
  const cli = (args: string[], token = operatorToken) =>
    exec(['target', ...args, '--tag-prefix', prefix, '--target-prefix', targetPrefix], token)
  /** Runs the `undo:` command a write printed, as printed. */
  const undo = (output: string) => {
    const line = /^ {2}undo: switchyard (.*)$/m.exec(output)?.[1]
    expect(line).toBeDefined()
    return exec((line ?? '').split(' '))
  }
  const value = async () => JSON.parse((await cli(['get', web, '--json'])).stdout).value as string | null
  const register = async (id: string, version: string, status: 'passing' | 'critical' = 'passing') => {
    const upstream = await startUpstream(id)
    upstreams.push(upstream)
    await api.register({
      id,
      name: web,
      port: upstream.port,
      tags: [`${prefix}/web`],
      meta: { version },
      status,
    })
    registered.push(id)
  }
  const admin = () => ['--admin', proxy.app.adminUrl]

  beforeAll(async () => {
    operatorToken = (await api.createToken(uniqueName('operator'), OPERATOR_POLICY)).secret
    upstreams.push(
      ...(await registerVersions(api, web, `${prefix}/web`, [
        { id: `${web}-b`, answer: 'blue', version: '1.5.0' },
        { id: `${web}-g`, answer: 'green', version: '1.6.0' },
      ])),
    )
    registered.push(`${web}-b`, `${web}-g`)
    proxy = await startTestProxy(consul, { routing: { tagPrefix: prefix, targetPrefix } })
  })

  afterAll(async () => {
    await proxy?.stop()
    for (const id of registered) await api.deregister(id).catch(() => {})
    await Promise.all(upstreams.map((u) => u.close()))
  })

  it('get without a key: every healthy instance, and the dry run says it is one', async () => {
    const r = await cli(['get', web])
    expect(r.code).toBe(0)
    expect(r.stdout).toContain(`${web}: no target (key ${key} absent): every healthy instance gets traffic`)
    expect(r.stdout).toContain(
      'dry run from Consul (no proxy asked; --fleet or --admin URL asks the running proxies)',
    )
    expect(r.stdout).toContain('version 1.5.0: 1 serving')
    expect(r.stdout).toContain('version 1.6.0: 1 serving')
  })

  it('set --wait --admin returns once that Switchyard serves the new version, and prints the undo', async () => {
    const r = await cli(['set', web, '--version', '1.6.0', '--wait', ...admin()])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(
      new RegExp(`^${web}: no target -> \\{"version":"1.6.0"\\} \\(key ${key}, modify index (\\d+)\\)\\n`),
    )
    const index = /modify index (\d+)/.exec(r.stdout)?.[1]
    expect(r.stdout).toContain(
      `  undo: switchyard target clear ${web} --cas ${index} --tag-prefix ${prefix} --target-prefix ${targetPrefix}\n`,
    )
    expect(r.stdout).toContain(`${web}: live on 1 proxy: traffic follows version=1.6.0`)
    // --wait promised: by now every request goes to the new version.
    for (let i = 0; i < 10; i++) expect((await proxy.get('/web')).body).toBe('green')
  })

  it('set --wait with the value already in force returns at once (a new modify index is seen)', async () => {
    const r = await cli(['set', web, '--version', '1.6.0', '--wait', '--timeout', '5s', ...admin()])
    expect(r.code).toBe(0)
    expect(r.stdout).toContain(`${web}: live on 1 proxy: traffic follows version=1.6.0`)
  })

  it('refuses a version no registered instance carries, and a service not in the catalog, unless --force', async () => {
    const typo = await cli(['set', web, '--version', '1.6', '--wait'])
    expect(typo.code).toBe(2)
    expect(typo.stderr.trim()).toBe(
      `switchyard: SWY_ERR_TARGET_REFUSED: no registered instance of ${web} carries version 1.6 (registered: 1.5.0, 1.6.0); nothing written (--force writes it anyway)`,
    )
    const weights = await cli(['set', web, '--weights', '1.5.0=90,1.6=10'])
    expect(weights.code).toBe(2)
    expect(weights.stderr).toContain(`no registered instance of ${web} carries version 1.6 (registered`)
    const slice = await cli(['set', web, '--slice', 'green'])
    expect(slice.code).toBe(2)
    expect(slice.stderr).toContain(`no registered instance of ${web} carries slice green (registered: none)`)
    const misspelt = await cli(['set', `${web}x`, '--version', '1.6.0'])
    expect(misspelt.code).toBe(2)
    expect(misspelt.stderr).toContain(
      `SWY_ERR_TARGET_REFUSED: service ${web}x is not in the Consul catalog (did you mean ${web}?); nothing written`,
    )
    expect(await value()).toBe('{"version":"1.6.0"}')
    const absent = await exec(['target', 'get', `${web}x`, '--json', '--target-prefix', targetPrefix])
    expect(JSON.parse(absent.stdout).value).toBeNull()

    const forced = await cli(['set', web, '--version', '1.6', '--force'])
    expect(forced.code).toBe(0)
    expect(forced.stderr).toContain(`warning: --force: no registered instance of ${web} carries version 1.6`)
    expect(await value()).toBe('{"version":"1.6"}')
    // The undo a write prints puts the previous value back.
    expect((await undo(forced.stdout)).code).toBe(0)
    expect(await value()).toBe('{"version":"1.6.0"}')
  })

  it('toggle switches between the two registered versions; --to is idempotent', async () => {
    const first = await cli(['toggle', web, '--wait', ...admin()])
    expect(first.code).toBe(0)
    expect(first.stdout).toContain(`${web}: {"version":"1.6.0"} -> {"version":"1.5.0"}`)
    expect(first.stdout).toContain(`${web}: live on 1 proxy: traffic follows version=1.5.0`)
    expect((await proxy.get('/web')).body).toBe('blue')
    const back = await cli(['toggle', web])
    expect(back.stdout).toContain(`${web}: {"version":"1.5.0"} -> {"version":"1.6.0"}`)

    const before = JSON.parse((await cli(['get', web, '--json'])).stdout).modifyIndex as number
    const same = await cli(['toggle', web, '--to', '1.6.0'])
    expect(same.code).toBe(0)
    expect(same.stdout).toContain(
      `${web}: already version=1.6.0 (key ${key}, modify index ${before}); nothing written`,
    )
    expect(JSON.parse((await cli(['get', web, '--json'])).stdout).modifyIndex).toBe(before)
    const to = await cli(['toggle', web, '--to', '1.5.0'])
    expect(to.stdout).toContain(`${web}: {"version":"1.6.0"} -> {"version":"1.5.0"}`)
    expect((await cli(['toggle', web, '--to', '1.6.0'])).code).toBe(0)

    const wrong = await cli(['toggle', web, '--to', '9.9.9'])
    expect(wrong.code).toBe(2)
    expect(wrong.stderr).toContain(
      `SWY_ERR_TARGET_REFUSED: cannot toggle ${web}: version 9.9.9 is not one of the two registered (1.5.0, 1.6.0); nothing written`,
    )
  })

  it('toggle without a version target asks for --to', async () => {
    const other = uniqueName('solo')
    const upstream = await startUpstream(other)
    upstreams.push(upstream)
    await api.register({
      id: other,
      name: other,
      port: upstream.port,
      tags: [`${prefix}/solo`],
      meta: { version: '1' },
    })
    registered.push(other)
    const r = await cli(['toggle', other])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain(
      `SWY_ERR_TARGET_REFUSED: cannot toggle ${other}: it has no target (every healthy instance serves), so there is no "other one": give --to <version or slice>; nothing written`,
    )
    const one = await cli(['toggle', other, '--to', '1'])
    expect(one.code).toBe(2)
    expect(one.stderr).toContain(`it has 1 version registered (1), a toggle needs exactly two`)
  })

  it('during a stuck cutover, get reports what the proxy really serves; --wait fails naming it and how to undo', async () => {
    // 1.7.0 is deployed but has not passed its check yet.
    await register(`${web}-new`, '1.7.0', 'critical')
    const r = await cli(['set', web, '--version', '1.7.0', '--wait', '--timeout', '1s', ...admin()])
    expect(r.code).toBe(1)
    expect(r.stdout).toContain(`${web}: {"version":"1.6.0"} -> {"version":"1.7.0"}`)
    expect(r.stderr).toContain(
      `SWY_ERR_TARGET_WAIT: timed out after 1s waiting for ${web} to serve version=1.7.0 on every proxy; not serving it: ${proxy.app.adminUrl} (no healthy instance of version 1.7.0; serving version=1.6.0); the new target stays in Consul (undo: switchyard target set ${web} --version 1.6.0 --cas `,
    )
    // Guarded cutover: traffic stayed where it was, and get says so.
    expect((await proxy.get('/web')).body).toBe('green')
    const get = await cli(['get', web, ...admin()])
    expect(get.stdout).toContain(
      `  proxy ${proxy.app.adminUrl}: serving version=1.6.0, desired version=1.7.0; NOT READY: no healthy instance of version 1.7.0; serving version=1.6.0`,
    )
    expect(get.stdout).toContain('    version 1.5.0: 1 not-selected')
    expect(get.stdout).toContain('    version 1.6.0: 1 serving')
    expect(get.stdout).toContain('    version 1.7.0: 1 unhealthy')
    const json = JSON.parse((await cli(['get', web, '--json', ...admin()])).stdout)
    expect(json.proxies[0]).toMatchObject({
      answering: true,
      desired: 'version=1.7.0',
      effective: 'version=1.6.0',
      ready: false,
      versions: { '1.6.0': { serving: 1 }, '1.7.0': { unhealthy: 1 } },
    })
    // Without a proxy to ask, the dry run cannot know what is served, and says so.
    const dry = await cli(['get', web])
    expect(dry.stdout).toContain('dry run from Consul')
    expect(dry.stdout).toContain(
      '  NOT READY: no healthy instance of version 1.7.0; a proxy starting now would serve all, running proxies keep what they served before',
    )
    // Three versions registered now: no toggle.
    const toggle = await cli(['toggle', web])
    expect(toggle.code).toBe(2)
    expect(toggle.stderr).toContain(
      `cannot toggle ${web}: it has 3 versions registered (1.5.0, 1.6.0, 1.7.0), a toggle needs exactly two; use target set ${web} --version <version>`,
    )
    // The undo the error printed puts 1.6.0 back.
    const undoLine = /\(undo: switchyard (.*)\)$/m.exec(r.stderr)?.[1] ?? ''
    expect((await exec(undoLine.split(' '))).code).toBe(0)
    expect(await value()).toBe('{"version":"1.6.0"}')
  })

  it('--fleet asks every Switchyard registered in Consul and names the ones not serving', async () => {
    const none = await cli(['get', web, '--fleet'])
    expect(none.code).toBe(1)
    expect(none.stderr).toContain(
      'SWY_ERR_NO_FLEET: --fleet: no Switchyard is registered in Consul as service "switchyard"',
    )
    const port = Number(new URL(proxy.app.adminUrl).port)
    const dead = await freePort()
    const fleet = [uniqueName('sy-live'), uniqueName('sy-dead')]
    await api.register({
      id: fleet[0] as string,
      name: 'switchyard',
      port: 1,
      meta: { admin_port: String(port) },
    })
    await api.register({
      id: fleet[1] as string,
      name: 'switchyard',
      port: 1,
      meta: { admin_port: String(dead) },
    })
    try {
      const get = await cli(['get', web, '--fleet'])
      expect(get.stdout).toContain(
        `  proxy http://127.0.0.1:${port} (switchyard-test/${fleet[0]}): serving version=1.6.0`,
      )
      expect(get.stdout).toContain(
        `  proxy http://127.0.0.1:${dead} (switchyard-test/${fleet[1]}): NOT ANSWERING: ECONNREFUSED`,
      )
      const stuck = await cli(['set', web, '--version', '1.5.0', '--wait', '--timeout', '1s', '--fleet'])
      expect(stuck.code).toBe(1)
      expect(stuck.stderr).toContain(
        `on every proxy; not serving it: http://127.0.0.1:${dead} (switchyard-test/${fleet[1]}) (not answering: ECONNREFUSED)`,
      )
      expect(stuck.stderr).not.toContain(`http://127.0.0.1:${port} (`)
      await api.deregister(fleet[1] as string)
      const live = await cli(['set', web, '--version', '1.6.0', '--wait', '--fleet'])
      expect(live.code).toBe(0)
      expect(live.stdout).toContain(`${web}: live on 1 proxy: traffic follows version=1.6.0`)
    } finally {
      for (const id of fleet) await api.deregister(id).catch(() => {})
    }
  })

  it('set --weights writes a canary split that the dry run confirms, and says it is a dry run', async () => {
    const r = await cli(['set', web, '--weights', '1.5.0=90,1.6.0=10', '--wait'])
    expect(r.code).toBe(0)
    expect(r.stdout).toContain(
      `${web}: live (dry run from Consul, no proxy asked): traffic follows weights=1.5.0:90,1.6.0:10`,
    )
    const json = JSON.parse((await cli(['get', web, '--json'])).stdout)
    expect(json).toMatchObject({
      value: '{"weights":{"1.5.0":90,"1.6.0":10}}',
      proxies: null,
      dryRun: { ready: true, effective: 'weights=1.5.0:90,1.6.0:10' },
    })
    await eventually(async () => {
      const seen = new Set<string>()
      for (let i = 0; i < 20; i++) seen.add((await proxy.get('/web')).body)
      expect([...seen].sort()).toEqual(['blue', 'green'])
    })
  })

  it('check-and-set refuses to overwrite a change made since it was read', async () => {
    const before = JSON.parse((await cli(['get', web, '--json'])).stdout) as { modifyIndex: number }
    await api.kvPut(key, '{"version":"1.5.0"}')
    const r = await cli(['set', web, '--version', '1.6.0', '--cas', String(before.modifyIndex)])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain(`SWY_ERR_TARGET_WRITE: ${key} changed since it was read`)
    expect(await value()).toBe('{"version":"1.5.0"}')
  })

  it('validates before writing', async () => {
    for (const [args, words] of [
      [
        ['--version', '1.6.0', '--slice', 'blue'],
        'SWY_ERR_TARGET_INVALID: give exactly one of --version, --slice or --weights',
      ],
      [
        ['--weights', '1.5.0=ninety'],
        'SWY_ERR_TARGET_INVALID: --weights: "1.5.0=ninety" is not version=weight',
      ],
      [['--weights', '1.5.0=0'], 'SWY_ERR_TARGET_INVALID: "weights" must not all be zero'],
      [['--weights', '1.5.0=-5'], 'SWY_ERR_TARGET_INVALID: weight of "1.5.0" must be a number >= 0'],
      [['--version', '1.6.0', '--timeout', 'soon'], 'SWY_ERR_USAGE: --timeout: "soon" is not a duration'],
      [
        ['--version', '1.6.0', '--admin', 'http://x/api'],
        'SWY_ERR_USAGE: --admin: "http://x/api" is not an admin address',
      ],
      [
        ['--version', '1.6.0', '--to', '1.5.0'],
        'SWY_ERR_USAGE: target set: unknown flag --to; see switchyard target --help',
      ],
    ] as const) {
      const r = await cli(['set', web, ...args])
      expect(r.code).toBe(2)
      expect(r.stderr.trim().split('\n')).toHaveLength(1)
      expect(r.stderr).toContain(words)
    }
    expect(await value()).toBe('{"version":"1.5.0"}')
  })

  it('the proxy’s read-only token cannot set a target, and the error says where the token came from', async () => {
    const r = await cli(['set', web, '--version', '1.6.0'], consul.proxyToken)
    expect(r.code).toBe(1)
    expect(r.stderr).toContain(`SWY_ERR_TARGET_WRITE: token cannot write ${key}: 403 Permission denied`)
    expect(r.stderr).toContain('(token set by CONSUL_HTTP_TOKEN)')
  })

  it('clear removes the key, every healthy instance serves again, and its undo puts the key back', async () => {
    const r = await cli(['clear', web])
    expect(r.code).toBe(0)
    expect(r.stdout).toContain(`${web}: {"version":"1.5.0"} -> no target`)
    const seen = new Set<string>()
    for (let i = 0; i < 30 && seen.size < 2; i++) seen.add((await proxy.get('/web')).body)
    expect([...seen].sort()).toEqual(['blue', 'green'])
    expect((await undo(r.stdout)).code).toBe(0)
    expect(await value()).toBe('{"version":"1.5.0"}')
  })
})
