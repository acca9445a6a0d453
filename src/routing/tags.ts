// Fabio's `urlprefix-` tag grammar, so services tagged for Fabio route the same
// way here without retagging:
//
//   urlprefix-[host]/path [option=value ...]
//
// A tag that cannot be routed safely is an error (the instance gets no traffic
// on that route). An option Switchyard does not know is a warning: the route is
// kept, the option ignored, and the problem is reported.

import { compileGlob } from './glob.js'
import { normalizePath } from './path.js'
import type { AccessRules, Cidr, HostHeaderMode, PathMatcher, Redirect, RouteSpec } from './types.js'

export type TagParse =
  | { readonly ok: true; readonly spec: RouteSpec; readonly warnings: readonly string[] }
  | { readonly ok: false; readonly error: string }

const HOST_LABEL = '[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?'
const HOST_NAME = new RegExp(`^${HOST_LABEL}(?:\\.${HOST_LABEL})*$`)
const HOST_PATTERN = new RegExp(`^(?:\\*\\.)?${HOST_LABEL}(?:\\.${HOST_LABEL})*(?::\\d{1,5})?$`)
const ANY_HOST = /^\*(?::\d{1,5})?$/
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308])
const AUTH_NAME = /^[A-Za-z0-9_.-]+$/
/** Fabio options that make sense only in Fabio (TCP, self-registration). */
const FABIO_ONLY_OPTIONS = new Set(['register', 'pxyproto', 'sni', 'profile'])

/**
 * Parses one tag; returns null when the tag does not start with the prefix.
 * Surrounding whitespace is ignored, as Fabio ignores it. Under the glob
 * matcher the path is a glob pattern.
 */
export function parseRouteTag(
  tag: string,
  prefix: string,
  matcher: PathMatcher = 'segment',
): TagParse | null {
  const text = tag.trim()
  if (!text.startsWith(prefix)) return null
  const body = text.slice(prefix.length).trim()
  if (body === '') return { ok: false, error: `tag "${tag}" names no route` }
  const [route = '', ...options] = body.split(/\s+/)

  if (route.startsWith(':')) return { ok: false, error: `TCP route "${route}" is not supported (HTTP only)` }
  // Fabio reads a route without a slash as the whole host: `example.com` is `example.com/`.
  const slash = route.indexOf('/')
  const host = normalizeRouteHost(slash === -1 ? route : route.slice(0, slash))
  if (host === null) return { ok: false, error: `route "${route}" has an invalid host` }

  let path = slash === -1 ? '/' : route.slice(slash)
  let rawPrefix = false
  if (matcher === 'glob') {
    if (/[\s#]/.test(path) || compileGlob(path) === null) {
      return { ok: false, error: `route "${route}" is not a valid glob pattern` }
    }
  } else {
    if (path.endsWith('*')) {
      rawPrefix = true
      path = path.slice(0, -1)
    }
    if (/[*?#\s]/.test(path)) return { ok: false, error: `route "${route}" has an invalid path` }
  }
  const normalized = normalizePath(path)
  if (normalized !== path) {
    return {
      ok: false,
      error: `route "${route}" path is not canonical (write ${normalized ?? 'a plain path'})`,
    }
  }

  let strip = ''
  let prepend = ''
  let hostHeader: HostHeaderMode = { kind: 'client' }
  let proto: RouteSpec['proto'] = 'http'
  let tlsSkipVerify = false
  let tlsServerName: string | null = null
  let redirect: Redirect | null = null
  let weight: number | null = null
  let allow: Cidr[] | null = null
  let deny: Cidr[] | null = null
  let auth: string | null = null
  const warnings: string[] = []

  for (const option of options) {
    const eq = option.indexOf('=')
    const key = eq === -1 ? option : option.slice(0, eq)
    const value = eq === -1 ? '' : option.slice(eq + 1)
    const invalid = (why: string): TagParse => ({ ok: false, error: `option ${option}: ${why}` })
    switch (key) {
      case 'strip':
      case 'prepend':
        if (!value.startsWith('/') || /\s/.test(value)) return invalid('must be a path starting with /')
        if (key === 'strip') strip = value
        else prepend = value
        break
      case 'host':
        if (value === 'dst') hostHeader = { kind: 'dst' }
        else if (value !== '' && HOST_PATTERN.test(value.toLowerCase()))
          hostHeader = { kind: 'name', name: value }
        else return invalid('must be dst or a host name')
        break
      case 'proto':
        if (value === 'http' || value === 'https' || value === 'grpc' || value === 'grpcs') proto = value
        else return invalid('must be http, https, grpc or grpcs')
        break
      case 'tlsskipverify':
        if (value !== 'true' && value !== 'false') return invalid('must be true or false')
        tlsSkipVerify = value === 'true'
        break
      case 'tlsservername':
        if (!HOST_NAME.test(value.toLowerCase())) return invalid('must be a host name')
        tlsServerName = value.toLowerCase()
        break
      case 'redirect': {
        const parsed = parseRedirect(value)
        if (typeof parsed === 'string') return invalid(parsed)
        redirect = parsed
        break
      }
      case 'weight': {
        // Fabio's rule: 0 or less is no fixed weight; fixed weights adding up
        // to more than 1 are scaled down (see schedule.ts groupShares).
        const w = Number(value)
        if (value === '' || !Number.isFinite(w)) return invalid('must be a number')
        weight = w > 0 ? w : null
        break
      }
      case 'allow':
      case 'deny': {
        const cidrs = parseCidrList(value)
        if (typeof cidrs === 'string') return invalid(cidrs)
        if (key === 'allow') allow = cidrs
        else deny = cidrs
        break
      }
      case 'auth':
        if (!AUTH_NAME.test(value)) return invalid('must name a proxy.auth scheme')
        auth = value
        break
      default:
        warnings.push(
          FABIO_ONLY_OPTIONS.has(key)
            ? `option ${option} is a Fabio feature Switchyard does not implement; ignored`
            : `unknown option ${option}; ignored`,
        )
    }
  }

  const access: AccessRules | null = allow || deny ? { allow: allow ?? [], deny: deny ?? [] } : null
  return {
    ok: true,
    warnings,
    spec: {
      host,
      path,
      rawPrefix,
      strip,
      prepend,
      hostHeader,
      proto,
      tlsSkipVerify,
      tlsServerName,
      redirect,
      weight,
      access,
      auth,
      optionsText: options.join(' '),
    },
  }
}

/**
 * Lower-cases and drops a trailing dot; keeps a port (`example.com:80` is
 * another route than `example.com`). Returns null when not a host name, a
 * `*.` glob or `*`, or when the port is not from 1 to 65535.
 */
export function normalizeRouteHost(host: string): string | null {
  if (host === '') return ''
  let h = host.toLowerCase()
  const colon = h.lastIndexOf(':')
  let port = ''
  if (colon !== -1) {
    port = h.slice(colon)
    h = h.slice(0, colon)
    const n = Number(port.slice(1))
    if (!/^:\d{1,5}$/.test(port) || n < 1 || n > 65_535) return null
  }
  if (h.endsWith('.')) h = h.slice(0, -1)
  h += port
  return HOST_PATTERN.test(h) || ANY_HOST.test(h) ? h : null
}

function parseRedirect(value: string): Redirect | string {
  const comma = value.indexOf(',')
  const status = Number(value.slice(0, comma))
  const url = value.slice(comma + 1)
  if (comma === -1 || !REDIRECT_STATUSES.has(status)) {
    return 'must be <status>,<url> with status 301, 302, 303, 307 or 308'
  }
  if (!/^https?:\/\/[^/\s]+/.test(url) && !url.startsWith('/')) {
    return 'redirect URL must be absolute (http:// or https://) or start with /'
  }
  return { status, url }
}

function parseCidrList(value: string): Cidr[] | string {
  if (value === '') return 'needs at least one address or CIDR'
  const cidrs: Cidr[] = []
  for (const item of value.split(',')) {
    // Fabio writes `ip:10.0.0.0/8`; the bare form is accepted too.
    const cidr = parseCidr(item.startsWith('ip:') ? item.slice(3) : item)
    if (cidr === null) return `"${item}" is not an IPv4/IPv6 address or CIDR`
    cidrs.push(cidr)
  }
  return cidrs
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/

export function parseCidr(text: string): Cidr | null {
  const slash = text.indexOf('/')
  const address = slash === -1 ? text : text.slice(0, slash)
  const prefixText = slash === -1 ? null : text.slice(slash + 1)
  const family = isIPv4(address) ? 4 : isIPv6(address) ? 6 : null
  if (family === null) return null
  const max = family === 4 ? 32 : 128
  if (prefixText !== null && !/^\d{1,3}$/.test(prefixText)) return null
  const prefix = prefixText === null ? max : Number(prefixText)
  if (prefix > max) return null
  return { family, address: address.toLowerCase(), prefix }
}

/** An IPv4 or IPv6 address (no zone index) or a host name: something a connection can be made to. */
export function isConnectableAddress(address: string): boolean {
  if (isIPv4(address) || isIPv6(address)) return true
  const host = address.toLowerCase()
  return !host.startsWith('*') && HOST_PATTERN.test(host) && !host.includes(':')
}

function isIPv4(text: string): boolean {
  const m = IPV4.exec(text)
  return m?.slice(1).every((octet) => Number(octet) <= 255 && !/^0\d/.test(octet)) === true
}

function isIPv6(text: string): boolean {
  if (!/^[0-9a-fA-F:.]+$/.test(text)) return false
  const halves = text.split('::')
  if (halves.length > 2) return false
  let groups = 0
  for (const [h, half] of halves.entries()) {
    if (half === '') continue
    const parts = half.split(':')
    for (const [i, part] of parts.entries()) {
      const isLast = h === halves.length - 1 && i === parts.length - 1
      if (isLast && part.includes('.')) {
        if (!isIPv4(part)) return false
        groups += 2
      } else if (/^[0-9a-fA-F]{1,4}$/.test(part)) {
        groups += 1
      } else {
        return false
      }
    }
  }
  return halves.length === 2 ? groups < 8 : groups === 8
}
