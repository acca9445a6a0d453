// Lives in dev/consul, shared with the demo and the benchmarks.
export { ConsulApi, type InstanceSpec } from '../../dev/consul/api.js'
