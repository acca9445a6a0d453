import { describe, expect, it } from 'vitest'
import type { Clock } from '../../src/clock.js'
import { BlockingQuery } from '../../src/consul/blocking-query.js'

/** Virtual time: sleep() advances the clock at once and records what was asked. */
function fakeClock() {
  let now = 1_000_000
  const sleeps: number[] = []
  const clock: Clock = {
    now: () => now,
    sleep: async (ms, signal) => {
      signal?.throwIfAborted()
      sleeps.push(ms)
      now += ms
      await Promise.resolve()
    },
  }
  return { clock, sleeps, advance: (ms: number) => (now += ms) }
}

type Step = { index: number; body: string; latencyMs?: number } | { error: string }

/** A scripted Consul: answers in order, then blocks until stopped. Records the index of each request. */
function scripted(steps: Step[], advance: (ms: number) => void) {
  const requested: number[] = []
  const fetch = async (index: number, signal: AbortSignal) => {
    requested.push(index)
    const step = steps.shift()
    if (step === undefined) {
      await new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)))
      throw new Error('unreachable')
    }
    if ('error' in step) throw new Error(step.error)
    advance(step.latencyMs ?? 0)
    return step
  }
  return { fetch, requested }
}

async function run(steps: Step[], options: { minIntervalMs?: number; random?: () => number } = {}) {
  const time = fakeClock()
  const consul = scripted(steps, time.advance)
  const values: string[] = []
  const errors: number[] = []
  const total = steps.length
  const query = new BlockingQuery<string>({
    name: 'test',
    fetch: consul.fetch,
    parse: (body) => {
      if (body === 'garbage') throw new Error('unparseable')
      return body
    },
    onValue: (v) => values.push(v),
    onError: (_e, consecutive) => errors.push(consecutive),
    minIntervalMs: options.minIntervalMs ?? 0,
    backoffInitialMs: 100,
    backoffMaxMs: 1_000,
    clock: time.clock,
    random: options.random ?? (() => 0.5),
  }).start()
  for (let i = 0; i < 200 && consul.requested.length <= total; i++) await new Promise((r) => setImmediate(r))
  await query.stop()
  return { values, errors, requested: consul.requested, sleeps: time.sleeps, state: query.state }
}

describe('BlockingQuery', () => {
  it('passes the last index back and only reports bodies that changed', async () => {
    const r = await run([
      { index: 10, body: 'a' },
      { index: 12, body: 'a' },
      { index: 15, body: 'b' },
    ])
    expect(r.requested).toEqual([0, 10, 12, 15])
    expect(r.values).toEqual(['a', 'b'])
  })

  it('resets to 0 when the index goes backwards (agent restart, snapshot restore)', async () => {
    const r = await run([
      { index: 100, body: 'a' },
      { index: 7, body: 'b' },
      { index: 8, body: 'b' },
    ])
    expect(r.requested).toEqual([0, 100, 0, 8])
    expect(r.values).toEqual(['a', 'b'])
  })

  it('raises an index of 0 to 1 so it cannot return at once forever', async () => {
    const r = await run([
      { index: 0, body: 'a' },
      { index: 0, body: 'a' },
    ])
    expect(r.requested).toEqual([0, 1, 1])
  })

  it('rate-limits each loop even when Consul answers instantly', async () => {
    const r = await run(
      [
        { index: 1, body: 'a' },
        { index: 2, body: 'b' },
        { index: 3, body: 'c', latencyMs: 500 },
        { index: 4, body: 'd' },
      ],
      { minIntervalMs: 50 },
    )
    // No wait after a slow answer (500 ms > 50 ms), a full interval after instant ones.
    expect(r.sleeps).toEqual([50, 50, 50])
    expect(r.values).toEqual(['a', 'b', 'c', 'd'])
  })

  it('backs off exponentially with jitter on errors, never gives up, and starts over at index 0', async () => {
    const r = await run(
      [
        { index: 5, body: 'a' },
        { error: 'connection refused' },
        { error: 'connection refused' },
        { error: '500' },
        { error: '500' },
        { error: '500' },
        { index: 9, body: 'a' },
      ],
      { random: () => 1 },
    )
    expect(r.errors).toEqual([1, 2, 3, 4, 5])
    // ceiling 100, 200, 400, 800, 1000 (capped); with random()=1 the full ceiling.
    expect(r.sleeps).toEqual([100, 200, 400, 800, 1000])
    expect(r.requested).toEqual([0, 5, 0, 0, 0, 0, 0, 9])
    expect(r.state.consecutiveErrors).toBe(0)
    expect(r.values).toEqual(['a'])
  })

  it('keeps half of the backoff fixed and jitters the other half', async () => {
    const r = await run([{ error: 'x' }, { error: 'x' }, { index: 1, body: 'a' }], { random: () => 0 })
    expect(r.sleeps).toEqual([50, 100])
  })

  it('counts a body it cannot parse as an error and keeps the last good value', async () => {
    const r = await run([
      { index: 1, body: 'a' },
      { index: 2, body: 'garbage' },
      { index: 3, body: 'b' },
    ])
    expect(r.values).toEqual(['a', 'b'])
    expect(r.errors).toEqual([1])
    expect(r.state.errors).toBe(1)
  })

  it('records when it started failing and when it last succeeded', async () => {
    const time = fakeClock()
    let calls = 0
    const query = new BlockingQuery<string>({
      name: 'x',
      fetch: async (_i, signal) => {
        calls++
        if (calls === 1) return { index: 1, body: 'a' }
        if (calls < 4) throw new Error('down')
        await new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)))
        throw new Error('unreachable')
      },
      parse: (b) => b,
      onValue: () => {},
      minIntervalMs: 0,
      backoffInitialMs: 100,
      backoffMaxMs: 100,
      clock: time.clock,
      random: () => 1,
    }).start()
    await query.ready
    const okAt = query.state.lastSuccessAt
    for (let i = 0; i < 50 && calls < 3; i++) await new Promise((r) => setImmediate(r))
    expect(query.state.failingSince).toBeGreaterThanOrEqual(okAt)
    expect(query.state.lastError?.message).toBe('down')
    await query.stop()
  })
})
