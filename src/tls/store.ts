// The certificates a TLS listener serves, chosen per handshake by SNI.
//
// Every TLS context is built once per certificate change (an unchanged entry
// keeps its context across updates), never per handshake: a handshake costs
// two map lookups. An update builds the whole selection aside and swaps it in
// with one assignment, so a handshake in progress keeps the context it got,
// and open connections are never touched.

import { createSecureContext, type SecureContext, type TlsOptions } from 'node:tls'
import { type Clock, systemClock } from '../clock.js'
import type { Logger } from '../log.js'
import type { TlsSource } from '../proxy/listener.js'
import type { Problem } from '../routing/types.js'
import {
  type CertificateEntry,
  type CertificateSource,
  checkCertificates,
  compareEntries,
  entrySubject,
  normaliseHost,
  type ParsedCertificate,
} from './certificates.js'
import { tlsServerOptions } from './server-options.js'

const { randomBytes } = process.getBuiltinModule('node:crypto')

/** How every TLS context is built, and which certificate is the default. */
export interface TlsSettings {
  readonly minVersion: 'TLSv1.2' | 'TLSv1.3'
  /** OpenSSL cipher string; TLS 1.3 suites (TLS_…) included. */
  readonly ciphers: string
  /** Seconds a TLS session (ticket) may be resumed. */
  readonly sessionTimeoutSeconds: number
  /** A host name whose certificate is served to clients naming no known host (or none); '' = the first. */
  readonly defaultCertificate: string
}

/** One certificate as the admin API, the status page and the metrics show it. */
export interface CertificateView {
  readonly source: CertificateSource
  /** The file's path or the KV key. */
  readonly name: string
  readonly subject: string
  readonly issuer: string
  /** Every host name in the certificate (DNS SANs, else the CN). */
  readonly hosts: readonly string[]
  /**
   * The names new handshakes get this certificate for: its hosts, less those
   * another certificate that expires later also carries.
   */
  readonly serving: readonly string[]
  /** Served to clients that name no known host, or none. */
  readonly default: boolean
  readonly notBefore: string
  readonly notAfter: string
  readonly fingerprint256: string
}

export interface CertificateReport {
  readonly certificates: readonly CertificateView[]
  /** Entries set aside, each naming its file or key and the reason. */
  readonly problems: readonly Problem[]
}

interface Usable {
  readonly cert: ParsedCertificate
  readonly context: SecureContext
}

interface Served extends Usable {
  readonly view: CertificateView
}

/** Everything a handshake reads, swapped as one. */
interface Selection {
  readonly exact: ReadonlyMap<string, Served>
  /** `*.example.com` under `example.com`. */
  readonly wildcard: ReadonlyMap<string, Served>
  readonly fallback: Served | null
  readonly report: CertificateReport
}

const EMPTY: Selection = {
  exact: new Map(),
  wildcard: new Map(),
  fallback: null,
  report: { certificates: [], problems: [] },
}

/** setTimeout's longest delay (about 24.8 days); a later expiry is re-checked then. */
const MAX_TIMER_MS = 2 ** 31 - 1

/** Session ticket keys: 16 bytes name, 16 HMAC, 16 AES (OpenSSL's layout). */
const TICKET_KEY_BYTES = 48

export class CertificateStore implements TlsSource {
  private readonly settings: TlsSettings
  private ticketKeys: Buffer
  private readonly log: Logger | null
  private readonly clock: Clock
  private selection: Selection = EMPTY
  private lastEntries: readonly CertificateEntry[] = []
  /** Contexts by entry digest, so an update rebuilds only what changed. */
  private contexts = new Map<string, SecureContext>()
  private readonly listeners: (() => void)[] = []
  private timer: NodeJS.Timeout | null = null

  constructor(settings: TlsSettings, options: { log?: Logger; clock?: Clock; ticketKeys?: Buffer } = {}) {
    this.settings = settings
    this.log = options.log ?? null
    this.clock = options.clock ?? systemClock
    this.ticketKeys = options.ticketKeys ?? randomBytes(TICKET_KEY_BYTES)
  }

  /**
   * Options for the listener's own context: server-wide settings, session
   * ticket keys, and the default certificate (a client that names no server
   * never reaches the SNI callback, so it gets this one).
   */
  serverOptions(): TlsOptions {
    return { ...tlsServerOptions(this.settings, this.ticketKeys), ...(this.defaultCertificate() ?? {}) }
  }

  /** The session ticket keys, for worker processes that serve the same port. */
  get sessionTicketKeys(): Buffer {
    return this.ticketKeys
  }

  /** Takes the primary's ticket keys, so a session resumes on whichever process a client reaches. */
  setSessionTicketKeys(keys: Buffer): void {
    if (keys.equals(this.ticketKeys)) return
    this.ticketKeys = Buffer.from(keys)
    for (const listener of this.listeners) listener()
  }

  /**
   * The context for a handshake that names `servername` (SNI): the exact host
   * (any case), then the wildcard one label above it, then the default; null
   * when no certificate is usable at all.
   */
  secureContextFor(servername: string | undefined): SecureContext | null {
    return this.servedFor(servername)?.context ?? null
  }

  /** Which certificate a handshake naming `servername` gets (same choice as secureContextFor). */
  certificateFor(servername: string | undefined): CertificateView | null {
    return this.servedFor(servername)?.view ?? null
  }

  private servedFor(servername: string | undefined): Served | null {
    const s = this.selection
    if (servername) {
      const host = normaliseHost(servername)
      const exact = s.exact.get(host)
      if (exact) return exact
      const dot = host.indexOf('.')
      const wildcard = dot > 0 ? s.wildcard.get(host.slice(dot + 1)) : undefined
      if (wildcard) return wildcard
    }
    return s.fallback
  }

  /** The default certificate's chain and key, for a server's own context (clients without SNI get it). */
  defaultCertificate(): { readonly cert: string; readonly key: string } | null {
    const fallback = this.selection.fallback
    return fallback ? { cert: fallback.cert.chain, key: fallback.cert.key } : null
  }

  /** Takes a full new list of entries (what CertificateSources delivers); swaps when done. */
  update(entries: readonly CertificateEntry[], now: number = this.clock.now()): void {
    this.lastEntries = entries
    const before = this.selection
    const checked = checkCertificates(entries, now)
    const problems = [...checked.problems]
    const contexts = new Map<string, SecureContext>()
    const usable: Usable[] = []
    for (const cert of checked.certificates) {
      let context = contexts.get(cert.digest) ?? this.contexts.get(cert.digest)
      if (context === undefined) {
        try {
          context = this.createContext(cert)
        } catch (err) {
          // OpenSSL refuses what Node's parser accepted, e.g. a key too weak for its security level.
          problems.push({
            code: 'SWY_ERR_CERTIFICATE',
            subject: entrySubject(cert),
            message: `TLS refuses it: ${(err as Error).message}`,
          })
          continue
        }
      }
      contexts.set(cert.digest, context)
      usable.push({ cert, context })
    }
    this.contexts = contexts
    this.selection = this.select(usable, problems)
    this.logChanges(before, this.selection)
    this.scheduleRecheck(checked.recheckAt, entries, now)
    for (const listener of this.listeners) listener()
  }

  list(): CertificateReport {
    return this.selection.report
  }

  /** The entries last given to update(): what a primary process hands to its workers. */
  get entries(): readonly CertificateEntry[] {
    return this.lastEntries
  }

  /** Called after every update (e.g. to give a server's own context the new default). */
  onChange(listener: () => void): () => void {
    this.listeners.push(listener)
    return () => {
      const i = this.listeners.indexOf(listener)
      if (i !== -1) this.listeners.splice(i, 1)
    }
  }

  /** Stops the re-check timer. */
  close(): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = null
  }

  private createContext(cert: ParsedCertificate): SecureContext {
    // The server's cipher and version settings are repeated in every context:
    // when SNI switches a connection to this context, this is what it uses.
    return createSecureContext({
      cert: cert.chain,
      key: cert.key,
      minVersion: this.settings.minVersion,
      ciphers: this.settings.ciphers,
      honorCipherOrder: true,
      sessionTimeout: this.settings.sessionTimeoutSeconds,
    })
  }

  private select(usable: readonly Usable[], problems: Problem[]): Selection {
    // A name several certificates carry goes to the one that expires last
    // (the newer one while a rotation overlaps), then to the first in order.
    const preferred = [...usable].sort(
      (a, b) => b.cert.notAfter - a.cert.notAfter || compareEntries(a.cert, b.cert),
    )
    const exact = new Map<string, Usable>()
    const wildcard = new Map<string, Usable>()
    for (const u of preferred) {
      for (const host of u.cert.hosts) {
        const map = host.startsWith('*.') ? wildcard : exact
        const key = host.startsWith('*.') ? host.slice(2) : host
        if (!map.has(key)) map.set(key, u)
      }
    }

    let fallback: Usable | null = usable[0] ?? null
    const wanted = this.settings.defaultCertificate
    if (wanted !== '') {
      const host = normaliseHost(wanted)
      const dot = host.indexOf('.')
      const named = exact.get(host) ?? (dot > 0 ? wildcard.get(host.slice(dot + 1)) : undefined)
      if (named) fallback = named
      else if (fallback) {
        problems.push({
          code: 'SWY_ERR_CERTIFICATE',
          subject: 'tls.defaultCertificate',
          message: `no usable certificate serves ${host}; clients naming an unknown host get ${entrySubject(fallback.cert)} (${fallback.cert.hosts.join(', ')}) instead`,
        })
      }
    }

    const serving = new Map<Usable, string[]>()
    for (const [host, u] of exact) push(serving, u, host)
    for (const [suffix, u] of wildcard) push(serving, u, `*.${suffix}`)
    const served = new Map<Usable, Served>()
    for (const u of usable) {
      const view: CertificateView = {
        source: u.cert.source,
        name: u.cert.name,
        subject: u.cert.subject,
        issuer: u.cert.issuer,
        hosts: u.cert.hosts,
        serving: (serving.get(u) ?? []).sort(),
        default: u === fallback,
        notBefore: new Date(u.cert.notBefore).toISOString(),
        notAfter: new Date(u.cert.notAfter).toISOString(),
        fingerprint256: u.cert.fingerprint256,
      }
      served.set(u, { ...u, view })
    }
    const as = (u: Usable) => served.get(u) as Served
    return {
      exact: new Map([...exact].map(([k, u]) => [k, as(u)])),
      wildcard: new Map([...wildcard].map(([k, u]) => [k, as(u)])),
      fallback: fallback ? as(fallback) : null,
      report: { certificates: usable.map((u) => as(u).view), problems },
    }
  }

  /**
   * Validity is judged at update time; a certificate that expires (or becomes
   * valid) later is judged again then, or it would be served expired (or never).
   */
  private scheduleRecheck(recheckAt: number | null, entries: readonly CertificateEntry[], now: number): void {
    this.close()
    if (recheckAt === null) return
    this.timer = setTimeout(
      () => {
        this.timer = null
        if (this.lastEntries === entries) this.update(entries)
      },
      Math.min(Math.max(recheckAt - now, 0), MAX_TIMER_MS),
    )
    this.timer.unref()
  }

  private logChanges(before: Selection, after: Selection): void {
    const log = this.log
    if (log === null) return
    const key = (c: CertificateView) => `${c.source}\0${c.name}\0${c.fingerprint256}`
    const was = new Set(before.report.certificates.map(key))
    const is = new Set(after.report.certificates.map(key))
    const added = after.report.certificates.filter((c) => !was.has(key(c)))
    const removed = before.report.certificates.filter((c) => !is.has(key(c)))
    if (added.length > 0 || removed.length > 0) {
      log.info(
        {
          certificates: after.report.certificates.length,
          added: added.map((c) => `${entrySubject(c)} ${c.hosts.join(',')} until ${c.notAfter}`),
          removed: removed.map((c) => `${entrySubject(c)} ${c.hosts.join(',')}`),
        },
        'certificates changed',
      )
    }
    const problemKey = (p: Problem) => `${p.subject}\0${p.message}`
    const known = new Set(before.report.problems.map(problemKey))
    for (const p of after.report.problems)
      if (!known.has(problemKey(p))) log.warn({ code: p.code, subject: p.subject }, p.message)
  }
}

function push(map: Map<Usable, string[]>, u: Usable, host: string): void {
  const list = map.get(u)
  if (list) list.push(host)
  else map.set(u, [host])
}
