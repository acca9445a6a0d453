// Timeouts without a timer per request. Each connection records deadlines as
// plain numbers (an assignment per phase); one interval per listener walks the
// live connections and lets each check its own. Setting, moving and clearing
// a deadline cost nothing, which matters at tens of thousands of requests a
// second; the price is resolution: a timeout fires up to one tick late. The
// tick is a quarter of the shortest configured timeout, between 10 ms and 1 s.

import { performance } from 'node:perf_hooks'

export interface Sweepable {
  /** Called every tick with the current time (performance.now()). */
  sweep(now: number): void
}

export class Sweeper {
  private readonly items = new Set<Sweepable>()
  private readonly tickMs: number
  private timer: NodeJS.Timeout | null = null

  constructor(shortestTimeoutMs: number) {
    this.tickMs = Math.max(10, Math.min(1000, Math.floor(shortestTimeoutMs / 4)))
  }

  add(item: Sweepable): void {
    this.items.add(item)
    if (this.timer === null) {
      this.timer = setInterval(this.tick, this.tickMs)
      this.timer.unref()
    }
  }

  delete(item: Sweepable): void {
    this.items.delete(item)
    if (this.items.size === 0 && this.timer !== null) {
      clearInterval(this.timer)
      this.timer = null
    }
  }

  private readonly tick = (): void => {
    const now = performance.now()
    // A sweep may delete its own item (a timed-out connection closes): Set
    // iteration tolerates that.
    for (const item of this.items) item.sweep(now)
  }
}

/** No deadline. */
export const NEVER = Number.POSITIVE_INFINITY
