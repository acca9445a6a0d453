// Node's own HTTP/1.1 parser (llhttp, compiled into the node binary), used
// directly: the same strictness as node:http (one Content-Length, no CL+TE,
// `chunked` last, no obs-fold, no bare CR, header bytes limit), at the cost of
// the C++ parser alone, without node:http's IncomingMessage/ServerResponse
// streams around it. The proxy's engine reads requests and upstream responses
// with it (src/proxy/http1/), the Consul client Consul's answers.
//
// It is reached through `node:_http_common`, which Node documents as
// deprecated for applications (DEP0199, documentation-only in Node 24): it is
// the one place that depends on it, and `assertParserAvailable()` fails start-
// up with a clear message if a future Node removes it. The fallback then is
// the WebAssembly build of the same llhttp that undici ships.

import type { Socket } from 'node:net'

/** Callbacks a parser calls; `this` is the parser. */
export interface ParserCallbacks {
  /** Headers flushed before the head completes (Node does at the 32nd field), and trailers. */
  onHeaders(this: Parser, headers: string[], url: string): void
  /** Returns 1 to skip the body (response to HEAD), 0 otherwise. */
  onHeadersComplete(
    this: Parser,
    versionMajor: number,
    versionMinor: number,
    headers: string[] | undefined,
    method: number | undefined,
    url: string | undefined,
    statusCode: number | undefined,
    statusMessage: string | undefined,
    upgrade: boolean,
    shouldKeepAlive: boolean,
  ): number
  onBody(this: Parser, chunk: Buffer): void
  onMessageComplete(this: Parser): void
  /** The first byte of a message. */
  onMessageBegin?(this: Parser): void
  /** After each read the parser took from its socket itself (see SocketReader): bytes parsed, or the error. */
  onExecute?(this: Parser, result: number | ParseError): void
}

/** A parse failure: `code` is llhttp's (`HPE_...`), `bytesParsed` where it stopped. */
export interface ParseError extends Error {
  readonly code: string
  readonly reason: string
  readonly bytesParsed: number
}

export interface Parser {
  /** Bytes consumed, or the error. An upgrade stops at the end of the head. */
  execute(data: Buffer): number | ParseError
  /** End of input: completes a close-delimited response; an error if a message is cut short. */
  finish(): undefined | ParseError
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void
  close(): void
  free(): void
  /** Reads the stream handle itself: each read goes into the parser, then onExecute. */
  consume(handle: StreamHandle): void
  unconsume(): void
  /** A copy of the read being parsed (valid inside onExecute and the callbacks). */
  getCurrentBuffer(): Buffer
  /** Our back-pointer to whoever owns the parser (a connection). */
  owner: unknown
  [key: number]: unknown
}

interface HttpParserClass {
  new (): Parser
  readonly REQUEST: number
  readonly RESPONSE: number
  readonly kOnMessageBegin: number
  readonly kOnHeaders: number
  readonly kOnHeadersComplete: number
  readonly kOnBody: number
  readonly kOnMessageComplete: number
  readonly kOnExecute: number
  readonly kOnTimeout: number
  readonly kLenientNone: number
}

interface HttpCommon {
  readonly HTTPParser: HttpParserClass
  readonly methods: readonly string[]
}

let common: HttpCommon | null = null
let loadError: Error | null = null
try {
  // getBuiltinModule works the same from ESM, CommonJS and a single executable.
  common = process.getBuiltinModule('node:_http_common') as HttpCommon
  if (typeof common.HTTPParser !== 'function' || !Array.isArray(common.methods)) {
    throw new Error('node:_http_common has no HTTPParser')
  }
} catch (err) {
  common = null
  loadError = err as Error
}

/** Throws with the reason when this Node has no usable built-in HTTP parser. */
export function assertParserAvailable(): void {
  if (common === null)
    throw new Error(
      `this Node.js (${process.version}) does not expose its HTTP parser (node:_http_common): ${loadError?.message}`,
    )
}

/** Method names by llhttp's method number. */
export const METHODS: readonly string[] = common?.methods ?? []

export const REQUEST = common?.HTTPParser.REQUEST ?? 1
export const RESPONSE = common?.HTTPParser.RESPONSE ?? 2

/** A parser with its callbacks attached; `initialize` it before each use. */
export function createParser(callbacks: ParserCallbacks, owner: unknown): Parser {
  assertParserAvailable()
  const P = (common as HttpCommon).HTTPParser
  const parser = new P()
  parser.owner = owner
  parser[P.kOnMessageBegin] = callbacks.onMessageBegin ?? null
  parser[P.kOnHeaders] = callbacks.onHeaders
  parser[P.kOnHeadersComplete] = callbacks.onHeadersComplete
  parser[P.kOnBody] = callbacks.onBody
  parser[P.kOnMessageComplete] = callbacks.onMessageComplete
  parser[P.kOnExecute] = callbacks.onExecute ?? null
  parser[P.kOnTimeout] = null
  return parser
}

/**
 * Frees a parser's native half. Deferred to the next turn: a parser may be let
 * go from inside its own callbacks (an upgrade, a handover to HTTP/2), and
 * freeing it there would pull it from under the read still running
 * (node:http defers the same way).
 */
export function closeParser(parser: Parser): void {
  setImmediate(closeNow, parser)
}

function closeNow(parser: Parser): void {
  parser.close()
}

/** Strict parsing: no leniency flags at all. */
export const STRICT = common?.HTTPParser.kLenientNone ?? 0

/** The async resource argument Node's parser requires; nothing reads it here. */
export const NO_RESOURCE = Object.freeze({})

/** The native stream under a net or TLS socket (`socket._handle`), as node:http uses it. */
interface StreamHandle {
  readonly isStreamBase?: boolean
  _consumed?: boolean
  reading: boolean
  readStart(): number
  readStop(): number
}

function handleOf(socket: Socket): StreamHandle | null {
  return (socket as unknown as { _handle: StreamHandle | null })._handle ?? null
}

/**
 * How a connection reads its socket. The parser reads the socket's handle
 * itself (`parser.consume`, as node:http's server does): each read goes from
 * libuv into llhttp on a buffer the parser reuses, with no Buffer, stream
 * push or 'data' event per read (0.72× the CPU per small request, see the
 * Optimisations table in bench/results/). The socket's end and errors still
 * arrive as its events.
 *
 * Bytes the parser must not see — after an upgrade's head, while a closing
 * connection discards input, or before a socket is handed to HTTP/2 — go back
 * to the socket's 'data' events after `release()`. A socket whose handle
 * cannot be read this way stays on 'data' events throughout.
 */
export class SocketReader {
  private readonly parser: Parser
  private readonly socket: Socket
  /** The handle the parser reads, while it does. */
  private consumed: StreamHandle | null = null
  private pausedBy: 'handle' | 'stream' | null = null

  /**
   * `now`: read the handle directly from the start (an accepted socket).
   * A connecting socket waits for `readDirectly()` once connected: Node may
   * replace the handle while it tries a name's addresses one after another.
   */
  constructor(parser: Parser, socket: Socket, now = true) {
    this.parser = parser
    this.socket = socket
    if (now) this.readDirectly()
  }

  /** The parser reads the socket's handle itself from now on, if it can. */
  readDirectly(): void {
    const handle = handleOf(this.socket)
    if (this.consumed !== null || this.pausedBy !== null) return
    if (handle === null || handle.isStreamBase !== true || handle._consumed === true) return
    handle._consumed = true
    this.parser.consume(handle)
    this.consumed = handle
  }

  /** The parser reads the socket itself (its 'data' events carry nothing). */
  get direct(): boolean {
    return this.consumed !== null
  }

  /** From now on reads arrive as the socket's 'data' events. */
  release(): void {
    const handle = this.consumed
    if (handle === null) return
    this.consumed = null
    this.parser.unconsume()
    handle._consumed = false
  }

  get paused(): boolean {
    return this.pausedBy !== null
  }

  pause(): void {
    if (this.pausedBy !== null) return
    const handle = this.consumed
    if (handle !== null && handle === handleOf(this.socket)) {
      // A consumed handle never pushes into the socket's stream, so the
      // stream cannot stop it: stop the handle (node:http does the same).
      this.pausedBy = 'handle'
      if (handle.reading) {
        handle.reading = false
        handle.readStop()
      }
    } else {
      this.pausedBy = 'stream'
      this.socket.pause()
    }
  }

  resume(): void {
    const paused = this.pausedBy
    if (paused === null) return
    this.pausedBy = null
    if (paused === 'stream') {
      this.socket.resume()
      return
    }
    const handle = handleOf(this.socket)
    if (handle !== null && !handle.reading && !this.socket.destroyed) {
      handle.reading = true
      handle.readStart()
    }
  }
}
