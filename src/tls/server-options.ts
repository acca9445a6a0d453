// The server-wide TLS settings every context of an https listener shares,
// from the `tls:` section of the config.

import type { SecureContextOptions } from 'node:tls'
import type { Config } from '../config/schema.js'
import type { TlsSettings } from './store.js'

export function tlsSettingsOf(tls: Config['tls']): TlsSettings {
  return {
    minVersion: tls.minVersion,
    ciphers: tls.ciphers,
    sessionTimeoutSeconds: Math.max(1, Math.round(tls.sessionTimeout / 1000)),
    defaultCertificate: tls.defaultCertificate,
  }
}

/**
 * Minimum version, ciphers in the server's order, and session resumption by
 * tickets for `sessionTimeoutSeconds`. The same `ticketKeys` (48 bytes) in
 * every context, every rebuild and every worker process let a client resume
 * its session whichever of them answers; a context built without them gets
 * random keys and voids every ticket issued before.
 */
export function tlsServerOptions(settings: TlsSettings, ticketKeys: Buffer): SecureContextOptions {
  return {
    minVersion: settings.minVersion,
    ciphers: settings.ciphers,
    honorCipherOrder: true,
    sessionTimeout: settings.sessionTimeoutSeconds,
    ticketKeys,
  }
}
