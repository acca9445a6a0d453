// Metric families read from plain cells at scrape time (RequestCounters, the
// table, the watches' state) and written straight to the Prometheus text
// format, without prom-client's per-scrape label maps. At 1,000 services a
// scrape is 42,000 lines; through prom-client's Counter.inc and registry it
// took ~90 ms of CPU and made ~90 MiB of garbage, which at Prometheus' usual
// interval kept V8 from ever seeing the proxy as idle and shrinking its heap
// (bench/results/memory.md). One definition per family gives both forms:
// text for a single process, prom-client's metric JSON for the workers'
// aggregate (cluster.ts).

import type { MetricObjectWithValues, MetricType, MetricValue } from 'prom-client'

export type Labels = Readonly<Record<string, string>>

export type MetricJson = MetricObjectWithValues<MetricValue<string> & { metricName?: string }>

/** One more label on top of a series' labels (`le`, a status class, a reason), rendered once. */
export interface ExtraLabel {
  readonly name: string
  readonly value: string
  /** `name="value"`, escaped. */
  readonly text: string
}

export function extraLabel(name: string, value: string): ExtraLabel {
  return { name, value, text: `${name}="${escapeLabel(value)}"` }
}

/**
 * One sample. `name` is the family's name or a histogram's series of it
 * (`_bucket`, `_sum`, `_count`). Passing the same `name` and `labels` objects
 * for consecutive samples lets the text form render their prefix once.
 */
export type Emit = (name: string, labels: Labels, value: number, extra?: ExtraLabel) => void

export interface Family {
  readonly name: string
  readonly help: string
  readonly type: 'counter' | 'gauge' | 'histogram'
  readonly labelNames: readonly string[]
  /** How workers' values combine: 'first' for what describes the one shared table (the primary's). */
  readonly aggregator: 'sum' | 'first'
  /** Emits each label set at most once per series name (prom-client merged repeats; the text would repeat them). */
  readonly samples: (emit: Emit) => void
}

const CHUNK_BYTES = 64 * 1024
const NEWLINE = 0x0a
const SPACE = 0x20
const COMMA = 0x2c
const CLOSE = 0x7d

/**
 * Families in the Prometheus text format (version 0.0.4), each followed by a
 * blank line, then `rest` (prom-client's own text), written piece by piece:
 * a line costs the digits of its value, a series its label text once
 * (building the text as strings left four or five short-lived strings per
 * line).
 */
export function exposition(families: readonly Family[], rest: string): Buffer[] {
  const out = new ChunkWriter()
  for (const family of families) {
    out.write(`# HELP ${family.name} ${escapeHelp(family.help)}\n# TYPE ${family.name} ${family.type}\n`)
    let lastName = ''
    let lastLabels: Labels | null = null
    /** `name{labels` or `name{` (no labels yet), for the last name and labels seen. */
    let prefix = ''
    let hasLabels = false
    family.samples((name, labels, value, extra) => {
      if (labels !== lastLabels || name !== lastName) {
        lastName = name
        lastLabels = labels
        const text = labelText(labels)
        hasLabels = text !== ''
        prefix = `${name}{${text}`
      }
      if (hasLabels || extra !== undefined) {
        out.write(prefix)
        if (extra !== undefined) {
          if (hasLabels) out.byte(COMMA)
          out.write(extra.text)
        }
        out.byte(CLOSE)
      } else {
        out.write(name)
      }
      out.byte(SPACE)
      out.write(formatValue(value))
      out.byte(NEWLINE)
    })
    out.byte(NEWLINE)
  }
  out.write(rest)
  return out.result()
}

/** ES2024's ArrayBuffer.prototype.transfer (the project's lib is ES2023). */
type Transferable = ArrayBuffer & { transfer(length: number): ArrayBuffer }

/**
 * Frees the memory of chunks exposition() made (each owns its ArrayBuffer),
 * now rather than at a later GC; they read as empty afterwards. Only for
 * those: a pooled Buffer's ArrayBuffer is shared with others.
 */
export function freeChunks(chunks: readonly Buffer[]): void {
  for (const chunk of chunks) (chunk.buffer as Transferable).transfer(0)
}

/** The text of an exposition, whichever form it came in. */
export function expositionText(body: string | readonly Uint8Array[]): string {
  return typeof body === 'string' ? body : Buffer.concat(body).toString('utf8')
}

/** One family as prom-client's metric JSON, the form AggregatorRegistry.aggregate() adds up. */
export function familyJson(family: Family): MetricJson {
  const values: MetricJson['values'] = []
  family.samples((name, labels, value, extra) => {
    const all = extra === undefined ? labels : { ...labels, [extra.name]: extra.value }
    values.push(name === family.name ? { value, labels: all } : { value, labels: all, metricName: name })
  })
  return {
    name: family.name,
    help: family.help,
    // prom-client's typings declare MetricType as a numeric enum; its JSON carries the type's name.
    type: family.type as unknown as MetricType,
    aggregator: family.aggregator,
    collect: () => {},
    values,
  }
}

/** A histogram's samples from cells of per-bucket (not cumulative) counts, the last slot +Inf. */
export function histogramSamples<S extends { buckets: readonly number[]; sum: number; count: number }>(
  name: string,
  bounds: readonly number[],
  series: () => Iterable<S>,
  labelsOf: (series: S) => Labels,
): (emit: Emit) => void {
  const le = [...bounds.map(String), '+Inf'].map((bound) => extraLabel('le', bound))
  const bucket = `${name}_bucket`
  const sum = `${name}_sum`
  const count = `${name}_count`
  return (emit) => {
    for (const s of series()) {
      const labels = labelsOf(s)
      let cumulative = 0
      for (let i = 0; i < bounds.length; i++) {
        cumulative += s.buckets[i] ?? 0
        emit(bucket, labels, cumulative, le[i])
      }
      emit(bucket, labels, s.count, le[bounds.length])
      emit(sum, labels, s.sum)
      emit(count, labels, s.count)
    }
  }
}

/**
 * Appends strings as UTF-8 to 64 KiB chunks. One buffer doubled as it filled
 * left the C heap fragmented: at 1,000 services the process kept ~20 MB more
 * resident after a few scrapes. Chunks of one size fit where freed ones were.
 * Each chunk has its own memory (never Node's shared pool), so freeChunks()
 * may release it once the chunks are written.
 */
class ChunkWriter {
  private readonly chunks: Buffer[] = []
  private chunk = Buffer.allocUnsafeSlow(CHUNK_BYTES)
  private length = 0

  write(text: string): void {
    // Three bytes per UTF-16 unit is the most UTF-8 needs.
    const most = text.length * 3
    if (this.length + most > CHUNK_BYTES) {
      if (most > CHUNK_BYTES) {
        this.flush()
        const own = Buffer.allocUnsafeSlow(Buffer.byteLength(text))
        own.write(text)
        this.chunks.push(own)
        return
      }
      this.flush()
    }
    this.length += this.chunk.write(text, this.length)
  }

  /** One ASCII character. */
  byte(code: number): void {
    if (this.length === CHUNK_BYTES) this.flush()
    this.chunk[this.length++] = code
  }

  result(): Buffer[] {
    if (this.length > 0) this.chunks.push(this.chunk.subarray(0, this.length))
    return this.chunks
  }

  private flush(): void {
    if (this.length === 0) return
    this.chunks.push(this.chunk.subarray(0, this.length))
    this.chunk = Buffer.allocUnsafeSlow(CHUNK_BYTES)
    this.length = 0
  }
}

function labelText(labels: Labels): string {
  let text = ''
  for (const key in labels) {
    const pair = `${key}="${escapeLabel(labels[key] as string)}"`
    text = text === '' ? pair : `${text},${pair}`
  }
  return text
}

const NEEDS_ESCAPE = /[\\"\n]/

function escapeLabel(text: string): string {
  if (!NEEDS_ESCAPE.test(text)) return text
  return text.replaceAll('\\', '\\\\').replaceAll('"', '\\"').replaceAll('\n', '\\n')
}

function escapeHelp(text: string): string {
  return text.replaceAll('\\', '\\\\').replaceAll('\n', '\\n')
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN'
  if (value === Number.POSITIVE_INFINITY) return '+Inf'
  if (value === Number.NEGATIVE_INFINITY) return '-Inf'
  return String(value)
}
