// `switchyard rollout`, run as the compiled CLI with an operator token against
// the real Consul and a real running Switchyard (its admin /metrics is where
// the numbers come from), with client load on the proxy the whole time.

import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { Agent, request } from 'undici'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { CLI, type CliRun, OPERATOR_POLICY, runCli } from '../harness/cli.js'
import { ConsulApi } from '../harness/consul-api.js'
import { describeWithConsul } from '../harness/context.js'
import { startTestProxy, type TestProxy } from '../harness/switchyard.js'
import { startUpstream, type Upstream } from '../harness/upstream.js'
import { eventually, uniqueName } from '../harness/wait.js'

describeWithConsul('switchyard rollout', (consul) => {
  const api = new ConsulApi(consul)
  const prefix = `${uniqueName('ro')}-`
  const targetPrefix = `switchyard/targets/${uniqueName('t')}`
  const web = uniqueName('web')
  const key = `${targetPrefix}/${web}`
  const upstreams: Upstream[] = []
  const registered: string[] = []
  const dispatcher = new Agent({ connections: 8, keepAliveTimeout: 10_000 })
  let operatorToken = ''
  let proxy: TestProxy

  const env = () => ({
    PATH: process.env.PATH ?? '',
    CONSUL_HTTP_ADDR: consul.address,
    CONSUL_HTTP_TOKEN: operatorToken,
  })
  const common = () => ['--tag-prefix', prefix, '--target-prefix', targetPrefix]
  const cli = (args: string[]): Promise<CliRun> => runCli([...args, ...common()], env(), 60_000)
  const value = async () => {
    const res = await api.call('GET', `/v1/kv/${key}?raw`)
    return res.status === 404 ? null : res.text()
  }
  const record = async () => {
    const res = await api.call('GET', `/v1/kv/${key}/rollout?raw`)
    return res.status === 404
      ? null
      : (JSON.parse(await res.text()) as { state: string; step: number; message: string })
  }

  /** Client requests to /web from 4 loops until stopped: status, which version answered, when. */
  function load() {
    const samples: { at: number; status: number; body: string }[] = []
    let running = true
    const loops = Array.from({ length: 4 }, async () => {
      while (running) {
        const res = await request(`${proxy.app.proxyUrl}/web`, { dispatcher })
        samples.push({ at: Date.now(), status: res.statusCode, body: await res.body.text() })
      }
    })
    return {
      samples,
      stop: async () => {
        running = false
        await Promise.all(loops)
      },
    }
  }

  async function register(id: string, version: string, answer: Upstream) {
    upstreams.push(answer)
    await api.register({ id, name: web, port: answer.port, tags: [`${prefix}/web`], meta: { version } })
    registered.push(id)
  }

  beforeAll(async () => {
    operatorToken = (await api.createToken(uniqueName('operator'), OPERATOR_POLICY)).secret
    await register(`${web}-a`, '1.6.0', await startUpstream('1.6.0'))
    await register(`${web}-b`, '1.6.0', await startUpstream('1.6.0'))
    await register(`${web}-good`, '1.7.0', await startUpstream('1.7.0'))
    // 1.8.0 answers every 20th request with a 500: 5 % errors, deterministic.
    let n = 0
    const bad = await startUpstream('1.8.0', (req, res) => {
      req.resume()
      req.on('end', () => {
        const fail = ++n % 20 === 0
        res.writeHead(fail ? 500 : 200, { 'content-type': 'text/plain' })
        res.end(fail ? '1.8.0 failed' : '1.8.0')
      })
    })
    await register(`${web}-bad`, '1.8.0', bad)
    await api.kvPut(key, JSON.stringify({ version: '1.6.0' }))
    proxy = await startTestProxy(consul, { routing: { tagPrefix: prefix, targetPrefix } })
    await eventually(async () => expect((await proxy.get('/web')).body).toBe('1.6.0'))
  })

  afterAll(async () => {
    await proxy?.stop()
    for (const id of registered) await api.deregister(id).catch(() => {})
    await api.kvDelete(`${targetPrefix}?recurse`).catch(() => {})
    await Promise.all(upstreams.map((u) => u.close()))
    await dispatcher.close()
  })

  it('a rollout to a healthy version goes through every step and ends on it, failing no request', async () => {
    const traffic = load()
    const run = await cli([
      'rollout',
      web,
      '--to',
      '1.7.0',
      '--steps',
      '20,50,100',
      '--interval',
      '1s',
      '--min-requests',
      '20',
      '--max-error-rate',
      '1%',
      '--max-p99',
      '500ms',
      '--admin',
      proxy.app.adminUrl,
    ])
    await traffic.stop()
    expect(run.stderr).toBe('')
    expect(run.code).toBe(0)
    for (const step of ['step 1/3 (20 % to 1.7.0)', 'step 2/3 (50 % to 1.7.0)', 'step 3/3 (100 % to 1.7.0)'])
      expect(run.stdout).toMatch(
        new RegExp(`${step.replace(/[()]/g, '\\$&')}, \\d+s: 1\\.7\\.0: \\d+ requests .*: ok\\n`),
      )
    expect(run.stdout).toContain(`${web}: step 1/3 (20 % to 1.7.0): {"weights":{"1.6.0":80,"1.7.0":20}}`)
    expect(run.stdout).toContain(`${web}: rollout to 1.7.0 complete after 3 steps`)
    expect(await value()).toBe('{"version":"1.7.0"}')
    expect(await record()).toMatchObject({ state: 'completed', step: 2 })
    expect(traffic.samples.length).toBeGreaterThan(200)
    expect(traffic.samples.filter((s) => s.status !== 200)).toEqual([])
    expect(new Set(traffic.samples.map((s) => s.body))).toEqual(new Set(['1.6.0', '1.7.0']))
    const status = await cli(['rollout', 'status', web])
    expect(status.stdout).toContain(`${web}: rollout to 1.7.0 completed, step 3 of 3 (100 % to 1.7.0)`)
  })

  it('a rollout to a version answering 5 % 500s rolls back at its first step and exits 1 naming the metric', async () => {
    await api.kvPut(key, JSON.stringify({ version: '1.6.0' }))
    await eventually(async () => expect((await proxy.get('/web')).body).toBe('1.6.0'))
    const traffic = load()
    const run = await cli([
      'rollout',
      web,
      '--to',
      '1.8.0',
      '--steps',
      '10,50,100',
      '--interval',
      '2s',
      '--min-requests',
      '20',
      '--max-error-rate',
      '1%',
      '--admin',
      proxy.app.adminUrl,
    ])
    const rolledBackAt = Date.now()
    // Let requests in flight on the old table finish, then some more on the restored target.
    await new Promise((r) => setTimeout(r, 500))
    await traffic.stop()

    expect(run.code).toBe(1)
    expect(run.stderr).toMatch(
      /^switchyard: SWY_ERR_ROLLOUT_FAILED: step 1\/3 \(10 % to 1\.8\.0\): error rate: 1\.8\.0 error rate [\d.]+ % \(\d+ of \d+ requests answered 5xx\) is above --max-error-rate 1 %/,
    )
    expect(run.stderr).toContain(`wrote back {"version":"1.6.0"} (key ${key}`)
    expect(run.stdout).not.toContain('step 2/3')
    expect(await value()).toBe('{"version":"1.6.0"}')
    expect(await record()).toMatchObject({ state: 'rolled-back', step: 0 })

    const failed = traffic.samples.filter((s) => s.status !== 200)
    const onBad = traffic.samples.filter((s) => s.body.startsWith('1.8.0'))
    process.stdout.write(
      `rollout to a bad version: ${failed.length} of ${traffic.samples.length} client requests failed, all answered by 1.8.0 (${onBad.length} requests reached it)\n`,
    )
    // The only failures are the bad version's own answers, during its step.
    expect(failed.length).toBeGreaterThan(0)
    expect(failed.every((s) => s.body === '1.8.0 failed' && s.at <= rolledBackAt + 200)).toBe(true)
    expect(onBad.length).toBeLessThan(traffic.samples.length * 0.2)
    expect(traffic.samples.filter((s) => s.at > rolledBackAt + 200).every((s) => s.body === '1.6.0')).toBe(
      true,
    )
    // What the operator watching the proxy saw: 1.8.0's success rate below 1.
    const targets = JSON.parse((await proxy.admin('/api/targets')).body) as {
      service: string
      versions: { version: string; successRate: number }[]
      rollout: { state: string } | null
    }[]
    const t = targets.find((x) => x.service === web)
    expect(t?.rollout).toMatchObject({ state: 'rolled-back' })
    expect(t?.versions.find((v) => v.version === '1.8.0')?.successRate).toBeLessThan(1)
  })

  it('refuses a second rollout of the service; status, pause, target get and the status page show it; abort ends it', async () => {
    await api.kvPut(key, JSON.stringify({ version: '1.6.0' }))
    const traffic = load()
    let first: ChildProcess | null = null
    try {
      first = spawn(
        process.execPath,
        [
          CLI,
          'rollout',
          web,
          '--to',
          '1.7.0',
          '--interval',
          '30s',
          '--min-requests',
          '1',
          '--admin',
          proxy.app.adminUrl,
          ...common(),
        ],
        { env: env(), stdio: ['ignore', 'pipe', 'pipe'] },
      )
      let stderr = ''
      first.stderr?.on('data', (d) => {
        stderr += String(d)
      })
      const exited = once(first, 'exit')
      await eventually(
        async () => expect(await record()).toMatchObject({ state: 'running', step: 0 }),
        15_000,
        100,
      )

      const second = await cli([
        'rollout',
        web,
        '--to',
        '1.8.0',
        '--interval',
        '1s',
        '--admin',
        proxy.app.adminUrl,
      ])
      expect(second.code).toBe(2)
      expect(second.stderr).toContain(
        `SWY_ERR_ROLLOUT_ACTIVE: a rollout of ${web} to 1.7.0 is running, step 1 of 4 (10 % to 1.7.0)`,
      )

      const paused = await cli(['rollout', 'pause', web])
      expect(paused.stdout).toContain(`${web}: rollout to 1.7.0 paused, step 1 of 4 (10 % to 1.7.0)`)
      const status = await cli(['rollout', 'status', web])
      expect(status.stdout).toContain(`${web}: rollout to 1.7.0 paused, step 1 of 4 (10 % to 1.7.0)`)
      expect(status.stdout).toContain('before the rollout: {"version":"1.6.0"}')
      const get = await cli(['target', 'get', web])
      expect(get.stdout).toContain('  rollout to 1.7.0: paused, step 1 of 4 (10 % to 1.7.0)')
      await eventually(async () =>
        expect((await proxy.admin('/')).body).toContain(
          'rollout to <b>1.7.0</b>: paused, step 1 of 4 (10 % to 1.7.0)',
        ),
      )

      const abort = await cli(['rollout', 'abort', web])
      expect(abort.code).toBe(0)
      expect(abort.stdout).toMatch(
        new RegExp(`${web}: rollout to 1.7.0 aborted; (wrote back|the target is) \\{"version":"1.6.0"\\}`),
      )
      const [code] = (await exited) as [number]
      expect(code).toBe(1)
      expect(stderr).toContain('SWY_ERR_ROLLOUT_STOPPED: aborted with switchyard rollout abort')
      expect(await value()).toBe('{"version":"1.6.0"}')
      expect(await record()).toMatchObject({ state: 'aborted' })
      await eventually(async () => expect((await proxy.get('/web')).body).toBe('1.6.0'))
    } finally {
      if (first?.exitCode === null) first.kill('SIGKILL')
      await traffic.stop()
    }
    expect(traffic.samples.filter((s) => s.status !== 200)).toEqual([])
  })

  it('stops, leaving the target alone, when someone else changes the target during a step', async () => {
    await api.kvPut(key, JSON.stringify({ version: '1.6.0' }))
    const traffic = load()
    try {
      const running = cli([
        'rollout',
        web,
        '--to',
        '1.7.0',
        '--steps',
        '50,100',
        '--interval',
        '2s',
        '--min-requests',
        '1',
        '--admin',
        proxy.app.adminUrl,
      ])
      await eventually(
        async () => expect(await record()).toMatchObject({ state: 'running', step: 0 }),
        15_000,
        50,
      )
      // Another operator takes over in the middle of the step; the rollout notices within a second.
      await api.kvPut(key, JSON.stringify({ version: '1.7.0' }))
      const changedAt = Date.now()
      const run = await running
      expect(Date.now() - changedAt).toBeLessThan(5_000)
      expect(run.code).toBe(1)
      expect(run.stderr).toContain(
        'SWY_ERR_ROLLOUT_STOPPED: step 1/2 (50 % to 1.7.0): the target was changed by someone else since the rollout wrote it (now {"version":"1.7.0"}',
      )
      expect(run.stdout).not.toContain('step 2/2')
      expect(await value()).toBe('{"version":"1.7.0"}')
      expect(await record()).toMatchObject({ state: 'interrupted' })
    } finally {
      await traffic.stop()
    }
  })
})
