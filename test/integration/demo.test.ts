// `npm run demo`, as a new user runs it: the CI mode checks the splits it
// prints; the interactive mode stops everything on Ctrl-C.

import { execFile, spawn } from 'node:child_process'
import { connect } from 'node:net'
import { promisify } from 'node:util'
import { expect, it } from 'vitest'
import { describeWithConsul } from '../harness/context.js'

const DEMO = new URL('../../dist/demo/main.js', import.meta.url).pathname

/** The loopback ports of the URLs a demo printed. */
function ports(output: string): number[] {
  return [...output.matchAll(/http:\/\/127\.0\.0\.1:(\d+)/g)].map((m) => Number(m[1]))
}

async function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

describeWithConsul('npm run demo', () => {
  it('--ci walks 100/0 → 90/10 → 0/100 and a failed instance, and checks the splits it printed', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [DEMO, '--ci'], { timeout: 120_000 })
    expect(stdout).toContain('demo: all checks passed')
    const bar = (version: string) =>
      [
        ...stdout.matchAll(new RegExp(`^\\s+${version.replace('.', '\\.')}\\s+[█░]+\\s+([\\d.]+)%`, 'gm')),
      ].map((m) => Number(m[1]))
    // Exact with one process; with a worker per core each worker keeps its own
    // round-robin position, so the canary share is 10 % give or take a request or two.
    const [all1, canary, none1] = bar('1.0')
    expect([all1, none1]).toEqual([100, 0])
    expect(canary).toBeGreaterThanOrEqual(89)
    expect(canary).toBeLessThanOrEqual(91)
    const [none2, canary2, all2] = bar('2.0')
    expect([none2, all2]).toEqual([0, 100])
    expect(canary2).toBeGreaterThanOrEqual(9)
    expect(canary2).toBeLessThanOrEqual(11)
    expect(stdout).toMatch(/green-2\s+░+\s+0\.0%\s+\(0\)/)
    for (const port of new Set(ports(stdout))) expect(await listening(port)).toBe(false)
  })

  it('stops everything it started on Ctrl-C', async () => {
    const child = spawn(process.execPath, [DEMO], { stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    let sent = false
    child.stdout.on('data', (d) => {
      output += d
      // Twice, as an impatient user would: the second must not cut the clean-up short.
      if (!sent && output.includes('until Ctrl-C')) {
        sent = true
        child.kill('SIGINT')
        child.kill('SIGINT')
      }
    })
    const code = await new Promise((resolve) => child.on('exit', resolve))
    expect(output).toContain('Stopping Switchyard, the demo instances and Consul')
    expect(code).toBe(0)
    const printed = new Set(ports(output))
    expect(printed.size).toBeGreaterThanOrEqual(3)
    for (const port of printed) expect(await listening(port)).toBe(false)
  }, 120_000)
})
