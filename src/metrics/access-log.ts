// The optional access log (proxy.accessLog, off by default): one JSON line per
// finished request with flat fields, so log pipelines need no nested parsing.
// Built from an allow-list of fields: no request header other than Host and
// User-Agent is read, so Authorization and Cookie values can never reach it,
// and the query string is left out because tokens travel there too.

import type { Logger } from '../log.js'
import type { RequestHead } from '../proxy/exchange.js'
import type { ProxyObserver } from '../proxy/observer.js'
import { requestClient } from '../proxy/resolve.js'
import type { Backend, Route } from '../routing/types.js'

export interface AccessLogLine {
  readonly method: string
  readonly host: string
  /** Path without the query string. */
  readonly path: string
  readonly status: number
  readonly durationMs: number
  /** Route id, '' when none matched. */
  readonly route: string
  readonly service: string
  readonly version: string
  /** `node/serviceId` of the instance, '' when none was picked. */
  readonly instance: string
  readonly upstream: string
  readonly client: string
  readonly userAgent: string
}

export function accessLogLine(
  route: Route | null,
  backend: Backend | null,
  status: number,
  seconds: number,
  head: RequestHead,
): AccessLogLine {
  const url = head.url
  const query = url.indexOf('?')
  return {
    method: head.method,
    host: head.host,
    path: query === -1 ? url : url.slice(0, query),
    status,
    durationMs: Math.round(seconds * 1e6) / 1e3,
    route: route?.id ?? '',
    service: backend?.service ?? route?.services.join(',') ?? '',
    version: backend?.version ?? '',
    instance: backend?.key ?? '',
    upstream: backend?.origin ?? '',
    client: requestClient(head),
    userAgent: head.userAgent,
  }
}

export function accessLogObserver(log: Logger): ProxyObserver {
  return {
    request(route, backend, status, seconds, head) {
      log.info(accessLogLine(route, backend, status, seconds, head), 'request')
    },
    upstreamError() {},
  }
}
