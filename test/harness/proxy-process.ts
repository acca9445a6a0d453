// `switchyard serve` as its own process (the compiled CLI), for measurements
// that must see the proxy alone: its memory is read from /proc, so the test's
// clients and upstreams, in the test's process, do not count.

import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { stringify } from 'yaml'
import type { ConsulInfo } from './consul-agent.js'
import { freePort } from './consul-agent.js'
import { eventually } from './wait.js'

const CLI = new URL('../../dist/cli/main.js', import.meta.url).pathname

export interface ProxyProcess {
  readonly url: string
  readonly adminUrl: string
  readonly child: ChildProcess
  /** Resident memory now, in bytes (VmRSS). */
  rss(): number
  /** Highest resident memory since the process started, in bytes (VmHWM). */
  peakRss(): number
  stop(): Promise<void>
}

/** /proc/<pid>/status field in bytes (Linux). */
function statusBytes(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  if (!match) throw new Error(`no ${field} in /proc/${pid}/status`)
  return Number(match[1]) * 1024
}

/** Starts one proxy process (`--workers 1`) on free ports and waits until it is ready. */
export async function startProxyProcess(
  consul: ConsulInfo,
  dir: string,
  config: Record<string, Record<string, unknown>>,
): Promise<ProxyProcess> {
  const [port, adminPort] = [await freePort(), await freePort()]
  const file = join(dir, `switchyard-${port}.yaml`)
  writeFileSync(
    file,
    stringify({
      ...config,
      proxy: { ...config.proxy, listen: `127.0.0.1:${port}`, workers: 1 },
      admin: { ...config.admin, listen: `127.0.0.1:${adminPort}` },
    }),
  )
  const child = spawn(process.execPath, [CLI, 'serve', '--config', file], {
    env: {
      PATH: process.env.PATH ?? '',
      CONSUL_HTTP_ADDR: consul.address,
      CONSUL_HTTP_TOKEN: consul.proxyToken,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let stderr = ''
  child.stderr?.on('data', (c) => {
    stderr += c
  })
  const adminUrl = `http://127.0.0.1:${adminPort}`
  await eventually(async () => {
    if (child.exitCode !== null) throw new Error(`switchyard exited with ${child.exitCode}: ${stderr}`)
    const ready = await fetch(`${adminUrl}/ready`)
    if (ready.status !== 200) throw new Error(`not ready: ${await ready.text()}`)
  }, 20_000)
  const pid = child.pid as number
  return {
    url: `http://127.0.0.1:${port}`,
    adminUrl,
    child,
    rss: () => statusBytes(pid, 'VmRSS'),
    peakRss: () => statusBytes(pid, 'VmHWM'),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return
      const exit = once(child, 'exit')
      child.kill('SIGTERM')
      await exit
    },
  }
}
