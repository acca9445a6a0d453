// A Fabio user's setup, unchanged, against the real Consul agent with the
// proxy on the read-only token: a canary and a deletion in Fabio's KV route
// overrides, a redirect with $host$path, basic auth from an htpasswd file,
// allow= behind a trusted load balancer, a host route with a port, and the
// no-route page.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { ConsulApi } from '../harness/consul-api.js'
import { describeWithConsul } from '../harness/context.js'
import { startTestProxy, type TestProxy } from '../harness/switchyard.js'
import { startUpstream, type Upstream } from '../harness/upstream.js'
import { eventually, uniqueName } from '../harness/wait.js'

describeWithConsul('Fabio parity against Consul', (consul) => {
  const api = new ConsulApi(consul)
  const prefix = `${uniqueName('f')}-`
  const web = uniqueName('web')
  const other = uniqueName('other')
  // A key below Fabio's default kvPath, which the shipped proxy policy can read.
  const overrides = `fabio/config/${uniqueName('canary')}`
  const upstreams: Upstream[] = []
  const ids: string[] = []
  const dir = mkdtempSync(join(tmpdir(), 'swy-fabio-'))
  let proxy: TestProxy
  let port = 0

  const register = async (id: string, name: string, upstream: Upstream, tags: string[]) => {
    ids.push(id)
    await api.register({ id, name, port: upstream.port, tags })
  }
  const send = async (path: string, headers: Record<string, string> = {}) => {
    const res = await request(`${proxy.app.proxyUrl}${path}`, { headers })
    return { status: res.statusCode, headers: res.headers, body: await res.body.text() }
  }
  /** Which upstream answered each of `n` requests to /web. */
  const spread = async (n: number) => {
    const counts: Record<string, number> = {}
    for (let i = 0; i < n; i++) {
      const r = await send('/web')
      counts[r.body] = (counts[r.body] ?? 0) + 1
    }
    return counts
  }

  beforeAll(async () => {
    const [v1, v2a, v2b, misc] = await Promise.all([
      startUpstream('v1'),
      startUpstream('v2a'),
      startUpstream('v2b'),
      startUpstream('misc'),
    ])
    upstreams.push(v1!, v2a!, v2b!, misc!)
    await register(`${web}-v1`, web, v1!, [`${prefix}/web`, 'v1'])
    await register(`${web}-v2a`, web, v2a!, [`${prefix}/web`, 'v2'])
    // Whitespace and a repeated tag, as Consul stores whatever was registered.
    await register(`${web}-v2b`, web, v2b!, [` ${prefix}/web `, `${prefix}/web`, 'v2'])
    await register(`${other}-1`, other, misc!, [
      `${prefix}/old redirect=301,https://$host$path strip=/old`,
      `${prefix}/admin auth=staff`,
      `${prefix}/locked auth=nobody`,
      `${prefix}/internal allow=ip:198.51.100.0/24`,
    ])
    const htpasswd = join(dir, 'staff.htpasswd')
    // "secret", as `openssl passwd -apr1 -salt abcdefgh secret` writes it.
    writeFileSync(htpasswd, 'alice:$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/\n')
    proxy = await startTestProxy(consul, {
      routing: { tagPrefix: prefix },
      proxy: {
        listen: '127.0.0.1:0',
        trustedProxies: ['127.0.0.1'],
        auth: [{ name: 'staff', file: htpasswd, realm: 'Staff' }],
      },
    })
    port = Number(new URL(proxy.app.proxyUrl).port)
  })

  afterAll(async () => {
    await api.kvDelete(overrides).catch(() => {})
    await api.kvDelete('fabio/noroute.html').catch(() => {})
    await proxy?.stop()
    for (const id of ids) await api.deregister(id).catch(() => {})
    await Promise.all(upstreams.map((u) => u.close()))
    rmSync(dir, { recursive: true, force: true })
  })

  it('serves each instance once however often its tag repeats', async () => {
    await eventually(async () => expect(await spread(30)).toEqual({ v1: 10, v2a: 10, v2b: 10 }))
  })

  it('route weight in KV gives the canary its share; a line that does not parse is a problem', async () => {
    await api.kvPut(
      overrides,
      `# canary\nroute weight ${web} /web weight 0.25 tags "v2"\nroute wieght ${web}\n`,
    )
    await eventually(async () => {
      const counts = await spread(80)
      expect(counts.v1).toBe(60)
      expect((counts.v2a ?? 0) + (counts.v2b ?? 0)).toBe(20)
    })
    const problems = JSON.parse((await proxy.admin('/api/problems')).body) as {
      code: string
      subject: string
    }[]
    expect(problems).toContainEqual(
      expect.objectContaining({ code: 'SWY_ERR_FABIO_CONFIG', subject: `key ${overrides}, line 3` }),
    )
  })

  it('route del in KV takes instances out; deleting the key puts them back', async () => {
    await api.kvPut(overrides, `route del ${web} tags "v1"`)
    await eventually(async () => expect(await spread(20)).toEqual({ v2a: 10, v2b: 10 }))
    await api.kvDelete(overrides)
    await eventually(async () => expect(await spread(30)).toEqual({ v1: 10, v2a: 10, v2b: 10 }))
  })

  it('redirects with $host and $path, strip= applied and the query kept', async () => {
    const r = await send('/old/a/b?q=1', { host: 'shop.example' })
    expect(r.status).toBe(301)
    expect(r.headers.location).toBe('https://shop.example/a/b?q=1')
  })

  it('auth= asks for basic auth and lets the right credentials through', async () => {
    const denied = await send('/admin')
    expect(denied.status).toBe(401)
    expect(denied.headers['www-authenticate']).toBe('Basic realm="Staff"')
    expect(denied.headers['x-switchyard-error']).toBe('SWY_ERR_AUTH_REQUIRED')
    const wrong = await send('/admin', {
      authorization: `Basic ${Buffer.from('alice:nope').toString('base64')}`,
    })
    expect(wrong.status).toBe(401)
    const ok = await send('/admin', {
      authorization: `Basic ${Buffer.from('alice:secret').toString('base64')}`,
    })
    expect(ok.status).toBe(200)
    expect(ok.body).toBe('misc')
  })

  it('auth= naming no configured scheme refuses every request (fail closed)', async () => {
    const r = await send('/locked', {
      authorization: `Basic ${Buffer.from('alice:secret').toString('base64')}`,
    })
    expect(r.status).toBe(503)
    expect(r.headers['x-switchyard-error']).toBe('SWY_ERR_AUTH_SCHEME')
  })

  it('allow= checks the client a trusted proxy names, and the upstream sees that client first', async () => {
    const misc = upstreams[3] as Upstream
    const allowed = await send('/internal', { 'x-forwarded-for': '203.0.113.1, 198.51.100.7' })
    expect(allowed.status).toBe(200)
    expect(misc.seen.at(-1)?.headers['x-forwarded-for']).toBe('198.51.100.7, 127.0.0.1')
    expect((await send('/internal', { 'x-forwarded-for': '198.51.100.7, 203.0.113.1' })).status).toBe(403)
    expect((await send('/internal')).status).toBe(403)
  })

  it('a host route with the listener port wins over the same host without a port', async () => {
    const [withPort, without] = await Promise.all([startUpstream('with-port'), startUpstream('without')])
    upstreams.push(withPort!, without!)
    await register(`${other}-p`, other, withPort!, [`${prefix}ports.test:${port}/`])
    await register(`${other}-n`, other, without!, [`${prefix}ports.test/`, `${prefix}ports.test:1/`])
    await eventually(async () => {
      const routes = JSON.parse((await proxy.admin('/api/routes')).body) as { id: string }[]
      expect(routes.map((r) => r.id)).toEqual(
        expect.arrayContaining([`ports.test:${port}/`, 'ports.test/', 'ports.test:1/']),
      )
    })
    expect((await send('/', { host: 'ports.test' })).body).toBe('with-port')
    expect((await send('/', { host: 'Ports.Test:1' })).body).toBe('with-port')
  })

  it('answers 404 with the no-route page from KV', async () => {
    await api.kvPut('fabio/noroute.html', '<h1>Nothing here</h1>')
    await eventually(async () => {
      const r = await send('/no/such/route')
      expect(r.status).toBe(404)
      expect(r.headers['content-type']).toBe('text/html; charset=utf-8')
      expect(r.body).toBe('<h1>Nothing here</h1>')
    })
  })
})
