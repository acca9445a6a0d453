import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { normalizePath, splitRequestTarget } from '../../src/routing/path.js'

describe('normalizePath', () => {
  it.each([
    ['/web', '/web'],
    ['/web/', '/web/'],
    ['/', '/'],
    ['//web//x', '/web/x'],
    ['/a/./b', '/a/b'],
    ['/a/b/../c', '/a/c'],
    ['/a/..', '/'],
    ['/../../etc/passwd', '/etc/passwd'],
    ['/public/%2e%2e/admin', '/admin'],
    ['/public/%2E%2e/admin', '/admin'],
    ['/a/%7euser', '/a/~user'],
    ['/a%2fb', '/a%2Fb'],
    ['/a%2Fb/../c', '/c'],
    ['/caf%C3%A9', '/caf%C3%A9'],
    ['/a/b/.', '/a/b/'],
  ])('%s -> %s', (input, output) => {
    expect(normalizePath(input)).toBe(output)
  })

  it.each(['web', '/a%zz', '/a%2', '/a%00b', '/a\\b', '/a%5cb', '/a%5C..%5Cb'])('rejects %s', (input) => {
    expect(normalizePath(input)).toBeNull()
  })

  it('is idempotent and never leaves dot segments or empty segments', () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom('a', 'b', '.', '..', '', '%2e', '%2E%2e', '%2f', '%41', '~'), {
          maxLength: 8,
        }),
        (parts) => {
          const once = normalizePath(`/${parts.join('/')}`)
          expect(once).not.toBeNull()
          expect(normalizePath(once as string)).toBe(once)
          expect((once as string).split('/').slice(1, -1)).not.toContain('')
          expect((once as string).split('/')).not.toContain('..')
          expect((once as string).split('/')).not.toContain('.')
        },
      ),
      { numRuns: 2000 },
    )
  })
})

describe('splitRequestTarget', () => {
  it('splits origin-form and absolute-form targets', () => {
    expect(splitRequestTarget('/a/b?x=1')).toEqual({ host: null, path: '/a/b', query: '?x=1' })
    expect(splitRequestTarget('http://api.local:8080/v1?q')).toEqual({
      host: 'api.local:8080',
      path: '/v1',
      query: '?q',
    })
    expect(splitRequestTarget('http://api.local')).toEqual({ host: 'api.local', path: '/', query: '' })
  })
})
