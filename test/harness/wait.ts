/** Retries `check` until it returns without throwing, or rethrows its last error after `timeoutMs`. */
export async function eventually<T>(
  check: () => T | Promise<T>,
  timeoutMs = 5_000,
  intervalMs = 10,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      return await check()
    } catch (err) {
      if (Date.now() > deadline) throw err
      await new Promise((r) => setTimeout(r, intervalMs))
    }
  }
}

export function uniqueName(base: string): string {
  return `${base}-${Math.random().toString(36).slice(2, 8)}`
}
