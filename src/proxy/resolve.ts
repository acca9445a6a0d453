// Request → what to do with it: forward to an instance, redirect, or answer
// with an error. Shared by plain requests and WebSocket upgrades so both
// validate, route and pick the same way. Everything a request is checked
// against was precomputed when the table was built.

import type { IncomingMessage } from 'node:http'
import { BlockList } from 'node:net'
import { type ErrorCode, type HttpErrorCode, httpStatus } from '../errors.js'
import { lookupRoute } from '../routing/lookup.js'
import { normalizePath, splitRequestTarget } from '../routing/path.js'
import type { AccessRules, Backend, Route } from '../routing/types.js'
import type { TableStore } from '../table/store.js'
import { clientAddress } from './headers.js'
import type { PassiveHealth } from './health.js'
import type { Balancer } from './pickers.js'

/** Why a request was refused before routing (each is counted). */
export type RejectReason =
  /** Request line and headers above proxy.maxHeaderSize (431). */
  | 'headers-too-large'
  /** Unparseable request line: method, target or version (400). */
  | 'request-line'
  /** A method Node's parser does not know (400), or CONNECT, which a reverse proxy does not tunnel (405). */
  | 'method'
  /** Conflicting or unusable Content-Length / Transfer-Encoding: request smuggling (400). */
  | 'framing'
  /** Invalid header name or value, CR/LF inside a value (400). */
  | 'header'
  /** Missing (HTTP/1.1), duplicated or invalid Host (400). */
  | 'host'
  /** A path that cannot be normalised safely (400). */
  | 'path'
  /** Any other request Node's parser refuses (400). */
  | 'malformed'

export type Resolution =
  | {
      readonly kind: 'forward'
      readonly route: Route
      readonly target: Backend
      readonly host: string
      /** Normalised path: what was matched is what is forwarded. */
      readonly path: string
      readonly query: string
    }
  | { readonly kind: 'redirect'; readonly route: Route; readonly target: Backend; readonly location: string }
  | {
      readonly kind: 'reply'
      readonly route: Route | null
      readonly status: number
      readonly code: ErrorCode
      readonly message: string
      /** Set when the request itself is malformed or hostile. */
      readonly reject: RejectReason | null
    }

const VALID_HOST = /^[A-Za-z0-9.\-_:[\]]*$/

export interface ResolverDeps {
  readonly store: TableStore
  readonly balancer: Balancer
  readonly health: PassiveHealth | null
}

export function createResolver(deps: ResolverDeps): (req: IncomingMessage) => Resolution {
  const { store, balancer, health } = deps
  const accessLists = new WeakMap<AccessRules, { allow: BlockList | null; deny: BlockList | null }>()

  function allowed(route: Route, ip: string): boolean {
    const family = ip.includes(':') ? 'ipv6' : 'ipv4'
    for (const rules of route.access) {
      let lists = accessLists.get(rules)
      if (lists === undefined) {
        lists = { allow: toBlockList(rules.allow), deny: toBlockList(rules.deny) }
        accessLists.set(rules, lists)
      }
      if (lists.allow && !lists.allow.check(ip, family)) return false
      if (lists.deny?.check(ip, family)) return false
    }
    return true
  }

  return (req) => {
    const table = store.current
    const target = splitRequestTarget(req.url ?? '/')
    const hostHeader = req.headers.host
    if (hostHeader === undefined ? req.httpVersionMinor >= 1 && target.host === null : hostCount(req) > 1) {
      return refuse('host', 'a request needs exactly one Host header')
    }
    const host = target.host ?? hostHeader ?? ''
    if (!VALID_HOST.test(host)) return refuse('host', 'invalid Host header')
    // Node accepts a Transfer-Encoding that is not `chunked` and leaves the body
    // length undefined; RFC 9112 §6.1 says answer 400 (a smuggling vector).
    const te = req.headers['transfer-encoding']
    if (te !== undefined && te.toLowerCase() !== 'chunked') {
      return refuse('framing', `unsupported Transfer-Encoding "${te}"`)
    }
    const path = normalizePath(target.path)
    if (path === null) return refuse('path', 'malformed request path')
    if (table.generation === 0) {
      return reply(
        null,
        'SWY_ERR_NO_HEALTHY_INSTANCE',
        'no routing table yet: Switchyard is still reading Consul',
      )
    }
    const route = lookupRoute(table, host, path)
    if (route === null) return reply(null, 'SWY_ERR_NO_ROUTE', `no route for ${host}${path}`)
    if (route.access.length > 0) {
      const ip = clientAddress(req.socket.remoteAddress)
      if (!allowed(route, ip))
        return reply(route, 'SWY_ERR_ACCESS_DENIED', `${ip} may not use route ${route.id}`)
    }
    const usable = health?.anyEjected ? health.usable : undefined
    // When every instance is ejected, Consul still calls them healthy: trying
    // one is better than refusing them all.
    const chosen = balancer.pick(route, usable) ?? (usable ? balancer.pick(route) : null)
    if (chosen === null) {
      const services = route.services.join(', ')
      return reply(
        route,
        'SWY_ERR_NO_HEALTHY_INSTANCE',
        `no healthy instance for route ${route.id} (service ${services})`,
      )
    }
    if (chosen.redirect !== null) {
      const location = chosen.redirect.url.replaceAll('$path', path + target.query)
      return { kind: 'redirect', route, target: chosen, location }
    }
    return { kind: 'forward', route, target: chosen, host, path, query: target.query }
  }
}

function reply(route: Route | null, code: HttpErrorCode, message: string): Resolution {
  return { kind: 'reply', route, status: httpStatus(code), code, message, reject: null }
}

function refuse(reason: RejectReason, message: string): Resolution {
  const code = 'SWY_ERR_BAD_REQUEST'
  return { kind: 'reply', route: null, status: httpStatus(code), code, message, reject: reason }
}

/** How many Host fields the request has (Node keeps only the first in `headers`). */
function hostCount(req: IncomingMessage): number {
  const raw = req.rawHeaders
  let n = 0
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string
    if (name.length === 4 && name.toLowerCase() === 'host') n++
  }
  return n
}

function toBlockList(cidrs: AccessRules['allow']): BlockList | null {
  if (cidrs.length === 0) return null
  const list = new BlockList()
  for (const c of cidrs) list.addSubnet(c.address, c.prefix, c.family === 4 ? 'ipv4' : 'ipv6')
  return list
}
