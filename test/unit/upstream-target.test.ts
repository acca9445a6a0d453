// Which name an HTTPS instance's certificate is checked against: the name
// tlsservername= gives, else the name host= sends, else the instance's own
// address (as Fabio does) — never the Host the client sent, which names the
// proxy's site.

import { describe, expect, it } from 'vitest'
import { upstreamTarget } from '../../src/proxy/http1/upstream.js'
import { instance, tableOf } from './helpers.js'

function backendFor(tag: string) {
  const table = tableOf([instance('api', [`urlprefix-/api ${tag}`], { address: '10.0.0.7', port: 8443 })])
  const route = table.routes[0]
  if (route === undefined) throw new Error(`no route for ${tag}: ${JSON.stringify(table.problems)}`)
  return route.backends[0] ?? route.idle[0]
}

describe('upstreamTarget', () => {
  it('checks an HTTPS instance against its address by default, not the client Host', () => {
    const t = upstreamTarget(backendFor('proto=https')!)
    expect(t).toMatchObject({ address: '10.0.0.7', port: 8443, tls: true, verify: true, serverName: '' })
  })

  it('checks against the host= name, without its port', () => {
    expect(upstreamTarget(backendFor('proto=https host=api.internal:8443')!).serverName).toBe('api.internal')
  })

  it('checks against tlsservername= first, and not at all with tlsskipverify=true', () => {
    const named = upstreamTarget(backendFor('proto=https host=api.internal tlsservername=cert.internal')!)
    expect(named.serverName).toBe('cert.internal')
    expect(upstreamTarget(backendFor('proto=https tlsskipverify=true')!).verify).toBe(false)
  })

  it('host=dst sends the address, so the address is what is checked', () => {
    expect(upstreamTarget(backendFor('proto=https host=dst')!).serverName).toBe('')
  })

  it('speaks TLS for grpcs and plain HTTP/2 for grpc', () => {
    expect(upstreamTarget(backendFor('proto=grpcs')!).tls).toBe(true)
    expect(upstreamTarget(backendFor('proto=grpc')!).tls).toBe(false)
  })
})
