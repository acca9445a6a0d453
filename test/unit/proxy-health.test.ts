// Passive health with a fake clock and a scripted probe: N consecutive connect
// failures eject, a failed probe doubles the period (capped), a good probe
// readmits; successes reset the count; state is keyed by instance.

import { describe, expect, it } from 'vitest'
import type { Clock } from '../../src/clock.js'
import { PassiveHealth } from '../../src/proxy/health.js'
import type { Backend } from '../../src/routing/types.js'

function target(key: string): Backend {
  return { key } as Backend
}

function setup(failures = 3) {
  let now = 1_000
  const clock: Clock = { now: () => now, sleep: async () => {} }
  const probes: { target: string; answer: (ok: boolean) => void }[] = []
  const changes: [string, boolean, number][] = []
  const health = new PassiveHealth({
    failures,
    ejectMs: 1_000,
    ejectMaxMs: 3_000,
    probeTimeoutMs: 100,
    clock,
    probe: (t) =>
      new Promise<boolean>((resolve) => {
        probes.push({ target: t.key, answer: resolve })
      }),
    onChange: (t, ejected, forMs) => changes.push([t.key, ejected, forMs]),
  })
  return {
    health,
    probes,
    changes,
    advance: (ms: number) => {
      now += ms
    },
  }
}

const flush = () => new Promise((resolve) => setImmediate(resolve))

describe('PassiveHealth', () => {
  const a = target('node/a')
  const b = target('node/b')

  it('ejects after N consecutive connect failures, not before', () => {
    const { health, changes } = setup()
    health.connectFailed(a)
    health.connectFailed(a)
    expect(health.isEjected(a)).toBe(false)
    expect(health.anyEjected).toBe(false)
    health.connectFailed(a)
    expect(health.isEjected(a)).toBe(true)
    expect(health.isEjected(b)).toBe(false)
    expect(health.usable(a)).toBe(false)
    expect(changes).toEqual([['node/a', true, 1_000]])
  })

  it('a success in between resets the count', () => {
    const { health } = setup()
    health.connectFailed(a)
    health.connectFailed(a)
    health.succeeded(a)
    health.connectFailed(a)
    health.connectFailed(a)
    expect(health.isEjected(a)).toBe(false)
  })

  it('probes after the period: failure doubles it up to the cap, success readmits', async () => {
    const { health, probes, changes, advance } = setup(1)
    health.connectFailed(a)
    advance(999)
    expect(health.isEjected(a)).toBe(true)
    expect(probes).toHaveLength(0)
    advance(1)
    expect(health.isEjected(a)).toBe(true) // still out while the probe runs
    expect(health.isEjected(a)).toBe(true)
    expect(probes).toHaveLength(1) // one probe at a time
    probes[0]?.answer(false)
    await flush()
    expect(changes.at(-1)).toEqual(['node/a', true, 2_000])
    advance(2_000)
    health.isEjected(a)
    probes[1]?.answer(false)
    await flush()
    expect(changes.at(-1)).toEqual(['node/a', true, 3_000]) // capped
    advance(3_000)
    health.isEjected(a)
    probes[2]?.answer(true)
    await flush()
    expect(changes.at(-1)).toEqual(['node/a', false, 0])
    expect(health.isEjected(a)).toBe(false)
    expect(health.anyEjected).toBe(false)
  })

  it('turns off with failures: 0', () => {
    const { health } = setup(0)
    for (let i = 0; i < 10; i++) health.connectFailed(a)
    expect(health.isEjected(a)).toBe(false)
  })

  it('forgets instances that left the table, even mid-probe', async () => {
    const { health, probes, changes, advance } = setup(1)
    health.connectFailed(a)
    advance(1_000)
    health.isEjected(a)
    health.retain(new Set(['node/b']))
    expect(health.anyEjected).toBe(false)
    expect(health.ejected()).toEqual([])
    probes[0]?.answer(true)
    await flush()
    expect(changes).toHaveLength(1) // no readmission reported for a vanished instance
  })
})
