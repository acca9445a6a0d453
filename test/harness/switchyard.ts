// Starts Switchyard in-process, wired exactly as `switchyard serve` wires it,
// with the read-only token, and collects its log lines for assertions.

import { Writable } from 'node:stream'
import { request } from 'undici'
import { expect } from 'vitest'
import { stringify } from 'yaml'
import { type Switchyard, startSwitchyard } from '../../src/cli/serve.js'
import { loadConfig, type ResolvedConfig } from '../../src/config/load.js'
import { createLogger } from '../../src/log.js'
import type { TlsSource } from '../../src/proxy/listener.js'
import type { ProxyObserver } from '../../src/proxy/observer.js'
import type { ConsulInfo } from './consul-agent.js'

export interface TestProxy {
  readonly app: Switchyard
  readonly config: ResolvedConfig
  readonly logs: Record<string, unknown>[]
  get(path: string, headers?: Record<string, string>): Promise<TestResponse>
  admin(path: string): Promise<TestResponse>
  stop(): Promise<void>
}

export interface TestResponse {
  readonly status: number
  readonly body: string
  readonly headers: Record<string, string | string[] | undefined>
}

type Overrides = Record<string, Record<string, unknown>>

export async function startTestProxy(
  consul: ConsulInfo,
  overrides: Overrides = {},
  options: {
    token?: string
    observer?: ProxyObserver
    /** Certificates for https listeners. */
    tls?: TlsSource
    waitLoaded?: boolean
    /** More environment variables, in Consul's conventions (CONSUL_CACERT…). */
    env?: Record<string, string>
  } = {},
): Promise<TestProxy> {
  const base: Overrides = {
    proxy: { listen: '127.0.0.1:0' },
    admin: { listen: '127.0.0.1:0' },
    consul: { wait: '30s', minInterval: '5ms', backoffInitial: '50ms', backoffMax: '500ms' },
    log: { level: 'debug' },
  }
  const merged: Overrides = { ...base }
  for (const [section, values] of Object.entries(overrides))
    merged[section] = { ...(base[section] ?? {}), ...values }
  const config = loadConfig(
    [],
    { CONSUL_HTTP_ADDR: consul.address, ...options.env },
    { path: 'test.yaml', text: stringify(merged) },
  )

  const logs: Record<string, unknown>[] = []
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split('\n')) if (line) logs.push(JSON.parse(line))
      done()
    },
  })
  const log = createLogger(config.log.level, sink)
  const app = await startSwitchyard(config, {
    log,
    token: options.token ?? consul.proxyToken,
    observer: options.observer,
    tls: options.tls,
  })
  if (options.waitLoaded !== false) await app.loaded

  const call = async (
    base: string,
    path: string,
    headers: Record<string, string> = {},
  ): Promise<TestResponse> => {
    const res = await request(`${base}${path}`, { headers })
    return { status: res.statusCode, body: await res.body.text(), headers: res.headers }
  }
  return {
    app,
    config,
    logs,
    get: (path, headers) => call(app.proxyUrl, path, headers),
    admin: (path) => call(app.adminUrl, path),
    stop: () => app.stop(),
  }
}

/** The distinct bodies (sorted) of `n` GETs of `path`, each of which must answer 200. */
export async function servedBy(proxy: TestProxy, path: string, n: number): Promise<string[]> {
  const seen = new Set<string>()
  for (let i = 0; i < n; i++) {
    const res = await proxy.get(path)
    expect(res.status).toBe(200)
    seen.add(res.body)
  }
  return [...seen].sort()
}
