// Several per-request hooks (metrics, access log, a test's own) behind the one
// ProxyObserver the proxy calls.

import type { ProxyObserver } from '../proxy/observer.js'

/**
 * One observer that calls each given one in turn; absent observers and absent
 * optional hooks are skipped. Typed as Required so that a hook added to
 * ProxyObserver does not compile until it is forwarded here too.
 */
export function combineObservers(observers: readonly (ProxyObserver | null | undefined)[]): ProxyObserver {
  const list = observers.filter((o): o is ProxyObserver => o != null)
  if (list.length === 1) return list[0] as ProxyObserver
  const combined: Required<ProxyObserver> = {
    request(route, target, status, seconds, req) {
      for (const o of list) o.request(route, target, status, seconds, req)
    },
    upstreamError(target, reason, error) {
      for (const o of list) o.upstreamError(target, reason, error)
    },
    rejected(reason, status) {
      for (const o of list) o.rejected?.(reason, status)
    },
    timeout(kind, target) {
      for (const o of list) o.timeout?.(kind, target)
    },
    passiveHealth(target, ejected, forMs) {
      for (const o of list) o.passiveHealth?.(target, ejected, forMs)
    },
    grpcStatus(route, backend, status) {
      for (const o of list) o.grpcStatus?.(route, backend, status)
    },
  }
  return combined
}
