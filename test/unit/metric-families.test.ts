// The families written from cells: their text (in 64 KiB chunks) reads back,
// through a strict reader of the format, as the same samples as their metric
// JSON (what the workers' aggregate adds up), whatever the label values hold.

import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { describe, expect, it, vi } from 'vitest'
import { createAdminServer } from '../../src/admin/server.js'
import {
  exposition,
  expositionText,
  extraLabel,
  type Family,
  familyJson,
  freeChunks,
  histogramSamples,
} from '../../src/metrics/families.js'
import { TableStore } from '../../src/table/store.js'
import { parsePrometheusText } from '../integration/metrics-text.js'

const SERVICES = Array.from({ length: 3_000 }, (_, i) => `svc-${i}`)
const AWKWARD = ['quote " here', 'back\\slash', 'new\nline', 'café ☕ 日本', 'x'.repeat(70_000)]
const CLASSES = ['2xx', '5xx'].map((c) => extraLabel('status_class', c))

const counter: Family = {
  name: 'test_requests_total',
  help: 'Requests, with a backslash \\ and\na newline in the help.',
  type: 'counter',
  labelNames: ['service', 'status_class'],
  aggregator: 'sum',
  samples: (emit) => {
    for (const [i, service] of [...SERVICES, ...AWKWARD].entries()) {
      const labels = { service }
      emit('test_requests_total', labels, i, CLASSES[0])
      emit('test_requests_total', labels, i * 2 + 0.5, CLASSES[1])
    }
  },
}

const histogram: Family = {
  name: 'test_duration_seconds',
  help: 'Durations.',
  type: 'histogram',
  labelNames: ['service'],
  aggregator: 'sum',
  samples: histogramSamples(
    'test_duration_seconds',
    [0.1, 1],
    () => [
      { service: 'a', buckets: [1, 2, 3], sum: 4.25, count: 6 },
      { service: 'é"', buckets: [0, 0, 0], sum: 0, count: 0 },
    ],
    (s) => ({ service: s.service }),
  ),
}

const unlabelled: Family = {
  name: 'test_generation',
  help: 'No labels.',
  type: 'gauge',
  labelNames: [],
  aggregator: 'first',
  samples: (emit) => emit('test_generation', {}, 7),
}

const families = [counter, histogram, unlabelled]

describe('metric families', () => {
  it('writes text that reads back as the samples of their JSON, across many chunks', () => {
    const chunks = exposition(families, '# HELP tail_metric Rest.\n# TYPE tail_metric gauge\ntail_metric 1\n')
    expect(chunks.length).toBeGreaterThan(3)
    const parsed = parsePrometheusText(expositionText(chunks))
    for (const family of families) {
      const json = familyJson(family)
      const read = parsed.get(family.name)
      expect(read?.type).toBe(family.type)
      expect(read?.help).toBe(family.help.replaceAll('\\', '\\\\').replaceAll('\n', '\\n'))
      expect(read?.samples).toEqual(
        json.values.map((v) => ({ name: v.metricName ?? family.name, labels: v.labels, value: v.value })),
      )
    }
    expect(parsed.get('tail_metric')?.samples).toEqual([{ name: 'tail_metric', labels: {}, value: 1 }])
  })

  it('keeps label values with quotes, backslashes, newlines, non-ASCII and 70,000 characters intact', () => {
    const parsed = parsePrometheusText(expositionText(exposition([counter], '')))
    const read = new Set(parsed.get('test_requests_total')?.samples.map((s) => s.labels.service))
    for (const value of AWKWARD) expect(read.has(value)).toBe(true)
    expect(read.size).toBe(SERVICES.length + AWKWARD.length)
  })

  it('gives histograms cumulative buckets with +Inf equal to the count', () => {
    const samples = familyJson(histogram).values.filter((v) => v.labels.service === 'a')
    expect(
      samples.map((v) => `${v.metricName}${v.labels.le ? ` le=${v.labels.le}` : ''} ${v.value}`),
    ).toEqual([
      'test_duration_seconds_bucket le=0.1 1',
      'test_duration_seconds_bucket le=1 3',
      'test_duration_seconds_bucket le=+Inf 6',
      'test_duration_seconds_sum 4.25',
      'test_duration_seconds_count 6',
    ])
  })

  it('the admin server sends the chunks whole, then frees them rather than leaving them to the GC', async () => {
    const sent: Buffer[][] = []
    const admin = createAdminServer({
      store: new TableStore(),
      status: () => ({ loaded: true, staleForMs: 0, lastSyncAt: 0, watches: [], problems: [] }),
      readinessMaxStaleMs: 60_000,
      config: {},
      metrics: async () => {
        const body = exposition(families, '')
        sent.push(body)
        return { contentType: 'text/plain; version=0.0.4', body, free: () => freeChunks(body) }
      },
    })
    admin.listen(0, '127.0.0.1')
    await once(admin, 'listening')
    try {
      const res = await fetch(`http://127.0.0.1:${(admin.address() as AddressInfo).port}/metrics`)
      expect(await res.text()).toBe(expositionText(exposition(families, '')))
      const chunks = sent[0] ?? []
      expect(chunks.length).toBeGreaterThan(3)
      await vi.waitFor(() => expect(chunks.every((chunk) => chunk.byteLength === 0)).toBe(true))
    } finally {
      admin.close()
    }
  })
})
