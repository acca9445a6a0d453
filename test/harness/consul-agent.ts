// The dev agent lives in src/demo so the demo and the benchmarks use the same one.
export { ConsulAgent, type ConsulInfo, findConsulBinary, freePort } from '../../src/demo/consul-agent.js'
