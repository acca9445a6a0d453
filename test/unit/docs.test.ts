// The README states facts the code must keep true.

import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { ERRORS } from '../../src/errors.js'

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')
const failureDoc = readFileSync(new URL('../../docs/failure-behaviour.md', import.meta.url), 'utf8')
const ci = readFileSync(new URL('../../.ci/run', import.meta.url), 'utf8')

describe('README', () => {
  it('lists every error code with the status and meaning the code gives it, and no other', () => {
    const rows = [...readme.matchAll(/^\| `(SWY_ERR_[A-Z_]+)`\s*\| (\d*)\s*\| (.+?)\s*\|$/gm)].map((m) => [
      m[1],
      m[2] === '' ? { meaning: m[3] } : { status: Number(m[2]), meaning: m[3] },
    ])
    expect(Object.fromEntries(rows)).toEqual(ERRORS)
  })

  it('gives, in docs/failure-behaviour.md, the status each error code has', () => {
    const rows = [...failureDoc.matchAll(/^\|[^|]+\| (\d{3})\b[^|]*\| `(SWY_ERR_[A-Z_]+)`\s*\|$/gm)]
    expect(rows.length).toBeGreaterThan(5)
    for (const [, status, code] of rows) {
      expect({ code, status: Number(status) }).toEqual({
        code,
        status: (ERRORS[code as keyof typeof ERRORS] as { status?: number }).status,
      })
    }
  })

  it('gives the test command that CI runs', () => {
    const firstScreen = readme.split('\n').slice(0, 25).join('\n')
    expect(firstScreen).toMatch(/^npm test\s+#/m)
    expect(ci).toMatch(/^npm test$/m)
  })
})
