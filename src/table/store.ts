// The one mutable cell of the data path: the current routing table. A swap is a
// single assignment; a request reads `current` once and keeps that table to the
// end, so in-flight requests finish on the table they started with.

import { type Clock, systemClock } from '../clock.js'
import { EMPTY_TABLE } from '../routing/build.js'
import type { RouteTable } from '../routing/types.js'

export type SwapListener = (next: RouteTable, previous: RouteTable) => void

export class TableStore {
  private table: RouteTable = EMPTY_TABLE
  private readonly listeners: SwapListener[] = []
  private readonly clock: Clock
  /** When the current table was swapped in (0 before the first). */
  swappedAt = 0

  constructor(clock: Clock = systemClock) {
    this.clock = clock
  }

  get current(): RouteTable {
    return this.table
  }

  /** True once a table built from Consul has been swapped in. */
  get loaded(): boolean {
    return this.table.generation > 0
  }

  swap(next: RouteTable): void {
    const previous = this.table
    this.table = next
    this.swappedAt = this.clock.now()
    for (const listener of this.listeners) listener(next, previous)
  }

  onSwap(listener: SwapListener): () => void {
    this.listeners.push(listener)
    return () => {
      const i = this.listeners.indexOf(listener)
      if (i !== -1) this.listeners.splice(i, 1)
    }
  }
}
