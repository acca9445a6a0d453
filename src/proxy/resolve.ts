// Request → what to do with it: forward to an instance, redirect, or answer
// with an error. Shared by plain requests and WebSocket upgrades so both
// validate, route and pick the same way. Everything a request is checked
// against was precomputed when the table was built.

import { BlockList } from 'node:net'
import { type ErrorCode, type HttpErrorCode, httpStatus } from '../errors.js'
import { lookupRoute } from '../routing/lookup.js'
import { normalizePath, splitRequestTarget } from '../routing/path.js'
import { redirectLocation } from '../routing/redirect.js'
import type { StickySigner } from '../routing/sticky.js'
import type { AccessRules, Backend, Pickable, Route } from '../routing/types.js'
import { chooseVariant } from '../routing/variant-pick.js'
import type { TableStore } from '../table/store.js'
import type { BasicAuth } from './auth.js'
import { type ForwardedClient, forwardedClient, type TrustedProxies } from './client-address.js'
import type { RequestHead } from './exchange.js'
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
  /** A body above proxy.limits.maxBodySize (413). */
  | 'body-too-large'
  /** An Upgrade to anything but WebSocket (501). */
  | 'upgrade'
  /** An HTTP/2 client resetting streams faster than proxy.http2.maxResetsPerSecond (disconnected). */
  | 'h2-rapid-reset'

export type Resolution =
  | {
      readonly kind: 'forward'
      readonly route: Route
      readonly backend: Backend
      readonly host: string
      /** Normalised path: what was matched is what is forwarded. */
      readonly path: string
      readonly query: string
      /** The client (proxy.trustedProxies) and the X-Forwarded-For to send upstream. */
      readonly client: ForwardedClient
      /** Where a retry picks first: a match rule's or a sticky version's pool, else the route. */
      readonly pool: Pickable
      /** A Set-Cookie value the response must carry (a sticky version's cookie); null for none. */
      readonly setCookie: string | null
    }
  | { readonly kind: 'redirect'; readonly route: Route; readonly backend: Backend; readonly location: string }
  | {
      readonly kind: 'reply'
      readonly route: Route | null
      readonly status: number
      readonly code: ErrorCode
      readonly message: string
      /** Set when the request itself is malformed or hostile. */
      readonly reject: RejectReason | null
      /** Fields the answer must carry (the basic auth challenge), flat pairs. */
      readonly headers?: readonly string[]
      /** An HTML body instead of the plain-text one (the no-route page from KV). */
      readonly html?: string
    }

const VALID_HOST = /^[A-Za-z0-9.\-_:[\]]*$/

export interface ResolverDeps {
  readonly store: TableStore
  readonly balancer: Balancer
  readonly health: PassiveHealth | null
  /** proxy.trustedProxies; none when absent. */
  readonly trustedProxies?: TrustedProxies
  /** proxy.auth schemes; routes with auth= refuse every request when absent. */
  readonly auth?: BasicAuth | null
  /** routing.stickyKeyFile's keys; without them sticky splits apply per request. */
  readonly sticky?: StickySigner | null
}

const NO_TRUSTED_PROXIES: TrustedProxies = { list: null }
const clients = new WeakMap<RequestHead, ForwardedClient>()

/** The client address the resolver found for a request (the peer if it has not seen it). */
export function requestClient(head: RequestHead): string {
  return clients.get(head)?.client ?? head.client.address
}

export function createResolver(deps: ResolverDeps): (head: RequestHead) => Resolution {
  const { store, balancer, health } = deps
  const trusted = deps.trustedProxies ?? NO_TRUSTED_PROXIES
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

  return (head) => {
    const table = store.current
    const target = splitRequestTarget(head.url)
    if (head.hostCount === 0 ? head.httpMinor >= 1 && target.host === null : head.hostCount > 1) {
      return refuse('host', 'a request needs exactly one Host header')
    }
    const host = target.host ?? head.host
    if (!VALID_HOST.test(host)) return refuse('host', 'invalid Host header')
    const path = normalizePath(target.path)
    if (path === null) return refuse('path', 'malformed request path')
    if (table.generation === 0) {
      return reply(
        null,
        'SWY_ERR_NO_HEALTHY_INSTANCE',
        'no routing table yet: Switchyard is still reading Consul',
      )
    }
    const client =
      trusted.list === null
        ? { client: head.client.address, chain: head.client.address }
        : forwardedClient(head.client.address, head.forwardedFor ?? undefined, trusted)
    if (trusted.list !== null) clients.set(head, client)
    // A port in a route's host is the port of the listener the request came in on.
    const route = lookupRoute(table, host, path, head.client.localPort)
    if (route === null) {
      const answer = reply(null, 'SWY_ERR_NO_ROUTE', `no route for ${host}${path}`)
      return table.noRouteHtml === null ? answer : { ...answer, html: table.noRouteHtml }
    }
    if (route.access.length > 0) {
      const ip = client.client
      if (!allowed(route, ip))
        return reply(route, 'SWY_ERR_ACCESS_DENIED', `${ip} may not use route ${route.id}`)
    }
    if (route.auth.length > 0) {
      const outcome = deps.auth?.check(route.auth, head.authorization || undefined) ?? {
        ok: false,
        status: 503,
        message: `auth=${route.auth.join(', ')} names no proxy.auth scheme`,
      }
      if (!outcome.ok) {
        if (outcome.status === 503) return reply(route, 'SWY_ERR_AUTH_SCHEME', outcome.message)
        const answer = reply(route, 'SWY_ERR_AUTH_REQUIRED', `${outcome.message} for route ${route.id}`)
        return { ...answer, headers: ['www-authenticate', outcome.challenge] }
      }
    }
    const usable = health?.anyEjected ? health.usable : undefined
    // Match rules and sticky versions (compiled at build; null for most routes).
    const variant =
      route.variants === null
        ? null
        : chooseVariant(route, route.variants, head, deps.sticky ?? null, (p) => balancer.pick(p, usable))
    // When every instance is ejected, Consul still calls them healthy: trying
    // one is better than refusing them all.
    const chosen = variant?.backend ?? balancer.pick(route, usable) ?? (usable ? balancer.pick(route) : null)
    if (chosen === null) {
      const services = route.services.join(', ')
      return reply(
        route,
        'SWY_ERR_NO_HEALTHY_INSTANCE',
        `no healthy instance for route ${route.id} (service ${services})`,
      )
    }
    if (chosen.redirect !== null) {
      const request = { host, path, query: target.query }
      const location = redirectLocation(chosen.redirect.url, request, chosen.strip, chosen.prepend)
      return { kind: 'redirect', route, backend: chosen, location }
    }
    return {
      kind: 'forward',
      route,
      backend: chosen,
      host,
      path,
      query: target.query,
      client,
      pool: variant?.pool ?? route,
      setCookie: variant?.setCookie ?? null,
    }
  }
}

function reply(route: Route | null, code: HttpErrorCode, message: string): Resolution {
  return { kind: 'reply', route, status: httpStatus(code), code, message, reject: null }
}

function refuse(reason: RejectReason, message: string): Resolution {
  const code = 'SWY_ERR_BAD_REQUEST'
  return { kind: 'reply', route: null, status: httpStatus(code), code, message, reject: reason }
}

function toBlockList(cidrs: AccessRules['allow']): BlockList | null {
  if (cidrs.length === 0) return null
  const list = new BlockList()
  for (const c of cidrs) list.addSubnet(c.address, c.prefix, c.family === 4 ? 'ipv4' : 'ipv6')
  return list
}
