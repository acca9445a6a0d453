// Per-version success rate and latency for the status page and /api/targets:
// the same numbers `switchyard rollout` checks, read from this proxy's own
// /metrics (so with several workers, their sum). While someone looks, a
// reading is kept every few seconds for a minute, so besides the totals since
// start the view shows the last minute, which is what someone watching a
// canary wants; a proxy nobody looks at reads nothing.

import { type Clock, systemClock } from '../clock.js'
import { expositionText } from '../metrics/families.js'
import {
  parsePrometheusText,
  summarize,
  type TrafficByVersion,
  trafficByVersion,
  trafficSince,
  VERSION_TRAFFIC_METRICS,
  type VersionTotals,
} from '../metrics/scrape.js'

export interface VersionTrafficView {
  readonly version: string
  /** Since the proxy started. */
  readonly requests: number
  /** Answers that were not 5xx, over all; null without requests. */
  readonly successRate: number | null
  readonly p99Ms: number | null
  /** Over the last `seconds` (up to a minute); null until two readings are far enough apart. */
  readonly recent: {
    readonly seconds: number
    readonly requests: number
    readonly requestsPerSecond: number
    readonly successRate: number | null
    readonly p99Ms: number | null
  } | null
}

/** Seconds between kept readings, and how long they are kept. */
const EVERY_MS = 5_000
const KEEP_MS = 60_000
/**
 * Background readings stop this long after the last view. Each reading
 * collects every metric (of every worker): at 1,000 services a 3.6 MB text,
 * 10 % of a core on a proxy nobody was looking at.
 */
const WATCHED_MS = 120_000
/** A window shorter than this says too little to show. */
const MIN_WINDOW_MS = 4_000
/**
 * A reading this recent answers again: `target get --wait` and a rollout poll
 * /api/targets several times a second, and each reading collects every metric
 * (of every worker).
 */
const FRESH_MS = 1_000

export class VersionTraffic {
  private readonly metrics: () => Promise<{ body: string | readonly Uint8Array[] }>
  private readonly clock: Clock
  private readings: { at: number; traffic: TrafficByVersion }[] = []
  private timer: NodeJS.Timeout | null = null
  private lastViewAt = 0

  constructor(metrics: () => Promise<{ body: string | readonly Uint8Array[] }>, clock: Clock = systemClock) {
    this.metrics = metrics
    this.clock = clock
  }

  /**
   * Keeps readings in the background while views are asked for (the status
   * page refreshes itself; `target get --wait` polls), and for two minutes
   * after; unref'd, it never holds the process.
   */
  private watch(): void {
    this.lastViewAt = this.clock.now()
    this.timer ??= setInterval(() => {
      if (this.clock.now() - this.lastViewAt > WATCHED_MS) this.stop()
      else void this.read().catch(() => {})
    }, EVERY_MS).unref()
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
  }

  /** Per service, its versions' numbers now. */
  async view(): Promise<Map<string, VersionTrafficView[]>> {
    this.watch()
    const now = this.clock.now()
    const traffic = await this.read()
    const base = this.readings.find((r) => now - r.at >= MIN_WINDOW_MS) ?? null
    const out = new Map<string, VersionTrafficView[]>()
    for (const [service, versions] of traffic) {
      const views: VersionTrafficView[] = []
      for (const version of [...versions.keys()].sort()) {
        const totals = versions.get(version)
        if (totals === undefined) continue
        const all = summarize(totals)
        let recent: VersionTrafficView['recent'] = null
        if (base !== null) {
          const seconds = (now - base.at) / 1000
          const since = summarize(trafficSince(totals, base.traffic.get(service)?.get(version)))
          recent = {
            seconds: Math.round(seconds),
            requests: since.requests,
            requestsPerSecond: round(since.requests / seconds, 2),
            successRate: since.errorRate === null ? null : round(1 - since.errorRate, 5),
            p99Ms: since.p99 === null ? null : round(since.p99 * 1000, 1),
          }
        }
        views.push({
          version,
          requests: all.requests,
          successRate: all.errorRate === null ? null : round(1 - all.errorRate, 5),
          p99Ms: all.p99 === null ? null : round(all.p99 * 1000, 1),
          recent,
        })
      }
      out.set(service, views)
    }
    return out
  }

  private latest: { at: number; traffic: TrafficByVersion } | null = null

  private async read(): Promise<TrafficByVersion> {
    const fresh = this.latest
    if (fresh !== null && this.clock.now() - fresh.at < FRESH_MS) return fresh.traffic
    const traffic = trafficByVersion(
      parsePrometheusText(expositionText((await this.metrics()).body), VERSION_TRAFFIC_METRICS),
    )
    const now = this.clock.now()
    this.latest = { at: now, traffic }
    const last = this.readings[this.readings.length - 1]
    if (last === undefined || now - last.at >= EVERY_MS)
      this.readings.push({ at: now, traffic: counted(traffic) })
    this.readings = this.readings.filter((r) => now - r.at <= KEEP_MS)
    return traffic
  }
}

/**
 * The versions of a reading that counted anything. A version left out reads
 * as no reading (trafficSince then takes the totals as they are), which is
 * what a reading of zeros gives: a dozen readings of every version of every
 * service would otherwise be kept for a fleet that is mostly idle.
 */
function counted(traffic: TrafficByVersion): TrafficByVersion {
  const out: TrafficByVersion = new Map()
  for (const [service, versions] of traffic) {
    let kept: Map<string, VersionTotals> | undefined
    for (const [version, t] of versions) {
      if (
        t.requests === 0 &&
        t.errors === 0 &&
        t.count === 0 &&
        t.sum === 0 &&
        t.buckets.every((n) => n === 0)
      )
        continue
      if (kept === undefined) {
        kept = new Map()
        out.set(service, kept)
      }
      kept.set(version, t)
    }
  }
  return out
}

function round(n: number, digits: number): number {
  return Number(n.toFixed(digits))
}
