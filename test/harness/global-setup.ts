// Starts one Consul dev agent for the whole run. Without a Consul binary the
// integration suites are skipped with the reason, except in CI (CI=true), where
// a missing Consul fails the run: CI must show them executed.

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

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  // CLI tests run the compiled command, so compile what is being tested
  // (SWITCHYARD_SKIP_BUILD=1 skips it when dist/ is known to be current).
  if (process.env.SWITCHYARD_SKIP_BUILD !== '1')
    await promisify(execFile)(
      process.execPath,
      ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'],
      {
        cwd: new URL('../../', import.meta.url).pathname,
      },
    )
  let binary: string
  try {
    binary = await findConsulBinary()
  } catch (err) {
    const reason = `no Consul binary: ${(err as { stderr?: string }).stderr?.trim() || (err as Error).message}`
    if (process.env.CI === 'true') throw new Error(`${reason} (CI=true: integration tests must run)`)
    process.stderr.write(`\n*** Consul integration tests will be SKIPPED: ${reason}\n\n`)
    project.provide('consul', null)
    project.provide('consulUnavailable', reason)
    return async () => {}
  }
  const agent = new ConsulAgent(binary)
  await agent.start()
  process.stderr.write(`consul dev agent (ACLs on, default deny) at ${agent.address} using ${binary}\n`)
  project.provide('consul', agent.info)
  project.provide('consulUnavailable', '')
  return async () => {
    await agent.destroy()
  }
}
