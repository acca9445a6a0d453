import { describe, inject } from 'vitest'
import type { ConsulInfo } from './consul-agent.js'

const consul = inject('consul')
const unavailable = inject('consulUnavailable')

/** A describe block that needs the real Consul: skipped with the reason when there is none. */
export function describeWithConsul(name: string, body: (consul: ConsulInfo) => void): void {
  if (consul) describe(name, () => body(consul))
  else describe.skip(`${name} (skipped: ${unavailable})`, () => {})
}
