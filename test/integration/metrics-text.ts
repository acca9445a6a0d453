// A strict reader of the Prometheus text exposition format (version 0.0.4),
// for tests: every line must be a HELP, TYPE, sample or empty line, samples of
// a family must be together and after its TYPE, no series may repeat, and
// histograms must be well-formed (cumulative buckets, +Inf equal to _count).
// It throws with the line number on the first violation.

export interface Sample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

export interface Family {
  readonly name: string
  type: string
  help: string
  readonly samples: Sample[]
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*'
const LABEL = `([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\\\\n]|\\\\[\\\\"n])*)"`
// Prometheus reads values with Go's ParseFloat, which takes NaN in any case;
// prom-client writes `Nan` for an empty event-loop histogram.
const VALUE = '(?:[+-]?(?:\\d+\\.?\\d*(?:[eE][+-]?\\d+)?|\\.\\d+(?:[eE][+-]?\\d+)?)|[+-]?Inf|[Nn][Aa][Nn])'
const SAMPLE_LINE = new RegExp(`^(${NAME})(?:\\{((?:${LABEL})(?:,${LABEL})*,?)?\\})? (${VALUE})(?: -?\\d+)?$`)
const HELP_LINE = new RegExp(`^# HELP (${NAME}) (.*)$`)
const TYPE_LINE = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`)
const TYPES_SUFFIXES: Record<string, string[]> = {
  histogram: ['_bucket', '_sum', '_count'],
  summary: ['', '_sum', '_count'],
}

export function parsePrometheusText(text: string): Map<string, Family> {
  if (!text.endsWith('\n')) throw new Error('exposition must end with a newline')
  const families = new Map<string, Family>()
  const series = new Set<string>()
  let current: Family | null = null
  const lines = text.split('\n').slice(0, -1)
  lines.forEach((line, i) => {
    const at = `line ${i + 1}: ${line}`
    if (line === '') return
    const help = HELP_LINE.exec(line)
    const type = TYPE_LINE.exec(line)
    if (help || type) {
      const name = (help ?? type)![1]!
      let family = families.get(name)
      if (family === undefined) {
        family = { name, type: 'untyped', help: '', samples: [] }
        families.set(name, family)
      } else if (family !== current || family.samples.length > 0) {
        throw new Error(`${at}: HELP/TYPE after samples or repeated`)
      }
      if (help) family.help = help[2]!
      if (type) family.type = type[2]!
      current = family
      return
    }
    if (line.startsWith('#')) return
    const m = SAMPLE_LINE.exec(line)
    if (m === null) throw new Error(`${at}: not a sample line`)
    const name = m[1]!
    const family: Family | null = current
    if (family === null || !belongsTo(name, family)) throw new Error(`${at}: sample outside its family`)
    const labels: Record<string, string> = {}
    for (const l of (m[2] ?? '').matchAll(new RegExp(LABEL, 'g'))) {
      if (l[1]! in labels) throw new Error(`${at}: label ${l[1]} repeated`)
      labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c))
    }
    const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`
    if (series.has(key)) throw new Error(`${at}: series repeated`)
    series.add(key)
    // Groups: 1 name, 2 label block, 3-6 the label pattern's own, 7 the value.
    const raw = m[7]!
    family.samples.push({
      name,
      labels,
      value: raw.toLowerCase() === 'nan' ? Number.NaN : Number(raw.replace('Inf', 'Infinity')),
    })
  })
  for (const family of families.values()) if (family.type === 'histogram') checkHistogram(family)
  return families
}

function belongsTo(name: string, family: Family): boolean {
  const suffixes = TYPES_SUFFIXES[family.type] ?? ['']
  return suffixes.some((s) => name === family.name + s)
}

function checkHistogram(family: Family): void {
  const groups = new Map<string, Sample[]>()
  for (const s of family.samples) {
    const { le: _le, ...rest } = s.labels
    const key = JSON.stringify(Object.entries(rest).sort())
    groups.set(key, [...(groups.get(key) ?? []), s])
  }
  for (const [key, samples] of groups) {
    const buckets = samples.filter((s) => s.name.endsWith('_bucket'))
    const count = samples.find((s) => s.name.endsWith('_count'))
    if (count === undefined || !samples.some((s) => s.name.endsWith('_sum')))
      throw new Error(`${family.name} ${key}: missing _sum or _count`)
    let previous = 0
    for (const b of buckets) {
      if (b.labels.le === undefined) throw new Error(`${family.name} ${key}: bucket without le`)
      if (b.value < previous) throw new Error(`${family.name} ${key}: buckets not cumulative`)
      previous = b.value
    }
    const inf = buckets.find((b) => b.labels.le === '+Inf')
    if (inf === undefined || inf.value !== count.value)
      throw new Error(`${family.name} ${key}: +Inf bucket missing or not equal to _count`)
  }
}

/** The value of the one sample of `name` whose labels include `labels`; undefined when there is none. */
export function sampleValue(
  families: Map<string, Family>,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const matching = samplesOf(families, name, labels)
  if (matching.length > 1) throw new Error(`${name} ${JSON.stringify(labels)}: ${matching.length} samples`)
  return matching[0]?.value
}

export function samplesOf(
  families: Map<string, Family>,
  name: string,
  labels: Record<string, string> = {},
): Sample[] {
  const all = [...families.values()].flatMap((f) => f.samples)
  return all.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
}
