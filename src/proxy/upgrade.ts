// WebSocket (and other) upgrades. The request is routed like any other
// (resolve.ts), sent through the instance's undici pool (connect timeout,
// passive health, retry on connect failure), and on `101 Switching Protocols`
// the two sockets are piped together: frames flow both ways untouched, and
// when either side closes, the other is closed too. An instance that refuses
// the upgrade (any non-101 answer) has its answer relayed to the client with
// `Connection: close`, so neither side is left holding a socket.

import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import type { Duplex } from 'node:stream'
import type { Dispatcher } from 'undici'
import type { Logger } from '../log.js'
import type { Backend } from '../routing/types.js'
import { ClientGoneError } from './forward.js'
import { clientAddress, clientResponseHeaders, upstreamRequestHeaders } from './headers.js'
import type { PassiveHealth } from './health.js'
import type { ProxyObserver } from './observer.js'
import { classifyUpstreamError, describe, failureStatus, rawResponse, upstreamPath } from './outcome.js'
import type { Balancer } from './pickers.js'
import type { Resolution } from './resolve.js'
import type { Upstreams } from './upstreams.js'

export interface UpgradeDeps {
  readonly resolve: (req: IncomingMessage) => Resolution
  readonly balancer: Balancer
  readonly upstreams: Upstreams
  readonly health: PassiveHealth | null
  readonly observer: ProxyObserver
  readonly log: Logger
  readonly retries: number
  /** Live tunnels' client sockets, so a shutdown can cut them at its deadline. */
  readonly tunnels: Set<Duplex>
}

type Done = (error: Error | null, responded: boolean, status: number) => void

export function createUpgradeHandler(
  deps: UpgradeDeps,
): (req: IncomingMessage, socket: Duplex, head: Buffer) => void {
  const { resolve, balancer, upstreams, health, observer, log, retries, tunnels } = deps

  const handle = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const started = performance.now()
    // Errors of a client socket show up as its 'close'; without a listener they would crash.
    socket.on('error', () => {})
    const resolved = resolve(req)
    if (resolved.kind === 'reply') {
      if (resolved.reject !== null) observer.rejected?.(resolved.reject, resolved.status)
      socket.end(rawResponse(resolved.status, resolved.code, resolved.message))
      observer.request(resolved.route, null, resolved.status, (performance.now() - started) / 1000, req)
      return
    }
    if (resolved.kind === 'redirect') {
      const status = resolved.target.redirect?.status ?? 302
      socket.end(
        `HTTP/1.1 ${status} Redirect\r\nlocation: ${resolved.location}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`,
      )
      observer.request(resolved.route, resolved.target, status, (performance.now() - started) / 1000, req)
      return
    }
    // Only WebSocket is tunnelled; for any other protocol (h2c...) the request
    // goes upstream as a plain one and its answer is relayed.
    const protocol = /^websocket$/i.test(req.headers.upgrade ?? '') ? 'websocket' : null
    if (
      protocol === null &&
      (req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] ?? '0') !== '0')
    ) {
      // Node hands such a request over as raw bytes; relaying its body is not
      // implemented, and dropping it silently would be worse. (curl --http2 on
      // plain http does this; without a body the request is forwarded.)
      socket.end(
        rawResponse(
          501,
          'SWY_ERR_BAD_REQUEST',
          `Upgrade: ${req.headers.upgrade} with a request body is not supported`,
        ),
      )
      observer.request(resolved.route, null, 501, (performance.now() - started) / 1000, req)
      return
    }
    const attempt = (chosen: Backend, n: number): void => {
      const { path, prefix } = upstreamPath(chosen, resolved.path)
      const headers = upstreamRequestHeaders(req.rawHeaders, {
        clientIp: clientAddress(req.socket.remoteAddress),
        proto: 'http',
        host: resolved.host,
        port: req.socket.localPort ?? 0,
        prefix,
        upstreamHost: chosen.hostHeader ?? resolved.host,
        forwardedFor: resolved.client.chain,
      })
      balancer.begin(chosen)
      let ended = false
      const done: Done = (error, responded, status) => {
        if (ended) return
        ended = true
        balancer.end(chosen)
        const seconds = (performance.now() - started) / 1000
        if (error === null) {
          health?.succeeded(chosen)
          observer.request(resolved.route, chosen, status, seconds, req)
          return
        }
        if ((error as { code?: string }).code === 'SWY_CLIENT_GONE') {
          observer.request(resolved.route, chosen, 499, seconds, req)
          return
        }
        const failure = classifyUpstreamError(error)
        if (failure.timeout !== null) observer.timeout?.(failure.timeout, chosen)
        observer.upstreamError(chosen, failure.reason, error)
        if (failure.connect) health?.connectFailed(chosen)
        if (responded) {
          socket.destroy()
          observer.request(resolved.route, chosen, status, seconds, req)
          return
        }
        if (failure.connect && n < retries) {
          const next = balancer.pick(
            resolved.route,
            (t) => t.key !== chosen.key && (health === null || health.usable(t)),
          )
          if (next !== null && next.redirect === null) {
            log.debug({ route: resolved.route.id, from: chosen.key, to: next.key }, 'retrying upgrade')
            return attempt(next, n + 1)
          }
        }
        const [statusCode, code] = failureStatus(failure)
        socket.end(
          rawResponse(statusCode, code, `instance ${chosen.key} of ${chosen.service}: ${describe(error)}`),
        )
        observer.request(resolved.route, chosen, statusCode, seconds, req)
      }
      let pool: ReturnType<typeof upstreams.pool>
      try {
        pool = upstreams.pool(chosen)
      } catch (err) {
        done(err as Error, false, 0)
        return
      }
      pool.dispatch(
        {
          method: (req.method ?? 'GET') as Dispatcher.HttpMethod,
          path: path + resolved.query,
          headers,
          body: null,
          upgrade: protocol,
        },
        new UpgradeHandler(socket, head, tunnels, done),
      )
    }
    attempt(resolved.target, 0)
  }

  // An 'upgrade' listener that throws would take the process down.
  return (req, socket, head) => {
    try {
      handle(req, socket, head)
    } catch (err) {
      log.error({ err, path: (req.url ?? '').split('?')[0] }, 'upgrade handler failed')
      socket.destroy()
    }
  }
}

class UpgradeHandler implements Dispatcher.DispatchHandler {
  private readonly client: Duplex
  private readonly head: Buffer
  private readonly tunnels: Set<Duplex>
  private readonly done: Done
  private controller: Dispatcher.DispatchController | null = null
  private status = 0
  private tunnelled = false

  constructor(client: Duplex, head: Buffer, tunnels: Set<Duplex>, done: Done) {
    this.client = client
    this.head = head
    this.tunnels = tunnels
    this.done = done
    client.on('close', this.onClientClose)
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller
    if (this.client.destroyed) controller.abort(new ClientGoneError())
  }

  onRequestUpgrade(
    _controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: IncomingHttpHeaders,
    upstream: Duplex,
  ): void {
    const client = this.client
    client.off('close', this.onClientClose)
    this.status = statusCode
    this.tunnelled = true
    if (client.destroyed) {
      upstream.destroy()
      this.done(new ClientGoneError(), true, statusCode)
      return
    }
    client.write(`HTTP/1.1 ${statusCode} Switching Protocols\r\n${headerLines(headers)}\r\n`)
    if (this.head.length > 0) upstream.write(this.head)
    ;(upstream as Socket).setNoDelay?.(true)
    upstream.on('error', () => {})
    this.tunnels.add(client)
    // pipe() carries data with backpressure and passes a clean end (FIN) on;
    // a close or error of either side tears down both.
    client.pipe(upstream)
    upstream.pipe(client)
    const teardown = () => {
      client.destroy()
      upstream.destroy()
      if (this.tunnels.delete(client)) this.done(null, true, statusCode)
    }
    client.once('close', teardown)
    upstream.once('close', teardown)
  }

  onResponseStart(
    _controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: IncomingHttpHeaders,
    statusMessage?: string,
  ): void {
    if (statusCode < 200) return
    this.status = statusCode
    const relayed = clientResponseHeaders(headers)
    relayed.connection = 'close'
    this.client.write(
      `HTTP/1.1 ${statusCode} ${statusMessage || 'Upgrade Refused'}\r\n${headerLines(relayed)}\r\n`,
    )
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (!this.client.write(chunk)) {
      controller.pause()
      this.client.once('drain', () => controller.resume())
    }
  }

  onResponseEnd(): void {
    this.client.off('close', this.onClientClose)
    this.client.end()
    this.done(null, true, this.status)
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    this.client.off('close', this.onClientClose)
    if (this.tunnelled) return
    this.done(this.client.destroyed ? new ClientGoneError() : error, this.status !== 0, this.status)
  }

  private readonly onClientClose = (): void => {
    this.controller?.abort(new ClientGoneError())
  }
}

function headerLines(headers: IncomingHttpHeaders): string {
  let out = ''
  for (const name in headers) {
    const value = headers[name]
    if (value === undefined) continue
    for (const v of Array.isArray(value) ? value : [value]) out += `${name}: ${v}\r\n`
  }
  return out
}
