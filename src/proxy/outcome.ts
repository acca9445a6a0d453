// Pieces of how a request ends that every listener shares: the path an
// instance receives, and the plain-text body of Switchyard's own error answers.

import type { ErrorCode } from '../errors.js'
import type { Backend } from '../routing/types.js'

const { STATUS_CODES } = process.getBuiltinModule('node:http')

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

export function errorBody(status: number, code: ErrorCode, message: string): string {
  return `${status} ${STATUS_CODES[status]}: ${message} [${code}]\n`
}
