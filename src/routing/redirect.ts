// The Location of a `redirect=` route, the way Fabio builds it:
//   `$path`  the request path, after the route's strip= and prepend=, with the
//            request's query when the redirect URL has none of its own;
//            a `/` written before it is dropped, so `http://a.com/$path` on
//            `/x` is `http://a.com/x` (not `//x`), and `http://a.com$path`
//            works the same;
//   `$host`  the request's Host (with its port, if it has one).
// Without `$path` the URL is used as written (the request's query is not
// added). An empty path becomes `/`.

export interface RedirectRequest {
  /** The Host the client sent ('' if none). */
  readonly host: string
  /** The normalised request path. */
  readonly path: string
  /** The query, with or without its leading `?` ('' if none). */
  readonly query: string
}

export function redirectLocation(url: string, req: RedirectRequest, strip: string, prepend: string): string {
  let origin = ''
  let rest = url
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(url)
  if (scheme !== null) {
    const afterScheme = scheme[0].length
    const end = url.slice(afterScheme).search(/[/?]/)
    origin = end === -1 ? url : url.slice(0, afterScheme + end)
    rest = end === -1 ? '' : url.slice(afterScheme + end)
    // `http://a.com$path`: the variable is the path, not part of the host.
    if (origin.endsWith('$path')) {
      origin = origin.slice(0, -'$path'.length)
      rest = `$path${rest}`
    }
  }
  const q = rest.indexOf('?')
  let path = q === -1 ? rest : rest.slice(0, q)
  let query = q === -1 ? '' : rest.slice(q + 1)

  path = path.replace('/$path', '$path')
  if (path.includes('$path')) {
    let replacement = req.path
    if (strip !== '' && replacement.startsWith(strip)) replacement = replacement.slice(strip.length)
    replacement = prepend + replacement
    path = path.replace('$path', () => replacement)
    if (query === '') query = req.query.startsWith('?') ? req.query.slice(1) : req.query
  }
  if (path === '') path = '/'
  origin = origin.replace('$host', () => req.host)
  return `${origin}${path}${query === '' ? '' : `?${query}`}`
}
