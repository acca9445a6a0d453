// Where certificates come from: a directory of PEM files and a Consul KV
// prefix, each holding one certificate chain with its private key per file or
// key. CertificateSources combines both and calls back with the full list of
// entries whenever either changes; the entries are plain data, so the primary
// process can feed its own store and send the same list to every worker.
//
// The directory is watched (fs.watch) and also rescanned every few seconds:
// fs.watch misses events on some file systems (network mounts, some container
// volumes) and loses its watch when the directory is replaced. The KV prefix
// is read through the same blocking-query loop as every other watch, with the
// proxy's read-only token.

import type { FSWatcher } from 'node:fs'
import { readdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { BlockingQueryState } from '../consul/blocking-query.js'
import type { ConsulClient } from '../consul/client.js'
import { type KvPair, KvPrefixWatcher, type WatchSettings } from '../consul/watchers.js'
import type { Logger } from '../log.js'
import type { Problem } from '../routing/types.js'
import type { CertificateEntry } from './certificates.js'
import type { CertificateReport, CertificateStore } from './store.js'

const { watch } = process.getBuiltinModule('node:fs')

export interface CertificateSourcesOptions {
  /** Directory of `*.pem` files (`tls.certificates.dir`); '' = none. */
  readonly dir: string
  /** KV prefix without a trailing slash (`tls.certificates.consulPrefix`); '' = none. */
  readonly consulPrefix: string
  /** Whether an https listener is configured: without one, nothing is read or watched. */
  readonly enabled: boolean
  readonly client: ConsulClient
  readonly watch: WatchSettings
  readonly log: Logger
  /** Every entry of both sources, files first; called once after start() and on every change. */
  readonly onChange: (entries: readonly CertificateEntry[]) => void
  /** Rescan of the directory behind fs.watch's back. */
  readonly rescanMs?: number
  /** Quiet time after a file event before the directory is read (an editor writes in several steps). */
  readonly debounceMs?: number
}

const WATCH_NAME = 'certificates'

export class CertificateSources {
  private readonly options: CertificateSourcesOptions
  private readonly directory: CertificateDirectory | null
  private readonly kv: KvPrefixWatcher | null
  private started = false
  private scheduled = false
  private stopped = false
  /** The list last passed to onChange; null until the first read of every source is done. */
  private last: readonly CertificateEntry[] | null = null
  /** Resolves once each source has been read once (or has failed once) and onChange had the result. */
  readonly ready: Promise<void>
  private resolveReady!: () => void

  constructor(options: CertificateSourcesOptions) {
    this.options = options
    this.ready = new Promise((resolve) => {
      this.resolveReady = resolve
    })
    const changed = () => this.schedule()
    this.directory =
      options.enabled && options.dir !== ''
        ? new CertificateDirectory(options.dir, {
            log: options.log,
            rescanMs: options.rescanMs ?? 2_000,
            debounceMs: options.debounceMs ?? 50,
            onChange: changed,
          })
        : null
    const prefix = options.consulPrefix
    this.kv =
      options.enabled && prefix !== ''
        ? new KvPrefixWatcher(
            options.client,
            options.watch,
            prefix,
            {
              // One line when the watch starts failing, then every tenth retry, as for every watch.
              onError: (watch, error, consecutive, retryInMs) => {
                if (consecutive !== 1 && consecutive % 10 !== 0) return
                const code = (error as { code?: string }).code
                const level = code === 'SWY_ERR_CONSUL_PERMISSION' ? 'error' : 'warn'
                options.log[level](
                  { watch, code, err: explain(error, prefix), consecutive, retryInMs },
                  'consul watch failing',
                )
              },
              onRecover: (watch, failedForMs) =>
                options.log.info({ watch, failedForMs }, 'consul watch recovered'),
            },
            changed,
            { name: WATCH_NAME },
          )
        : null
  }

  start(): this {
    if (this.started || this.stopped) return this
    this.started = true
    this.kv?.start()
    void Promise.all([this.directory?.start(), this.kv?.settled]).then(() => {
      if (this.stopped) return
      this.emit()
      this.resolveReady()
    })
    return this
  }

  async stop(): Promise<void> {
    this.stopped = true
    this.directory?.stop()
    await this.kv?.stop()
    this.resolveReady()
  }

  /** Every entry of both sources, files first. */
  current(): readonly CertificateEntry[] {
    const files = this.directory?.current() ?? []
    const keys = (this.kv?.current() ?? []).map(fromKv)
    return [...files, ...keys]
  }

  /** What keeps a source from being read: the directory, or the KV watch (with the ACL rule it lacks). */
  problems(): Problem[] {
    const problems: Problem[] = []
    const dirProblem = this.directory?.problem()
    if (dirProblem) problems.push(dirProblem)
    const state = this.kv?.state()
    if (state && state.failingSince > 0 && state.lastError) {
      const code = (state.lastError as { code?: unknown }).code
      problems.push({
        code:
          typeof code === 'string' && code.startsWith('SWY_ERR_')
            ? (code as Problem['code'])
            : 'SWY_ERR_CONSUL_UNREACHABLE',
        subject: `watch ${WATCH_NAME}`,
        message: explain(state.lastError, this.options.consulPrefix),
      })
    }
    return problems
  }

  /** Where certificates are read from, for messages. */
  describe(): string {
    const { dir, consulPrefix } = this.options
    const where = [dir && `directory ${dir}`, consulPrefix && `key prefix ${consulPrefix}/`].filter(Boolean)
    return where.length > 0
      ? where.join(' or ')
      : 'no source (tls.certificates.dir and consulPrefix are empty)'
  }

  /** An https listener needs certificates, and every source has been read once. */
  get loaded(): boolean {
    return this.options.enabled && this.last !== null
  }

  /** The KV watch's state, for /api/watches; empty when Consul is not read. */
  watches(): BlockingQueryState[] {
    return this.kv ? [this.kv.state()] : []
  }

  private schedule(): void {
    if (this.scheduled || this.stopped) return
    this.scheduled = true
    // Changes of one turn (a KV answer and a file event) make one callback.
    setImmediate(() => {
      this.scheduled = false
      // Before the first full read, start() makes the first callback itself.
      if (!this.stopped && this.last !== null) this.emit()
    })
  }

  private emit(): void {
    const entries = this.current()
    if (this.last !== null && sameEntries(entries, this.last)) return
    this.last = entries
    this.options.onChange(entries)
  }
}

/**
 * The store's certificates with the sources' own problems: what the admin API
 * shows. With an https listener and no usable certificate, that is a problem
 * too: every handshake fails.
 */
export function certificateReport(
  store: CertificateStore,
  sources: CertificateSources | null,
): CertificateReport {
  const report = store.list()
  const extra = sources?.problems() ?? []
  if (sources?.loaded && report.certificates.length === 0) {
    extra.push({
      code: 'SWY_ERR_CERTIFICATE',
      subject: 'tls.certificates',
      message: `no usable certificate in ${sources.describe()}: every TLS handshake fails`,
    })
  }
  return extra.length === 0 ? report : { ...report, problems: [...extra, ...report.problems] }
}

function fromKv(pair: KvPair): CertificateEntry {
  return { source: 'consul', name: pair.key, pem: pair.value }
}

/** A permission error says which rule the proxy token's policy lacks. */
function explain(error: Error, prefix: string): string {
  if ((error as { code?: unknown }).code !== 'SWY_ERR_CONSUL_PERMISSION') return error.message
  return `${error.message}; the proxy token's policy needs key_prefix "${prefix}/" { policy = "read" } (see config/acl/switchyard-proxy.hcl)`
}

function sameEntries(a: readonly CertificateEntry[], b: readonly CertificateEntry[]): boolean {
  return (
    a.length === b.length &&
    a.every((e, i) => {
      const o = b[i] as CertificateEntry
      return e.source === o.source && e.name === o.name && e.pem === o.pem && e.error === o.error
    })
  )
}

/** The `*.pem` files of one directory, each one certificate chain with its key. */
class CertificateDirectory {
  private readonly dir: string
  private readonly options: {
    readonly log: Logger
    readonly rescanMs: number
    readonly debounceMs: number
    readonly onChange: () => void
  }
  private entries: readonly CertificateEntry[] = []
  /** Per file, what stat said when it was last read: a rescan reads only files that changed. */
  private signatures = new Map<string, string>()
  private failure: string | null = null
  private watcher: FSWatcher | null = null
  private rescan: NodeJS.Timeout | null = null
  private debounce: NodeJS.Timeout | null = null
  private scanning: Promise<void> | null = null
  /** An event came while reading: read again (everything) once done. */
  private again = false
  private stopped = false

  constructor(dir: string, options: CertificateDirectory['options']) {
    this.dir = dir
    this.options = options
  }

  /** Resolves after the first read. */
  async start(): Promise<void> {
    await this.scan(true)
    if (this.stopped) return
    this.rescan = setInterval(() => void this.scan(false), this.options.rescanMs)
    this.rescan.unref()
  }

  stop(): void {
    this.stopped = true
    if (this.rescan) clearInterval(this.rescan)
    if (this.debounce) clearTimeout(this.debounce)
    this.watcher?.close()
    this.watcher = null
  }

  current(): readonly CertificateEntry[] {
    return this.entries
  }

  problem(): Problem | null {
    return this.failure === null
      ? null
      : { code: 'SWY_ERR_CERTIFICATE', subject: `directory ${this.dir}`, message: this.failure }
  }

  private scan(force: boolean): Promise<void> {
    if (this.scanning) {
      if (force) this.again = true
      return this.scanning
    }
    this.scanning = (async () => {
      try {
        await this.read(force)
        while (this.again && !this.stopped) {
          this.again = false
          await this.read(true)
        }
      } finally {
        this.scanning = null
      }
    })()
    return this.scanning
  }

  private async read(force: boolean): Promise<void> {
    let files: string[]
    try {
      files = (await readdir(this.dir, { withFileTypes: true }))
        .filter((d) => d.name.endsWith('.pem') && (d.isFile() || d.isSymbolicLink()))
        .map((d) => d.name)
        .sort()
    } catch (err) {
      // The last certificates read keep serving: a directory that is being
      // remounted or replaced should not take every certificate down with it.
      this.fail(`cannot be read: ${errorText(err)}; the certificates last read from it keep serving`)
      this.unwatch()
      return
    }
    if (this.stopped) return
    this.recover()
    this.ensureWatch()

    const previous = new Map(this.entries.map((e) => [e.name, e]))
    const signatures = new Map<string, string>()
    const entries: CertificateEntry[] = []
    for (const file of files) {
      const path = join(this.dir, file)
      try {
        const info = await stat(path)
        if (!info.isFile()) continue
        const signature = `${info.ino}:${info.size}:${info.mtimeMs}`
        signatures.set(path, signature)
        const known = previous.get(path)
        if (!force && known && this.signatures.get(path) === signature) {
          entries.push(known)
          continue
        }
        entries.push({ source: 'file', name: path, pem: await readFile(path, 'utf8') })
      } catch (err) {
        // One unreadable file is that file's problem, not the directory's.
        entries.push({ source: 'file', name: path, pem: '', error: errorText(err) })
      }
    }
    if (this.stopped) return
    this.signatures = signatures
    if (!sameEntries(entries, this.entries)) {
      this.entries = entries
      this.options.onChange()
    }
  }

  private ensureWatch(): void {
    if (this.watcher || this.stopped) return
    try {
      this.watcher = watch(this.dir, { persistent: false }, () => this.changed())
      this.watcher.on('error', () => this.unwatch())
    } catch {
      // The periodic rescan carries on alone and tries again.
      this.watcher = null
    }
  }

  private unwatch(): void {
    this.watcher?.close()
    this.watcher = null
  }

  private changed(): void {
    if (this.stopped) return
    if (this.debounce) clearTimeout(this.debounce)
    this.debounce = setTimeout(() => {
      this.debounce = null
      void this.scan(true)
    }, this.options.debounceMs)
  }

  private fail(message: string): void {
    if (this.failure !== message)
      this.options.log.warn({ code: 'SWY_ERR_CERTIFICATE', directory: this.dir }, message)
    this.failure = message
  }

  private recover(): void {
    if (this.failure !== null)
      this.options.log.info({ directory: this.dir }, 'certificate directory readable again')
    this.failure = null
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
