import { describe, expect, it } from 'vitest'
import { redirectLocation } from '../../src/routing/redirect.js'

// Cases from Fabio's documented redirect behaviour (route/target_test.go):
// each request is sent with Host foo.com.
function location(url: string, request: string, strip = '', prepend = ''): string {
  const q = request.indexOf('?')
  const path = q === -1 ? request : request.slice(0, q)
  const query = q === -1 ? '' : request.slice(q)
  return redirectLocation(url, { host: 'foo.com', path, query }, strip, prepend)
}

describe('redirectLocation', () => {
  it('uses a URL without $path as written, without the request query', () => {
    for (const req of ['/', '/abc', '/a/b/c', '/?aaa=1']) {
      expect(location('http://bar.com/', req)).toBe('http://bar.com/')
      expect(location('http://bar.com/a/b/c?foo=bar', req)).toBe('http://bar.com/a/b/c?foo=bar')
      expect(location('https://$host/', req)).toBe('https://foo.com/')
    }
  })

  it.each(['http://bar.com/$path', 'http://bar.com$path'])(
    '%s puts the request path in without a double slash',
    (url) => {
      expect(location(url, '/')).toBe('http://bar.com/')
      expect(location(url, '/abc')).toBe('http://bar.com/abc')
      expect(location(url, '/a/b/c')).toBe('http://bar.com/a/b/c')
      expect(location(url, '/?aaa=1')).toBe('http://bar.com/?aaa=1')
      expect(location(url, '/abc/?aaa=1')).toBe('http://bar.com/abc/?aaa=1')
    },
  )

  it.each(['https://$host/$path', 'https://$host$path'])('%s redirects to the same host and path', (url) => {
    expect(location(url, '/')).toBe('https://foo.com/')
    expect(location(url, '/a/b/c')).toBe('https://foo.com/a/b/c')
    expect(location(url, '/abc/?aaa=1')).toBe('https://foo.com/abc/?aaa=1')
  })

  it.each(['http://bar.com/bbb/$path', 'http://bar.com/bbb$path'])(
    '%s keeps a directory in front of the path',
    (url) => {
      expect(location(url, '/')).toBe('http://bar.com/bbb/')
      expect(location(url, '/abc')).toBe('http://bar.com/bbb/abc')
      expect(location(url, '/abc/?aaa=1')).toBe('http://bar.com/bbb/abc/?aaa=1')
      expect(location(url.replace('http://bar.com', 'https://$host'), '/a/b/c')).toBe(
        'https://foo.com/bbb/a/b/c',
      )
    },
  )

  it('keeps encoded characters of the path', () => {
    expect(location('http://bar.com/$path', '/%20')).toBe('http://bar.com/%20')
    expect(location('http://bar.com/$path', '/a%2Fbc')).toBe('http://bar.com/a%2Fbc')
  })

  it('applies strip= and prepend= to $path', () => {
    expect(location('http://bar.com/$path', '/stripme/', '/stripme')).toBe('http://bar.com/')
    expect(location('http://bar.com/$path', '/stripme/a/b/c', '/stripme')).toBe('http://bar.com/a/b/c')
    expect(location('http://bar.com/$path', '/stripme/abc/?aaa=1', '/stripme')).toBe(
      'http://bar.com/abc/?aaa=1',
    )
    // Fabio issue 824: stripping the whole path leaves the directory alone.
    expect(location('https://bar.com/bbb$path', '/stripme', '/stripme')).toBe('https://bar.com/bbb')
    expect(location('https://bar.com/bbb$path', '/stripme/abc', '/stripme')).toBe('https://bar.com/bbb/abc')
    expect(location('http://bar.com/$path', '/abc', '', '/prefix')).toBe('http://bar.com/prefix/abc')
    expect(location('http://bar.com/$path', '/?aaa=1', '', '/prefix')).toBe('http://bar.com/prefix/?aaa=1')
    expect(location('http://bar.com/$path', '/stripme/abc', '/stripme', '/prefix')).toBe(
      'http://bar.com/prefix/abc',
    )
  })

  it('puts the Host with its port in for $host, and accepts a relative URL', () => {
    expect(
      redirectLocation('https://$host$path', { host: 'a.com:8080', path: '/x', query: '' }, '', ''),
    ).toBe('https://a.com:8080/x')
    expect(redirectLocation('/new$path', { host: 'a.com', path: '/old', query: '?q=1' }, '', '')).toBe(
      '/new/old?q=1',
    )
  })
})
