// Glob patterns for the `glob` path matcher, with the syntax Fabio users
// write: `*` any run of characters (`/` included, as Fabio compiles its globs
// without separators), `?` one character, `[abc]`, `[a-z]` and `[!abc]` one
// character of (or not of) a set, `{a,b}` one of the alternatives, `\` to
// take the next character literally. A pattern matches the whole path.
// Compiled to a RegExp once per table.

/** The pattern as an anchored RegExp, or null when it is malformed (unclosed `[` or `{`). */
export function compileGlob(pattern: string): RegExp | null {
  let source = ''
  let braces = 0
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i] as string
    switch (ch) {
      case '*':
        source += '.*'
        while (pattern[i + 1] === '*') i++
        break
      case '?':
        source += '.'
        break
      case '[': {
        const end = pattern.indexOf(']', i + 2)
        if (end === -1) return null
        let set = pattern.slice(i + 1, end)
        const negate = set.startsWith('!')
        if (negate) set = set.slice(1)
        source += `[${negate ? '^' : ''}${set.replace(/[\\^\]]/g, '\\$&')}]`
        i = end
        break
      }
      case '{':
        braces++
        source += '(?:'
        break
      case '}':
        if (braces === 0) return null
        braces--
        source += ')'
        break
      case ',':
        source += braces > 0 ? '|' : ','
        break
      case '\\': {
        const next = pattern[i + 1]
        if (next === undefined) return null
        source += escapeRegExp(next)
        i++
        break
      }
      default:
        source += escapeRegExp(ch)
    }
  }
  if (braces !== 0) return null
  try {
    return new RegExp(`^${source}$`, 's')
  } catch {
    // A character range written backwards (`[z-a]`).
    return null
  }
}

function escapeRegExp(ch: string): string {
  return /[.*+?^${}()|[\]\\/-]/.test(ch) ? `\\${ch}` : ch
}
