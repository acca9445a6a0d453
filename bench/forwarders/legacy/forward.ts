// The request path Switchyard had before its own HTTP/1.1 engine (node:http
// server + undici pool), kept only so the benchmark can compare engines.

// Streams one request to one upstream and its response back, with
// backpressure both ways: undici reads the client's body as the upstream
// accepts it, and the upstream's body is paused whenever the client's socket
// buffer is full. A client that goes away aborts the upstream request.

import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Dispatcher } from 'undici'
import { clientResponseHeaders } from './headers.js'

export interface ForwardOptions {
  readonly method: string
  /** Path and query as the upstream should see them. */
  readonly path: string
  readonly headers: string[]
  /** The client's body, or null when the request has none. */
  readonly body: IncomingMessage | null
  /** Read when the response head is written: while draining, the client connection closes after it. */
  readonly drain?: { readonly draining: boolean }
}

/** How a forward ended. `responded` tells whether the client already got headers. */
export type ForwardDone = (error: Error | null, responded: boolean, status: number) => void

class ResponseHandler implements Dispatcher.DispatchHandler {
  private readonly res: ServerResponse
  private readonly done: ForwardDone
  private readonly drain: { readonly draining: boolean } | undefined
  private controller: Dispatcher.DispatchController | null = null
  private status = 0
  private finished = false

  constructor(res: ServerResponse, done: ForwardDone, drain?: { readonly draining: boolean }) {
    this.res = res
    this.done = done
    this.drain = drain
    res.on('drain', this.onDrain)
    res.on('close', this.onClientClose)
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller
    if (this.res.destroyed) controller.abort(new ClientGoneError())
  }

  onResponseStart(
    _controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
    statusMessage?: string,
  ): void {
    // Informational answers (100, 103) are not relayed: the client gets the final head only.
    if (statusCode < 200) return
    // Shutdown began while this request waited for its answer.
    if (this.drain?.draining) this.res.shouldKeepAlive = false
    try {
      this.res.writeHead(statusCode, statusMessage || undefined, clientResponseHeaders(headers))
    } catch (err) {
      // A head Node will not write (invalid characters from the upstream).
      _controller.abort(err as Error)
      return
    }
    this.status = statusCode
    // A body of unknown length (a stream, server-sent events) may not write a
    // byte for a while: send the head at once. With a Content-Length, the head
    // leaves with the first body bytes, one socket write instead of two.
    if (headers['content-length'] === undefined) this.res.flushHeaders()
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (!this.res.write(chunk)) controller.pause()
  }

  onResponseEnd(): void {
    this.res.end()
    this.finish(null)
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    this.finish(error)
  }

  private readonly onDrain = (): void => {
    this.controller?.resume()
  }

  private readonly onClientClose = (): void => {
    if (!this.finished && !this.res.writableFinished) this.controller?.abort(new ClientGoneError())
  }

  private finish(error: Error | null): void {
    if (this.finished) return
    this.finished = true
    // A client that hung up mid-upload shows as an error of the request body;
    // it is the client's doing, not the instance's. The request's socket, not
    // the response's: a pipelined response has none until its turn comes.
    const socket = this.res.socket ?? this.res.req.socket
    if (error !== null && (socket === null || socket.destroyed) && !this.res.writableFinished) {
      error = new ClientGoneError()
    }
    this.res.off('drain', this.onDrain)
    this.res.off('close', this.onClientClose)
    this.done(error, this.status !== 0, this.status)
  }
}

export class ClientGoneError extends Error {
  readonly code = 'SWY_CLIENT_GONE'
  constructor() {
    super('client closed the connection')
  }
}

export function forward(
  upstream: Dispatcher,
  res: ServerResponse,
  options: ForwardOptions,
  done: ForwardDone,
): void {
  const handler = new ResponseHandler(res, done, options.drain)
  upstream.dispatch(
    {
      method: options.method as Dispatcher.HttpMethod,
      path: options.path,
      headers: options.headers,
      body: options.body,
    },
    handler,
  )
}
