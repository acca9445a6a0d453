// `target set --match/--sticky`: the flags an operator types for header and
// cookie canaries and sticky splits, validated by the proxy's own parser.

import { describe, expect, it } from 'vitest'
import { targetFromFlags } from '../../src/cli/target.js'

describe('target set --match and --sticky', () => {
  it('writes the rules in order, and sticky weights', () => {
    const { json } = targetFromFlags({
      version: '1.6.0',
      match: ['header:x-canary=1->1.7.0', 'cookie:canary=always->1.7.0'],
    })
    expect(JSON.parse(json)).toEqual({
      version: '1.6.0',
      match: [
        { header: 'x-canary', equals: '1', version: '1.7.0' },
        { cookie: 'canary', equals: 'always', version: '1.7.0' },
      ],
    })
    expect(JSON.parse(targetFromFlags({ weights: '1.6.0=80,1.7.0=20', sticky: true }).json)).toEqual({
      weights: { '1.6.0': 80, '1.7.0': 20 },
      sticky: true,
    })
    // A value may hold '=' and '-'; the version is what follows the last '->'.
    expect(JSON.parse(targetFromFlags({ version: '1', match: ['header:x-a=b=c-d->2'] }).json).match).toEqual([
      { header: 'x-a', equals: 'b=c-d', version: '2' },
    ])
  })

  it.each([
    [{ version: '1', match: ['x-canary=1->2'] }, 'is not header:NAME=VALUE->VERSION'],
    [{ version: '1', match: ['header:x canary=1->2'] }, '"header" must be a header name'],
    [{ version: '1', sticky: true }, '--sticky goes with --weights'],
  ])('refuses %j', (flags, message) => {
    expect(() => targetFromFlags(flags)).toThrow(message)
  })
})
