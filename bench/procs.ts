// Child processes of the benchmark and what they cost: CPU time and memory
// read from /proc (Linux), so a contender's CPU seconds are its own, whatever
// runs beside it. Every child started here is killed when the benchmark exits,
// however it exits.

import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { createServer } from 'node:net'
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
  /** Open files the process must be allowed (its soft limit is raised when lower; see withOpenFiles). */
  readonly openFiles?: number
}

/** A child process with its output kept (the last 64 KiB) for error messages. */
export class Child {
  readonly name: string
  readonly process: ChildProcess
  readonly exited: Promise<number | null>
  /**
   * Resolves when stdout and stderr have ended: 'exit' may come before the
   * last output is read, so a caller that parses the output waits for this too.
   */
  readonly outputEnded: Promise<void>
  private tail = ''

  constructor(name: string, command: string, args: readonly string[], options: ChildOptions = {}) {
    installCleanup()
    this.name = name
    const [cmd, argv] = options.openFiles ? withOpenFiles(options.openFiles, command, args) : [command, args]
    const child = spawn(cmd, argv, {
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
    const ends: Promise<void>[] = []
    for (const stream of ['stdout', 'stderr'] as const) {
      const s = child[stream]
      ends.push(s ? new Promise((resolve) => s.once('close', () => resolve())) : Promise.resolve())
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
      // The last line may come without a newline.
      child[stream]?.on('end', () => {
        if (partial !== '') options.onLine?.(partial, stream)
        partial = ''
      })
    }
    this.outputEnded = Promise.all(ends).then(() => {})
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
  // The output read to its end; a grandchild holding the pipes open must not hang the run.
  await Promise.race([child.outputEnded, sleep(2_000)])
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
  return rssBytesOf(processTree(root))
}

/**
 * Resident set size of these processes added up, in bytes (pages shared
 * between them, such as NGINX's master and worker, count once per process).
 */
export function rssBytesOf(pids: readonly number[]): number {
  let kib = 0
  for (const pid of pids) {
    try {
      const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
      kib += Number(match?.[1] ?? 0)
    } catch {
      // exited meanwhile
    }
  }
  return kib * 1024
}

/** CPU seconds the whole machine has spent busy (all cores, /proc/stat: anything but idle and iowait). */
export function machineBusySeconds(): number {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? ''
    // cpu user nice system idle iowait irq softirq steal guest guest_nice; guest
    // time is already inside user, and steal is time this machine did not get.
    const [user, nice, system, , , irq, softirq] = line.trim().split(/\s+/).slice(1).map(Number)
    return ((user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0)) / CLOCK_TICKS
  } catch {
    return 0
  }
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

/** This process's limit on open files: [soft, hard] (Infinity for unlimited). */
export function openFilesLimit(): [number, number] {
  try {
    const match = /^Max open files\s+(\S+)\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))
    const n = (v: string | undefined) => (v === undefined || v === 'unlimited' ? Infinity : Number(v))
    return [n(match?.[1]), n(match?.[2])]
  } catch {
    return [Infinity, Infinity]
  }
}

/**
 * The command to run so that it may open `needed` files: as is when the
 * inherited soft limit allows it, else through a shell that raises its soft
 * limit to the hard one first (`exec` keeps the pid, so /proc readings and
 * signals still reach the command itself). Throws when even the hard limit
 * is too low, rather than measuring connection errors.
 */
export function withOpenFiles(needed: number, command: string, args: readonly string[]): [string, string[]] {
  const [soft, hard] = openFilesLimit()
  if (soft >= needed) return [command, [...args]]
  if (hard < needed) {
    throw new Error(
      `${command} needs ${needed} open files but the hard limit is ${hard}: raise it (ulimit -Hn) or use fewer connections`,
    )
  }
  return ['sh', ['-c', `ulimit -n ${hard === Infinity ? needed : hard} && exec "$0" "$@"`, command, ...args]]
}

/** A TCP port on 127.0.0.1 that was free a moment ago (the kernel's pick). */
export function loopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      )
    })
  })
}
