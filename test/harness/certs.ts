// Certificates for TLS tests, made with Debian's openssl in a temporary folder
// that `remove()` deletes: a CA, and leaf certificates it signs for given names.

import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface Leaf {
  /** Certificate chain (leaf then CA), PEM. */
  readonly cert: string
  readonly key: string
}

export interface TestCa {
  /** The CA certificate, PEM: what clients trust. */
  readonly ca: string
  /** The same, as a file (for command-line clients). */
  readonly caFile: string
  /** A leaf certificate for `names` (DNS SANs; the first is also the CN). */
  leaf(names: readonly string[]): Leaf
  remove(): void
}

export function createTestCa(): TestCa {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-certs-'))
  const run = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' })
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes']
  run([
    'req',
    '-x509',
    ...ec,
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-days',
    '2',
    '-subj',
    '/CN=Switchyard test CA',
  ])
  const ca = readFileSync(join(dir, 'ca.pem'), 'utf8')
  let n = 0
  return {
    ca,
    caFile: join(dir, 'ca.pem'),
    leaf(names) {
      const base = `leaf${n++}`
      run(['req', ...ec, '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', `/CN=${names[0]}`])
      writeFileSync(join(dir, `${base}.ext`), `subjectAltName=${names.map((x) => `DNS:${x}`).join(',')}\n`)
      run([
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
    remove() {
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
