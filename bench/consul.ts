// The benchmark's own Consul dev agents (ACLs on, default deny), started with
// the dev tooling's ConsulAgent (src/demo, shared with the demo and the
// tests): Switchyard reads with the read-only proxy token, Fabio with a token
// of its own that reads the catalog and its KV path, and the benchmark writes
// with the management token.

import { ConsulAgent, type ConsulInfo, findConsulBinary } from '../dev/consul/agent.js'
import { ConsulApi } from '../dev/consul/api.js'

export interface BenchConsul {
  readonly agent: ConsulAgent
  readonly info: ConsulInfo
  /** Management token: the benchmark's own writes. */
  readonly api: ConsulApi
  /** Read-only token for Fabio (catalog, health, its `fabio/` KV path, agent self). */
  readonly fabioToken: string
  readonly version: string
  stop(): Promise<void>
}

const FABIO_RULES = `
service_prefix "" { policy = "read" }
node_prefix "" { policy = "read" }
agent_prefix "" { policy = "read" }
key_prefix "fabio/" { policy = "read" }
`

let binary: Promise<string> | null = null

/** Path of the consul binary (scripts/consul); rejects with the script's message when there is none. */
export function consulBinary(): Promise<string> {
  binary ??= findConsulBinary()
  return binary
}

export async function startBenchConsul(): Promise<BenchConsul> {
  const agent = new ConsulAgent(await consulBinary())
  await agent.start()
  const api = new ConsulApi(agent.info)
  const fabio = await api.createToken(`fabio-bench-${agent.proxyToken.slice(0, 8)}`, FABIO_RULES)
  const self = (await (await api.call('GET', '/v1/agent/self')).json()) as { Config?: { Version?: string } }
  return {
    agent,
    info: agent.info,
    api,
    fabioToken: fabio.secret,
    version: self.Config?.Version ?? 'unknown',
    stop: () => agent.destroy(),
  }
}
