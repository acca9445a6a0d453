// Certificates for the TLS tests, made with Debian's openssl command by a
// throw-away test CA in a temporary directory that remove() deletes. No key
// is ever written into the repository.

import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

export interface IssuedCertificate {
  /** The leaf certificate, PEM. */
  readonly cert: string
  readonly key: string
  /** Certificate and key in one text, as a certificate file or KV key holds them. */
  readonly pem: string
  readonly fingerprint256: string
}

export interface IssueOptions {
  /** DNS subject alternative names; none: a certificate with only a common name. */
  readonly dns?: readonly string[]
  readonly cn?: string
  /** Validity; default: from an hour ago for 30 days. */
  readonly notBefore?: Date
  readonly notAfter?: Date
  /** Key type; default EC P-256 (fast to make). `rsa-512` is too weak for TLS. */
  readonly keyType?: 'ec' | 'rsa' | 'rsa-512'
}

/** True when the openssl command is there (Debian's `openssl` package). */
export async function hasOpenssl(): Promise<boolean> {
  try {
    await run('openssl', ['version'])
    return true
  } catch {
    return false
  }
}

export class TestCertificates {
  readonly dir: string
  /** The test CA's certificate: what clients trust. */
  readonly ca: string
  private serial = 0
  /** `openssl ca` keeps a database file: one issue at a time. */
  private queue: Promise<unknown> = Promise.resolve()

  private constructor(dir: string, ca: string) {
    this.dir = dir
    this.ca = ca
  }

  static async create(): Promise<TestCertificates> {
    const dir = await mkdtemp(join(tmpdir(), 'switchyard-certs-'))
    await run('openssl', [
      'req',
      '-x509',
      ...keyArgs('ec'),
      '-nodes',
      '-keyout',
      join(dir, 'ca.key'),
      '-out',
      join(dir, 'ca.pem'),
      '-days',
      '30',
      '-subj',
      '/CN=Switchyard Test CA',
    ])
    await writeFile(join(dir, 'index.txt'), '')
    await writeFile(
      join(dir, 'ca.cnf'),
      [
        '[ ca ]',
        'default_ca = test_ca',
        '[ test_ca ]',
        `database = ${join(dir, 'index.txt')}`,
        `new_certs_dir = ${dir}`,
        'default_md = sha256',
        'policy = any_name',
        'copy_extensions = copy',
        'unique_subject = no',
        'rand_serial = yes',
        '[ any_name ]',
        'commonName = optional',
        'organizationName = optional',
        '',
      ].join('\n'),
    )
    return new TestCertificates(dir, await readFile(join(dir, 'ca.pem'), 'utf8'))
  }

  issue(options: IssueOptions): Promise<IssuedCertificate> {
    const next = this.queue.then(() => this.issueNow(options))
    this.queue = next.catch(() => {})
    return next
  }

  /** A second, unrelated private key (to pair with a certificate it does not belong to). */
  async otherKey(): Promise<string> {
    const path = join(this.dir, `other-${++this.serial}.key`)
    await run('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', path])
    return readFile(path, 'utf8')
  }

  async remove(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true })
  }

  private async issueNow(options: IssueOptions): Promise<IssuedCertificate> {
    const n = ++this.serial
    const base = join(this.dir, `leaf-${n}`)
    const dns = options.dns ?? []
    const subject = options.cn !== undefined ? `/CN=${options.cn}` : '/O=Switchyard tests'
    await run('openssl', [
      'req',
      '-new',
      ...keyArgs(options.keyType ?? 'ec'),
      '-nodes',
      '-keyout',
      `${base}.key`,
      '-out',
      `${base}.csr`,
      '-subj',
      subject,
      ...(dns.length > 0 ? ['-addext', `subjectAltName=${dns.map((d) => `DNS:${d}`).join(',')}`] : []),
    ])
    const notBefore = options.notBefore ?? new Date(Date.now() - 3_600_000)
    const notAfter = options.notAfter ?? new Date(Date.now() + 30 * 86_400_000)
    await run('openssl', [
      'ca',
      '-batch',
      '-notext',
      '-preserveDN',
      '-config',
      join(this.dir, 'ca.cnf'),
      '-cert',
      join(this.dir, 'ca.pem'),
      '-keyfile',
      join(this.dir, 'ca.key'),
      '-in',
      `${base}.csr`,
      '-out',
      `${base}.pem`,
      '-startdate',
      asn1Time(notBefore),
      '-enddate',
      asn1Time(notAfter),
    ])
    const cert = await readFile(`${base}.pem`, 'utf8')
    const key = await readFile(`${base}.key`, 'utf8')
    const { stdout } = await run('openssl', [
      'x509',
      '-in',
      `${base}.pem`,
      '-noout',
      '-fingerprint',
      '-sha256',
    ])
    return { cert, key, pem: cert + key, fingerprint256: stdout.trim().split('=')[1] ?? '' }
  }
}

function keyArgs(type: 'ec' | 'rsa' | 'rsa-512'): string[] {
  if (type === 'ec') return ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']
  return ['-newkey', type === 'rsa' ? 'rsa:2048' : 'rsa:512']
}

/** `YYYYMMDDHHMMSSZ`, as `openssl ca -startdate/-enddate` wants it. */
function asn1Time(date: Date): string {
  return `${date.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`
}
