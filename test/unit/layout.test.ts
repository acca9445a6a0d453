// Which code may import which: the benchmarks are tools of their own and must
// not depend on the test harness (a test refactor would break `npm run bench`),
// and what ships (src/) never imports tests or benchmarks.

import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { describe, expect, it } from 'vitest'

const ROOT = new URL('../../', import.meta.url).pathname

function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && /\.(ts|mts|js|mjs)$/.test(e.name))
    .map((e) => relative(ROOT, join(e.parentPath, e.name)))
}

/** Files of `dir` with an import that resolves into `forbidden`. */
function importsInto(dir: string, forbidden: string): string[] {
  const found: string[] = []
  for (const file of sources(dir)) {
    const text = readFileSync(join(ROOT, file), 'utf8')
    for (const m of text.matchAll(/(?:from|import)\s*\(?\s*'(\.[^']+)'/g)) {
      const target = relative(ROOT, join(ROOT, file, '..', m[1] as string))
      if (target === forbidden || target.startsWith(`${forbidden}/`)) found.push(`${file} -> ${m[1]}`)
    }
  }
  return found
}

describe('import layout', () => {
  it('bench/ does not import the test harness', () => {
    expect(sources('bench').length).toBeGreaterThan(5)
    expect(importsInto('bench', 'test')).toEqual([])
  })

  it('src/ imports neither tests nor benchmarks', () => {
    expect(importsInto('src', 'test')).toEqual([])
    expect(importsInto('src', 'bench')).toEqual([])
  })
})
