// The watches Switchyard keeps on Consul, all through one BlockingQuery loop:
//   - the service list (which services carry a route tag),
//   - one health watch per routed service (wakes only when that service changes),
//   - the target-state prefix in KV (recursive), Fabio's route overrides, and
//     the certificate prefix when a TLS listener needs it (src/tls/sources.ts),
//     all through KvPrefixWatcher.
// Watchers only signal: `onChange()` says that something changed, and the
// caller reads the normalised state (`snapshot()`, `current()`) when it is
// ready to build; they know nothing of routes or tables.

import type { Clock } from '../clock.js'
import { ConsulPermissionError, ConsulResponseError } from '../errors.js'
import type { CatalogSnapshot, InstanceSnapshot } from '../routing/types.js'
import { BlockingQuery, type BlockingQueryState } from './blocking-query.js'
import { assertPrefixReadable, type ConsulClient, type ConsulResponse, readBody } from './client.js'
import { Interner, parseHealthService, parseKvList, parseServiceList, routedServices } from './normalize.js'
import type { RecoveryGroup } from './recovery.js'

export interface WatchSettings {
  readonly waitMs: number
  readonly stale: boolean
  /** Use the local agent's cache for health reads (`?cached`). */
  readonly cached: boolean
  readonly minIntervalMs: number
  readonly backoffInitialMs: number
  readonly backoffMaxMs: number
  /** Shared by every watch of one Switchyard, so they recover from an outage together. */
  readonly recovery?: RecoveryGroup
  readonly clock?: Clock
}

export interface WatchListener {
  onError?(watch: string, error: Error, consecutive: number, retryInMs: number): void
  onRecover?(watch: string, failedForMs: number): void
}

/** Shared by every watch: one blocking request with the right parameters and error mapping. */
function blockingFetch(
  client: ConsulClient,
  settings: WatchSettings,
  path: string,
  query: Record<string, string | boolean>,
  what: string,
  onResponse: (res: ConsulResponse) => void = () => {},
) {
  // Consul adds up to wait/16 of jitter; the timeout leaves room for it and
  // the network. A non-blocking read (index 0: the first, and after an error)
  // should answer at once, so a Consul that accepts and then hangs is noticed
  // in seconds rather than after a whole wait.
  const blockingTimeoutMs = settings.waitMs + Math.ceil(settings.waitMs / 16) + 5_000
  const readTimeoutMs = Math.min(blockingTimeoutMs, 15_000)
  return async (index: number, signal: AbortSignal) => {
    const res = await client.get(
      path,
      {
        ...query,
        index: index > 0 ? index : undefined,
        wait: index > 0 ? `${Math.ceil(settings.waitMs / 1000)}s` : undefined,
      },
      { signal, timeoutMs: index > 0 ? blockingTimeoutMs : readTimeoutMs },
    )
    onResponse(res)
    return { index: res.index, body: readBody(path, res, what) }
  }
}

function loop<T>(
  name: string,
  settings: WatchSettings,
  listener: WatchListener,
  fetch: (index: number, signal: AbortSignal) => Promise<{ index: number; body: string }>,
  parse: (body: string) => T,
  onValue: (value: T) => void,
): BlockingQuery<T> {
  return new BlockingQuery<T>({
    name,
    fetch,
    parse: (body) => {
      try {
        return parse(body)
      } catch (err) {
        throw new ConsulResponseError(name, (err as Error).message)
      }
    },
    onValue,
    onError: (error, consecutive, retryIn) => listener.onError?.(name, error, consecutive, retryIn),
    onRecover: (failedFor) => listener.onRecover?.(name, failedFor),
    minIntervalMs: settings.minIntervalMs,
    backoffInitialMs: settings.backoffInitialMs,
    backoffMaxMs: settings.backoffMaxMs,
    recovery: settings.recovery,
    clock: settings.clock,
  })
}

export class CatalogWatcher {
  private readonly client: ConsulClient
  private readonly settings: WatchSettings
  private readonly tagPrefix: string
  private readonly listener: WatchListener
  private readonly onChange: () => void
  private readonly services: BlockingQuery<Map<string, string[]>>
  private readonly health = new Map<string, BlockingQuery<InstanceSnapshot[]>>()
  private readonly instances = new Map<string, readonly InstanceSnapshot[]>()
  private readonly filtered = new Set<string>()
  /** One copy of the node names, tags, meta and check names that the services' answers repeat. */
  private readonly interner = new Interner()
  /** Tags per service as the service list gives them (the union over instances). */
  private listedTags: ReadonlyMap<string, readonly string[]> = new Map()
  private firstList!: () => void
  private readonly listed = new Promise<void>((resolve) => {
    this.firstList = resolve
  })

  constructor(
    client: ConsulClient,
    settings: WatchSettings,
    tagPrefix: string,
    listener: WatchListener,
    onChange: () => void,
  ) {
    this.client = client
    this.settings = settings
    this.tagPrefix = tagPrefix
    this.listener = listener
    this.onChange = onChange
    const path = '/v1/catalog/services'
    this.services = loop(
      'services',
      settings,
      listener,
      blockingFetch(client, settings, path, { stale: settings.stale }, 'the service catalog', (res) =>
        this.noteFiltered('services', res),
      ),
      parseServiceList,
      (list) => this.onServiceList(list),
    )
  }

  start(): this {
    this.services.start()
    return this
  }

  /**
   * Resolves once the service list has arrived and every service on it has
   * answered its first health read or failed it (a failing service must not
   * hold back routing for all the others; its error is reported).
   */
  async ready(): Promise<void> {
    await this.listed
    await Promise.all([...this.health.values()].map((q) => q.settled))
  }

  snapshot(): CatalogSnapshot {
    const pending = new Map<string, readonly string[]>()
    for (const name of this.health.keys()) {
      if (!this.instances.has(name)) pending.set(name, this.listedTags.get(name) ?? [])
    }
    return { services: new Map(this.instances), pending }
  }

  states(): BlockingQueryState[] {
    return [this.services.state, ...[...this.health.values()].map((q) => q.state)]
  }

  /** Watches whose answers Consul filtered by ACL: the token cannot see everything. */
  aclFiltered(): string[] {
    return [...this.filtered].sort()
  }

  async stop(): Promise<void> {
    await Promise.all([this.services.stop(), ...[...this.health.values()].map((q) => q.stop())])
  }

  private noteFiltered(name: string, res: ConsulResponse): void {
    if (res.filteredByAcl) this.filtered.add(name)
    else this.filtered.delete(name)
  }

  private onServiceList(list: Map<string, string[]>): void {
    const wanted = new Set(routedServices(list, this.tagPrefix))
    this.listedTags = list
    let removed = false
    for (const [name, query] of this.health) {
      if (wanted.has(name)) continue
      void query.stop()
      this.health.delete(name)
      this.filtered.delete(`health:${name}`)
      removed = this.instances.delete(name) || removed
    }
    for (const name of wanted) {
      if (!this.health.has(name)) this.health.set(name, this.watchHealth(name).start())
    }
    this.firstList()
    if (removed) this.onChange()
  }

  private watchHealth(service: string): BlockingQuery<InstanceSnapshot[]> {
    const name = `health:${service}`
    const path = `/v1/health/service/${encodeURIComponent(service)}`
    return loop(
      name,
      this.settings,
      this.listener,
      blockingFetch(
        this.client,
        this.settings,
        path,
        { stale: this.settings.stale, cached: this.settings.cached },
        `service ${service}`,
        (res) => this.noteFiltered(name, res),
      ),
      (body) => parseHealthService(body, this.interner),
      (instances) => {
        if (!this.health.has(service)) return
        this.instances.set(service, instances)
        this.onChange()
      },
    )
  }
}

/** One key under a watched KV prefix, value decoded. */
export interface KvPair {
  readonly key: string
  readonly value: string
  readonly modifyIndex: number
}

/**
 * A recursive watch on a KV prefix. A prefix the token may not read, wholly or
 * in part, is an error (ConsulPermissionError naming the prefix), never an
 * empty or shorter list: a hidden key is one the proxy cannot honour.
 */
export class KvPrefixWatcher {
  private readonly query: BlockingQuery<KvPair[]>
  private entries: readonly KvPair[] = []

  /**
   * Watches the keys under `prefix/`. With `exact`, the keys that start with
   * `prefix` itself (Fabio's overrides live in the key `fabio/config` and the
   * keys below it); `name` names the watch in states and problems.
   */
  constructor(
    client: ConsulClient,
    settings: WatchSettings,
    prefix: string,
    listener: WatchListener,
    onChange: () => void,
    /** `name`: the watch's name in logs, metrics and /api/watches. */
    options: { readonly name: string; readonly exact?: boolean },
  ) {
    const path = `/v1/kv/${prefix.split('/').map(encodeURIComponent).join('/')}${options.exact ? '' : '/'}`
    const read = blockingFetch(
      client,
      settings,
      path,
      { recurse: true, stale: settings.stale },
      `key prefix ${prefix}/`,
      (res) => {
        // Consul answers a recursive read it partly denies with the readable
        // keys only.
        if (res.filteredByAcl) {
          throw new ConsulPermissionError(
            path,
            'Permission denied (Consul hid keys this token may not read)',
            `key prefix ${prefix}/`,
          )
        }
      },
    )
    this.query = loop(
      options.name,
      settings,
      listener,
      async (index, signal) => {
        const result = await read(index, signal)
        // An empty answer may hide a denied prefix (see assertPrefixReadable);
        // only then does a fresh read cost a second request.
        if (index === 0 && result.body === '[]') await assertPrefixReadable(client, prefix, signal)
        return result
      },
      parseKvList,
      (entries) => {
        this.entries = entries
        onChange()
      },
    )
  }

  start(): this {
    this.query.start()
    return this
  }

  /** Resolves with the first answer. */
  get ready(): Promise<void> {
    return this.query.ready
  }

  /** Resolves at the first answer or the first error, whichever comes first. */
  get settled(): Promise<void> {
    return this.query.settled
  }

  current(): readonly KvPair[] {
    return this.entries
  }

  state(): BlockingQueryState {
    return this.query.state
  }

  async stop(): Promise<void> {
    await this.query.stop()
  }
}

/** The target-state prefix: one key per service. */
export class TargetWatcher extends KvPrefixWatcher {
  constructor(
    client: ConsulClient,
    settings: WatchSettings,
    prefix: string,
    listener: WatchListener,
    onChange: () => void,
  ) {
    super(client, settings, prefix, listener, onChange, { name: 'targets' })
  }
}
