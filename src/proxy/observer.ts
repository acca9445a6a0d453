// What the proxy tells the rest of the program about each request: metrics and
// the access log implement it; NO_OBSERVER does nothing, so a disabled feature
// costs a call.

import type { Backend, Route } from '../routing/types.js'
import type { RequestHead } from './exchange.js'
import type { RejectReason } from './resolve.js'

/** `busy`: every connection to the instance was taken and the request could not wait (503). */
export type UpstreamErrorReason = 'connect' | 'timeout' | 'reset' | 'busy'

/** Hooks for metrics and logs; the default does nothing, so a disabled feature costs a call. */
export interface ProxyObserver {
  /** Every finished request, routed or not. `route` and `backend` are null when none was chosen. */
  request(
    route: Route | null,
    backend: Backend | null,
    status: number,
    seconds: number,
    head: RequestHead,
  ): void
  upstreamError(backend: Backend, reason: UpstreamErrorReason, error: Error): void
  /**
   * A request refused as malformed or hostile before routing, with the status
   * the client got. Optional so existing observers need not change.
   */
  rejected?(reason: RejectReason, status: number): void
  /**
   * A timeout fired: `connect`, `response-headers`, `idle` (response body)
   * and `queue` (waiting for a free connection) towards `backend`;
   * `client-headers` (slow client, 408) with backend null; `client-body` (a
   * client that stalled its upload, 408).
   */
  timeout?(kind: TimeoutKind, backend: Backend | null): void
  /** Passive health ejected an instance (`ejected`, for `forMs`) or let it back in. */
  passiveHealth?(backend: Backend, ejected: boolean, forMs: number): void
  /** A gRPC call (proto=grpc/grpcs route) ended with this grpc-status. */
  grpcStatus?(route: Route, backend: Backend, status: string): void
}

export type TimeoutKind = 'connect' | 'response-headers' | 'idle' | 'queue' | 'client-headers' | 'client-body'

export const NO_OBSERVER: ProxyObserver = {
  request() {},
  upstreamError() {},
}
export type { RejectReason } from './resolve.js'
