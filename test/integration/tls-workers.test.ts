// `switchyard serve --workers 2` with an https listener: the primary reads the
// certificates and hands them to every worker, new ones reach the workers'
// handshakes within a second, and a TLS session resumes on whichever worker a
// client reaches (they share the session ticket keys). Run as the compiled CLI.

import type { ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect } from 'node:tls'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { stringify } from 'yaml'
import { createTestCa, hasOpenssl, type TestCa } from '../harness/certs.js'
import { spawnProxy } from '../harness/cli.js'
import { freePort } from '../harness/consul-agent.js'
import { describeWithConsul } from '../harness/context.js'
import { eventually, uniqueName } from '../harness/wait.js'

describeWithConsul('https with several workers', (consul) => {
  const lines: Record<string, unknown>[] = []
  let certs: TestCa
  let dir: string
  let child: ChildProcess
  let port = 0

  beforeAll(async () => {
    if (!hasOpenssl()) throw new Error('these tests make certificates with the openssl command')
    certs = createTestCa()
    dir = await mkdtemp(join(tmpdir(), 'switchyard-tls-workers-'))
    const certDir = join(dir, 'certs')
    await mkdir(certDir)
    await writeFile(join(certDir, 'w.pem'), (await certs.issue({ dns: ['w.workers.test'] })).pem)
    port = await freePort()
    const adminPort = await freePort()
    await writeFile(
      join(dir, 'switchyard.yaml'),
      stringify({
        proxy: { listeners: [{ address: `127.0.0.1:${port}`, protocol: 'https' }], workers: 2 },
        admin: { listen: `127.0.0.1:${adminPort}` },
        routing: { tagPrefix: `${uniqueName('tw')}-`, targetPrefix: `switchyard/targets/${uniqueName('t')}` },
        tls: { certificates: { dir: certDir, consulPrefix: '' } },
      }),
    )
    child = spawnProxy(['serve', '--config', join(dir, 'switchyard.yaml')], consul, lines)
    await eventually(
      () => expect(lines.filter((l) => l.msg === 'proxy worker listening')).toHaveLength(2),
      20_000,
      50,
    )
  })

  afterAll(async () => {
    if (child && child.exitCode === null) {
      child.kill('SIGTERM')
      await once(child, 'exit')
    }
    certs?.remove()
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  /** A handshake naming `servername`: the certificate's fingerprint, whether the session was resumed, the session. */
  const handshake = async (servername: string, session?: Buffer) => {
    const socket = connect({ port, host: '127.0.0.1', servername, ca: certs.ca, session })
    let ticket: Buffer | undefined
    socket.on('session', (s: Buffer) => {
      ticket = s
    })
    await once(socket, 'secureConnect')
    const result = {
      fingerprint: socket.getPeerCertificate().fingerprint256,
      resumed: socket.isSessionReused(),
    }
    // TLS 1.3 sends its ticket after the handshake.
    if (session === undefined) await eventually(() => expect(ticket).toBeDefined(), 2_000)
    socket.destroy()
    return { ...result, session: ticket }
  }

  it('serves the primary’s certificates from every worker, and a new one within a second', async () => {
    const first = await handshake('w.workers.test')
    expect(first.fingerprint).toMatch(/^[0-9A-F:]+$/)
    const added = await certs.issue({ dns: ['n.workers.test'] })
    await writeFile(join(dir, 'certs', 'n.pem'), added.pem)
    // Several handshakes, so that both workers (SO_REUSEPORT spreads connections) are asked.
    await eventually(async () => {
      for (let i = 0; i < 8; i++)
        expect((await handshake('n.workers.test')).fingerprint).toBe(added.fingerprint256)
    }, 1_000)
  })

  it('resumes a TLS session on whichever worker a new connection reaches', async () => {
    const first = await handshake('w.workers.test')
    expect(first.resumed).toBe(false)
    const resumed: boolean[] = []
    for (let i = 0; i < 16; i++) resumed.push((await handshake('w.workers.test', first.session)).resumed)
    expect(resumed).toEqual(Array(16).fill(true))
  })
})
