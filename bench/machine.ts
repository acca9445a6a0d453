// The machine a report was measured on: enough to tell whether two reports
// can be compared, and to name the report file after the kind of machine.

import { readFileSync } from 'node:fs'
import { cpus, freemem, loadavg, release, totalmem } from 'node:os'

export interface Machine {
  /** e.g. `2cpu-amd-epyc`: names the report file. */
  readonly kind: string
  readonly cores: number
  readonly cpuModel: string
  readonly memoryGiB: number
  readonly freeMemoryGiB: number
  readonly kernel: string
  readonly os: string
  readonly node: string
  /** 1-minute load average when the run started: other work on a shared machine shows here. */
  readonly loadAverage: number
}

export function describeMachine(): Machine {
  const list = cpus()
  const cpuModel = (list[0]?.model ?? 'unknown cpu').replace(/\s+/g, ' ').trim()
  const cores = list.length
  const slug = cpuModel
    .toLowerCase()
    .replace(/\(r\)|\(tm\)|processor|cpu|@.*$|\d+-core/g, '')
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
  return {
    kind: `${cores}cpu-${slug || 'unknown'}`,
    cores,
    cpuModel,
    memoryGiB: Number((totalmem() / 2 ** 30).toFixed(1)),
    freeMemoryGiB: Number((freemem() / 2 ** 30).toFixed(1)),
    kernel: release(),
    os: osName(),
    node: process.version,
    loadAverage: Number((loadavg()[0] ?? 0).toFixed(2)),
  }
}

function osName(): string {
  try {
    const text = readFileSync('/etc/os-release', 'utf8')
    return /^PRETTY_NAME="?([^"\n]+)"?/m.exec(text)?.[1] ?? 'linux'
  } catch {
    return process.platform
  }
}
