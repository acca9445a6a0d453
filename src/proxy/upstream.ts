// What the attempt path needs from a connection to an instance, whatever the
// protocol spoken to it: HTTP/1.1 (http1/upstream.ts) or HTTP/2 for gRPC
// (http2/upstream.ts). The attempt sends a request through a channel and
// hears back through an UpstreamHandler.

import type { Socket } from 'node:net'
import type { ForwardedFacts } from './headers.js'

/** Why an exchange with an instance failed. */
export type UpstreamFailureKind =
  /** No connection: refused, unreachable, DNS. */
  | 'connect'
  | 'connect-timeout'
  /** TLS handshake or certificate verification failed. */
  | 'tls'
  /** Every connection to the instance is busy and the wait queue is full. */
  | 'queue-full'
  /** Waited for a connection longer than proxy.timeouts.queue. */
  | 'queue-timeout'
  /** The connection closed or broke before the response was complete. */
  | 'reset'
  | 'headers-timeout'
  | 'idle-timeout'
  /** The instance's response could not be parsed. */
  | 'bad-response'

export class UpstreamFailure extends Error {
  readonly kind: UpstreamFailureKind
  /** The system or parser code behind it (ECONNREFUSED, HPE_...), '' if none. */
  readonly code: string
  constructor(kind: UpstreamFailureKind, message: string, code = '') {
    super(message)
    this.kind = kind
    this.code = code
  }
}

/** A request as it goes to an instance; each protocol renders it its own way. */
export interface UpstreamRequest {
  readonly method: string
  /** Path and query after strip= and prepend=. */
  readonly target: string
  /** The client's header fields (flat pairs); hop-by-hop ones are dropped when rendered. */
  readonly headers: readonly string[]
  readonly facts: ForwardedFacts
  /** Content-Length; -1 when unknown (sent chunked); null without a body. */
  readonly bodyLength: number | null
  /** `websocket` for an upgrade, else null. */
  readonly upgrade: string | null
}

/** One exchange with an instance, as the attempt path drives it. */
export interface UpstreamChannel {
  /** Sends the request head; with `bodyLength` null the request is complete. */
  sendRequest(request: UpstreamRequest): void
  /** A piece of the body; false when the channel's buffer is full (wait for onDrain). */
  writeBody(chunk: Buffer): boolean
  /** The body is complete (trailers, flat pairs, possibly none). */
  endBody(trailers: readonly string[]): void
  /** Stop / restart reading the response (the client's buffer is full / drained). */
  pause(): void
  resume(): void
  /** Drops the exchange: the request or the response is cut. */
  abandon(): void
  /** The handler no longer wants this channel (its client left while it was being opened). */
  detach(handler: UpstreamHandler): void
}

/** Where channels to one instance come from. */
export interface UpstreamPool {
  /**
   * Gives `handler` a channel now (onConnection), after a wait, or a failure.
   * Returns the channel being opened for it, if one is, so the handler can
   * detach should its client leave meanwhile.
   */
  acquire(handler: UpstreamHandler): UpstreamChannel | null
  /** Takes a request out of the wait queue (its client went away). */
  cancel(handler: UpstreamHandler): void
}

/** What a channel reports to the exchange it carries. */
export interface UpstreamHandler {
  /** A channel is ready for the request. */
  onConnection(channel: UpstreamChannel): void
  /** 1xx other than 100 and 101. */
  onInformational(status: number, headers: string[]): void
  /** The final response head. Return true to skip the body (a response to HEAD). */
  onResponseHead(status: number, reason: string, headers: string[], keepAlive: boolean): boolean
  onResponseData(chunk: Buffer): void
  onResponseEnd(trailers: string[]): void
  /** 101 to an upgrade: the socket now belongs to the handler; `head` are bytes read after the head. */
  onUpgrade(status: number, reason: string, headers: string[], socket: Socket, head: Buffer): void
  /** Before and after the bytes of one read are processed (to batch the client writes they cause). */
  onReadStart(): void
  onReadEnd(): void
  /** The connection's write buffer drained (request body backpressure). */
  onDrain(): void
  onFailure(failure: UpstreamFailure): void
}
