// The suite runs on the project's runtime: npm scripts put node_modules/.bin
// first on PATH, where the devDependency `node` (Node 24) lives. If that
// binary were missing (an install that skipped its install script), the
// scripts would fall back to the machine's Node without a word; this fails.

import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  engines: { node: string }
  devDependencies: Record<string, string>
}

describe('runtime', () => {
  it('is the Node major version package.json asks for', () => {
    const engines = /^>=(\d+)$/.exec(pkg.engines.node)
    const pinned = /^\^(\d+)$/.exec(pkg.devDependencies.node ?? '')
    expect(engines?.[1]).toBeDefined()
    expect(pinned?.[1]).toBe(engines?.[1])
    expect(process.versions.node.split('.')[0]).toBe(pinned?.[1])
  })
})

describe('node flags', () => {
  it('are the same in the image and in npm start', () => {
    const dockerfile = readFileSync(new URL('../../Dockerfile', import.meta.url), 'utf8')
    const line = dockerfile.split('\n').find((l) => l.startsWith('ENTRYPOINT ')) ?? ''
    const entrypoint = JSON.parse(line.slice('ENTRYPOINT '.length)) as string[]
    const imageFlags = entrypoint.slice(1, entrypoint.indexOf('dist/cli/main.js'))
    expect(imageFlags).toContain('--max-semi-space-size=2')
    expect(imageFlags).toContain('--no-maglev')
    const start = (pkg as unknown as { scripts: { start: string } }).scripts.start
    expect(start).toBe(`node ${imageFlags.join(' ')} dist/cli/main.js serve`)
  })
})
