// What became of an attempt to reach an instance, and how the client hears
// of it: error classification (retry, passive health, status) and the plain
// text error answers, shared by plain requests and upgrades.

import { STATUS_CODES } from 'node:http'
import { type ErrorCode, type HttpErrorCode, httpStatus } from '../errors.js'
import type { Backend } from '../routing/types.js'
import type { TimeoutKind, UpstreamErrorReason } from './observer.js'

/** Path for the upstream after `strip=` and `prepend=`, and the prefix removed. */
export function upstreamPath(backend: Backend, path: string): { path: string; prefix: string } {
  let out = path
  let prefix = ''
  if (backend.strip && out.startsWith(backend.strip)) {
    prefix = backend.strip
    out = out.slice(backend.strip.length)
    if (!out.startsWith('/')) out = `/${out}`
  }
  if (backend.prepend) {
    out = backend.prepend.endsWith('/') ? backend.prepend + out.slice(1) : backend.prepend + out
  }
  return { path: out, prefix }
}

export interface UpstreamFailure {
  /** As reported to ProxyObserver.upstreamError. */
  readonly reason: UpstreamErrorReason
  /** No connection to the instance could be made (refused, unreachable, connect timeout). */
  readonly connect: boolean
  readonly timeout: Exclude<TimeoutKind, 'client-headers'> | null
  /** undici refused the request as invalid: the client's fault, not the instance's. */
  readonly invalidRequest: boolean
}

const CONNECT_CODES = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EADDRNOTAVAIL',
])

/**
 * What an upstream error means. A connect timeout is a connect failure (the
 * request never reached the instance: retried, counted by passive health)
 * reported with reason 'timeout' and answered 504 when no retry is left.
 */
export function classifyUpstreamError(error: Error): UpstreamFailure {
  const code = (error as { code?: string }).code ?? ''
  switch (code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
      return { reason: 'timeout', connect: true, timeout: 'connect', invalidRequest: false }
    case 'UND_ERR_HEADERS_TIMEOUT':
      return { reason: 'timeout', connect: false, timeout: 'response-headers', invalidRequest: false }
    case 'UND_ERR_BODY_TIMEOUT':
      return { reason: 'timeout', connect: false, timeout: 'idle', invalidRequest: false }
    case 'UND_ERR_INVALID_ARG':
    case 'UND_ERR_NOT_SUPPORTED':
      return { reason: 'reset', connect: false, timeout: null, invalidRequest: true }
  }
  if (CONNECT_CODES.has(code))
    return { reason: 'connect', connect: true, timeout: null, invalidRequest: false }
  return { reason: 'reset', connect: false, timeout: null, invalidRequest: false }
}

export function failureStatus(failure: UpstreamFailure): [number, ErrorCode] {
  const code: HttpErrorCode =
    failure.reason === 'timeout'
      ? 'SWY_ERR_UPSTREAM_TIMEOUT'
      : failure.connect
        ? 'SWY_ERR_UPSTREAM_CONNECT'
        : 'SWY_ERR_UPSTREAM_RESET'
  return [httpStatus(code), code]
}

export function errorBody(status: number, code: ErrorCode, message: string): string {
  return `${status} ${STATUS_CODES[status]}: ${message} [${code}]\n`
}

/** A complete error response for a socket Node's HTTP layer no longer manages; the connection closes. */
export function rawResponse(status: number, code: ErrorCode, message: string): string {
  const body = errorBody(status, code, message.replace(/[\r\n]/g, ' '))
  return (
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n` +
    'connection: close\r\n' +
    'content-type: text/plain; charset=utf-8\r\n' +
    'cache-control: no-store\r\n' +
    `x-switchyard-error: ${code}\r\n` +
    `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  )
}

export function describe(error: Error): string {
  const code = (error as { code?: string }).code
  return code ? `${code} ${error.message}` : error.message
}
