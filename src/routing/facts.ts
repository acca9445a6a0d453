// What an instance's own fields say (its routes, version, slice, tag
// problems), whatever its health and the targets. Derived once per instance
// list: a health change replaces one service's list in the snapshot and leaves
// the others as they were (the same objects), so an unchanged list's instances
// are looked up here rather than sorted and parsed again. The cache lives
// beside the data, never in it.

import { instanceSlice, instanceVersion } from './identity.js'
import { routeId } from './routes.js'
import { isConnectableAddress, parseRouteTag } from './tags.js'
import type { InstanceSnapshot, Problem, RouteSpec } from './types.js'

export interface InstanceFacts {
  readonly instance: InstanceSnapshot
  readonly version: string
  readonly slice: string
  /** Its routes in tag order. */
  readonly routes: readonly { readonly id: string; readonly spec: RouteSpec }[]
  /** Tag problems in tag order. */
  readonly problems: readonly Problem[]
}

/** A service's instances in table order with their facts. */
export interface ServiceFacts {
  readonly tagPrefix: string
  readonly instances: readonly InstanceFacts[]
}

// One entry per instance list (not per instance): weak references cost the
// garbage collector, and there are thousands.
const serviceFactsOf = new WeakMap<readonly InstanceSnapshot[], ServiceFacts>()

export function serviceFacts(instances: readonly InstanceSnapshot[], tagPrefix: string): ServiceFacts {
  const cached = serviceFactsOf.get(instances)
  if (cached !== undefined && cached.tagPrefix === tagPrefix) return cached
  const facts: ServiceFacts = {
    tagPrefix,
    instances: [...instances].sort(compareInstances).map((i) => instanceFacts(i, tagPrefix)),
  }
  serviceFactsOf.set(instances, facts)
  return facts
}

function instanceFacts(instance: InstanceSnapshot, tagPrefix: string): InstanceFacts {
  const routes: { id: string; spec: RouteSpec }[] = []
  const problems: Problem[] = []
  // Consul accepts any address and port; one no connection can be made to
  // must not become a route (nor an origin undici refuses).
  const unreachable = !isConnectableAddress(instance.address)
    ? `address "${instance.address}" is not an IP address or host name`
    : !Number.isInteger(instance.port) || instance.port < 1 || instance.port > 65_535
      ? `port ${instance.port} is not from 1 to 65535`
      : ''
  if (unreachable !== '' && instance.tags.some((t) => t.startsWith(tagPrefix))) {
    problems.push({
      code: 'SWY_ERR_INSTANCE_ADDRESS',
      subject: instanceSubject(instance),
      message: `${unreachable}; the instance gets no traffic`,
    })
    return { instance, version: instanceVersion(instance), slice: instanceSlice(instance), routes, problems }
  }
  for (const tag of instance.tags) {
    const parsed = parseRouteTag(tag, tagPrefix)
    if (parsed === null) continue
    if (!parsed.ok) {
      problems.push({
        code: 'SWY_ERR_TAG_SYNTAX',
        subject: instanceSubject(instance),
        message: `tag "${tag}": ${parsed.error}`,
      })
      continue
    }
    for (const warning of parsed.warnings) {
      problems.push({
        code: 'SWY_ERR_TAG_OPTION',
        subject: instanceSubject(instance),
        message: `tag "${tag}": ${warning}`,
      })
    }
    routes.push({ id: routeId(parsed.spec), spec: parsed.spec })
  }
  return { instance, version: instanceVersion(instance), slice: instanceSlice(instance), routes, problems }
}

export function instanceSubject(instance: InstanceSnapshot): string {
  return `service ${instance.service}, instance ${instance.id} on ${instance.node}`
}

function compareInstances(a: InstanceSnapshot, b: InstanceSnapshot): number {
  return a.node < b.node ? -1 : a.node > b.node ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0
}
