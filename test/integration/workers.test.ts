// `switchyard serve --workers N`: one process watches Consul and builds the
// table, N workers carry traffic with it. Run as the compiled CLI.

import type { ChildProcess } from 'node:child_process'
import { Agent, request } from 'undici'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { spawnProxy } from '../harness/cli.js'
import { freePort } from '../harness/consul-agent.js'
import { ConsulApi } from '../harness/consul-api.js'
import { describeWithConsul } from '../harness/context.js'
import { registerVersions, type Upstream } from '../harness/upstream.js'
import { eventually, uniqueName } from '../harness/wait.js'

describeWithConsul('serve with several workers', (consul) => {
  const api = new ConsulApi(consul)
  const prefix = `${uniqueName('wk')}-`
  const targetPrefix = `switchyard/targets/${uniqueName('t')}`
  const web = uniqueName('web')
  const upstreams: Upstream[] = []
  const lines: Record<string, unknown>[] = []
  let child: ChildProcess
  let proxy = ''
  let admin = ''

  beforeAll(async () => {
    upstreams.push(
      ...(await registerVersions(api, web, `${prefix}/web`, [
        { id: `${web}-b`, answer: 'blue', version: '1' },
        { id: `${web}-g`, answer: 'green', version: '2' },
      ])),
    )
    const [proxyPort, adminPort] = [await freePort(), await freePort()]
    proxy = `http://127.0.0.1:${proxyPort}`
    admin = `http://127.0.0.1:${adminPort}`
    child = spawnProxy(
      [
        'serve',
        '--workers',
        '2',
        '--listen',
        `127.0.0.1:${proxyPort}`,
        '--admin-listen',
        `127.0.0.1:${adminPort}`,
        '--tag-prefix',
        prefix,
        '--target-prefix',
        targetPrefix,
      ],
      consul,
      lines,
    )
    await eventually(async () => expect((await fetch(`${admin}/ready`)).status).toBe(200), 15_000, 50)
  })

  afterAll(async () => {
    if (child.exitCode === null) child.kill('SIGKILL')
    await api.deregister(`${web}-b`)
    await api.deregister(`${web}-g`)
    await Promise.all(upstreams.map((u) => u.close()))
  })

  const workers = () => lines.filter((l) => l.msg === 'proxy worker listening')
  /** 2xx answers on /web, summed over the workers by the primary's /metrics. */
  const served = async () => {
    const text = await (await fetch(`${admin}/metrics`)).text()
    return [...text.matchAll(/^switchyard_requests_total\{([^}]*)\} (\d+)$/gm)]
      .filter((m) => m[1]?.includes('route="/web"') && m[1]?.includes('status_class="2xx"'))
      .reduce((sum, m) => sum + Number(m[2]), 0)
  }
  /** A new connection each time, so every worker gets some requests. */
  const get = async (url: string) => {
    const dispatcher = new Agent({ pipelining: 0 })
    try {
      const res = await request(url, { dispatcher, headersTimeout: 5_000, bodyTimeout: 5_000 })
      return { status: res.statusCode, text: await res.body.text() }
    } finally {
      await dispatcher.close()
    }
  }

  it('starts the workers, serves through them and counts every request once in /metrics', async () => {
    await eventually(() => expect(workers()).toHaveLength(2), 10_000, 50)
    expect(new Set(workers().map((l) => l.pid)).size).toBe(2)
    // Consul is watched by the primary only.
    expect(lines.filter((l) => l.msg === 'first routing table')).toHaveLength(1)
    const seen = new Set<string>()
    for (let i = 0; i < 40; i++) {
      const res = await get(`${proxy}/web`)
      seen.add(res.text)
    }
    expect([...seen].sort()).toEqual(['blue', 'green'])
    expect(await served()).toBe(40)
  })

  it('hands every table change to the workers', async () => {
    await api.kvPut(`${targetPrefix}/${web}`, '{"version":"2"}')
    await eventually(async () => {
      for (let i = 0; i < 10; i++) {
        const res = await get(`${proxy}/web`)
        expect(res.text).toBe('green')
      }
    }, 5_000)
  })

  it('replaces a worker that dies, losing only the requests in flight on it', async () => {
    const before = await served()
    // Keep-alive load: 12 clients, one connection each, a request at a time.
    const clients = 12
    let stop = false
    let killedAt = 0
    const failures: { at: number; error: string }[] = []
    let ok = 0
    const loop = async () => {
      const dispatcher = new Agent({ connections: 1, pipelining: 1 })
      while (!stop) {
        try {
          const res = await request(`${proxy}/web`, { dispatcher, headersTimeout: 5_000, bodyTimeout: 5_000 })
          await res.body.text()
          if (res.statusCode === 200) ok++
          else failures.push({ at: Date.now(), error: `status ${res.statusCode}` })
        } catch (err) {
          failures.push({ at: Date.now(), error: String((err as { code?: string }).code ?? err) })
        }
      }
      await dispatcher.close()
    }
    const running = Array.from({ length: clients }, loop)
    await eventually(() => expect(ok).toBeGreaterThan(200), 10_000, 20)
    const victim = workers()[0]?.pid as number
    killedAt = Date.now()
    process.kill(victim, 'SIGKILL')
    await eventually(() =>
      expect(lines.some((l) => l.msg === 'proxy worker exited; starting a new one')).toBe(true),
    )
    const okAtKill = ok
    await eventually(() => expect(ok).toBeGreaterThan(okAtKill + 300), 10_000, 20)
    stop = true
    await Promise.all(running)
    // Each connection carries one request at a time: at most one loss per
    // connection the dead worker held, and only at the moment it died.
    expect(failures.length).toBeLessThanOrEqual(clients)
    for (const f of failures) expect(f.at - killedAt, f.error).toBeLessThan(1_000)
    for (let i = 0; i < 10; i++) expect((await get(`${proxy}/web`)).status).toBe(200)
    await eventually(() => expect(workers()).toHaveLength(3), 10_000, 50)
    // The dead worker's counts stay in the sums: no counter goes backwards.
    expect(await served()).toBeGreaterThanOrEqual(before + 10)
    // The replacement got the current table.
    await eventually(async () => {
      for (let i = 0; i < 10; i++) {
        const res = await get(`${proxy}/web`)
        expect(res.text).toBe('green')
      }
    }, 5_000)
  })

  it('stops every process on SIGTERM with exit code 0', async () => {
    child.kill('SIGTERM')
    const code = await new Promise((resolve) => child.once('exit', resolve))
    expect(code).toBe(0)
    for (const w of workers()) expect(() => process.kill(w.pid as number, 0)).toThrow()
    expect(lines.at(-1)?.msg).toBe('stopped')
  })
})
