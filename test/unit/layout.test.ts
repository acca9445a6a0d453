// Which code may import which: the benchmarks are tools of their own and must
// not depend on the test harness (a test refactor would break `npm run bench`),
// what ships (src/) never imports tests or benchmarks, and a proxy worker's
// modules leave out what only the primary and the operator commands need.

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

  it('a proxy worker does not load the config parser or the operator commands', () => {
    // Each is resident memory in every worker process (bench/results/memory.md).
    const packages = new Set<string>()
    const files = new Set<string>()
    const visit = (file: string) => {
      if (files.has(file)) return
      files.add(file)
      const text = readFileSync(join(ROOT, file), 'utf8')
      // Static imports only: a dynamic import() is loaded where it is called.
      for (const m of text.matchAll(
        /^(?:import|export)(?!\s+type\b)[^'";]*?from\s+'([^']+)'|^import\s+'([^']+)'/gm,
      )) {
        const spec = (m[1] ?? m[2]) as string
        if (spec.startsWith('.')) visit(relative(ROOT, join(ROOT, file, '..', spec.replace(/\.js$/, '.ts'))))
        else if (!spec.startsWith('node:')) packages.add(spec)
      }
    }
    visit('src/cli/cluster.ts')
    expect(files.size).toBeGreaterThan(40)
    expect(packages).toContain('prom-client')
    expect([...packages].filter((p) => p === 'zod' || p === 'yaml')).toEqual([])
    expect(
      [...files].filter((f) => /^src\/(config\/(load|schema)|cli\/(commands|target|rollout))\.ts$/.test(f)),
    ).toEqual([])
  })
})
