// TLS for the benchmark's HTTPS and HTTP/2 workloads: one self-signed
// certificate per run (openssl, EC P-256, in the run's scratch folder, gone
// when the run ends) that every TLS contender serves, a readiness check that
// trusts only that certificate, and a probe that says which handshakes a
// client made against each contender: full or resumed, TLS version, cipher,
// key-exchange group. The probe reads the ServerHello, the last handshake
// message TLS 1.3 sends in clear, through a relay in front of the contender.

import { execFile } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { request } from 'node:https'
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { Child } from './procs.js'
import { sleep } from './stats.js'

const exec = promisify(execFile)

export interface BenchCertificate {
  /** The certificate alone (NGINX's ssl_certificate). */
  readonly certFile: string
  /** Its private key alone (NGINX's ssl_certificate_key). */
  readonly keyFile: string
  /** Certificate then key in one file (HAProxy's crt, Switchyard's directory format). */
  readonly pemFile: string
  /** A folder holding only pemFile: Switchyard's tls.certificates.dir. */
  readonly dir: string
  /** The certificate text, trusted by the readiness check. */
  readonly cert: string
  /** One line for the report. */
  readonly what: string
}

/** `OpenSSL 3.0.19 ...` when the openssl command works, else null. */
export async function opensslVersion(): Promise<string | null> {
  try {
    return (await exec('openssl', ['version'], { timeout: 10_000 })).stdout.trim().split('\n')[0] ?? null
  } catch {
    return null
  }
}

/**
 * A self-signed EC P-256 certificate for 127.0.0.1 (and localhost), valid two
 * days: long enough for any run, short enough that a copy left behind by a
 * killed run is worthless soon. Written under `tmp`, which the run removes.
 */
export async function makeBenchCertificate(tmp: string): Promise<BenchCertificate> {
  const base = join(tmp, 'tls')
  const dir = join(base, 'certs')
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const certFile = join(base, 'cert.pem')
  const keyFile = join(base, 'key.pem')
  await exec(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      keyFile,
      '-out',
      certFile,
      '-days',
      '2',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
    ],
    { timeout: 30_000 },
  )
  const cert = readFileSync(certFile, 'utf8')
  const pemFile = join(dir, 'bench.pem')
  writeFileSync(pemFile, `${cert}${readFileSync(keyFile, 'utf8')}`, { mode: 0o600 })
  return {
    certFile,
    keyFile,
    pemFile,
    dir,
    cert,
    what: 'self-signed ECDSA P-256 certificate for 127.0.0.1 and localhost, made with openssl for this run, the same file for every contender',
  }
}

/** One GET over TLS that trusts only `ca`: the status, or 0 when nothing answered. */
function httpsStatus(url: string, ca: string, timeoutMs: number): Promise<number> {
  return new Promise((resolve) => {
    const req = request(url, { ca, agent: false, timeout: timeoutMs }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
      res.on('error', () => resolve(0))
    })
    req.on('timeout', () => req.destroy())
    req.on('error', () => resolve(0))
    req.end()
  })
}

/** Waits until `url` answers 200 over TLS with the run's certificate (a wrong certificate never does). */
export async function waitForHttps(url: string, ca: string, timeoutMs: number, child?: Child): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (child && !child.running) {
      throw new Error(`${child.name} exited before ${url} answered: ${child.output().slice(-2_000)}`)
    }
    if ((await httpsStatus(url, ca, 2_000)) === 200) return
    await sleep(50)
  }
  throw new Error(
    `timed out after ${timeoutMs} ms waiting for ${url} to answer 200 with the bench certificate`,
  )
}

/** What a ServerHello says about its handshake. */
export interface ServerHello {
  /** `TLSv1.3` (supported_versions) or the legacy version field (`TLSv1.2`). */
  readonly version: string
  readonly cipher: string
  /** Key-exchange group of a TLS 1.3 key share; null in TLS 1.2 (it is in a later message). */
  readonly group: string | null
  /** TLS 1.3: the server accepted a pre-shared key (a ticket); TLS 1.2: it echoed the client's session id. */
  readonly resumed: boolean
  /** A HelloRetryRequest (the client's key share did not suit): not yet the handshake's outcome. */
  readonly helloRetry: boolean
}

const CIPHERS: Readonly<Record<number, string>> = {
  4865: 'TLS_AES_128_GCM_SHA256',
  4866: 'TLS_AES_256_GCM_SHA384',
  4867: 'TLS_CHACHA20_POLY1305_SHA256',
  49195: 'ECDHE-ECDSA-AES128-GCM-SHA256',
  49196: 'ECDHE-ECDSA-AES256-GCM-SHA384',
  52393: 'ECDHE-ECDSA-CHACHA20-POLY1305',
}
const GROUPS: Readonly<Record<number, string>> = { 23: 'P-256', 24: 'P-384', 25: 'P-521', 29: 'X25519' }
const VERSIONS: Readonly<Record<number, string>> = { 771: 'TLSv1.2', 772: 'TLSv1.3' }
/** RFC 8446 4.1.3: the random of a HelloRetryRequest. */
const HELLO_RETRY_RANDOM = Buffer.from(
  'cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c',
  'hex',
)
const hex = (n: number) => `0x${n.toString(16).padStart(4, '0')}`

/**
 * The first handshake message of type `type` in `data` (bytes from one side
 * of a connection, from its start): its body, or null while more bytes are
 * needed. Throws when the stream does not start with a TLS handshake record.
 */
function firstHandshake(data: Buffer, type: number): Buffer | null {
  if (data.length < 5) return null
  if (data[0] !== 22) throw new Error(`not a TLS handshake record (content type ${data[0]})`)
  const recordLength = data.readUInt16BE(3)
  if (data.length < 5 + recordLength) return null
  const record = data.subarray(5, 5 + recordLength)
  // Hellos are a few hundred bytes: they fit their first record.
  if (record.length < 4 || record[0] !== type)
    throw new Error(`first handshake message is not of type ${type}`)
  const length = record.readUIntBE(1, 3)
  if (record.length < 4 + length) throw new Error('hello split across records')
  return record.subarray(4, 4 + length)
}

/** The session id a ClientHello offers (TLS 1.2 resumption echoes it); null while incomplete. */
export function clientHelloSessionId(data: Buffer): Buffer | null {
  const body = firstHandshake(data, 1)
  if (body === null) return null
  const length = body[34] ?? 0
  return body.subarray(35, 35 + length)
}

/** The ServerHello at the start of `data`; null while incomplete. */
export function parseServerHello(data: Buffer, clientSessionId: Buffer | null): ServerHello | null {
  const body = firstHandshake(data, 2)
  if (body === null) return null
  let at = 0
  const legacy = body.readUInt16BE(at)
  at += 2
  const random = body.subarray(at, at + 32)
  at += 32
  const sessionLength = body[at] ?? 0
  const sessionId = body.subarray(at + 1, at + 1 + sessionLength)
  at += 1 + sessionLength
  const cipher = body.readUInt16BE(at)
  at += 3 // cipher suite, compression method
  let version = legacy
  let group: number | null = null
  let psk = false
  if (at + 2 <= body.length) {
    const end = at + 2 + body.readUInt16BE(at)
    at += 2
    while (at + 4 <= end) {
      const ext = body.readUInt16BE(at)
      const len = body.readUInt16BE(at + 2)
      const value = body.subarray(at + 4, at + 4 + len)
      if (ext === 43 && len >= 2) version = value.readUInt16BE(0)
      else if (ext === 51 && len >= 2) group = value.readUInt16BE(0)
      else if (ext === 41) psk = true
      at += 4 + len
    }
  }
  const tls13 = version === 0x0304
  return {
    version: VERSIONS[version] ?? hex(version),
    cipher: CIPHERS[cipher] ?? hex(cipher),
    group: group === null ? null : (GROUPS[group] ?? hex(group)),
    resumed: tls13
      ? psk
      : sessionId.length > 0 && clientSessionId !== null && sessionId.equals(clientSessionId),
    helloRetry: random.equals(HELLO_RETRY_RANDOM),
  }
}

/** The handshakes a client made through the relay. */
export interface HandshakeTally {
  readonly handshakes: number
  readonly resumed: number
  /** Connections whose server answered something other than a readable ServerHello. */
  readonly unreadable: number
  /** `TLSv1.3 TLS_AES_256_GCM_SHA384 X25519` and how many handshakes had it. */
  readonly negotiated: Readonly<Record<string, number>>
}

/**
 * A TCP relay on 127.0.0.1 in front of `target` (host:port) that forwards
 * bytes untouched both ways and tallies the handshakes passing through.
 * Used only for the short probe run, never for the measured windows: it
 * costs a hop.
 */
export async function startHandshakeRelay(
  target: URL,
): Promise<{ url: string; tally(): HandshakeTally; close(): Promise<void> }> {
  let handshakes = 0
  let resumed = 0
  let unreadable = 0
  const negotiated: Record<string, number> = {}
  const sockets = new Set<Socket>()
  const server: Server = createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
    const upstream = tcpConnect({
      host: target.hostname,
      port: Number(target.port),
      allowHalfOpen: true,
      noDelay: true,
    })
    for (const s of [client, upstream]) {
      sockets.add(s)
      s.on('close', () => sockets.delete(s))
      s.on('error', () => {
        client.destroy()
        upstream.destroy()
      })
    }
    let clientBytes = Buffer.alloc(0)
    let serverBytes = Buffer.alloc(0)
    let sessionId: Buffer | null = null
    const watchClient = (chunk: Buffer) => {
      try {
        clientBytes = Buffer.concat([clientBytes, chunk])
        sessionId = clientHelloSessionId(clientBytes)
      } catch {
        sessionId = Buffer.alloc(0)
      }
      if (sessionId !== null) client.off('data', watchClient)
    }
    const watchServer = (chunk: Buffer) => {
      serverBytes = Buffer.concat([serverBytes, chunk])
      let hello: ServerHello | null = null
      try {
        hello = parseServerHello(serverBytes, sessionId)
        if (hello === null) return
      } catch {
        // not TLS, or an alert instead of a hello
      }
      upstream.off('data', watchServer)
      // A HelloRetryRequest is not the handshake's outcome; it does not happen
      // with these clients (their first key share is X25519, which every
      // contender accepts), and is counted apart if it ever does.
      if (hello === null || hello.helloRetry) {
        unreadable++
        return
      }
      handshakes++
      if (hello.resumed) resumed++
      const key = [hello.version, hello.cipher, hello.group].filter(Boolean).join(' ')
      negotiated[key] = (negotiated[key] ?? 0) + 1
    }
    client.on('data', watchClient)
    upstream.on('data', watchServer)
    client.pipe(upstream)
    upstream.pipe(client)
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const address = server.address()
  const port = typeof address === 'object' && address ? address.port : 0
  return {
    url: `https://127.0.0.1:${port}`,
    tally: () => ({ handshakes, resumed, unreadable, negotiated: { ...negotiated } }),
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
