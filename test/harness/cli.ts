// The compiled `switchyard` command, run as an operator runs it: a child
// process that sees PATH and the environment it is given, nothing else.

import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { promisify } from 'node:util'
import type { ConsulInfo } from './consul-agent.js'

export const CLI = new URL('../../dist/cli/main.js', import.meta.url).pathname

/** The operator policy the README tells operators to create. */
export const OPERATOR_POLICY = readFileSync(
  new URL('../../config/acl/switchyard-operator.hcl', import.meta.url),
  'utf8',
)

export interface CliRun {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** Runs `switchyard <args>`; a non-zero exit is a result, not an error. */
export async function runCli(
  args: readonly string[],
  env: Record<string, string> = {},
  timeoutMs = 30_000,
): Promise<CliRun> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [CLI, ...args], {
      env: { PATH: process.env.PATH ?? '', ...env },
      timeout: timeoutMs,
    })
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string }
    return { code: e.code, stdout: e.stdout, stderr: e.stderr }
  }
}

/** The environment a proxy runs with: PATH, Consul's address and the read-only token. */
export function proxyEnv(consul: ConsulInfo): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '',
    CONSUL_HTTP_ADDR: consul.address,
    CONSUL_HTTP_TOKEN: consul.proxyToken,
  }
}

/**
 * Starts `switchyard <args>` as a proxy, with the proxy's read-only token;
 * each JSON log line it prints is pushed to `lines`.
 */
export function spawnProxy(
  args: readonly string[],
  consul: ConsulInfo,
  lines: Record<string, unknown>[],
): ChildProcess {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: proxyEnv(consul),
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  let buffer = ''
  child.stdout?.on('data', (d) => {
    buffer += d
    const parts = buffer.split('\n')
    buffer = parts.pop() ?? ''
    for (const line of parts) if (line) lines.push(JSON.parse(line))
  })
  return child
}
