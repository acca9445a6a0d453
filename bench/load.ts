// Load generators, each run as a child process so its CPU is its own: wrk
// (Debian's package; one thread, latency in microseconds) when installed,
// otherwise autocannon (a devDependency; latency in whole milliseconds); for
// HTTP/2, h2load (Debian's nghttp2-client; one thread). Closed loop: each
// connection (each stream, for h2load) sends its next request when the
// previous answer arrived. A paced run adds a fixed delay per connection
// (wrk's `delay()`, autocannon's overall rate, h2load's --rps per client) for
// latency below saturation.

import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { exitedChildrenCpuSeconds, runToEnd, withOpenFiles } from './procs.js'
import { quantile } from './stats.js'

/** The HTTP/1.1 load generators (`--tool`); HTTP/2 always uses h2load. */
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
  /**
   * Send `Connection: close`: the server closes after each answer and the
   * client opens a new connection (over TLS, a new handshake) for the next.
   */
  readonly closeEachRequest?: boolean
  /** Concurrent streams per connection (HTTP/2, h2load's -m); 1 when absent. */
  readonly streams?: number
}

export interface LoadResult {
  readonly tool: LoadTool | 'h2load'
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
  /** What the TLS handshake settled, as h2load tells it (`h2 TLSv1.3 TLS_AES_128_GCM_SHA256 X25519`). */
  readonly negotiated?: string
}

/** `wrk <version>` when wrk is installed, else null. */
export async function wrkVersion(): Promise<string | null> {
  const { stdout } = await runToEnd('wrk', ['-v'], { timeoutMs: 5_000 }).catch(() => ({ stdout: '' }))
  // wrk -v prints its version and usage, and exits 1; not installed prints nothing.
  const match = /^wrk (\S+)/m.exec(stdout)
  return match ? `wrk ${match[1]}` : null
}

/** `h2load nghttp2/1.52.0` when h2load is installed, else null. */
export async function h2loadVersion(): Promise<string | null> {
  const { stdout } = await runToEnd('h2load', ['--version'], { timeoutMs: 5_000 }).catch(() => ({
    stdout: '',
  }))
  const match = /^h2load (\S+)/m.exec(stdout)
  return match ? `h2load ${match[1]}` : null
}

export async function runLoad(
  tool: LoadTool | 'h2load',
  spec: LoadSpec,
  scratch: string,
): Promise<LoadResult> {
  const cpuBefore = exitedChildrenCpuSeconds()
  const result =
    tool === 'h2load'
      ? await runH2load(spec, scratch)
      : tool === 'wrk'
        ? await runWrk(spec, scratch)
        : await runAutocannon(spec)
  return { ...result, loadgenCpu: exitedChildrenCpuSeconds() - cpuBefore }
}

type Measured = Omit<LoadResult, 'loadgenCpu'>

async function runWrk(spec: LoadSpec, scratch: string): Promise<Measured> {
  // wrk's delay() is per connection, in whole milliseconds, after each answer.
  const delayMs = spec.rate ? Math.max(1, Math.round((spec.connections * 1000) / spec.rate)) : 0
  const method = spec.method ?? 'GET'
  const bodyBytes = spec.bodyBytes ?? 0
  const close = spec.closeEachRequest === true
  const script = join(scratch, `wrk-${method}-${bodyBytes}-${delayMs}${close ? '-close' : ''}.lua`)
  const lines = [
    `wrk.method = "${method}"`,
    // wrk then reconnects (over TLS: handshakes again) after every answer.
    close ? 'wrk.headers["Connection"] = "close"' : '',
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
  if (spec.closeEachRequest) throw new Error('autocannon cannot open a connection per request: use wrk')
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

let h2loadRuns = 0

/**
 * h2load over TLS with ALPN h2: one thread, `connections` clients of one
 * connection each, `streams` requests in flight on each. Its summary gives no
 * percentiles, so they come from its per-request log (start, status, µs to
 * the end of the answer). A run that did not negotiate h2 throws: it would
 * have measured HTTP/1.1.
 */
async function runH2load(spec: LoadSpec, scratch: string): Promise<Measured> {
  const streams = spec.streams ?? 1
  const log = join(scratch, `h2load-${process.pid}-${h2loadRuns++}.log`)
  const args = [
    '-t1',
    `-c${spec.connections}`,
    `-m${streams}`,
    `-D${spec.seconds}`,
    `--log-file=${log}`,
    // --rps paces each client; the rate asked for is the total.
    ...(spec.rate ? [`--rps=${Math.max(1, Math.round(spec.rate / spec.connections))}`] : []),
    spec.url,
  ]
  const [command, argv] = withOpenFiles(spec.connections + 64, 'h2load', args)
  const { stdout, code } = await runToEnd(command, argv, { timeoutMs: (spec.seconds + 30) * 1000 })
  const field = (pattern: RegExp) => pattern.exec(stdout)?.[1]?.trim()
  const seconds = Number(field(/^finished in ([\d.]+)s,/m))
  if (code !== 0 || !Number.isFinite(seconds) || seconds <= 0) {
    throw new Error(`h2load failed (exit ${code}): ${stdout.slice(-1_000)}`)
  }
  const alpn = field(/^Application protocol: (.+)$/m) ?? 'none'
  if (alpn !== 'h2') throw new Error(`h2load negotiated ${alpn}, not h2: ${stdout.slice(-1_000)}`)
  const timeouts = Number(field(/^requests: .*?(\d+) timeout/m) ?? 0)
  const latencies: number[] = []
  let other = 0
  let unfinished = 0
  const rows = readFileSync(log, 'utf8').split('\n')
  // A few MB per run: not kept in the scratch folder for the rest of the run.
  rmSync(log, { force: true })
  for (const row of rows) {
    const [, status, us] = row.split('\t')
    if (status === undefined || us === undefined) continue
    const s = Number(status)
    if (s >= 200 && s < 300) latencies.push(Number(us) / 1000)
    else if (s < 0) unfinished++
    else other++
  }
  // The streams in flight when the duration ends are logged as failed
  // (status -1): up to one per stream slot is the end of the run, more are
  // real failures.
  const failed = Math.max(0, unfinished - spec.connections * streams)
  latencies.sort((a, b) => a - b)
  const tls = [
    field(/^TLS Protocol: (.+)$/m),
    field(/^Cipher: (.+)$/m),
    field(/^Server Temp Key: (\S+)/m),
  ].filter(Boolean)
  return {
    tool: 'h2load',
    requests: latencies.length,
    seconds,
    rps: latencies.length / seconds,
    p50Ms: quantile(latencies, 0.5),
    p99Ms: quantile(latencies, 0.99),
    p999Ms: quantile(latencies, 0.999),
    maxMs: latencies.length === 0 ? 0 : (latencies[latencies.length - 1] as number),
    errors: other + failed + timeouts,
    negotiated: [alpn, ...tls].join(' '),
  }
}
