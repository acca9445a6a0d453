// The README states facts the code must keep true.

import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { ERROR_CODES } from '../../src/errors.js'

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')
const ci = readFileSync(new URL('../../.ci/run', import.meta.url), 'utf8')

describe('README', () => {
  it('lists every error code with the meaning the code gives it, and no other', () => {
    const rows = [...readme.matchAll(/^\| `(SWY_ERR_[A-Z_]+)`\s*\| (.+?)\s*\|$/gm)].map((m) => [m[1], m[2]])
    expect(Object.fromEntries(rows)).toEqual(ERROR_CODES)
  })

  it('gives the test command that CI runs', () => {
    const firstScreen = readme.split('\n').slice(0, 25).join('\n')
    expect(firstScreen).toMatch(/^npm test\s+#/m)
    expect(ci).toMatch(/^npm test$/m)
  })
})
