// The metrics reference in docs/operating.md, the Grafana dashboard and the
// Prometheus examples in config/ name only metrics that exist, with the types
// and labels they have: none can drift from src/metrics.

import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { SwitchyardMetrics } from '../../src/metrics/metrics.js'
import { TableStore } from '../../src/table/store.js'
import type { SyncStatus } from '../../src/table/sync.js'

const root = new URL('../../', import.meta.url)
const read = (path: string) => readFileSync(new URL(path, root), 'utf8')

const status = (): SyncStatus => ({ loaded: false, staleForMs: 0, lastSyncAt: 0, watches: [], problems: [] })
const metrics = new SwitchyardMetrics({ store: new TableStore(), status })
const families = new Map([
  ...metrics.registry.getMetricsAsArray().map((m) => {
    const { name, type, labelNames } = m as unknown as { name: string; type: string; labelNames: string[] }
    return [name, { type, labels: [...labelNames].sort() }] as const
  }),
  ...metrics.families.map((f) => [f.name, { type: f.type, labels: [...f.labelNames].sort() }] as const),
])

/** Metric names in a PromQL expression that exist as a family, or a histogram's series of one. */
function unknownMetrics(expr: string): string[] {
  const names = expr.match(/\b(?:switchyard|process|nodejs)_[a-z0-9_]+\b/g) ?? []
  return names.filter((n) => !families.has(n) && !families.has(n.replace(/_(bucket|sum|count)$/, '')))
}

describe('metrics documentation and examples', () => {
  it('docs/operating.md lists every switchyard_ metric with its type and labels, and no other', () => {
    const rows = [
      ...read('docs/operating.md').matchAll(/^\|\s*`(switchyard_[a-z_]+)`\s*\|\s*(\w+)\s*\|([^|]*)\|/gm),
    ]
    const documented = new Map(
      rows.map(([, name, type, labels]) => [
        name!,
        {
          type: type!,
          labels: [...labels!.matchAll(/`([a-z_]+)`/g)].map((m) => m[1]!).sort(),
        },
      ]),
    )
    const actual = new Map([...families].filter(([name]) => name.startsWith('switchyard_')))
    expect(Object.fromEntries(documented)).toEqual(Object.fromEntries(actual))
  })

  it('the Grafana dashboard queries only existing metrics', () => {
    const dashboard = JSON.parse(read('config/grafana-dashboard.json')) as {
      panels: { targets?: { expr: string }[] }[]
      templating: { list: { definition?: string }[] }
    }
    const exprs = [
      ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)),
      ...dashboard.templating.list.map((v) => v.definition ?? ''),
    ]
    expect(exprs.length).toBeGreaterThan(15)
    expect(exprs.flatMap(unknownMetrics)).toEqual([])
    // Every switchyard_ metric shows up somewhere on the dashboard.
    const used = exprs.join('\n')
    const unused = [...families.keys()].filter((n) => n.startsWith('switchyard_') && !used.includes(n))
    expect(unused).toEqual([])
  })

  it('the Prometheus example config loads the rules file, and the rules use existing metrics', () => {
    const config = parse(read('config/prometheus.yml')) as {
      rule_files: string[]
      scrape_configs: { job_name: string; metrics_path: string; static_configs: { targets: string[] }[] }[]
    }
    expect(config.scrape_configs[0]).toMatchObject({ job_name: 'switchyard', metrics_path: '/metrics' })
    expect(config.scrape_configs[0]!.static_configs[0]!.targets).toEqual(['127.0.0.1:9998'])
    for (const file of config.rule_files) {
      const rules = parse(read(`config/${file}`)) as {
        groups: { rules: { alert: string; expr: string }[] }[]
      }
      const all = rules.groups.flatMap((g) => g.rules)
      expect(all.length).toBeGreaterThan(3)
      expect(all.flatMap((r) => unknownMetrics(r.expr))).toEqual([])
    }
  })
})
