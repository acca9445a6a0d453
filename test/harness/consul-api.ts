// Lives in src/demo so the demo and the benchmarks use the same one.
export { ConsulApi, type InstanceSpec } from '../../src/demo/consul-api.js'
