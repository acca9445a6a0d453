// What the proxy tells the rest of the program about each request: metrics and
// the access log implement it; NO_OBSERVER does nothing, so a disabled feature
// costs a call.

import type { IncomingMessage } from 'node:http'
import type { Backend, Route } from '../routing/types.js'
import type { RejectReason } from './resolve.js'

export type UpstreamErrorReason = 'connect' | 'timeout' | 'reset'

/** Hooks for metrics and logs; the default does nothing, so a disabled feature costs a call. */
export interface ProxyObserver {
  /** Every finished request, routed or not. `route` and `backend` are null when none was chosen. */
  request(
    route: Route | null,
    backend: Backend | null,
    status: number,
    seconds: number,
    req: IncomingMessage,
  ): void
  upstreamError(backend: Backend, reason: UpstreamErrorReason, error: Error): void
  /**
   * A request refused as malformed or hostile before routing, with the status
   * the client got. Optional so existing observers need not change.
   */
  rejected?(reason: RejectReason, status: number): void
  /**
   * A timeout fired: `connect`, `response-headers` and `idle` (response body)
   * towards `backend`; `client-headers` (slow client, 408) with backend null.
   */
  timeout?(kind: TimeoutKind, backend: Backend | null): void
  /** Passive health ejected an instance (`ejected`, for `forMs`) or let it back in. */
  passiveHealth?(backend: Backend, ejected: boolean, forMs: number): void
}

export type TimeoutKind = 'connect' | 'response-headers' | 'idle' | 'client-headers'

export const NO_OBSERVER: ProxyObserver = {
  request() {},
  upstreamError() {},
}
