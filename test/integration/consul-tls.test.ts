// Switchyard talks HTTPS to Consul with the usual variables (CONSUL_HTTP_ADDR
// with https://, CONSUL_CACERT), and refuses a Consul whose certificate it
// cannot verify.

import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { ConsulAgent } from '../harness/consul-agent.js'
import { ConsulApi } from '../harness/consul-api.js'
import { describeWithConsul } from '../harness/context.js'
import { startTestProxy, type TestProxy } from '../harness/switchyard.js'
import { tempDir } from '../harness/temp.js'
import { startUpstream, type Upstream } from '../harness/upstream.js'
import { eventually } from '../harness/wait.js'

describeWithConsul('Consul over HTTPS', (shared) => {
  const dir = tempDir('tls')
  let agent: ConsulAgent
  let upstream: Upstream
  const proxies: TestProxy[] = []

  beforeAll(async () => {
    // Consul's own tooling makes a CA and a server certificate (for localhost and 127.0.0.1).
    const run = promisify(execFile)
    await run(shared.binary, ['tls', 'ca', 'create'], { cwd: dir })
    await run(shared.binary, ['tls', 'cert', 'create', '-server', '-dc', 'dc1'], { cwd: dir })
    agent = new ConsulAgent(shared.binary, {
      tls: {
        caFile: join(dir, 'consul-agent-ca.pem'),
        certFile: join(dir, 'dc1-server-consul-0.pem'),
        keyFile: join(dir, 'dc1-server-consul-0-key.pem'),
      },
    })
    await agent.start()
    upstream = await startUpstream('over-tls')
    await new ConsulApi(agent.info).register({
      id: 'web-1',
      name: 'web',
      port: upstream.port,
      tags: ['urlprefix-/web'],
    })
  })

  afterAll(async () => {
    await Promise.all(proxies.map((p) => p.stop()))
    await agent?.destroy()
    await upstream?.close()
  })

  it('reads the catalog over HTTPS, verifying the certificate with CONSUL_CACERT', async () => {
    const proxy = await startTestProxy(
      { ...agent.info, address: agent.httpsAddress },
      {},
      { env: { CONSUL_CACERT: join(dir, 'consul-agent-ca.pem') } },
    )
    proxies.push(proxy)
    expect(proxy.config.consul.origin).toBe(agent.httpsAddress)
    expect((await proxy.get('/web')).body).toBe('over-tls')
  })

  it('refuses a Consul whose certificate it cannot verify, and says so', async () => {
    const proxy = await startTestProxy(
      { ...agent.info, address: agent.httpsAddress },
      {},
      { waitLoaded: false },
    )
    proxies.push(proxy)
    await eventually(() => {
      const line = proxy.logs.find((l) => l.msg === 'consul watch failing')
      expect(line?.code).toBe('SWY_ERR_CONSUL_UNREACHABLE')
      expect(String(line?.err)).toMatch(
        /SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|certificate/,
      )
    }, 10_000)
    expect((await proxy.admin('/ready')).status).toBe(503)
  })
})
