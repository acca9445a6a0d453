import { describe, expect, it } from 'vitest'
import { compileTrustedProxies, forwardedClient } from '../../src/proxy/client-address.js'
import { parseCidr } from '../../src/routing/tags.js'

const trusted = (...cidrs: string[]) =>
  compileTrustedProxies(cidrs.map((c) => parseCidr(c) as NonNullable<ReturnType<typeof parseCidr>>))
const NONE = trusted()
const LB = trusted('10.0.0.0/8', 'fd00::/8')

describe('forwardedClient', () => {
  it('without trusted proxies, the peer is the client and a forged X-Forwarded-For is not passed on', () => {
    expect(forwardedClient('203.0.113.9', '1.2.3.4', NONE)).toEqual({
      client: '203.0.113.9',
      chain: '203.0.113.9',
    })
    expect(forwardedClient('::ffff:203.0.113.9', undefined, NONE).client).toBe('203.0.113.9')
  })

  it('a peer outside the trusted ranges is the client whatever it sends', () => {
    expect(forwardedClient('203.0.113.9', '10.1.1.1', LB)).toEqual({
      client: '203.0.113.9',
      chain: '203.0.113.9',
    })
  })

  it('behind a trusted load balancer, the right-most untrusted entry is the client', () => {
    expect(forwardedClient('10.0.0.3', '198.51.100.7', LB)).toEqual({
      client: '198.51.100.7',
      chain: '198.51.100.7, 10.0.0.3',
    })
    // The client forged an entry; the load balancer appended the real address.
    expect(forwardedClient('10.0.0.3', '1.2.3.4, 198.51.100.7, 10.0.0.2', LB)).toEqual({
      client: '198.51.100.7',
      chain: '198.51.100.7, 10.0.0.2, 10.0.0.3',
    })
    // Several fields are one list.
    expect(forwardedClient('10.0.0.3', ['1.2.3.4', '198.51.100.7'], LB).client).toBe('198.51.100.7')
  })

  it('reads entries with ports and IPv6 brackets, and stops at one that is not an address', () => {
    expect(forwardedClient('10.0.0.3', '198.51.100.7:4711', LB).client).toBe('198.51.100.7')
    expect(forwardedClient('fd00::1', '[2001:db8::5]:80', LB).client).toBe('2001:db8::5')
    expect(forwardedClient('10.0.0.3', 'unknown, 10.0.0.2', LB)).toEqual({
      client: '10.0.0.2',
      chain: '10.0.0.2, 10.0.0.3',
    })
  })

  it('when every hop is trusted, the left-most is the client', () => {
    expect(forwardedClient('10.0.0.3', '10.9.9.9, 10.0.0.2', LB).client).toBe('10.9.9.9')
  })
})
