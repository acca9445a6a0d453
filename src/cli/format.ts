// Human-readable output of the CLI.

import { formatTarget } from '../routing/targets.js'
import type { RouteTable } from '../routing/types.js'

/** Columns padded to the widest cell; one block per route, problems at the end. */
export function formatRoutes(table: RouteTable): string {
  const rows: string[][] = [['ROUTE', 'SERVICE', 'INSTANCE', 'ADDRESS', 'VERSION', 'WEIGHT', 'STATE']]
  for (const route of table.routes) {
    const all = [...route.backends, ...route.idle]
    if (all.length === 0) rows.push([route.id, '-', '-', '-', '-', '-', 'no instances'])
    for (const t of all) {
      rows.push([
        route.id,
        t.service,
        t.instanceId,
        `${t.address}:${t.port}`,
        t.version || '-',
        t.state === 'serving' ? `${(t.weight * 100).toFixed(1)}%` : '-',
        t.state,
      ])
    }
  }
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? []
  const lines = rows.map((r) =>
    r
      .map((cell, i) => cell.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd(),
  )
  if (table.routes.length === 0) lines.push('(no routes: no healthy service carries a route tag)')
  for (const t of table.targets) {
    lines.push(
      `target ${t.service}: desired ${formatTarget(t.desired)}, serving ${formatTarget(t.effective)}${t.ready ? '' : ` (NOT READY: ${t.reason})`}`,
    )
  }
  for (const p of table.problems) lines.push(`problem ${p.code} ${p.subject}: ${p.message}`)
  return `${lines.join('\n')}\n`
}
