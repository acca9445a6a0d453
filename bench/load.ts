// Load generators, each run as a child process so its CPU is its own: wrk
// (Debian's package; one thread, latency in microseconds) when installed,
// otherwise autocannon (a devDependency; latency in whole milliseconds).
// Closed loop: each connection sends its next request when the previous
// answer arrived. A paced run adds a fixed delay per connection (wrk's
// `delay()`, autocannon's overall rate) for latency below saturation.

import { writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { exitedChildrenCpuSeconds, runToEnd, withOpenFiles } from './procs.js'

export type LoadTool = 'wrk' | 'autocannon'

export interface LoadSpec {
  readonly url: string
  readonly connections: number
  readonly seconds: number
  /** Approximate total request rate; absent for as fast as possible. */
  readonly rate?: number
  /** GET when absent. */
  readonly method?: 'GET' | 'POST'
  /** Bytes of request body sent with every request (a POST's). */
  readonly bodyBytes?: number
}

export interface LoadResult {
  readonly tool: LoadTool
  readonly requests: number
  readonly seconds: number
  readonly rps: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly p999Ms: number
  readonly maxMs: number
  /** Connection errors, timeouts and non-2xx answers. */
  readonly errors: number
  /** CPU seconds the load generator itself used. */
  readonly loadgenCpu: number
}

/** `wrk <version>` when wrk is installed, else null. */
export async function wrkVersion(): Promise<string | null> {
  const { stdout } = await runToEnd('wrk', ['-v'], { timeoutMs: 5_000 }).catch(() => ({ stdout: '' }))
  // wrk -v prints its version and usage, and exits 1; not installed prints nothing.
  const match = /^wrk (\S+)/m.exec(stdout)
  return match ? `wrk ${match[1]}` : null
}

export async function runLoad(tool: LoadTool, spec: LoadSpec, scratch: string): Promise<LoadResult> {
  const cpuBefore = exitedChildrenCpuSeconds()
  const result = tool === 'wrk' ? await runWrk(spec, scratch) : await runAutocannon(spec)
  return { ...result, loadgenCpu: exitedChildrenCpuSeconds() - cpuBefore }
}

type Measured = Omit<LoadResult, 'loadgenCpu'>

async function runWrk(spec: LoadSpec, scratch: string): Promise<Measured> {
  // wrk's delay() is per connection, in whole milliseconds, after each answer.
  const delayMs = spec.rate ? Math.max(1, Math.round((spec.connections * 1000) / spec.rate)) : 0
  const method = spec.method ?? 'GET'
  const bodyBytes = spec.bodyBytes ?? 0
  const script = join(scratch, `wrk-${method}-${bodyBytes}-${delayMs}.lua`)
  const lines = [
    `wrk.method = "${method}"`,
    // One body string built once: wrk sends the same request bytes every time.
    bodyBytes > 0 ? `wrk.body = string.rep("x", ${bodyBytes})` : '',
    bodyBytes > 0 ? 'wrk.headers["Content-Type"] = "application/octet-stream"' : '',
    delayMs > 0 ? `function delay() return ${delayMs} end` : '',
  ]
  writeFileSync(
    script,
    `${lines.filter(Boolean).join('\n')}
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"duration_us":%d,"errors":%d,"p50":%d,"p99":%d,"p999":%d,"max":%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end
`,
  )
  const [command, args] = withOpenFiles(spec.connections + 64, 'wrk', [
    '-t1',
    `-c${spec.connections}`,
    `-d${spec.seconds}s`,
    '--timeout',
    '10s',
    '-s',
    script,
    spec.url,
  ])
  const { stdout, code } = await runToEnd(command, args, { timeoutMs: (spec.seconds + 30) * 1000 })
  const line = stdout.split('\n').find((l) => l.startsWith('WRK_RESULT '))
  if (code !== 0 || line === undefined) throw new Error(`wrk failed (exit ${code}): ${stdout.slice(-1_000)}`)
  const r = JSON.parse(line.slice('WRK_RESULT '.length)) as Record<string, number>
  const seconds = (r.duration_us ?? 0) / 1e6
  return {
    tool: 'wrk',
    requests: r.requests ?? 0,
    seconds,
    rps: (r.requests ?? 0) / seconds,
    p50Ms: (r.p50 ?? 0) / 1000,
    p99Ms: (r.p99 ?? 0) / 1000,
    p999Ms: (r.p999 ?? 0) / 1000,
    maxMs: (r.max ?? 0) / 1000,
    errors: r.errors ?? 0,
  }
}

async function runAutocannon(spec: LoadSpec): Promise<Measured> {
  const bin = createRequire(import.meta.url).resolve('autocannon/autocannon.js')
  const args = [bin, '-j', '-c', String(spec.connections), '-d', String(spec.seconds)]
  if (spec.rate) args.push('-R', String(spec.rate))
  if (spec.method) args.push('-m', spec.method)
  if (spec.bodyBytes) args.push('-b', 'x'.repeat(spec.bodyBytes))
  const { stdout, code } = await runToEnd(process.execPath, [...args, spec.url], {
    timeoutMs: (spec.seconds + 30) * 1000,
  })
  if (code !== 0) throw new Error(`autocannon failed (exit ${code}): ${stdout.slice(-1_000)}`)
  const r = JSON.parse(stdout) as {
    duration: number
    errors: number
    timeouts: number
    non2xx: number
    requests: { total: number }
    latency: { p50: number; p99: number; p99_9: number; max: number }
  }
  return {
    tool: 'autocannon',
    requests: r.requests.total,
    seconds: r.duration,
    rps: r.requests.total / r.duration,
    p50Ms: r.latency.p50,
    p99Ms: r.latency.p99,
    p999Ms: r.latency.p99_9,
    maxMs: r.latency.max,
    errors: r.errors + r.timeouts + r.non2xx,
  }
}
