// What an instance's own fields say (its routes, version, slice, tag
// problems), whatever its health and the targets. Derived once per instance
// list: a health change replaces one service's list in the snapshot and leaves
// the others as they were (the same objects), so an unchanged list's instances
// are looked up here rather than sorted and parsed again. The cache lives
// beside the data, never in it.

import { instanceSlice, instanceVersion } from './identity.js'
import { routeId } from './routes.js'
import { isConnectableAddress, parseRouteTag } from './tags.js'
import type { InstanceSnapshot, PathMatcher, Problem, RouteSpec } from './types.js'

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
  /** The tag prefix and matcher the tags were parsed with. */
  readonly parsedWith: string
  readonly instances: readonly InstanceFacts[]
}

// One entry per instance list (not per instance): weak references cost the
// garbage collector, and there are thousands.
const serviceFactsOf = new WeakMap<readonly InstanceSnapshot[], ServiceFacts>()

export function serviceFacts(
  instances: readonly InstanceSnapshot[],
  tagPrefix: string,
  matcher: PathMatcher = 'segment',
): ServiceFacts {
  const parsedWith = `${tagPrefix} ${matcher}`
  const cached = serviceFactsOf.get(instances)
  if (cached !== undefined && cached.parsedWith === parsedWith) return cached
  // A service's instances mostly carry the same tags: each is parsed once,
  // and its instances share the (plain, never changed) RouteSpec.
  const parsed = new Map<string, ReturnType<typeof parseRouteTag>>()
  const facts: ServiceFacts = {
    parsedWith,
    instances: [...instances].sort(compareInstances).map((i) => instanceFacts(i, tagPrefix, matcher, parsed)),
  }
  serviceFactsOf.set(instances, facts)
  return facts
}

function instanceFacts(
  instance: InstanceSnapshot,
  tagPrefix: string,
  matcher: PathMatcher,
  parsedTags: Map<string, ReturnType<typeof parseRouteTag>>,
): InstanceFacts {
  const routes: { id: string; spec: RouteSpec }[] = []
  const problems: Problem[] = []
  // Consul accepts any address and port; one no connection can be made to
  // must not become a route (nor an origin undici refuses).
  const unreachable = !isConnectableAddress(instance.address)
    ? `address "${instance.address}" is not an IP address or host name`
    : !Number.isInteger(instance.port) || instance.port < 1 || instance.port > 65_535
      ? `port ${instance.port} is not from 1 to 65535`
      : ''
  if (unreachable !== '' && instance.tags.some((t) => t.trim().startsWith(tagPrefix))) {
    problems.push({
      code: 'SWY_ERR_INSTANCE_ADDRESS',
      subject: instanceSubject(instance),
      message: `${unreachable}; the instance gets no traffic`,
    })
    return { instance, version: instanceVersion(instance), slice: instanceSlice(instance), routes, problems }
  }
  // The same route twice on one instance is one backend (Fabio: one target),
  // not a double share; the first tag wins.
  const seen = new Map<string, { tag: string; options: string }>()
  for (const tag of instance.tags) {
    let parsed = parsedTags.get(tag)
    if (parsed === undefined) {
      parsed = parseRouteTag(tag, tagPrefix, matcher)
      parsedTags.set(tag, parsed)
    }
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
    const id = routeId(parsed.spec)
    const first = seen.get(id)
    if (first !== undefined) {
      if (first.options !== parsed.spec.optionsText) {
        problems.push({
          code: 'SWY_ERR_TAG_OPTION',
          subject: instanceSubject(instance),
          message: `tag "${tag}": route ${id} is already given by tag "${first.tag}"; ignored`,
        })
      }
      continue
    }
    seen.set(id, { tag: tag.trim(), options: parsed.spec.optionsText })
    routes.push({ id, spec: parsed.spec })
  }
  if (routes.length > 0 && !instance.checks.some((c) => c.serviceId !== '')) {
    problems.push({
      code: 'SWY_ERR_INSTANCE_UNCHECKED',
      subject: instanceSubject(instance),
      message: 'no service health check: the instance gets no traffic until one is registered',
    })
  }
  return { instance, version: instanceVersion(instance), slice: instanceSlice(instance), routes, problems }
}

export function instanceSubject(instance: InstanceSnapshot): string {
  return `service ${instance.service}, instance ${instance.id} on ${instance.node}`
}

function compareInstances(a: InstanceSnapshot, b: InstanceSnapshot): number {
  return a.node < b.node ? -1 : a.node > b.node ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0
}
