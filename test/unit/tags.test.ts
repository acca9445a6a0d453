import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { normalizePath } from '../../src/routing/path.js'
import { normalizeRouteHost, parseCidr, parseRouteTag } from '../../src/routing/tags.js'

const P = 'urlprefix-'

function spec(tag: string) {
  const r = parseRouteTag(tag, P)
  if (r === null || !r.ok) throw new Error(`expected ${tag} to parse: ${JSON.stringify(r)}`)
  return r
}

function error(tag: string): string {
  const r = parseRouteTag(tag, P)
  if (r === null || r.ok) throw new Error(`expected ${tag} to be rejected`)
  return r.error
}

describe('parseRouteTag', () => {
  it('ignores tags without the prefix', () => {
    expect(parseRouteTag('version:1.2.3', P)).toBeNull()
    expect(parseRouteTag('/web', 'urlprefix-')).toBeNull()
  })

  it('parses path routes, host routes and host globs', () => {
    expect(spec('urlprefix-/web').spec).toMatchObject({ host: '', path: '/web', rawPrefix: false })
    expect(spec('urlprefix-API.Example.com/v1').spec).toMatchObject({ host: 'api.example.com', path: '/v1' })
    // A port keeps routes apart: example.com:80/ and example.com/ are two routes (Fabio issue 656).
    expect(spec('urlprefix-example.com:80/').spec.host).toBe('example.com:80')
    expect(spec('urlprefix-example.com:8080/').spec.host).toBe('example.com:8080')
    expect(spec('urlprefix-*.example.com/').spec).toMatchObject({ host: '*.example.com', path: '/' })
    expect(spec('urlprefix-*.example.com:8080/').spec.host).toBe('*.example.com:8080')
    expect(spec('urlprefix-*/').spec.host).toBe('*')
    expect(spec('urlprefix-*:80/').spec.host).toBe('*:80')
    // Fabio reads a route without a path as the whole host.
    expect(spec('urlprefix-web').spec).toMatchObject({ host: 'web', path: '/' })
    expect(spec('urlprefix-/static*').spec).toMatchObject({ path: '/static', rawPrefix: true })
  })

  it('parses every Fabio option Switchyard implements', () => {
    const s = spec(
      'urlprefix-/a strip=/a prepend=/b host=dst proto=https tlsskipverify=true weight=0.25 allow=ip:10.0.0.0/8,::1',
    ).spec
    expect(s).toMatchObject({
      strip: '/a',
      prepend: '/b',
      hostHeader: { kind: 'dst' },
      proto: 'https',
      tlsSkipVerify: true,
      weight: 0.25,
      access: {
        allow: [
          { family: 4, address: '10.0.0.0', prefix: 8 },
          { family: 6, address: '::1', prefix: 128 },
        ],
        deny: [],
      },
    })
    expect(spec('urlprefix-/a host=backend.local').spec.hostHeader).toEqual({
      kind: 'name',
      name: 'backend.local',
    })
    expect(spec('urlprefix-/old redirect=301,https://new.example.com$path').spec.redirect).toEqual({
      status: 301,
      url: 'https://new.example.com$path',
    })
    expect(spec('urlprefix-/a deny=192.168.0.0/16').spec.access?.deny[0]).toEqual({
      family: 4,
      address: '192.168.0.0',
      prefix: 16,
    })
  })

  it('keeps the route but reports unknown options', () => {
    const r = spec('urlprefix-/web register=public colour=blue')
    expect(r.warnings).toEqual([
      'option register=public is a Fabio feature Switchyard does not implement; ignored',
      'unknown option colour=blue; ignored',
    ])
  })

  it.each([
    ['urlprefix-', 'names no route'],
    ['urlprefix-example.com:0/', 'invalid host'],
    ['urlprefix-example.com:65536/', 'invalid host'],
    ['urlprefix-:3306 proto=tcp', 'TCP route'],
    ['urlprefix-bad_host!/x', 'invalid host'],
    ['urlprefix-/a/../b', 'not canonical'],
    ['urlprefix-/a?b', 'invalid path'],
    ['urlprefix-/x strip=nope', 'strip=nope: must be a path'],
    ['urlprefix-/x proto=tcp', 'must be http, https, grpc or grpcs'],
    ['urlprefix-/x tlsskipverify=yes', 'true or false'],
    ['urlprefix-/x weight=abc', 'must be a number'],
    ['urlprefix-/x weight=', 'must be a number'],
    ['urlprefix-/x redirect=200,https://a', 'status 301'],
    ['urlprefix-/x redirect=301,ftp://a', 'must be absolute'],
    ['urlprefix-/x allow=10.0.0.0/33', 'not an IPv4/IPv6'],
    ['urlprefix-/x deny=', 'at least one'],
    ['urlprefix-/x host=', 'dst or a host name'],
  ])('rejects %s', (tag, words) => {
    expect(error(tag)).toContain(words)
  })

  it('whatever the tag, gives a canonical route that reads back the same, or a reason', () => {
    // Random text, and text built from the grammar's own pieces so that many
    // cases get past the first checks.
    const piece = fc.constantFrom(
      '/',
      'web',
      '..',
      '%2e',
      '%2F',
      '*',
      '*.',
      'example.com',
      ':80',
      ':8080',
      ' ',
      ' strip=/web',
      ' weight=0.5',
      ' weight=2',
      ' host=dst',
      ' allow=10.0.0.0/8',
      ' redirect=301,https://a/$path',
      ' proto=https',
      ' nope=1',
      '\\',
      '?',
    )
    const tagText = fc.oneof(
      fc.string({ maxLength: 80 }),
      fc.array(piece, { maxLength: 10 }).map((parts) => parts.join('')),
    )
    fc.assert(
      fc.property(tagText, (text) => {
        const r = parseRouteTag(P + text, P)
        if (r === null) throw new Error('a tag with the prefix is never ignored')
        if (!r.ok) {
          expect(r.error.length).toBeGreaterThan(0)
          return
        }
        const s = r.spec
        // The route is in the form lookup compares against: a canonical path, a normalised host.
        expect(normalizePath(s.path)).toBe(s.path)
        expect(normalizeRouteHost(s.host)).toBe(s.host)
        // Fabio's rule: any weight >= 0 (more than 1 is scaled when the route's weights are shared out).
        if (s.weight !== null) expect(Number.isFinite(s.weight) && s.weight >= 0).toBe(true)
        // Written back out, the route parses to the same spec.
        const again = spec(`${P}${s.host}${s.path}${s.rawPrefix ? '*' : ''} ${s.optionsText}`)
        expect(again.spec).toEqual(s)
      }),
      { numRuns: 3000 },
    )
  })

  it('reads back what a well-formed tag says', () => {
    const label = fc.stringMatching(/^[a-z0-9]{1,8}$/)
    fc.assert(
      fc.property(
        fc.option(fc.array(label, { minLength: 1, maxLength: 3 }).map((l) => l.join('.'))),
        fc.array(label, { maxLength: 4 }),
        fc.option(fc.double({ min: 0, max: 1, noNaN: true })),
        (host, segments, weight) => {
          const path = `/${segments.join('/')}`
          const tag = `${P}${host ?? ''}${path}${weight === null ? '' : ` weight=${weight}`}`
          const s = spec(tag).spec
          expect(s.host).toBe(host ?? '')
          expect(s.path).toBe(path)
          // Fabio: a weight of 0 is no fixed weight.
          expect(s.weight).toBe(weight === 0 ? null : weight)
        },
      ),
    )
  })
})

describe('parseCidr', () => {
  it.each([
    ['10.0.0.0/8', { family: 4, address: '10.0.0.0', prefix: 8 }],
    ['127.0.0.1', { family: 4, address: '127.0.0.1', prefix: 32 }],
    ['fe80::/10', { family: 6, address: 'fe80::', prefix: 10 }],
    ['::ffff:10.0.0.1', { family: 6, address: '::ffff:10.0.0.1', prefix: 128 }],
    ['2001:DB8:0:0:0:0:0:1/64', { family: 6, address: '2001:db8:0:0:0:0:0:1', prefix: 64 }],
  ])('parses %s', (text, expected) => {
    expect(parseCidr(text)).toEqual(expected)
  })

  it.each([
    '256.0.0.1',
    '10.0.0',
    '01.2.3.4',
    '1.2.3.4/33',
    '::1::2',
    '1:2:3:4:5:6:7:8:9',
    'fe80::/129',
    'x',
    '1.2.3.4/',
  ])('rejects %s', (text) => {
    expect(parseCidr(text)).toBeNull()
  })
})
