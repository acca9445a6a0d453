// A request body on its way from a client to an instance, the same for every
// client protocol. Until the attempt path asks for it, the body is held in
// memory up to the request buffer (then the source stops being read): a small
// body goes to the instance in one piece, and a client that trickles its body
// holds no upstream connection. Once a sink reads it, pieces pass straight
// through, the source pausing whenever the sink's buffer is full.

import type { BodySink } from './exchange.js'

/** Where the bytes come from: a socket (HTTP/1.1) or a stream (HTTP/2). */
export interface BodySource {
  pause(): void
  resume(): void
}

export class RequestBody {
  /** Bytes received so far (for the body size limit). */
  received = 0
  /** The client sent all of it. */
  complete: boolean
  private readonly limit: number
  private readonly source: BodySource
  private chunks: Buffer[] = []
  private bytes = 0
  private sink: BodySink | null = null
  private trailers: readonly string[] = []
  private ready: (() => void) | null = null

  /** `limit`: bytes held before the source is paused; `empty`: the request has no body. */
  constructor(limit: number, source: BodySource, empty: boolean) {
    this.limit = limit
    this.source = source
    this.complete = empty
  }

  /** A piece from the client. */
  push(chunk: Buffer): void {
    this.received += chunk.length
    const sink = this.sink
    if (sink !== null) {
      if (!sink.data(chunk)) this.source.pause()
      return
    }
    this.chunks.push(chunk)
    this.bytes += chunk.length
    if (this.bytes >= this.limit) {
      // Nobody reads it yet (the instance is being connected to, or the
      // request waits its turn): stop reading the client.
      this.source.pause()
      this.fireReady()
    }
  }

  /** The client's body ended, with its trailer fields (flat pairs, possibly none). */
  end(trailers: readonly string[]): void {
    this.complete = true
    this.trailers = trailers
    if (this.sink !== null) this.sink.end(trailers)
    else this.fireReady()
  }

  /**
   * Calls `ready` once the body is complete or the buffer is full: at once
   * (true) or later (false).
   */
  whenReady(ready: () => void): boolean {
    if (this.complete || this.bytes >= this.limit) {
      ready()
      return true
    }
    this.ready = ready
    return false
  }

  /** Hands what is held, then the rest as it comes, to `sink`. */
  read(sink: BodySink): void {
    this.sink = sink
    const chunks = this.chunks
    this.chunks = []
    this.bytes = 0
    let ok = true
    for (const c of chunks) ok = sink.data(c) && ok
    if (this.complete) sink.end(this.trailers)
    else if (ok) this.source.resume()
  }

  /** The sink drained: read the client again. */
  resume(): void {
    if (!this.complete) this.source.resume()
  }

  private fireReady(): void {
    const ready = this.ready
    this.ready = null
    ready?.()
  }
}
