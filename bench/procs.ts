// Child processes of the benchmark and what they cost: CPU time and memory
// read from /proc (Linux), so a contender's CPU seconds are its own, whatever
// runs beside it. Every child started here is killed when the benchmark exits,
// however it exits.

import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { sleep } from './stats.js'

/** The repository's root: children run here, so `--import tsx` resolves from its node_modules. */
export const ROOT = new URL('../', import.meta.url).pathname

const live = new Set<ChildProcess>()
let cleanupInstalled = false

function installCleanup(): void {
  if (cleanupInstalled) return
  cleanupInstalled = true
  process.on('exit', () => {
    for (const child of live) child.kill('SIGKILL')
  })
}

/** Clock ticks per second of /proc/<pid>/stat times. */
const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
  } catch {
    return 100
  }
})()

export interface ChildOptions {
  readonly env?: NodeJS.ProcessEnv
  readonly cwd?: string
  /** Called with each line of stdout and stderr. */
  readonly onLine?: (line: string, stream: 'stdout' | 'stderr') => void
}

/** A child process with its output kept (the last 64 KiB) for error messages. */
export class Child {
  readonly name: string
  readonly process: ChildProcess
  readonly exited: Promise<number | null>
  private tail = ''

  constructor(name: string, command: string, args: readonly string[], options: ChildOptions = {}) {
    installCleanup()
    this.name = name
    const child = spawn(command, args, {
      env: options.env ?? process.env,
      cwd: options.cwd ?? ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    this.process = child
    live.add(child)
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        live.delete(child)
        resolve(code ?? (signal ? null : 0))
      })
      child.on('error', (err) => {
        live.delete(child)
        this.append(`spawn error: ${err.message}\n`)
        resolve(null)
      })
    })
    for (const stream of ['stdout', 'stderr'] as const) {
      let partial = ''
      child[stream]?.setEncoding('utf8')
      child[stream]?.on('data', (chunk: string) => {
        this.append(chunk)
        if (!options.onLine) return
        partial += chunk
        const lines = partial.split('\n')
        partial = lines.pop() ?? ''
        for (const line of lines) options.onLine(line, stream)
      })
    }
  }

  get pid(): number {
    return this.process.pid ?? -1
  }

  get running(): boolean {
    return this.process.exitCode === null && this.process.signalCode === null
  }

  output(): string {
    return this.tail
  }

  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs = 5_000): Promise<void> {
    if (!this.running) return
    this.process.kill('SIGTERM')
    const timer = setTimeout(() => this.process.kill('SIGKILL'), graceMs)
    await this.exited
    clearTimeout(timer)
  }

  private append(text: string): void {
    this.tail = (this.tail + text).slice(-65_536)
  }
}

/** Runs a command to completion; resolves with its stdout, rejects with its output on failure. */
export async function runToEnd(
  command: string,
  args: readonly string[],
  options: ChildOptions & { timeoutMs: number },
): Promise<{ stdout: string; code: number | null }> {
  let stdout = ''
  const child = new Child(command, command, args, {
    ...options,
    onLine: (line, stream) => {
      if (stream === 'stdout') stdout += `${line}\n`
      options.onLine?.(line, stream)
    },
  })
  const timer = setTimeout(() => void child.stop(1_000), options.timeoutMs)
  const code = await child.exited
  clearTimeout(timer)
  return { stdout, code }
}

interface ProcStat {
  readonly ppid: number
  readonly ticks: number
  /** Waited-for children's ticks (cutime + cstime). */
  readonly childTicks: number
}

function readStat(pid: number | 'self'): ProcStat | null {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return null
  }
  // The command name (field 2) may contain spaces and parentheses: fields
  // are counted after its closing parenthesis.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ')
  // fields[0] is field 3 (state): ppid is field 4, utime 14, stime 15, cutime 16, cstime 17.
  return {
    ppid: Number(fields[1]),
    ticks: Number(fields[11]) + Number(fields[12]),
    childTicks: Number(fields[13]) + Number(fields[14]),
  }
}

/** `root` and every live process below it. */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>()
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const stat = readStat(Number(entry))
    if (stat === null) continue
    const list = children.get(stat.ppid) ?? []
    list.push(Number(entry))
    children.set(stat.ppid, list)
  }
  const out: number[] = []
  const stack = [root]
  while (stack.length > 0) {
    const pid = stack.pop() as number
    out.push(pid)
    stack.push(...(children.get(pid) ?? []))
  }
  return out
}

/** CPU seconds (user + system) used so far by `root` and its live descendants. */
export function treeCpuSeconds(root: number): number {
  let ticks = 0
  for (const pid of processTree(root)) ticks += readStat(pid)?.ticks ?? 0
  return ticks / CLOCK_TICKS
}

/**
 * CPU seconds of this process's children that have exited and been waited
 * for. A short-lived child (the load generator) is measured as the change of
 * this across its run.
 */
export function exitedChildrenCpuSeconds(): number {
  return (readStat('self')?.childTicks ?? 0) / CLOCK_TICKS
}

/** Resident set size of `root` and its live descendants, in bytes. */
export function treeRssBytes(root: number): number {
  let kib = 0
  for (const pid of processTree(root)) {
    try {
      const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
      kib += Number(match?.[1] ?? 0)
    } catch {
      // exited meanwhile
    }
  }
  return kib * 1024
}

/** Resolves when `check` returns true; throws with `what` after `timeoutMs`. */
export async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  intervalMs = 20,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let last: unknown = null
  while (Date.now() < deadline) {
    try {
      if (await check()) return
    } catch (err) {
      last = err
    }
    await sleep(intervalMs)
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`)
}

/** One GET on a fresh connection; the status, or 0 when nothing answered. */
export async function httpStatus(url: string, timeoutMs = 2_000): Promise<number> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) })
    await res.arrayBuffer()
    return res.status
  } catch {
    return 0
  }
}

export async function waitForHttp(url: string, timeoutMs: number, child?: Child): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (child && !child.running) {
      throw new Error(`${child.name} exited before ${url} answered: ${child.output().slice(-2_000)}`)
    }
    if ((await httpStatus(url)) === 200) return
    await sleep(50)
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${url} to answer 200`)
}

/** Command and arguments that run a TypeScript file of bench/ in a new Node process (cwd: ROOT). */
export function nodeTs(script: string, args: readonly string[] = []): [string, string[]] {
  return [process.execPath, ['--import', 'tsx', new URL(script, import.meta.url).pathname, ...args]]
}
