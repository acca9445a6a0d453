// The proxy's listeners as the config gives them. Apart from the schema so the
// data plane (and each worker process) can use it without loading the config
// parser.

import type { Config } from './schema.js'

export interface ListenerConfig {
  readonly address: { readonly host: string; readonly port: number }
  readonly protocol: 'http' | 'https'
}

/** The proxy's listeners: `proxy.listeners`, or the one plain listener `proxy.listen` is shorthand for. */
export function proxyListeners(config: Pick<Config, 'proxy'>): ListenerConfig[] {
  const listeners = config.proxy.listeners
  return listeners.length > 0 ? listeners : [{ address: config.proxy.listen, protocol: 'http' }]
}
