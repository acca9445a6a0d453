// Problems found while building a table, each reported once per build.

import type { Problem } from './types.js'

/** Problems in first-seen order, each reported once per build. */
export class ProblemList {
  readonly list: Problem[] = []
  // Made on the first problem: most lists (one per route built) stay empty.
  private seen: Set<string> | null = null
  add(code: Problem['code'], subject: string, message: string): void {
    const key = `${code}\u0000${subject}\u0000${message}`
    this.seen ??= new Set()
    if (this.seen.has(key)) return
    this.seen.add(key)
    this.list.push({ code, subject, message })
  }
}

export function groupBy<T>(items: readonly T[], key: (item: T) => string): Map<string, T[]> {
  const map = new Map<string, T[]>()
  for (const item of items) {
    const k = key(item)
    const list = map.get(k)
    if (list) list.push(item)
    else map.set(k, [item])
  }
  return map
}
