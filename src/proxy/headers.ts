// Header rewriting between client and upstream (RFC 9110 §7.6.1, RFC 7239),
// on the flat name/value arrays the parser produces. Framing headers
// (Content-Length, Transfer-Encoding) never pass through as text: each side's
// framing is written by the side that frames the bytes, so a message can
// never carry two lengths.

/** Hop-by-hop headers, plus ones Switchyard sets itself. */
const DROP_REQUEST = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'content-length',
  'upgrade',
  'http2-settings',
  // Switchyard answers `Expect: 100-continue` itself when it starts reading the body.
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
  'content-length',
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

/** Lower-case names listed in the message's Connection fields, or null. */
function connectionNamed(raw: readonly string[]): Set<string> | null {
  let named: Set<string> | null = null
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string
    if (name.length === 10 && name.toLowerCase() === 'connection') {
      for (const token of (raw[i + 1] as string).split(',')) {
        const t = token.trim().toLowerCase()
        if (t === 'close' || t === 'keep-alive' || t === '') continue
        named ??= new Set()
        named.add(t)
      }
    }
  }
  return named
}

/**
 * The request fields for the upstream, flat pairs, Host first: the client's
 * fields minus hop-by-hop ones (and any its Connection field names), then
 * X-Forwarded-* and Forwarded (appended to for -For and Forwarded, set for the
 * others, so a client cannot forge the host or protocol an upstream believes
 * it used). `keepTe`: pass `TE: trailers` on (gRPC requires it over HTTP/2).
 */
export function forwardedFields(raw: readonly string[], facts: ForwardedFacts, keepTe = false): string[] {
  const named = connectionNamed(raw)
  const out = ['host', facts.upstreamHost]
  let xff = ''
  let forwarded = ''
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string
    const lower = name.toLowerCase()
    const value = raw[i + 1] as string
    if (DROP_REQUEST.has(lower) || named?.has(lower)) {
      if (keepTe && lower === 'te' && value.trim().toLowerCase() === 'trailers') out.push('te', 'trailers')
      continue
    }
    if (lower === 'x-forwarded-for') xff = xff ? `${xff}, ${value}` : value
    else if (lower === 'forwarded') forwarded = forwarded ? `${forwarded}, ${value}` : value
    else out.push(name, value)
  }
  const forNode = facts.clientIp.includes(':') ? `"[${facts.clientIp}]"` : facts.clientIp
  const hostParam = facts.host ? `;host="${facts.host.replace(/["\\]/g, '')}"` : ''
  const element = `for=${forNode}${hostParam};proto=${facts.proto}`
  out.push(
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

/**
 * The HTTP/1.1 request head for the upstream, as one string: request line,
 * the forwarded fields, then framing: `content-length` (≥ 0), chunked (-1),
 * or nothing for a request without a body (null).
 */
export function upstreamRequestHead(
  method: string,
  target: string,
  raw: readonly string[],
  facts: ForwardedFacts,
  bodyLength: number | null,
  upgrade: string | null,
): string {
  let head = `${method} ${target} HTTP/1.1\r\n${fieldLines(forwardedFields(raw, facts))}`
  if (upgrade !== null) head += `connection: upgrade\r\nupgrade: ${upgrade}\r\n`
  if (bodyLength === -1) head += 'transfer-encoding: chunked\r\n'
  else if (bodyLength !== null) head += `content-length: ${bodyLength}\r\n`
  return `${head}\r\n`
}

/** A response's fields for the client, and how the upstream framed its body. */
export interface ClientResponseFields {
  /** Fields minus hop-by-hop and framing ones. */
  readonly headers: string[]
  /** Content-Length, or -1 when absent. */
  readonly length: number
  readonly chunked: boolean
}

/** The upstream's response fields minus hop-by-hop and framing ones. */
export function clientResponseFields(raw: readonly string[]): ClientResponseFields {
  const named = connectionNamed(raw)
  const headers: string[] = []
  let length = -1
  let chunked = false
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string
    const lower = name.toLowerCase()
    if (DROP_RESPONSE.has(lower) || named?.has(lower)) {
      // The parser already refused a message with two lengths or with both.
      if (lower === 'content-length') length = Number(raw[i + 1])
      else if (lower === 'transfer-encoding') chunked = true
      continue
    }
    headers.push(name, raw[i + 1] as string)
  }
  return { headers, length, chunked }
}

/** Trailer fields minus those that must not appear in a trailer section of ours. */
export function relayedTrailers(raw: readonly string[]): string[] {
  const out: string[] = []
  for (let i = 0; i < raw.length; i += 2) {
    const lower = (raw[i] as string).toLowerCase()
    if (DROP_RESPONSE.has(lower)) continue
    out.push(raw[i] as string, raw[i + 1] as string)
  }
  return out
}

/** `name: value\r\n` lines of a flat field list. */
export function fieldLines(fields: readonly string[]): string {
  let out = ''
  for (let i = 0; i < fields.length; i += 2) out += `${fields[i]}: ${fields[i + 1]}\r\n`
  return out
}

/** An IPv4 client on a dual-stack socket shows as `::ffff:1.2.3.4`; report `1.2.3.4`. */
export function clientAddress(remote: string | undefined): string {
  if (remote === undefined) return ''
  return remote.startsWith('::ffff:') && remote.includes('.') ? remote.slice(7) : remote
}
