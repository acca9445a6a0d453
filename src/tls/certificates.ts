// Certificates for the TLS listeners, checked without any I/O: the sources
// (a directory of PEM files, a Consul KV prefix) hand over raw PEM texts, and
// this decides which of them can be served and under which names.
//
// Each entry is judged on its own. One that does not parse, lacks a matching
// private key, has expired or is not valid yet becomes a problem naming the
// file or key and the reason, and every other entry is still served (Fabio
// refused all certificates when one was bad: fabio#941).

import type { KeyObject } from 'node:crypto'
import type { Problem } from '../routing/types.js'

const { createHash, createPrivateKey, X509Certificate } = process.getBuiltinModule('node:crypto')
type X509Certificate = InstanceType<typeof X509Certificate>

export type CertificateSource = 'file' | 'consul'

/** One certificate as a source delivers it. Plain data: it is sent to worker processes. */
export interface CertificateEntry {
  readonly source: CertificateSource
  /** The file's path or the KV key. */
  readonly name: string
  /** The certificate chain, leaf first, and its private key in one PEM text. */
  readonly pem: string
  /** Set when the source could not read the entry (then `pem` is empty), e.g. `EACCES`. */
  readonly error?: string
}

/** A certificate that can be served. */
export interface ParsedCertificate {
  readonly source: CertificateSource
  readonly name: string
  /** The leaf's subject, one `KEY=value` per line as OpenSSL prints it. */
  readonly subject: string
  readonly issuer: string
  /**
   * Host names it serves, lower case: the leaf's DNS subject alternative names,
   * or its common name when it has none. `*.example.com` serves one label.
   */
  readonly hosts: readonly string[]
  /** Milliseconds since the epoch. */
  readonly notBefore: number
  readonly notAfter: number
  readonly fingerprint256: string
  /** The certificates, leaf first, as PEM. */
  readonly chain: string
  /** The private key as PEM. */
  readonly key: string
  /** Digest of the whole entry: an unchanged entry keeps its TLS context across updates. */
  readonly digest: string
}

export interface CertificateCheck {
  /** In a stable order: files before KV keys, then by name. */
  readonly certificates: readonly ParsedCertificate[]
  readonly problems: readonly Problem[]
  /**
   * The next moment this result changes by time alone: a served certificate
   * expires, or one set aside as not valid yet becomes valid. Null: never.
   */
  readonly recheckAt: number | null
}

/** What a problem about an entry is about: `file /etc/switchyard/certs/web.pem`, `key switchyard/certs/web`. */
export function entrySubject(entry: { readonly source: CertificateSource; readonly name: string }): string {
  return `${entry.source === 'file' ? 'file' : 'key'} ${entry.name}`
}

/** Files before KV keys, then by name: the order "first certificate" refers to. */
export function compareEntries(
  a: { readonly source: CertificateSource; readonly name: string },
  b: { readonly source: CertificateSource; readonly name: string },
): number {
  if (a.source !== b.source) return a.source === 'file' ? -1 : 1
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0
}

export function checkCertificates(entries: readonly CertificateEntry[], now: number): CertificateCheck {
  const certificates: ParsedCertificate[] = []
  const problems: Problem[] = []
  let recheckAt = Number.POSITIVE_INFINITY
  for (const entry of [...entries].sort(compareEntries)) {
    const result = checkEntry(entry, now)
    if (typeof result === 'string') {
      problems.push({ code: 'SWY_ERR_CERTIFICATE', subject: entrySubject(entry), message: result })
    } else if ('validFrom' in result) {
      problems.push({ code: 'SWY_ERR_CERTIFICATE', subject: entrySubject(entry), message: result.message })
      recheckAt = Math.min(recheckAt, result.validFrom)
    } else {
      certificates.push(result)
      recheckAt = Math.min(recheckAt, result.notAfter + 1)
    }
  }
  return { certificates, problems, recheckAt: Number.isFinite(recheckAt) ? recheckAt : null }
}

/** The certificate, why it cannot be served, or when it will be valid. */
function checkEntry(
  entry: CertificateEntry,
  now: number,
): ParsedCertificate | string | { message: string; validFrom: number } {
  if (entry.error !== undefined) return `cannot be read: ${entry.error}`
  const blocks = pemBlocks(entry.pem)
  const certBlocks = blocks.filter((b) => b.label === 'CERTIFICATE')
  const keyBlocks = blocks.filter((b) => KEY_LABELS.has(b.label))
  if (certBlocks.length === 0) return 'no certificate in it (expected a PEM "BEGIN CERTIFICATE" block)'
  if (blocks.some((b) => b.label === 'ENCRYPTED PRIVATE KEY') || /Proc-Type: 4,ENCRYPTED/.test(entry.pem))
    return 'the private key is encrypted; store it unencrypted (and protect the file or key instead)'
  if (keyBlocks.length === 0) return 'no private key in it (expected the certificate chain and its key)'
  if (keyBlocks.length > 1) return `${keyBlocks.length} private keys in it; expected one`

  const chain: X509Certificate[] = []
  for (const [i, block] of certBlocks.entries()) {
    try {
      chain.push(new X509Certificate(block.text))
    } catch (err) {
      const which = certBlocks.length === 1 ? 'the certificate' : `certificate ${i + 1} of the chain`
      return `${which} does not parse: ${reason(err)}`
    }
  }
  const leaf = chain[0] as X509Certificate
  let key: KeyObject
  try {
    key = createPrivateKey((keyBlocks[0] as PemBlock).text)
  } catch (err) {
    return `the private key does not parse: ${reason(err)}`
  }
  if (!leaf.checkPrivateKey(key))
    return `the private key does not match the certificate (${describeLeaf(leaf)}); the first certificate must be the one the key belongs to`

  const notBefore = dateOf(leaf.validFrom)
  const notAfter = dateOf(leaf.validTo)
  if (Number.isNaN(notBefore) || Number.isNaN(notAfter))
    return `the certificate's validity dates do not parse (${leaf.validFrom} – ${leaf.validTo})`
  if (now > notAfter) return `expired on ${iso(notAfter)} (${describeLeaf(leaf)})`
  if (now < notBefore)
    return { message: `not valid before ${iso(notBefore)} (${describeLeaf(leaf)})`, validFrom: notBefore }

  return {
    source: entry.source,
    name: entry.name,
    subject: leaf.subject,
    issuer: leaf.issuer,
    hosts: hostsOf(leaf),
    notBefore,
    notAfter,
    fingerprint256: leaf.fingerprint256,
    chain: certBlocks.map((b) => b.text).join(''),
    key: (keyBlocks[0] as PemBlock).text,
    digest: createHash('sha256').update(entry.pem).digest('base64'),
  }
}

interface PemBlock {
  readonly label: string
  /** The whole block, BEGIN and END lines included, with a final newline. */
  readonly text: string
}

const KEY_LABELS = new Set(['PRIVATE KEY', 'RSA PRIVATE KEY', 'EC PRIVATE KEY'])

function pemBlocks(pem: string): PemBlock[] {
  const blocks: PemBlock[] = []
  for (const m of pem.matchAll(/-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g)) {
    blocks.push({ label: m[1] as string, text: `${m[0]}\n` })
  }
  return blocks
}

/** A DNS name as certificates and SNI carry it, optionally a leading `*.` label. */
const HOST = /^(\*\.)?([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/

/** DNS subject alternative names; the common name only when the certificate has none (RFC 6125). */
function hostsOf(leaf: X509Certificate): string[] {
  const sans = subjectAltNames(leaf.subjectAltName)
  const candidates =
    sans !== null
      ? sans.filter((s) => s.type === 'DNS').map((s) => s.value)
      : leaf.subject
          .split('\n')
          .filter((line) => line.startsWith('CN='))
          .map((line) => line.slice(3))
  const hosts = candidates.map(normaliseHost).filter((h) => HOST.test(h))
  return [...new Set(hosts)]
}

/** Entries of Node's subjectAltName text (`DNS:a, DNS:"b,c", IP Address:1.2.3.4`); null without the extension. */
function subjectAltNames(text: string | undefined): { type: string; value: string }[] | null {
  if (text === undefined) return null
  const out: { type: string; value: string }[] = []
  // Node quotes a value as a JSON string when it holds a comma or quote.
  for (const m of text.matchAll(/([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/g)) {
    const raw = m[2] as string
    let value = raw
    if (raw.startsWith('"')) {
      try {
        value = JSON.parse(raw) as string
      } catch {
        continue
      }
    }
    out.push({ type: m[1] as string, value })
  }
  return out
}

/** Lower case without a trailing dot: how names are compared. */
export function normaliseHost(name: string): string {
  const lower = name.trim().toLowerCase()
  return lower.endsWith('.') ? lower.slice(0, -1) : lower
}

function describeLeaf(leaf: X509Certificate): string {
  const hosts = hostsOf(leaf)
  return hosts.length > 0 ? hosts.join(', ') : leaf.subject.replace(/\n/g, ', ')
}

/** OpenSSL prints `Jan  2 03:04:05 2030 GMT`, which Date.parse reads (Node 20 has no validToDate). */
function dateOf(text: string): number {
  return Date.parse(text)
}

function iso(ms: number): string {
  return new Date(ms).toISOString().replace('.000Z', 'Z')
}

function reason(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
