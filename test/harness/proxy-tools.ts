// Tools for the proxy hardening tests: raw sockets (to send what no HTTP
// client would), an observer that counts what the proxy reports, and memory
// and socket measurements.

import { spawn } from 'node:child_process'
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { once } from 'node:events'
import type { AddressInfo, Server as NetServer } from 'node:net'
import { connect, type Socket } from 'node:net'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import type {
  ProxyObserver,
  RejectReason,
  TimeoutKind,
  UpstreamErrorReason,
} from '../../src/proxy/observer.js'
import type { Backend } from '../../src/routing/types.js'

export interface RawResponse {
  /** Everything the proxy sent before closing (or before `waitMs` passed). */
  readonly text: string
  /** Status of the first response, 0 if none. */
  readonly status: number
  /** True when the proxy closed the connection. */
  readonly closed: boolean
}

/**
 * Writes `data` on a fresh connection and collects what comes back until the
 * proxy closes the connection or `waitMs` passes.
 */
export function rawRequest(port: number, data: string | Buffer, waitMs = 2_000): Promise<RawResponse> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    const chunks: Buffer[] = []
    let closed = false
    const finish = () => {
      clearTimeout(timer)
      const text = Buffer.concat(chunks).toString('latin1')
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text)
      socket.destroy()
      resolve({ text, status: m ? Number(m[1]) : 0, closed })
    }
    const timer = setTimeout(finish, waitMs)
    socket.on('data', (chunk) => chunks.push(chunk))
    socket.on('error', () => {})
    socket.on('close', () => {
      closed = true
      finish()
    })
    socket.write(data)
  })
}

export interface Counts {
  readonly requests: { status: number; target: string | null }[]
  readonly rejected: Map<RejectReason, number[]>
  readonly timeouts: { kind: TimeoutKind; target: string | null }[]
  readonly upstreamErrors: { target: string; reason: UpstreamErrorReason }[]
  readonly health: { target: string; ejected: boolean }[]
}

/** An observer that records every report, and the records. */
export function countingObserver(): { observer: ProxyObserver; counts: Counts } {
  const counts: Counts = { requests: [], rejected: new Map(), timeouts: [], upstreamErrors: [], health: [] }
  const observer: ProxyObserver = {
    request(_route, target, status) {
      counts.requests.push({ status, target: target?.key ?? null })
    },
    upstreamError(target: Backend, reason) {
      counts.upstreamErrors.push({ target: target.key, reason })
    },
    rejected(reason, status) {
      const list = counts.rejected.get(reason) ?? []
      list.push(status)
      counts.rejected.set(reason, list)
    },
    timeout(kind, target) {
      counts.timeouts.push({ kind, target: target?.key ?? null })
    },
    passiveHealth(target, ejected) {
      counts.health.push({ target: target.key, ejected })
    },
  }
  return { observer, counts }
}

let gcFunction: (() => void) | null = null

/** A full garbage collection (exposes V8's gc() at run time; vitest's forks do not pass --expose-gc). */
export function collectGarbage(): void {
  if (gcFunction === null) {
    setFlagsFromString('--expose-gc')
    gcFunction = runInNewContext('gc') as () => void
  }
  gcFunction()
  gcFunction()
}

export type TrackedKind = 'client request' | 'client socket' | 'upstream request'

export interface RetentionTracker {
  /** Objects of each kind created since the tracker started. */
  readonly created: Record<TrackedKind, number>
  /** Objects of each kind created since the tracker started and still reachable after full collections. */
  live(): Promise<Record<TrackedKind, number>>
  stop(): void
}

/**
 * Counts the per-request objects of one proxy that stay reachable: the
 * client requests and sockets of the listener `server` (its port) and the
 * requests sent on to `upstreamOrigins`, as the data plane publishes them on
 * its diagnostics channels (src/proxy/diagnostics.ts). Unlike heap bytes,
 * these counts do not move with the test's own allocations, the JIT or a
 * busy machine: a leaked request stays counted however long one waits.
 */
export function trackRetention(server: NetServer, upstreamOrigins: readonly string[]): RetentionTracker {
  const origins = new Set(upstreamOrigins)
  const port = (server.address() as AddressInfo).port
  const kinds: TrackedKind[] = ['client request', 'client socket', 'upstream request']
  const zero = () => Object.fromEntries(kinds.map((k) => [k, 0])) as Record<TrackedKind, number>
  const created = zero()
  const collected = zero()
  const registry = new FinalizationRegistry<TrackedKind>((kind) => {
    collected[kind]++
  })
  const track = (kind: TrackedKind, value: object) => {
    created[kind]++
    registry.register(value, kind)
  }
  const onConnection = (message: unknown) => {
    const m = message as { socket: object; localPort: number }
    if (m.localPort === port) track('client socket', m.socket)
  }
  const onRequest = (message: unknown) => {
    const m = message as { exchange: object; localPort: number }
    if (m.localPort === port) track('client request', m.exchange)
  }
  const onUpstream = (message: unknown) => {
    const m = message as { attempt: object; origin: string }
    if (origins.has(m.origin)) track('upstream request', m.attempt)
  }
  subscribe('switchyard:client:connection', onConnection)
  subscribe('switchyard:client:request', onRequest)
  subscribe('switchyard:upstream:request', onUpstream)
  return {
    created,
    async live() {
      // Finalisation callbacks run in later tasks, after the collection that found the object dead.
      for (let i = 0; i < 3; i++) {
        collectGarbage()
        await new Promise((resolve) => setImmediate(resolve))
      }
      const live = zero()
      for (const kind of kinds) live[kind] = created[kind] - collected[kind]
      return live
    },
    stop() {
      unsubscribe('switchyard:client:connection', onConnection)
      unsubscribe('switchyard:client:request', onRequest)
      unsubscribe('switchyard:upstream:request', onUpstream)
    },
  }
}

/** Open TCP sockets and servers of this process, as Node counts its active handles. */
export function openSockets(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap' || r === 'TCPWrap').length
}

export const MB = 1024 * 1024

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

export interface Blackhole {
  /** A loopback port where TCP connects hang (SYNs are dropped), as with a firewalled host. */
  readonly port: number
  close(): void
}

/**
 * A listener whose accept queue is full: a stopped child process listening
 * with backlog 1, its queue filled by two held connections. Further connects
 * neither succeed nor fail, so a connect timeout has to fire.
 */
export async function startBlackhole(): Promise<Blackhole> {
  const child = spawn(
    process.execPath,
    [
      '-e',
      "const s=require('net').createServer();s.listen({port:0,host:'127.0.0.1',backlog:1},()=>console.log(s.address().port))",
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  )
  const [line] = (await once(child.stdout as NodeJS.ReadableStream, 'data')) as [Buffer]
  const port = Number(String(line).trim())
  child.kill('SIGSTOP')
  const held: Socket[] = []
  for (let i = 0; i < 8; i++) {
    const connected = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1')
      held.push(socket)
      const timer = setTimeout(() => resolve(false), 300)
      socket.on('connect', () => {
        clearTimeout(timer)
        resolve(true)
      })
      socket.on('error', () => resolve(false))
    })
    if (!connected) break
  }
  return {
    port,
    close() {
      for (const socket of held) socket.destroy()
      child.kill('SIGKILL')
    },
  }
}
