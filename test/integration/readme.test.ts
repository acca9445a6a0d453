// The README's console examples, run as written against a real Consul and
// compared with what the README says they print (modify indexes aside), so
// the first screen cannot drift from the code.

import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { promisify } from 'node:util'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { ConsulAgent } from '../harness/consul-agent.js'
import { ConsulApi } from '../harness/consul-api.js'
import { describeWithConsul } from '../harness/context.js'
import { startTestProxy, type TestProxy } from '../harness/switchyard.js'
import { startUpstream, type Upstream } from '../harness/upstream.js'

const ROOT = new URL('../../', import.meta.url).pathname
const README = readFileSync(`${ROOT}README.md`, 'utf8')

/** Each `$ switchyard …` line of the README's console blocks, with the lines it shows after it. */
function examples(): { command: string[]; output: string[] }[] {
  const found: { command: string[]; output: string[] }[] = []
  for (const block of README.matchAll(/```console\n([\s\S]*?)```/g)) {
    for (const line of (block[1] ?? '').split('\n')) {
      const m = /^\$ switchyard (.*?)(\s+#.*)?$/.exec(line)
      if (m) found.push({ command: (m[1] ?? '').split(/\s+/), output: [] })
      else if (line !== '' && found.length > 0 && !line.startsWith('$')) found.at(-1)?.output.push(line)
    }
  }
  return found
}

/** What differs between the README's machine and this test's: indexes, addresses, the Consul node's name. */
const normalise = (text: string) =>
  text
    .replace(/modify index \d+/g, 'modify index N')
    .replace(/--cas \d+/g, '--cas N')
    .replace(/http:\/\/[\d.]+:\d+/g, 'http://ADDRESS')
    .replace(/\([\w.-]+\/switchyard\)/g, '(NODE/switchyard)')
    .trim()

describeWithConsul('README examples', (shared) => {
  // An agent of its own: the examples use the default prefixes and the service name "web".
  const agent = new ConsulAgent(shared.binary)
  const upstreams: Upstream[] = []
  let operatorToken = ''
  let proxy: TestProxy

  beforeAll(async () => {
    await agent.start()
    const api = new ConsulApi(agent.info)
    operatorToken = (
      await api.createToken('operator', readFileSync(`${ROOT}config/acl/switchyard-operator.hcl`, 'utf8'))
    ).secret
    upstreams.push(await startUpstream('web 1.6.0'), await startUpstream('web 1.7.0'))
    await api.register({
      id: 'web-1',
      name: 'web',
      port: upstreams[0]!.port,
      tags: ['urlprefix-/web'],
      meta: { version: '1.6.0' },
    })
    // Deployed, not healthy yet.
    await api.register({
      id: 'web-2',
      name: 'web',
      port: upstreams[1]!.port,
      tags: ['urlprefix-/web'],
      meta: { version: '1.7.0' },
      status: 'critical',
    })
    // One proxy, registered for --fleet as config/consul/switchyard.hcl does it.
    proxy = await startTestProxy(agent.info)
    await api.register({
      id: 'switchyard',
      name: 'switchyard',
      port: Number(new URL(proxy.app.proxyUrl).port),
      meta: { admin_port: new URL(proxy.app.adminUrl).port },
    })
  })

  afterAll(async () => {
    await proxy?.stop()
    await agent.destroy()
    await Promise.all(upstreams.map((u) => u.close()))
  })

  it('finds the examples', () => {
    expect(examples().map((e) => e.command.join(' '))).toEqual([
      'target set web --version 1.6.0 --wait --fleet',
      'target set web --version 1.7.0 --wait --timeout 10s --fleet',
      'target get web --fleet',
      'serve --listen here',
    ])
  })

  it.each(examples().map((e) => [e.command.join(' '), e] as const))(
    '$ switchyard %s',
    async (_name, example) => {
      const result = await promisify(execFile)(
        process.execPath,
        [`${ROOT}dist/cli/main.js`, ...example.command],
        {
          env: {
            PATH: process.env.PATH ?? '',
            CONSUL_HTTP_ADDR: agent.address,
            CONSUL_HTTP_TOKEN: operatorToken,
          },
          timeout: 30_000,
        },
      ).then(
        (r) => `${r.stdout}${r.stderr}`,
        (err: { stdout: string; stderr: string }) => `${err.stdout}${err.stderr}`,
      )
      expect(normalise(result)).toBe(normalise(example.output.join('\n')))
    },
    40_000,
  )
})
