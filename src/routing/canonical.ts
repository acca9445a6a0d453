// The canonical text of a table: one sorted line per serving target and per
// target state. Two tables route the same way exactly when their texts are
// equal, so the diff of two texts is the change log line written on every swap.

import { formatTarget } from './targets.js'
import type { RouteTable } from './types.js'

export function tableText(table: RouteTable): string[] {
  const lines: string[] = []
  for (const route of table.routes) {
    if (route.targets.length === 0) {
      lines.push(`route ${route.id} no-instances`)
      continue
    }
    for (const t of route.targets) {
      const version = t.version ? ` version ${t.version}` : ''
      const opts = t.optionsText ? ` opts "${t.optionsText}"` : ''
      lines.push(`route ${route.id} ${t.service} ${t.origin} weight ${t.weight.toFixed(4)}${version}${opts}`)
    }
  }
  for (const s of table.targets) {
    const state = s.ready ? 'ready' : `not-ready (${s.reason})`
    lines.push(
      `target ${s.service} desired ${formatTarget(s.desired)} effective ${formatTarget(s.effective)} ${state}`,
    )
  }
  return lines.sort()
}

export interface TableDiff {
  readonly added: readonly string[]
  readonly removed: readonly string[]
}

export function diffTables(before: RouteTable, after: RouteTable): TableDiff {
  const a = new Set(tableText(before))
  const b = new Set(tableText(after))
  return {
    added: [...b].filter((line) => !a.has(line)),
    removed: [...a].filter((line) => !b.has(line)),
  }
}
