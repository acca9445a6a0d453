// What a TLS listener needs from the certificate store: server-wide options
// (versions, ciphers, session resumption) and the SNI callback. The listener
// itself (tls.createServer, ALPN, HTTP/2) is built elsewhere.

import type { SecureContextOptions, Server, TlsOptions } from 'node:tls'
import type { Config } from '../config/schema.js'
import type { CertificateStore, TlsSettings } from './store.js'

export function tlsSettingsOf(tls: Config['tls']): TlsSettings {
  return {
    minVersion: tls.minVersion,
    ciphers: tls.ciphers,
    sessionTimeoutSeconds: Math.max(1, Math.round(tls.sessionTimeout / 1000)),
    defaultCertificate: tls.defaultCertificate,
  }
}

/**
 * Server-wide TLS options, from the config alone: minimum version, ciphers in
 * the server's order, and session resumption by tickets for
 * `sessionTimeoutSeconds`. `ticketKeys` (48 random bytes) lets several
 * processes on one port resume each other's sessions, and keeps tickets valid
 * when the server's default context is rebuilt; without it each process and
 * each rebuild has its own random keys.
 */
export function tlsServerOptions(settings: TlsSettings, ticketKeys?: Buffer): SecureContextOptions {
  return {
    minVersion: settings.minVersion,
    ciphers: settings.ciphers,
    honorCipherOrder: true,
    sessionTimeout: settings.sessionTimeoutSeconds,
    ...(ticketKeys ? { ticketKeys } : {}),
  }
}

/**
 * Options for `tls.createServer` that serve the store's certificates: the
 * server-wide options, the SNI callback, and the default certificate as the
 * server's own (a client that sends no server name never reaches the SNI
 * callback). Call `followStore` on the server afterwards so that a new
 * default certificate reaches those clients too.
 */
export function tlsServerOptionsFor(
  settings: TlsSettings,
  store: CertificateStore,
  ticketKeys?: Buffer,
): TlsOptions {
  return {
    ...tlsServerOptions(settings, ticketKeys),
    ...(store.defaultCertificate() ?? {}),
    SNICallback: (servername, callback) => {
      const context = store.secureContextFor(servername)
      // Without any usable certificate the handshake fails (the client sees an alert).
      if (context === null) callback(new Error(`no certificate for ${servername}`))
      else callback(null, context)
    },
  }
}

/**
 * Keeps the server's own context (what clients without SNI get) on the
 * store's default certificate. Returns the function that stops following.
 */
export function followStore(
  server: Server,
  settings: TlsSettings,
  store: CertificateStore,
  ticketKeys?: Buffer,
): () => void {
  let current = store.defaultCertificate()
  return store.onChange(() => {
    const next = store.defaultCertificate()
    if (next === null || (current && next.cert === current.cert && next.key === current.key)) return
    current = next
    // A rebuilt context would get new random ticket keys and void every
    // session issued so far; the server's keys are carried over.
    const keys = ticketKeys ?? server.getTicketKeys()
    server.setSecureContext({ ...tlsServerOptions(settings, keys), ...next })
  })
}
