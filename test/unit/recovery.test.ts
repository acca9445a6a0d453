import { describe, expect, it, vi } from 'vitest'
import type { Clock } from '../../src/clock.js'
import { BlockingQuery } from '../../src/consul/blocking-query.js'
import { RecoveryGroup } from '../../src/consul/recovery.js'

/** Virtual time with real timer order: nothing happens until `advance`. */
function manualClock() {
  let now = 0
  const timers: { at: number; resolve: () => void }[] = []
  const clock: Clock = {
    now: () => now,
    sleep: (ms, signal) =>
      new Promise<void>((resolve, reject) => {
        signal?.throwIfAborted()
        const timer = { at: now + ms, resolve }
        timers.push(timer)
        signal?.addEventListener('abort', () => {
          timers.splice(timers.indexOf(timer), 1)
          reject(signal.reason)
        })
      }),
  }
  const flush = async () => {
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r))
  }
  /** Moves time forward, firing due timers in order and letting their continuations run. */
  async function advance(ms: number): Promise<void> {
    const until = now + ms
    await flush()
    for (;;) {
      timers.sort((a, b) => a.at - b.at)
      const next = timers[0]
      if (next === undefined || next.at > until) break
      timers.shift()
      now = next.at
      next.resolve()
      await flush()
    }
    now = until
    await flush()
  }
  return { clock, advance, now: () => now }
}

/** A watch's backoff in the group: records when it ended, early or not. */
function backingOff(group: RecoveryGroup, member: object, ms: number, at: () => number) {
  const stop = new AbortController()
  const result = { endedAt: -1, stop: () => stop.abort() }
  group.failed(member)
  void group.backoff(member, ms, stop.signal).then(
    () => {
      result.endedAt = at()
    },
    () => {},
  )
  return result
}

describe('RecoveryGroup', () => {
  const options = { probeIntervalMs: 250, spreadMs: 100, random: () => 0.5 }

  it('wakes every backing-off watch once one of them gets an answer, spread over spreadMs', async () => {
    const time = manualClock()
    // No probe within this test's time: only the answer wakes them.
    const group = new RecoveryGroup({ ...options, probeIntervalMs: 60_000, clock: time.clock })
    const [a, b, c] = [{}, {}, {}]
    for (const m of [a, b, c]) group.join(m)
    const sleepB = backingOff(group, b, 20_000, time.now)
    const sleepC = backingOff(group, c, 30_000, time.now)
    group.failed(a)
    await time.advance(1_000)
    group.answered(a)
    await time.advance(100)
    expect(sleepB.endedAt).toBe(1_050)
    expect(sleepC.endedAt).toBe(1_050)
  })

  it('while every watch fails, wakes the one waiting longest every probe interval', async () => {
    const time = manualClock()
    const group = new RecoveryGroup({ ...options, clock: time.clock })
    const [a, b] = [{}, {}]
    group.join(a)
    group.join(b)
    const first = backingOff(group, a, 30_000, time.now)
    await time.advance(10)
    const second = backingOff(group, b, 30_000, time.now)
    // Probing starts when the last watch fails (t = 10); a probe has no spread: it is one read.
    await time.advance(250)
    expect(first.endedAt).toBe(260)
    expect(second.endedAt).toBe(-1)
    await time.advance(250)
    expect(second.endedAt).toBe(510)
  })

  it('leaves the backoff of a watch that fails alone: Consul answers the others', async () => {
    const time = manualClock()
    const group = new RecoveryGroup({ ...options, clock: time.clock })
    const [healthy, refused] = [{}, {}]
    group.join(healthy)
    group.join(refused)
    const sleep = backingOff(group, refused, 8_000, time.now)
    await time.advance(7_999)
    expect(sleep.endedAt).toBe(-1)
    await time.advance(1)
    expect(sleep.endedAt).toBe(8_000)
    // An answer to a watch that was not failing wakes nobody either.
    const again = backingOff(group, refused, 8_000, time.now)
    group.answered(healthy)
    await time.advance(1_000)
    expect(again.endedAt).toBe(-1)
    again.stop()
  })

  it('stops probing once a watch leaves the group or the backoffs are stopped', async () => {
    const time = manualClock()
    const group = new RecoveryGroup({ ...options, clock: time.clock })
    const a = {}
    group.join(a)
    const sleep = backingOff(group, a, 30_000, time.now)
    sleep.stop()
    group.leave(a)
    await time.advance(1_000)
    expect(sleep.endedAt).toBe(-1)
  })

  it('cuts a failing watch’s retry still in flight once another watch gets an answer, and sends it again', async () => {
    // Real time, short: a held read (as Consul holds reads until it has a
    // leader) would otherwise end only by its own timeout.
    const group = new RecoveryGroup({ probeIntervalMs: 60_000, spreadMs: 5 })
    const sent: { index: number; at: number }[] = []
    let heldUntilAborted = false
    let answerB!: () => void
    const bAnswers = new Promise<void>((resolve) => {
      answerB = resolve
    })
    const held = (signal: AbortSignal) =>
      new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)))
    const options = {
      parse: (body: string) => body,
      onValue: () => {},
      minIntervalMs: 0,
      backoffInitialMs: 1,
      backoffMaxMs: 1,
      recovery: group,
    }
    const a = new BlockingQuery({
      ...options,
      name: 'a',
      fetch: async (index: number, signal: AbortSignal) => {
        sent.push({ index, at: Date.now() })
        if (sent.length === 1) throw new Error('connection refused')
        if (sent.length === 2) {
          // Held: answers nothing until aborted.
          signal.addEventListener('abort', () => {
            heldUntilAborted = true
          })
          await held(signal)
        }
        if (sent.length > 3) await held(signal) // a blocking query with nothing new
        return { index: 5, body: 'a' }
      },
    }).start()
    const b = new BlockingQuery({
      ...options,
      name: 'b',
      fetch: async (index: number, signal: AbortSignal) => {
        if (sent.length < 2) throw new Error('connection refused')
        if (index > 0) await held(signal) // a blocking query with nothing new
        await bAnswers
        return { index: 7, body: 'b' }
      },
    }).start()
    await vi.waitFor(() => expect(sent.length).toBe(2))
    answerB()
    await vi.waitFor(() => expect(a.state.consecutiveErrors).toBe(0), { timeout: 2_000 })
    expect(heldUntilAborted).toBe(true)
    // Refused, held and cut, sent again: each a fresh read.
    expect(sent.slice(0, 3).map((s) => s.index)).toEqual([0, 0, 0])
    await Promise.all([a.stop(), b.stop()])
  })
})
