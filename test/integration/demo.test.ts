// `npm run demo`, as a new user runs it: the CI mode checks the splits it
// prints; the interactive mode shows live counts of the last seconds,
// announces instances leaving and rejoining, and stops everything on Ctrl-C,
// also when its output goes through `tee`.

import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { promisify } from 'node:util'
import { afterAll, expect, it } from 'vitest'
import { describeWithConsul } from '../harness/context.js'
import { eventually } from '../harness/wait.js'

const ROOT = new URL('../../', import.meta.url).pathname
/** The demo as `npm run demo` runs it (after its build step): from source, through tsx. */
const DEMO = ['--import', 'tsx', `${ROOT}dev/demo/main.ts`]

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

const ESC = String.fromCharCode(27)

/** Frames of the live view: each redraw starts after a cursor-up escape. */
function frames(output: string): string[][] {
  return output
    .split(new RegExp(`${ESC}\\[\\d+A`))
    .slice(1)
    .map((frame) =>
      frame
        .split('\n')
        .map((line) => line.replaceAll(`${ESC}[2K`, ''))
        .filter((line) => /[█░]/.test(line)),
    )
}

const exited = (child: ChildProcess) =>
  new Promise<number | null>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode)
    else child.on('exit', (code) => resolve(code))
  })

/** What is still running in a process group, for a failure message. */
function processGroup(pgid: number): string {
  try {
    return execFileSync('ps', ['-o', 'pid,stat,etime,args', '-g', String(pgid)], { encoding: 'utf8' })
  } catch {
    return '(ps found nothing)'
  }
}

const scratch = mkdtempSync(join(tmpdir(), 'switchyard-demo-test-'))
afterAll(() => rmSync(scratch, { recursive: true, force: true }))

describeWithConsul('npm run demo', () => {
  it('--ci walks 100/0 → 90/10 → 0/100 and a failed instance, and checks the splits it printed', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [...DEMO, '--ci'], {
      cwd: ROOT,
      timeout: 120_000,
    })
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
    expect(stdout).toMatch(/green-2 rejoined the pool [\d.]+ s after it passed again/)
    // The guarded rollout back to blue: every step checked, then complete.
    for (const step of ['1/3 (25 % to 1.0)', '2/3 (50 % to 1.0)', '3/3 (100 % to 1.0)'])
      expect(stdout).toMatch(
        new RegExp(`demo: step ${step.replace(/[()]/g, '\\$&')}, \\d+s: 1\\.0: \\d+ requests .*: ok`),
      )
    expect(stdout).toContain('demo: rollout to 1.0 complete after 3 steps')
    for (const port of new Set(ports(stdout))) expect(await listening(port)).toBe(false)
  })

  it('the live view counts the last seconds, keeps its columns aligned, and stops everything on Ctrl-C', async () => {
    const child = spawn(process.execPath, DEMO, {
      cwd: ROOT,
      env: { ...process.env, SWITCHYARD_DEMO_LIVE: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let output = ''
    child.stdout.on('data', (d) => {
      output += d
    })
    try {
      // The command the demo suggests, run as printed (the clone's `npx switchyard` is dist/cli/main.js).
      const suggested =
        /CONSUL_HTTP_ADDR=(\S+) CONSUL_HTTP_TOKEN=(\S+) \\\n\s+npx switchyard (target set demo --version 1\.0 .*)\n/
      await eventually(() => expect(output).toMatch(suggested), 100_000, 200)
      const [, addr, token, command] = suggested.exec(output) ?? []
      const set = await promisify(execFile)(
        process.execPath,
        [`${ROOT}dist/cli/main.js`, ...(command ?? '').split(' ')],
        { env: { PATH: process.env.PATH ?? '', CONSUL_HTTP_ADDR: addr, CONSUL_HTTP_TOKEN: token } },
      )
      expect(set.stdout).toContain('live on 1 proxy: traffic follows version=1.0')
      const setAt = output.length
      // Green got traffic for minutes before; within the window it drops to nothing.
      await eventually(
        () => {
          const last = frames(output.slice(setAt)).at(-1) ?? []
          const green = last.filter((l) => l.trim().startsWith('2.0/'))
          expect(green).toHaveLength(2)
          for (const line of green) expect(line).toMatch(/\s0\.0%\s+\(0\)$/)
        },
        10_000,
        250,
      )
      const last = frames(output).at(-1) ?? []
      // `2.0/green-1` is longer than the old fixed column: every bar still starts in one column.
      expect(new Set(last.map((l) => l.search(/[█░]/))).size).toBe(1)
    } finally {
      child.kill('SIGINT')
      // Twice, as an impatient user would: the second must not cut the clean-up short.
      child.kill('SIGINT')
    }
    const code = await exited(child)
    expect(output).toContain('Stopping Switchyard, the demo instances and Consul')
    expect(code).toBe(0)
    const printed = new Set(ports(output))
    expect(printed.size).toBeGreaterThanOrEqual(3)
    for (const port of printed) expect(await listening(port)).toBe(false)
  }, 150_000)

  it('Ctrl-C through `tee` (which dies first) still removes its temporary files', async () => {
    const tmp = mkdtempSync(join(scratch, 'tmp-'))
    const log = join(scratch, 'tee.log')
    // A shell pipeline in its own process group, as a terminal runs it: Ctrl-C signals every process of it.
    const shell = spawn('bash', ['-c', `exec "$0" "$@" | tee ${log} >/dev/null`, process.execPath, ...DEMO], {
      cwd: ROOT,
      env: { ...process.env, TMPDIR: tmp },
      detached: true,
      stdio: 'ignore',
    })
    const read = () => {
      try {
        return readFileSync(log, 'utf8')
      } catch {
        return ''
      }
    }
    await eventually(() => expect(read()).toContain('until Ctrl-C'), 100_000, 200)
    const mine = () => readdirSync(tmp).filter((name) => name.startsWith('switchyard-'))
    expect(mine().length).toBeGreaterThanOrEqual(2)
    process.kill(-(shell.pid as number), 'SIGINT')
    const ended = await Promise.race([exited(shell), delay(60_000, 'still running' as const, { ref: false })])
    if (ended === 'still running')
      throw new Error(`the pipeline did not end within 60 s of Ctrl-C:\n${processGroup(shell.pid as number)}`)
    // The demo may outlive the pipeline's shell by its clean-up.
    await eventually(() => expect(mine()).toEqual([]), 30_000, 200)
    for (const port of new Set(ports(read())))
      await eventually(async () => expect(await listening(port)).toBe(false), 10_000)
    // Each stage has its own bound above (start 100 s, exit 60 s, files 30 s, ports 10 s).
  }, 210_000)
})
