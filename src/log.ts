// Structured JSON logs (pino). Secrets are redacted by path so that a config or
// a request logged whole can never leak the Consul token or a client's cookie.

import { type Logger, type LoggerOptions, pino } from 'pino'

export type { Logger }

const REDACT_PATHS = [
  'token',
  '*.token',
  'consul.token',
  'config.consul.token',
  'headers.authorization',
  'headers.cookie',
  'headers["x-consul-token"]',
  'req.headers.authorization',
  'req.headers.cookie',
]

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  const options: LoggerOptions = {
    level,
    base: { service: 'switchyard' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  }
  return destination ? pino(options, destination) : pino(options)
}
