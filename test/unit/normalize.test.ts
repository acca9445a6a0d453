import { describe, expect, it } from 'vitest'
import {
  Interner,
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

  it('shares repeated values between instances and answers, and reads the same', () => {
    const body = fixture('health-web.json')
    const interner = new Interner()
    const first = parseHealthService(body, interner)
    const again = parseHealthService(body, interner)
    expect(first).toEqual(parseHealthService(body))
    expect(again).toEqual(first)
    for (const [i, instance] of first.entries()) {
      const other = again[i] as (typeof again)[number]
      expect(other).not.toBe(instance)
      expect(other.tags).toBe(instance.tags)
      expect(other.meta).toBe(instance.meta)
      expect(Object.isFrozen(instance.tags) && Object.isFrozen(instance.meta)).toBe(true)
    }
    // Instances with the same tags hold one array.
    const byTags = new Map(first.map((i) => [JSON.stringify(i.tags), i.tags]))
    for (const i of first) expect(i.tags).toBe(byTags.get(JSON.stringify(i.tags)))
  })

  it('keeps the interner bounded: an evicted value is copied again, with the same content', () => {
    const interner = new Interner(2)
    const tags = ['a', 'b', 'c', 'd'].map((t) => interner.tags([`urlprefix-/${t}`]))
    expect(interner.tags(['urlprefix-/d'])).toBe(tags[3])
    const again = interner.tags(['urlprefix-/a'])
    expect(again).toEqual(tags[0])
    expect(interner.tags(['urlprefix-/a'])).toBe(again)
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
