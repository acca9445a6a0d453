// Who the client is, when Switchyard sits behind proxies it trusts
// (`proxy.trustedProxies`). X-Forwarded-For is a list each proxy appends the
// address it received the request from to, and anything left of the first
// proxy that is ours is whatever the client chose to write. So the client is
// the right-most entry not in a trusted range, walking left from the socket
// peer while the addresses are trusted; with nothing trusted it is the peer.
// That one address is what allow/deny rules check, what the access log shows,
// and the first entry of the X-Forwarded-For sent upstream (the entries the
// client could forge are not passed on).

import { BlockList, isIP } from 'node:net'
import type { Cidr } from '../routing/types.js'

export interface TrustedProxies {
  /** null when nothing is trusted: the peer is always the client. */
  readonly list: BlockList | null
}

export function compileTrustedProxies(cidrs: readonly Cidr[]): TrustedProxies {
  if (cidrs.length === 0) return { list: null }
  const list = new BlockList()
  for (const c of cidrs) list.addSubnet(c.address, c.prefix, c.family === 4 ? 'ipv4' : 'ipv6')
  return { list }
}

export interface ForwardedClient {
  /** The client's address as Switchyard believes it. */
  readonly client: string
  /** X-Forwarded-For for the upstream: the client, then the trusted hops, then the peer. */
  readonly chain: string
}

/**
 * `peer` is the socket's remote address; `forwardedFor` the X-Forwarded-For
 * field value(s) as received (several fields count as one list, in order).
 */
export function forwardedClient(
  peer: string | undefined,
  forwardedFor: string | readonly string[] | undefined,
  trusted: TrustedProxies,
): ForwardedClient {
  const self = plainAddress(peer ?? '')
  if (trusted.list === null || forwardedFor === undefined || !isTrusted(trusted.list, self)) {
    return { client: self, chain: self }
  }
  const entries = (typeof forwardedFor === 'string' ? forwardedFor : forwardedFor.join(',')).split(',')
  const hops = [self]
  for (let i = entries.length - 1; i >= 0; i--) {
    const address = entryAddress((entries[i] as string).trim())
    // An entry that is not an address was written by the hop to its right,
    // which is trusted: that hop is as far as the chain can be followed.
    if (address === null) break
    hops.unshift(address)
    if (!isTrusted(trusted.list, address)) break
  }
  return { client: hops[0] as string, chain: hops.join(', ') }
}

function isTrusted(list: BlockList, address: string): boolean {
  const family = isIP(address)
  return family !== 0 && list.check(address, family === 4 ? 'ipv4' : 'ipv6')
}

/** An X-Forwarded-For entry as a plain address: ports and brackets dropped; null if not an IP. */
function entryAddress(entry: string): string | null {
  let text = entry
  if (text.startsWith('[')) text = text.slice(1, text.indexOf(']') === -1 ? text.length : text.indexOf(']'))
  else if (/^\d+\.\d+\.\d+\.\d+:\d+$/.test(text)) text = text.slice(0, text.lastIndexOf(':'))
  text = plainAddress(text)
  return isIP(text) === 0 ? null : text
}

/** An IPv4 client on a dual-stack socket shows as `::ffff:1.2.3.4`; report `1.2.3.4`. */
function plainAddress(address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address
}
