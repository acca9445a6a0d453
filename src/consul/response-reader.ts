// Reads one HTTP/1.1 response from Consul with Node's own parser (llhttp, see
// src/llhttp.ts), fed the connection's bytes as they come.
//
// Why not node:http's client: it gives every request in flight its own
// parser (about 10 KiB of C heap on Node 24), and a proxy at 1,000 routed
// services holds 1,000 blocking queries open for minutes. Here a parser is
// taken from a small pool when a response's first bytes arrive and given back
// when it is complete, so a waiting query holds none.
//
// It keeps no reference to the bytes it is given (the client reads every
// plain connection into one shared buffer). llhttp hands over each piece of
// body as a copy of exactly its size; it is decoded to text at once, so what
// outlives the read is V8 strings, which the GC compacts.

import { StringDecoder } from 'node:string_decoder'
import { closeParser, createParser, NO_RESOURCE, type Parser, RESPONSE, STRICT } from '../llhttp.js'

export class ResponseFormatError extends Error {
  constructor(reason: string) {
    super(`malformed HTTP response: ${reason}`)
  }
}

/** What a response head may take: Node's --max-http-header-size default. */
export const MAX_HEAD_BYTES = 16 * 1024
/** Consul's largest answers (a recursive KV read) stay far below this; a V8 string cannot exceed 512 MiB. */
export const MAX_BODY_BYTES = 256 * 1024 * 1024
/** Parsers kept for the next response; more are made when more responses arrive at once. */
const POOL_SIZE = 8

export interface ResponseHead {
  readonly status: number
  /** Lower-case names; repeated fields joined with ", ". */
  readonly headers: ReadonlyMap<string, string>
}

const pool: Parser[] = []

export class ResponseReader {
  head: ResponseHead | null = null
  /** The connection may carry another request once this response is complete. */
  reusable = false
  complete = false
  private parser: Parser | null = null
  /** Header fields Node flushed before the head completed (it does at the 32nd field). */
  private fields: string[] = []
  private problem: string | null = null
  private readonly decoder = new StringDecoder('utf8')
  private readonly body: string[] = []
  private bodyBytes = 0

  /** Takes the next bytes of the connection (read now, not kept); true once the response is complete. */
  push(bytes: Buffer): boolean {
    if (this.complete) this.fail('bytes after the end of the response')
    const parser = this.parser ?? this.takeParser()
    const result = parser.execute(bytes)
    if (result instanceof Error) this.fail(`${result.code} (${result.reason})`)
    this.check()
    if (this.complete) this.release()
    return this.complete
  }

  /** The connection ended; true when that completes the response (a body delimited by the close). */
  end(): boolean {
    const parser = this.parser
    if (parser === null || this.complete) return this.complete
    const result = parser.finish()
    if (result instanceof Error) {
      this.release()
      return false
    }
    this.check()
    this.release()
    return this.complete
  }

  bodyText(): string {
    return this.body.join('') + this.decoder.end()
  }

  /** Gives the parser back (or closes it after a failure); the reader is done. */
  release(): void {
    const parser = this.parser
    if (parser === null) return
    this.parser = null
    parser.owner = null
    if (this.complete && this.problem === null && pool.length < POOL_SIZE) pool.push(parser)
    else closeParser(parser)
  }

  private takeParser(): Parser {
    const parser = pool.pop() ?? createParser(CALLBACKS, null)
    parser.initialize(RESPONSE, NO_RESOURCE, MAX_HEAD_BYTES, STRICT)
    parser.owner = this
    this.parser = parser
    return parser
  }

  private check(): void {
    if (this.problem !== null) this.fail(this.problem)
  }

  private fail(reason: string): never {
    this.problem ??= reason
    this.complete = false
    this.release()
    throw new ResponseFormatError(reason)
  }

  messageBegin(): void {
    if (this.head !== null) this.problem ??= 'bytes after the end of the response'
  }

  headersComplete(minor: number, fields: string[] | undefined, status: number, keepAlive: boolean): void {
    const all =
      fields === undefined ? this.fields : this.fields.length > 0 ? this.fields.concat(fields) : fields
    this.fields = []
    const headers = new Map<string, string>()
    for (let i = 0; i < all.length; i += 2) {
      const name = (all[i] as string).toLowerCase()
      const value = all[i + 1] as string
      const before = headers.get(name)
      headers.set(name, before === undefined ? value : `${before}, ${value}`)
    }
    this.head = { status, headers }
    this.reusable = keepAlive && minor === 1
    // Switchyard never sends Expect, so an interim response is not Consul's.
    if (status < 200) this.problem ??= `interim status ${status}`
    // llhttp passes other codings through undecoded; Consul is never asked for one.
    const coding = headers.get('transfer-encoding')
    if (coding !== undefined && coding.toLowerCase() !== 'chunked') {
      this.problem ??= `unsupported Transfer-Encoding "${coding}"`
    }
  }

  headers(fields: string[]): void {
    // Trailers come this way too, after the head; nothing reads them.
    if (this.head === null) this.fields = this.fields.concat(fields)
  }

  bodyChunk(chunk: Buffer): void {
    this.bodyBytes += chunk.length
    if (this.bodyBytes > MAX_BODY_BYTES) this.problem ??= `body larger than ${MAX_BODY_BYTES} bytes`
    else this.body.push(this.decoder.write(chunk))
  }

  messageComplete(): void {
    if (this.head !== null && this.problem === null) this.complete = true
  }
}

const CALLBACKS = {
  onMessageBegin(this: Parser): void {
    ;(this.owner as ResponseReader).messageBegin()
  },
  onHeaders(this: Parser, fields: string[]): void {
    ;(this.owner as ResponseReader).headers(fields)
  },
  onHeadersComplete(
    this: Parser,
    _major: number,
    minor: number,
    fields: string[] | undefined,
    _method: number | undefined,
    _url: string | undefined,
    status: number | undefined,
    _reason: string | undefined,
    _upgrade: boolean,
    keepAlive: boolean,
  ): number {
    ;(this.owner as ResponseReader).headersComplete(minor, fields, status ?? 0, keepAlive)
    return 0
  },
  onBody(this: Parser, chunk: Buffer): void {
    ;(this.owner as ResponseReader).bodyChunk(chunk)
  },
  onMessageComplete(this: Parser): void {
    ;(this.owner as ResponseReader).messageComplete()
  },
}
