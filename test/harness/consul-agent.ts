// The dev agent lives in dev/consul, shared with the demo and the benchmarks.
export { ConsulAgent, type ConsulInfo, findConsulBinary, freePort } from '../../dev/consul/agent.js'
