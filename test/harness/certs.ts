// Certificates for TLS tests, made with Debian's openssl in a temporary folder
// that `remove()` deletes: a CA, and leaf certificates it signs for given
// names, with chosen validity dates and key types when a test needs them. No
// key is ever written into the repository.

import { execFile, execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

export interface Leaf {
  /** Certificate chain (leaf then CA), PEM. */
  readonly cert: string
  readonly key: string
}

export interface IssuedCertificate {
  /** The leaf certificate alone, PEM. */
  readonly cert: string
  readonly key: string
  /** Certificate and key in one text, as a certificate file or KV key holds them. */
  readonly pem: string
  /** As Node's getPeerCertificate() and X509Certificate report it. */
  readonly fingerprint256: string
}

export interface IssueOptions {
  /** DNS subject alternative names; none: a certificate with only a subject. */
  readonly dns?: readonly string[]
  /** Common name; without it the subject is an organisation only. */
  readonly cn?: string
  /** Validity; default from an hour ago for 30 days. Whole seconds. */
  readonly notBefore?: Date
  readonly notAfter?: Date
  /** Default EC P-256 (fast to make); `rsa-512` is a key TLS refuses as too weak. */
  readonly keyType?: 'ec' | 'rsa' | 'rsa-512'
}

export interface TestCa {
  /** The CA certificate, PEM: what clients trust. */
  readonly ca: string
  /** The same, as a file (for command-line clients). */
  readonly caFile: string
  /** A leaf certificate for `names` (DNS SANs; the first is also the CN). */
  leaf(names: readonly string[]): Leaf
  /** A leaf certificate as `options` describe it (`openssl ca`, which can set any dates). */
  issue(options: IssueOptions): Promise<IssuedCertificate>
  /** A private key that belongs to no certificate. */
  otherKey(): Promise<string>
  remove(): void
}

export function createTestCa(): TestCa {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-certs-'))
  const runSync = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' })
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes']
  runSync([
    'req',
    '-x509',
    ...ec,
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-days',
    '30',
    '-subj',
    '/CN=Switchyard test CA',
  ])
  const ca = readFileSync(join(dir, 'ca.pem'), 'utf8')
  // `openssl ca` keeps a database of what it issued, so one issue runs at a time.
  writeFileSync(join(dir, 'index.txt'), '')
  writeFileSync(
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
  let queue: Promise<unknown> = Promise.resolve()
  let n = 0

  const issueNow = async (options: IssueOptions): Promise<IssuedCertificate> => {
    const base = join(dir, `issued${n++}`)
    const dns = options.dns ?? []
    const keyType = options.keyType ?? 'ec'
    const key = keyType === 'ec' ? ec : ['-newkey', keyType === 'rsa' ? 'rsa:2048' : 'rsa:512', '-nodes']
    await run('openssl', [
      'req',
      '-new',
      ...key,
      '-keyout',
      `${base}.key`,
      '-out',
      `${base}.csr`,
      '-subj',
      options.cn !== undefined ? `/CN=${options.cn}` : '/O=Switchyard tests',
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
      join(dir, 'ca.cnf'),
      '-cert',
      join(dir, 'ca.pem'),
      '-keyfile',
      join(dir, 'ca.key'),
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
    const keyPem = await readFile(`${base}.key`, 'utf8')
    const { stdout } = await run('openssl', [
      'x509',
      '-in',
      `${base}.pem`,
      '-noout',
      '-fingerprint',
      '-sha256',
    ])
    return { cert, key: keyPem, pem: cert + keyPem, fingerprint256: stdout.trim().split('=')[1] ?? '' }
  }

  return {
    ca,
    caFile: join(dir, 'ca.pem'),
    leaf(names) {
      const base = `leaf${n++}`
      runSync(['req', ...ec, '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', `/CN=${names[0]}`])
      writeFileSync(join(dir, `${base}.ext`), `subjectAltName=${names.map((x) => `DNS:${x}`).join(',')}\n`)
      runSync([
        'x509',
        '-req',
        '-in',
        `${base}.csr`,
        '-CA',
        'ca.pem',
        '-CAkey',
        'ca.key',
        '-CAcreateserial',
        '-days',
        '2',
        '-extfile',
        `${base}.ext`,
        '-out',
        `${base}.pem`,
      ])
      return {
        cert: readFileSync(join(dir, `${base}.pem`), 'utf8') + ca,
        key: readFileSync(join(dir, `${base}.key`), 'utf8'),
      }
    },
    issue(options) {
      const next = queue.then(() => issueNow(options))
      queue = next.catch(() => {})
      return next
    },
    async otherKey() {
      const path = join(dir, `other${n++}.key`)
      await run('openssl', [
        'genpkey',
        '-algorithm',
        'EC',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-out',
        path,
      ])
      return readFile(path, 'utf8')
    },
    remove() {
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** True when the openssl command is there (Debian's `openssl` package). */
export function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'pipe' })
    return true
  } catch {
    return false
  }
}

/** `YYYYMMDDHHMMSSZ`, as `openssl ca -startdate/-enddate` wants it. */
function asn1Time(date: Date): string {
  return `${date.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`
}
