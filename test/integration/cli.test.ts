// The `switchyard` command as an operator runs it: the compiled CLI in a child
// process, with Consul's environment variables.

import { spawn } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { type AddressInfo, createServer } from 'node:net'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CLI, runCli } from '../harness/cli.js'
import { freePort } from '../harness/consul-agent.js'
import { ConsulApi } from '../harness/consul-api.js'
import { describeWithConsul } from '../harness/context.js'
import { tempDir } from '../harness/temp.js'
import { startUpstream, type Upstream } from '../harness/upstream.js'
import { eventually, uniqueName } from '../harness/wait.js'

const dir = tempDir('cli')

const run = (args: string[], env: Record<string, string> = {}) => runCli(args, env, 20_000)

function file(name: string, text: string): string {
  const path = join(dir, name)
  writeFileSync(path, text)
  return path
}

describe('bad configuration stops start-up with one line naming the problem, exit 2', () => {
  it.each([
    [
      ['serve', '--config', file('bad-listen.yaml', 'proxy:\n  listen: here\n')],
      `SWY_ERR_CONFIG: proxy.listen: "here" is not host:port (set in ${join(dir, 'bad-listen.yaml')})`,
    ],
    [
      ['serve', '--config', file('typo.yaml', 'consul:\n  adress: x\n')],
      'SWY_ERR_CONFIG: consul.adress: unknown option',
    ],
    [['serve', '--config', join(dir, 'missing.yaml')], 'SWY_ERR_CONFIG: --config: cannot read'],
    [['serve', '--strategy', 'fastest'], 'SWY_ERR_CONFIG: proxy.strategy'],
    [
      ['serve', '--listen', 'here'],
      'SWY_ERR_CONFIG: proxy.listen: "here" is not host:port (set by --listen)',
    ],
  ])('%j', async (args, message) => {
    const r = await run(args)
    expect(r.code).toBe(2)
    expect(r.stderr).toContain(message)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
  })

  it('a value from an environment variable: the error names the variable', async () => {
    const addr = await run(['routes'], { CONSUL_HTTP_ADDR: 'http://consul.example/v1' })
    expect(addr.code).toBe(2)
    expect(addr.stderr.trim()).toBe(
      'switchyard: SWY_ERR_CONFIG: consul.address: "http://consul.example/v1" must not have a path (set by CONSUL_HTTP_ADDR)',
    )
    const level = await run(['serve'], { SWITCHYARD_LOG_LEVEL: 'loud' })
    expect(level.code).toBe(2)
    expect(level.stderr).toMatch(
      /^switchyard: SWY_ERR_CONFIG: log\.level: .* \(set by SWITCHYARD_LOG_LEVEL\)\n$/,
    )
    const config = await run(['serve'], { SWITCHYARD_CONFIG: join(dir, 'nowhere.yaml') })
    expect(config.stderr.trim()).toBe(
      `switchyard: SWY_ERR_CONFIG: SWITCHYARD_CONFIG: cannot read ${join(dir, 'nowhere.yaml')}: ENOENT`,
    )
  })

  it('a missing, empty or unreadable token file', async () => {
    const missing = await run(['serve'], { CONSUL_HTTP_TOKEN_FILE: join(dir, 'nope') })
    expect(missing.code).toBe(2)
    expect(missing.stderr.trim()).toBe(
      `switchyard: SWY_ERR_TOKEN_FILE: cannot read Consul token file ${join(dir, 'nope')} (set by CONSUL_HTTP_TOKEN_FILE): ENOENT`,
    )
    const empty = await run(['serve'], { CONSUL_HTTP_TOKEN_FILE: file('empty-token', '\n') })
    expect(empty.code).toBe(2)
    expect(empty.stderr).toContain('(set by CONSUL_HTTP_TOKEN_FILE): the file is empty')
    const directory = await run(['serve', '--consul-token-file', dir])
    expect(directory.code).toBe(2)
    expect(directory.stderr).toContain(
      `cannot read Consul token file ${dir} (set by --consul-token-file): EISDIR`,
    )
    // Sent as a header: a control character inside it is refused before any request.
    const control = await run(['serve'], { CONSUL_HTTP_TOKEN_FILE: file('control-token', 'abc\u0001def\n') })
    expect(control.code).toBe(2)
    expect(control.stderr).toContain(
      '(set by CONSUL_HTTP_TOKEN_FILE): the token has a control character, which an HTTP header cannot carry',
    )
    const value = await run(['routes'], { CONSUL_HTTP_TOKEN: 'abc\u0001def' })
    expect(value.code).toBe(2)
    expect(value.stderr.trim()).toBe(
      'switchyard: SWY_ERR_CONFIG: consul.token: the token has a control character, which an HTTP header cannot carry (set by CONSUL_HTTP_TOKEN)',
    )
  })
})

describe('command-line manners: one Switchyard line with the fix, exit 2', () => {
  it.each([
    [['serv'], 'SWY_ERR_USAGE: unknown command "serv" (did you mean serve?); see switchyard --help'],
    [['serve', '--bogus'], 'SWY_ERR_USAGE: serve: unknown flag --bogus; see switchyard serve --help'],
    [['serve', '--lisen', ':80'], 'SWY_ERR_USAGE: serve: unknown flag --lisen (did you mean --listen?)'],
    [['serve', '--listen'], 'SWY_ERR_USAGE: serve: --listen needs a value; see switchyard serve --help'],
    [['routes', '--json=yes'], 'SWY_ERR_USAGE: routes: --json takes no value'],
    [['routes', 'web'], 'SWY_ERR_USAGE: routes: unexpected argument "web"'],
    [['target', 'show', 'web'], 'SWY_ERR_USAGE: target: unknown action "show": get, set, toggle or clear'],
    [
      ['target', 'set', '--version', '1'],
      'SWY_ERR_USAGE: target set: give the service: switchyard target set <service>',
    ],
  ])('%j', async (args, message) => {
    const r = await run(args)
    expect(r.code).toBe(2)
    expect(r.stderr).toContain(`switchyard: ${message}`)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
    expect(r.stdout).toBe('')
  })

  it.each([
    ['serve', '--token', 'secret'],
    ['routes', '--token=secret'],
    ['target', 'get', 'web', '-token', 'secret'],
  ])('a token given as a flag is refused with where to put it: %s %s', async (...args) => {
    const r = await run(args)
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(
      /^switchyard: SWY_ERR_USAGE: .*--?token is not accepted \(a token on the command line shows in ps\): write the token to a file only you can read and set CONSUL_HTTP_TOKEN_FILE=<file>/,
    )
    expect(r.stderr).not.toContain('secret')
  })

  it('--version prints the package version; <command> --help prints that command’s flags, exit 0', async () => {
    const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'))
    const v = await run(['--version'])
    expect(v.code).toBe(0)
    expect(v.stdout).toBe(`switchyard ${version} (Node.js ${process.version})\n`)
    for (const [command, words] of [
      ['serve', '--admin-listen <host:port>'],
      ['routes', '--json'],
      ['target', 'target toggle <service> [--to V]'],
      ['healthcheck', 'Exits 0 if the Switchyard on this host answers /health'],
    ]) {
      const help = await run([command as string, '--help'])
      expect(help.code).toBe(0)
      expect(help.stdout).toContain(`usage: switchyard ${command}`)
      expect(help.stdout).toContain(words)
      expect(help.stderr).toBe('')
    }
    expect((await run(['target', 'set', 'web', '-h'])).stdout).toContain('usage: switchyard target')
  })
})

describe('a listen address already in use', () => {
  it.each([
    ['1', false],
    ['2', false],
    ['1', true],
    ['2', true],
  ])(
    'stops start-up with exit 1 and says which address (--workers %s, holder with SO_REUSEPORT: %s)',
    async (workers, reusePort) => {
      // A holder with SO_REUSEPORT is what another Switchyard looks like: the port must not be shared with it.
      const busy = createServer()
      await new Promise<void>((resolve) => busy.listen({ port: 0, host: '127.0.0.1', reusePort }, resolve))
      const port = (busy.address() as AddressInfo).port
      try {
        const r = await run(
          [
            'serve',
            '--workers',
            workers,
            '--listen',
            `127.0.0.1:${port}`,
            '--admin-listen',
            `127.0.0.1:${await freePort()}`,
          ],
          {
            CONSUL_HTTP_ADDR: `127.0.0.1:${await freePort()}`,
          },
        )
        expect(r.code).toBe(1)
        expect(r.stderr).toMatch(
          new RegExp(`SWY_ERR_LISTEN: (proxy worker: )?cannot listen on 127\\.0\\.0\\.1:${port}: EADDRINUSE`),
        )
      } finally {
        busy.close()
      }
    },
  )
})

describe('an admin address already in use, with workers', () => {
  it('stops start-up with exit 1 before any worker starts', async () => {
    const busy = createServer()
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve))
    const port = (busy.address() as AddressInfo).port
    try {
      const r = await run(
        [
          'serve',
          '--workers',
          '2',
          '--listen',
          `127.0.0.1:${await freePort()}`,
          '--admin-listen',
          `127.0.0.1:${port}`,
        ],
        { CONSUL_HTTP_ADDR: `127.0.0.1:${await freePort()}` },
      )
      expect(r.code).toBe(1)
      expect(r.stderr).toContain(`SWY_ERR_LISTEN: cannot listen on 127.0.0.1:${port}: EADDRINUSE`)
      expect(r.stdout).not.toContain('proxy worker listening')
    } finally {
      busy.close()
    }
  })
})

describe('switchyard routes without a Consul', () => {
  it('fails with exit 1 and says Consul is unreachable', async () => {
    const port = await freePort()
    const r = await run(['routes'], { CONSUL_HTTP_ADDR: `127.0.0.1:${port}` })
    expect(r.code).toBe(1)
    expect(r.stderr.trim()).toBe(
      `switchyard: SWY_ERR_CONSUL_UNREACHABLE: Consul at http://127.0.0.1:${port} unreachable: ECONNREFUSED (address set by CONSUL_HTTP_ADDR)`,
    )
  })
})

describeWithConsul('switchyard serve and routes against Consul', (consul) => {
  const api = new ConsulApi(consul)
  const prefix = `${uniqueName('cli')}-`
  const service = uniqueName('web')
  let upstream: Upstream
  const env = () => ({
    CONSUL_HTTP_ADDR: consul.address,
    CONSUL_HTTP_TOKEN_FILE: file('token', `${consul.proxyToken}\n`),
  })

  beforeAll(async () => {
    upstream = await startUpstream('cli-web')
    await api.register({
      id: `${service}-1`,
      name: service,
      port: upstream.port,
      tags: [`${prefix}/web`],
      meta: { version: '1.0.0' },
    })
  })
  afterAll(async () => {
    await api.deregister(`${service}-1`)
    await upstream.close()
  })

  it('routes prints the table it would build now', async () => {
    const r = await run(['routes', '--tag-prefix', prefix], env())
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(
      new RegExp(
        `/web\\s+${service}\\s+${service}-1\\s+127\\.0\\.0\\.1:${upstream.port}\\s+1\\.0\\.0\\s+100\\.0%\\s+serving`,
      ),
    )
    const json = await run(['routes', '--json', '--tag-prefix', prefix], env())
    expect(JSON.parse(json.stdout)[0].backends[0].origin).toBe(`http://127.0.0.1:${upstream.port}`)
  })

  it('serve starts the proxy with the read-only token and stops cleanly on SIGTERM', async () => {
    const [proxyPort, adminPort] = [await freePort(), await freePort()]
    const child = spawn(
      process.execPath,
      [
        CLI,
        'serve',
        '--listen',
        `127.0.0.1:${proxyPort}`,
        '--admin-listen',
        `127.0.0.1:${adminPort}`,
        '--tag-prefix',
        prefix,
      ],
      { env: { PATH: process.env.PATH ?? '', ...env() }, stdio: ['ignore', 'pipe', 'pipe'] },
    )
    let output = ''
    child.stdout.on('data', (d) => (output += d))
    child.stderr.on('data', (d) => (output += d))
    try {
      await eventually(
        async () => expect((await fetch(`http://127.0.0.1:${adminPort}/ready`)).status).toBe(200),
        10_000,
      )
      const res = await fetch(`http://127.0.0.1:${proxyPort}/web`)
      expect(await res.text()).toBe('cli-web')
    } finally {
      child.kill('SIGTERM')
    }
    const code = await new Promise((resolve) => child.on('exit', resolve))
    expect(code).toBe(0)
    const lines = output
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
    expect(lines.map((l) => l.msg)).toEqual(
      expect.arrayContaining(['switchyard listening', 'first routing table', 'stopped']),
    )
    expect(output).not.toContain(consul.proxyToken)
  })
})
