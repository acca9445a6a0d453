// Installing on a host without Docker, as the README's Install section says:
// `npm run package` builds the npm tarball and the single executable; the
// tarball is installed with `npm install -g` into a temporary prefix, the
// executable runs with no Node.js on the PATH, and the systemd unit passes
// `systemd-analyze verify` and starts Switchyard with its own ExecStart and
// environment. Each runs against the test Consul.

import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { freePort } from '../harness/consul-agent.js'
import { ConsulApi } from '../harness/consul-api.js'
import { describeWithConsul } from '../harness/context.js'
import { startUpstream, type Upstream } from '../harness/upstream.js'
import { eventually, uniqueName } from '../harness/wait.js'

const ROOT = new URL('../../', import.meta.url).pathname
const { version } = JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')) as { version: string }

interface Run {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

async function run(
  file: string,
  args: string[],
  options: { env: NodeJS.ProcessEnv; cwd?: string },
): Promise<Run> {
  try {
    const { stdout, stderr } = await promisify(execFile)(file, args, {
      ...options,
      timeout: 240_000,
      maxBuffer: 16 << 20,
    })
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string }
    return { code: e.code, stdout: e.stdout, stderr: e.stderr }
  }
}

describeWithConsul('installing on a host', (consul) => {
  const api = new ConsulApi(consul)
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-install-'))
  const release = join(dir, 'release')
  /** A folder with no program in it: nothing, not even node, on the PATH. */
  const emptyPath = join(dir, 'empty-path')
  const prefix = `${uniqueName('inst')}-`
  const service = uniqueName('web')
  const tokenFile = join(dir, 'proxy-token')
  const tarball = join(release, `switchyard-${version}.tgz`)
  const executable = join(release, `switchyard-${version}-linux-x64`)
  const children: ChildProcess[] = []
  let upstream: Upstream
  let packaged: Run

  const routeLine = () =>
    new RegExp(
      `/web\\s+${service}\\s+${service}-1\\s+127\\.0\\.0\\.1:${upstream.port}\\s+1\\.0\\.0\\s+100\\.0%\\s+serving`,
    )

  beforeAll(async () => {
    mkdirSync(emptyPath)
    writeFileSync(tokenFile, `${consul.proxyToken}\n`, { mode: 0o600 })
    upstream = await startUpstream('installed')
    await api.register({
      id: `${service}-1`,
      name: service,
      port: upstream.port,
      tags: [`${prefix}/web`],
      meta: { version: '1.0.0' },
    })
    packaged = await run('bash', [`${ROOT}scripts/package`], {
      cwd: ROOT,
      env: { ...process.env, SWITCHYARD_RELEASE_DIR: release },
    })
  }, 300_000)

  afterAll(async () => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL')
    await api.deregister(`${service}-1`).catch(() => {})
    await upstream?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('npm run package writes the tarball and the executable', () => {
    expect(packaged.stderr + packaged.stdout).toContain(`package: wrote ${tarball}`)
    expect(packaged.code).toBe(0)
    expect(packaged.stdout).toContain(`package: wrote ${executable}`)
  })

  it('the tarball holds the compiled command and config, no dev tooling; npm install -g gives a working switchyard', async () => {
    const list = await run('tar', ['-tzf', tarball], { env: process.env })
    const files = list.stdout.trim().split('\n')
    expect(files).toContain('package/dist/cli/main.js')
    expect(files).toContain('package/config/switchyard.service')
    expect(files).toContain('package/config/consul/switchyard.hcl')
    expect(files.filter((f) => /^package\/(src|dev|test|bench|scripts)\/|demo/.test(f))).toEqual([])

    // Outside the clone, into a prefix of its own, as `npm install -g` on a host.
    const home = join(dir, 'npm-prefix')
    const outside = mkdtempSync(join(dir, 'elsewhere-'))
    const install = await run(
      'npm',
      ['install', '-g', '--prefix', home, '--no-audit', '--no-fund', '--prefer-offline', tarball],
      {
        cwd: outside,
        env: { ...process.env, npm_config_loglevel: 'error' },
      },
    )
    expect(install.stderr).not.toMatch(/ERR!/)
    expect(install.code).toBe(0)
    const bin = join(home, 'bin', 'switchyard')
    const env = {
      PATH: `${join(home, 'bin')}:${process.env.PATH}`,
      CONSUL_HTTP_ADDR: consul.address,
      CONSUL_HTTP_TOKEN_FILE: tokenFile,
    }
    const v = await run(bin, ['--version'], { cwd: outside, env })
    expect(v.stdout).toMatch(new RegExp(`^switchyard ${version.replaceAll('.', '\\.')} \\(Node\\.js v\\d+`))
    const routes = await run('switchyard', ['routes', '--tag-prefix', prefix], { cwd: outside, env })
    expect(routes.stderr).toBe('')
    expect(routes.stdout).toMatch(routeLine())
  })

  it('the single executable runs with no Node.js on the PATH: --version, routes, serve with workers', async () => {
    const env = { PATH: emptyPath, CONSUL_HTTP_ADDR: consul.address, CONSUL_HTTP_TOKEN_FILE: tokenFile }
    const v = await run(executable, ['--version'], { env })
    expect(v.stdout).toMatch(new RegExp(`^switchyard ${version.replaceAll('.', '\\.')} \\(Node\\.js v24\\.`))
    const routes = await run(executable, ['routes', '--tag-prefix', prefix], { env })
    expect(routes.stdout).toMatch(routeLine())
    const bad = await run(executable, ['serve', '--token', 'x'], { env })
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain('SWY_ERR_USAGE: serve: --token is not accepted')

    // Several workers: each is the executable again, forked by the primary.
    const [proxyPort, adminPort] = [await freePort(), await freePort()]
    const serve = spawn(
      executable,
      [
        'serve',
        '--workers',
        '2',
        '--tag-prefix',
        prefix,
        '--listen',
        `127.0.0.1:${proxyPort}`,
        '--admin-listen',
        `127.0.0.1:${adminPort}`,
      ],
      { env, stdio: ['ignore', 'pipe', 'pipe'] },
    )
    children.push(serve)
    let output = ''
    serve.stdout.on('data', (d) => (output += d))
    serve.stderr.on('data', (d) => (output += d))
    await eventually(
      async () => expect((await fetch(`http://127.0.0.1:${adminPort}/ready`)).status).toBe(200),
      20_000,
      200,
    )
    await eventually(
      async () => expect(await (await fetch(`http://127.0.0.1:${proxyPort}/web`)).text()).toBe('installed'),
      10_000,
      100,
    )
    // Ready needs one worker listening; each binds its own socket, the second a moment later.
    await eventually(() => expect(output.match(/proxy worker listening/g)).toHaveLength(2), 10_000, 100)
    serve.kill('SIGTERM')
    expect(await new Promise((resolve) => serve.on('exit', resolve))).toBe(0)
  })

  it('the systemd unit passes systemd-analyze verify, and its ExecStart serves with its environment', async () => {
    const unit = readFileSync(`${ROOT}config/switchyard.service`, 'utf8')
    // The unit as installed, with the executable where the README puts it.
    const installed = join(dir, 'switchyard.service')
    writeFileSync(installed, unit.replaceAll('/usr/local/bin/switchyard', executable))
    const verify = await run('systemd-analyze', ['verify', installed], { env: process.env })
    expect(verify.stderr).toBe('')
    expect(verify.code).toBe(0)
    expect(unit).toMatch(/^DynamicUser=yes$/m)
    expect(unit).toMatch(/^NoNewPrivileges=yes$/m)
    expect(unit).toMatch(/^Restart=on-failure$/m)

    // Run its ExecStart with its Environment= lines as systemd would: %d is the
    // credentials folder holding the token LoadCredential= copies there.
    const lines = unit.split('\n')
    const credentials = join(dir, 'credentials')
    mkdirSync(credentials)
    const credential = /^LoadCredential=consul-token:(\S+)$/m.exec(unit)?.[1]
    expect(credential).toBe('/etc/switchyard/consul-token')
    writeFileSync(join(credentials, 'consul-token'), `${consul.proxyToken}\n`, { mode: 0o600 })
    const environment = Object.fromEntries(
      lines
        .filter((l) => l.startsWith('Environment='))
        .map(
          (l) => l.slice('Environment='.length).replaceAll('%d', credentials).split('=') as [string, string],
        ),
    )
    const [command, ...args] = (/^ExecStart=(.*)$/m.exec(unit)?.[1] ?? '').split(' ')
    expect(command).toBe('/usr/local/bin/switchyard')
    const configIndex = args.indexOf('/etc/switchyard/switchyard.yaml')
    expect(configIndex).toBeGreaterThan(0)
    // The shipped config file, with this machine's Consul and free ports.
    const [proxyPort, adminPort] = [await freePort(), await freePort()]
    const config = join(dir, 'switchyard.yaml')
    writeFileSync(
      config,
      readFileSync(`${ROOT}config/switchyard.yaml`, 'utf8')
        .replace('listen: 0.0.0.0:9999', `listen: 127.0.0.1:${proxyPort}`)
        .replace('listen: 127.0.0.1:9998', `listen: 127.0.0.1:${adminPort}`)
        .replace('address: 127.0.0.1:8500', `address: ${consul.address}`)
        .replace('tagPrefix: urlprefix-', `tagPrefix: ${prefix}`),
    )
    args[configIndex] = config
    const serve = spawn(executable, args, {
      env: { PATH: emptyPath, ...environment },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    children.push(serve)
    await eventually(
      async () => expect((await fetch(`http://127.0.0.1:${adminPort}/ready`)).status).toBe(200),
      20_000,
      200,
    )
    await eventually(
      async () => expect(await (await fetch(`http://127.0.0.1:${proxyPort}/web`)).text()).toBe('installed'),
      10_000,
      100,
    )
    serve.kill('SIGTERM')
    expect(await new Promise((resolve) => serve.on('exit', resolve))).toBe(0)
  })
})
