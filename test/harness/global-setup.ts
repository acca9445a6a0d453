// Global setup of the integration and slow tiers (the unit tier has none):
// compiles dist/ for the tests that run the CLI, and starts one Consul dev
// agent for the whole run. Without a Consul binary the integration suites are
// skipped with the reason, except in CI (CI=true), where a missing Consul fails
// the run: CI must show them executed.

import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import 'vitest'
import type { TestProject } from 'vitest/node'
import { ConsulAgent, type ConsulInfo, findConsulBinary } from './consul-agent.js'

declare module 'vitest' {
  export interface ProvidedContext {
    consul: ConsulInfo | null
    consulUnavailable: string
  }
}

interface Shared {
  /** The build and the agent, started by the first tier that needs them. */
  readonly ready: Promise<{ agent: ConsulAgent | null; unavailable: string }>
  users: number
}

// Both tiers call this setup; they share one build and one agent. Each
// project may load this module on its own, so the state lives on globalThis.
const KEY = Symbol.for('switchyard.test.global-setup')
const registry = globalThis as { [KEY]?: Shared }

async function prepare(): Promise<{ agent: ConsulAgent | null; unavailable: string }> {
  // CLI tests run the compiled command, so compile what is being tested
  // (SWITCHYARD_SKIP_BUILD=1 skips it when dist/ is known to be current).
  if (process.env.SWITCHYARD_SKIP_BUILD !== '1')
    await promisify(execFile)(
      process.execPath,
      ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'],
      { cwd: new URL('../../', import.meta.url).pathname },
    )
  let binary: string
  try {
    binary = await findConsulBinary()
  } catch (err) {
    const reason = `no Consul binary: ${(err as { stderr?: string }).stderr?.trim() || (err as Error).message}`
    if (process.env.CI === 'true') throw new Error(`${reason} (CI=true: integration tests must run)`)
    process.stderr.write(`\n*** Consul integration tests will be SKIPPED: ${reason}\n\n`)
    return { agent: null, unavailable: reason }
  }
  const agent = new ConsulAgent(binary)
  await agent.start()
  process.stderr.write(`consul dev agent (ACLs on, default deny) at ${agent.address} using ${binary}\n`)
  return { agent, unavailable: '' }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  registry[KEY] ??= { ready: prepare(), users: 0 }
  const shared = registry[KEY]
  shared.users++
  const { agent, unavailable } = await shared.ready
  project.provide('consul', agent?.info ?? null)
  project.provide('consulUnavailable', unavailable)
  return async () => {
    if (--shared.users > 0) return
    delete registry[KEY]
    await agent?.destroy()
  }
}
