// Header rewriting between client and upstream (RFC 9110 §7.6.1, RFC 7239).
// Works on Node's flat rawHeaders array so the request path never builds an
// intermediate object.

import type { IncomingHttpHeaders } from 'node:http'

/** Hop-by-hop headers, plus ones Switchyard sets itself or undici must not get. */
const DROP_REQUEST = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
  // Node answered `Expect: 100-continue` already; the upstream gets the body.
  'expect',
  'host',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-forwarded-port',
  'x-forwarded-prefix',
])

const DROP_RESPONSE = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
])

export interface ForwardedFacts {
  readonly clientIp: string
  readonly proto: 'http' | 'https'
  /** Host header the client sent ('' if none). */
  readonly host: string
  readonly port: number
  /** Prefix removed by `strip=`, '' if none. */
  readonly prefix: string
  /** Host header for the upstream. */
  readonly upstreamHost: string
  /**
   * X-Forwarded-For to send instead of the client's field plus clientIp: the
   * chain from the client Switchyard believes in (see client-address.ts).
   */
  readonly forwardedFor?: string
}

/**
 * Headers for the upstream request: the client's minus hop-by-hop ones (and
 * any the client's Connection header names), with X-Forwarded-* and Forwarded.
 * X-Forwarded-For and Forwarded are appended to; the others are set, so a
 * client cannot forge the host or protocol an upstream believes it used.
 */
export function upstreamRequestHeaders(raw: readonly string[], facts: ForwardedFacts): string[] {
  let connectionNamed: Set<string> | null = null
  for (let i = 0; i < raw.length; i += 2) {
    if ((raw[i] as string).length === 10 && (raw[i] as string).toLowerCase() === 'connection') {
      connectionNamed ??= new Set()
      for (const token of (raw[i + 1] as string).split(',')) connectionNamed.add(token.trim().toLowerCase())
    }
  }

  const out: string[] = []
  let xff = ''
  let forwarded = ''
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string
    const lower = name.toLowerCase()
    if (DROP_REQUEST.has(lower) || connectionNamed?.has(lower)) continue
    const value = raw[i + 1] as string
    if (lower === 'x-forwarded-for') xff = xff ? `${xff}, ${value}` : value
    else if (lower === 'forwarded') forwarded = forwarded ? `${forwarded}, ${value}` : value
    else out.push(name, value)
  }

  const forNode = facts.clientIp.includes(':') ? `"[${facts.clientIp}]"` : facts.clientIp
  const hostParam = facts.host ? `;host="${facts.host.replace(/["\\]/g, '')}"` : ''
  const element = `for=${forNode}${hostParam};proto=${facts.proto}`
  out.push(
    'host',
    facts.upstreamHost,
    'x-forwarded-for',
    facts.forwardedFor ?? (xff ? `${xff}, ${facts.clientIp}` : facts.clientIp),
    'x-forwarded-proto',
    facts.proto,
    'x-forwarded-port',
    String(facts.port),
    'forwarded',
    forwarded ? `${forwarded}, ${element}` : element,
  )
  if (facts.host) out.push('x-forwarded-host', facts.host)
  if (facts.prefix) out.push('x-forwarded-prefix', facts.prefix)
  return out
}

/** The upstream's response headers minus hop-by-hop ones. */
export function clientResponseHeaders(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  let named: string[] | null = null
  const connection = headers.connection
  if (
    typeof connection === 'string' &&
    connection.toLowerCase() !== 'close' &&
    connection.toLowerCase() !== 'keep-alive'
  ) {
    named = connection.split(',').map((t) => t.trim().toLowerCase())
  }
  const out: IncomingHttpHeaders = {}
  for (const name in headers) {
    if (DROP_RESPONSE.has(name) || named?.includes(name)) continue
    out[name] = headers[name]
  }
  return out
}

/** An IPv4 client on a dual-stack socket shows as `::ffff:1.2.3.4`; report `1.2.3.4`. */
export function clientAddress(remote: string | undefined): string {
  if (remote === undefined) return ''
  return remote.startsWith('::ffff:') && remote.includes('.') ? remote.slice(7) : remote
}
