// Small statistics helpers shared by the sections of the benchmark.

/** The q-quantile (0..1) of `values` by linear interpolation; NaN when empty. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const pos = (sorted.length - 1) * q
  const lo = Math.floor(pos)
  const hi = Math.ceil(pos)
  const a = sorted[lo] as number
  const b = sorted[hi] as number
  return a + (b - a) * (pos - lo)
}

export function median(values: readonly number[]): number {
  return quantile(values, 0.5)
}

export interface Distribution {
  readonly n: number
  readonly p50: number
  readonly p99: number
  readonly max: number
}

export function distribution(values: readonly number[]): Distribution {
  return {
    n: values.length,
    p50: quantile(values, 0.5),
    p99: quantile(values, 0.99),
    max: values.length === 0 ? Number.NaN : Math.max(...values),
  }
}

/** `a / b`, or null when either is missing or b is 0 (a ratio that cannot be given). */
export function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  if (a === null || a === undefined || b === null || b === undefined) return null
  if (!Number.isFinite(a) || !Number.isFinite(b) || b === 0) return null
  return a / b
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
