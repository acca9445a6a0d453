import { describe, expect, it } from 'vitest'
import {
  parseHealthService,
  parseKvList,
  parseServiceList,
  routedServices,
} from '../../src/consul/normalize.js'
import { fixture } from './helpers.js'

describe('normalising recorded Consul JSON', () => {
  it('lists the services that carry a route tag', () => {
    const list = parseServiceList(fixture('catalog-services.json'))
    expect(routedServices(list, 'urlprefix-').sort()).toEqual(['api', 'bad', 'legacy', 'web', 'wild'])
  })

  it('keeps node and service checks with each instance', () => {
    const web = parseHealthService(fixture('health-web.json'))
    const maint = web.find((i) => i.id === 'web-maint')
    expect(maint?.checks.map((c) => c.id).sort()).toEqual([
      '_service_maintenance:web-maint',
      'serfHealth',
      'ttl-web-maint',
    ])
    expect(maint?.checks.find((c) => c.id === 'serfHealth')?.serviceId).toBe('')
    expect(web.find((i) => i.id === 'web-blue-1')).toMatchObject({
      port: 8001,
      address: '127.0.0.1',
      meta: { version: '1.5.0' },
    })
  })

  it('decodes KV values', () => {
    expect(parseKvList(fixture('kv-targets.json')).find((e) => e.key.endsWith('/web'))?.value).toBe(
      '{"version":"1.6.0"}',
    )
  })

  it.each([
    ['{}', parseHealthService, 'expected an array'],
    ['[{"Node": {}}]', parseHealthService, 'lacks Node or Service'],
    ['[]', parseServiceList, 'expected an object'],
    ['{', parseKvList, 'JSON'],
  ])('throws on malformed answers: %s', (body, parse, words) => {
    expect(() => parse(body)).toThrow(words)
  })
})
