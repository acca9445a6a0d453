// What the attempt path (attempt.ts) sees of a client's request, whatever the
// protocol it came in on: a parsed head, a body it can read with
// backpressure, and a response it writes. The HTTP/1.1 listener implements it
// (http1/client.ts); an HTTP/2 stream can implement the same, so routing,
// retries, passive health, metrics and the access log exist once.

import type { ErrorCode } from '../errors.js'

/** Where a request came from. */
export interface ClientInfo {
  /** Client address; an IPv4 client on a dual-stack socket as `1.2.3.4`. */
  readonly address: string
  /** Port of the listener that accepted the connection. */
  readonly localPort: number
  readonly proto: 'http' | 'https'
}

/** A request head, parsed once. */
export interface RequestHead {
  readonly method: string
  /** Request target exactly as sent (origin form, or absolute form with a host). */
  readonly url: string
  /** 0 for HTTP/1.0, 1 for HTTP/1.1 (and HTTP/2). */
  readonly httpMinor: number
  /** Header fields as sent: name, value, name, value... */
  readonly headers: readonly string[]
  /** The first Host value ('' when there is none), and how many Host fields there were. */
  readonly host: string
  readonly hostCount: number
  readonly userAgent: string
  /** X-Forwarded-For as received (several fields joined with ','); null when absent. */
  readonly forwardedFor: string | null
  /** The Authorization field ('' when absent), for routes with basic auth. */
  readonly authorization: string
  /** Cookie fields joined with '; ' ('' when absent), for match rules and sticky versions. */
  readonly cookie: string
  readonly client: ClientInfo
  /** `websocket` for a WebSocket upgrade; null for a plain request. */
  readonly upgrade: string | null
  /** Content-Length, or -1 when the body is chunked; 0 when there is no body. */
  readonly bodyLength: number
}

/** Takes the client's body as it arrives. */
export interface BodySink {
  /** A piece of the body; false asks the source to pause until `resumeBody()`. */
  data(chunk: Buffer): boolean
  /** The body is complete; `trailers` are the chunked trailer fields (flat pairs), possibly empty. */
  end(trailers: readonly string[]): void
}

/** How a response's body is delimited, as the upstream framed it. */
export interface ResponseFraming {
  /** Content-Length, or -1 when unknown (chunked or until close). */
  readonly length: number
  /** The upstream sent it chunked. */
  readonly chunked: boolean
  /** No body follows whatever the headers say (HEAD, 204, 304). */
  readonly noBody: boolean
}

/**
 * One client request being answered. Every `send*` is a no-op once the
 * client is gone (`gone`), so the attempt path never checks before writing.
 */
export interface Downstream {
  readonly head: RequestHead
  /** performance.now() when the request head was complete. */
  readonly startedAt: number
  readonly gone: boolean
  /** True once a response head went out. */
  readonly responded: boolean
  /** The listener is draining: the response should close its connection. */
  readonly closing: boolean

  /** Body bytes received and not yet given to a sink stay buffered (up to the request buffer). */
  readonly bodyComplete: boolean
  /**
   * Calls `ready` once the body is complete or the request buffer is full (at
   * once for a request without a body): connecting to an instance waits for
   * it, so a client that trickles its body holds no upstream connection.
   */
  whenBodyReady(ready: () => void): void
  /** Hands the body (what is buffered, then the rest as it comes) to `sink`. */
  readBody(sink: BodySink): void
  resumeBody(): void

  /** Informational answers (103 Early Hints); dropped for HTTP/1.0 clients. */
  sendInformational(status: number, headers: readonly string[]): void
  sendHead(status: number, reason: string, headers: readonly string[], framing: ResponseFraming): void
  /** False when the client's buffer is full: wait for the `onDrain` callback. */
  sendData(chunk: Buffer): boolean
  sendEnd(trailers: readonly string[]): void
  /** The connection's framing or identity is in doubt: close it after this response. */
  closeAfterResponse(): void
  /** A complete answer of our own (errors, redirects). */
  reply(status: number, headers: readonly string[], body: string): void
  /**
   * WebSocket: the instance answered 101. The client gets that head, then
   * the connection becomes a byte tunnel to `upstream` (whose first bytes,
   * read with the head, are `upstreamHead`) until either side closes; `closed`
   * is called then.
   */
  tunnel(
    status: number,
    reason: string,
    headers: readonly string[],
    upstream: import('node:stream').Duplex,
    upstreamHead: Buffer,
    closed: () => void,
  ): void
  /** The response cannot be completed (the instance failed mid-body): cut the client's connection. */
  abort(): void

  /** Set by the attempt path. Called when the client's buffer drained after `sendData` returned false. */
  onDrain: (() => void) | null
  /**
   * Set by the attempt path. Called once if the request ends on the client's
   * side before the response did, with the status to record: 499 when the
   * client went away, 408 when it stalled its body (already answered).
   */
  onGone: ((status: number) => void) | null
  /** Batch the writes of one upstream read into one system call. */
  cork(): void
  /** Ends the batch; false when the client's buffer is full (wait for `onDrain`). */
  uncork(): boolean
}

/** A Switchyard error answer's head fields and body. */
export interface ErrorAnswer {
  readonly status: number
  readonly code: ErrorCode
  readonly message: string
}
