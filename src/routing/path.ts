// Request paths are normalised once, before lookup, and the normalised path is
// both matched and forwarded. Matching one path and forwarding another is how
// `/public/%2e%2e/admin` escapes a route; doing both on the same string closes
// that door whatever the upstream's own decoding does.

const HEX = /^[0-9A-Fa-f]{2}$/
const UNRESERVED = /^[A-Za-z0-9\-._~]$/
const NEEDS_WORK = /%|\/\.|\/\/|\\/

/**
 * Returns the canonical form of an absolute path (no query), or null when the
 * path is not acceptable: not starting with '/', a malformed or NUL percent
 * escape, or a backslash (raw or encoded), which some upstreams treat as '/'.
 *
 * Canonical: escapes of unreserved characters decoded, other escapes kept
 * (upper-case hex, so `%2f` stays a character inside a segment, never a
 * separator), `.` and `..` segments resolved, runs of '/' collapsed.
 */
export function normalizePath(path: string): string | null {
  if (path.charCodeAt(0) !== 47 /* / */) return null
  if (!NEEDS_WORK.test(path)) return path

  let decoded = path
  if (path.includes('%')) {
    decoded = ''
    for (let i = 0; i < path.length; i++) {
      const ch = path[i]
      if (ch !== '%') {
        decoded += ch
        continue
      }
      const hex = path.slice(i + 1, i + 3)
      if (!HEX.test(hex)) return null
      const code = Number.parseInt(hex, 16)
      if (code === 0 || code === 0x5c) return null
      const char = String.fromCharCode(code)
      decoded += UNRESERVED.test(char) ? char : `%${hex.toUpperCase()}`
      i += 2
    }
  }
  if (decoded.includes('\\')) return null

  const input = decoded.split('/')
  const output: string[] = []
  let trailingSlash = false
  for (let i = 1; i < input.length; i++) {
    const segment = input[i] as string
    const last = i === input.length - 1
    if (segment === '' || segment === '.') {
      trailingSlash = last
      continue
    }
    if (segment === '..') {
      output.pop()
      trailingSlash = last
      continue
    }
    output.push(segment)
    trailingSlash = false
  }
  const joined = `/${output.join('/')}`
  return trailingSlash && output.length > 0 ? `${joined}/` : joined
}

/**
 * Splits a request target into path and query. Absolute-form targets
 * (`http://host/path`, sent to proxies) yield their host too.
 */
export function splitRequestTarget(url: string): { host: string | null; path: string; query: string } {
  let host: string | null = null
  let rest = url
  if (url.charCodeAt(0) !== 47) {
    const scheme = url.indexOf('://')
    if (scheme > 0) {
      const pathStart = url.indexOf('/', scheme + 3)
      host = url.slice(scheme + 3, pathStart === -1 ? undefined : pathStart)
      rest = pathStart === -1 ? '/' : url.slice(pathStart)
    }
  }
  const q = rest.indexOf('?')
  if (q === -1) return { host, path: rest, query: '' }
  return { host, path: rest.slice(0, q), query: rest.slice(q) }
}
