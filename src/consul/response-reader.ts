// Reads one HTTP/1.1 response from the bytes of a connection to Consul.
//
// Why not node:http's client: it gives every request in flight its own native
// parser (about 10 KiB of C heap on Node 24), and a proxy at 1,000 routed
// services holds 1,000 blocking queries open for minutes; with this reader a
// waiting query holds a socket and a few small objects
// (bench/results/memory.md, sixth step).
//
// It is as strict as Node's parser on what it accepts: an exact status line,
// header names that are tokens, values without control characters, no
// obsolete line folding, one Content-Length of digits, no Content-Length
// beside Transfer-Encoding, no transfer coding but chunked, chunk sizes in hex
// with well-formed extensions and CRLF after every chunk, and no byte after
// the end of the response. Anything else is a ResponseFormatError and the
// connection is dropped.
//
// It keeps no reference to the bytes it is given (the client reads every
// connection into one shared buffer): the body is decoded to text as it comes,
// so a burst of answers leaves V8 strings, which the GC compacts, rather than
// malloc'd Buffers, which left the C heap fragmented.

import { StringDecoder } from 'node:string_decoder'

export class ResponseFormatError extends Error {
  constructor(reason: string) {
    super(`malformed HTTP response: ${reason}`)
  }
}

/** What a response head may take, as Node's --max-http-header-size default. */
export const MAX_HEAD_BYTES = 16 * 1024
/** Consul's largest answers (a recursive KV read) stay far below this; a V8 string cannot exceed 512 MiB. */
export const MAX_BODY_BYTES = 256 * 1024 * 1024
const MAX_CHUNK_LINE_BYTES = 4 * 1024

const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9][0-9]{2})(?: [\t\x20-\x7e\x80-\xff]*)?$/
const FIELD_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/
const TOKEN = "[!#$%&'*+\\-.^_`|~0-9A-Za-z]+"
const QUOTED = '"(?:[\\t\\x20\\x21\\x23-\\x5b\\x5d-\\x7e\\x80-\\xff]|\\\\[\\t\\x20-\\x7e\\x80-\\xff])*"'
/** A chunk size and its extensions, without the optional whitespace Node's parser refuses. */
const CHUNK_LINE = new RegExp(`^([0-9A-Fa-f]{1,13})((?:;${TOKEN}(?:=(?:${TOKEN}|${QUOTED}))?)*)$`)
const CRLF = Buffer.from('\r\n')

export interface ResponseHead {
  readonly status: number
  /** Lower-case names; repeated fields joined with ", ". */
  readonly headers: ReadonlyMap<string, string>
}

type Framing =
  | { readonly kind: 'none' }
  | { readonly kind: 'length'; remaining: number }
  | { readonly kind: 'chunked'; state: 'size' | 'data' | 'data-end' | 'trailer'; remaining: number }
  | { readonly kind: 'close' }

export class ResponseReader {
  head: ResponseHead | null = null
  /** The connection may carry another request once this response is complete. */
  reusable = false
  complete = false
  private framing: Framing = { kind: 'none' }
  /** Bytes held back until a line (the head, a chunk size, a trailer) is whole. */
  private pending: Buffer | null = null
  private trailerBytes = 0
  private readonly decoder = new StringDecoder('utf8')
  private readonly body: string[] = []
  private bodyBytes = 0

  /** Takes the next bytes of the connection (read now, not kept); true once the response is complete. */
  push(bytes: Buffer): boolean {
    if (this.complete) throw new ResponseFormatError('bytes after the end of the response')
    let rest = this.pending === null ? bytes : Buffer.concat([this.pending, bytes])
    this.pending = null
    if (this.head === null) {
      const end = rest.indexOf('\r\n\r\n')
      if (end < 0 || end + 4 > MAX_HEAD_BYTES) {
        if (rest.length >= MAX_HEAD_BYTES)
          throw new ResponseFormatError(`head larger than ${MAX_HEAD_BYTES} bytes`)
        this.hold(rest)
        return false
      }
      this.readHead(rest.toString('latin1', 0, end))
      rest = rest.subarray(end + 4)
    }
    this.readBody(rest)
    return this.complete
  }

  /** The connection ended; true when that completes the response (a body delimited by the close). */
  end(): boolean {
    if (this.framing.kind === 'close' && !this.complete) this.complete = true
    return this.complete
  }

  bodyText(): string {
    return this.body.join('') + this.decoder.end()
  }

  private readHead(text: string): void {
    const lines = text.split('\r\n')
    const statusLine = STATUS_LINE.exec(lines[0] ?? '')
    if (statusLine === null) throw new ResponseFormatError('invalid status line')
    const minor = statusLine[1]
    const status = Number(statusLine[2])
    const headers = new Map<string, string>()
    for (let i = 1; i < lines.length; i++) {
      const field = fieldOf(lines[i] as string)
      if (field === null) throw new ResponseFormatError(`invalid header line ${i}`)
      const [name, value, raw] = field
      // Node reads "chunked" followed by whitespace as another coding.
      if (name === 'transfer-encoding' && !raw.endsWith(value)) {
        throw new ResponseFormatError('whitespace after Transfer-Encoding')
      }
      const before = headers.get(name)
      if (before !== undefined && name === 'content-length') {
        throw new ResponseFormatError('more than one Content-Length')
      }
      headers.set(name, before === undefined ? value : `${before}, ${value}`)
    }
    this.head = { status, headers }
    const connection = (headers.get('connection') ?? '').toLowerCase().split(',')
    this.reusable = minor === '1' && !connection.some((token) => token.trim() === 'close')
    if (status < 200)
      throw new ResponseFormatError(`interim status ${status} (Switchyard never asks for one)`)
    const transferEncoding = headers.get('transfer-encoding')
    const contentLength = headers.get('content-length')
    if (status === 204 || status === 304) {
      this.framing = { kind: 'none' }
    } else if (transferEncoding !== undefined) {
      if (contentLength !== undefined)
        throw new ResponseFormatError('both Content-Length and Transfer-Encoding')
      if (minor !== '1' || transferEncoding.toLowerCase() !== 'chunked') {
        throw new ResponseFormatError(`unsupported Transfer-Encoding "${transferEncoding}"`)
      }
      this.framing = { kind: 'chunked', state: 'size', remaining: 0 }
    } else if (contentLength !== undefined) {
      if (!/^[0-9]{1,15}$/.test(contentLength)) throw new ResponseFormatError('invalid Content-Length')
      const length = Number(contentLength)
      if (length > MAX_BODY_BYTES) throw new ResponseFormatError(`body larger than ${MAX_BODY_BYTES} bytes`)
      this.framing = length === 0 ? { kind: 'none' } : { kind: 'length', remaining: length }
    } else {
      this.framing = { kind: 'close' }
      this.reusable = false
    }
    if (this.framing.kind === 'none') this.complete = true
  }

  private readBody(bytes: Buffer): void {
    const framing = this.framing
    let rest = bytes
    switch (framing.kind) {
      case 'none':
        if (rest.length > 0) throw new ResponseFormatError('bytes after the end of the response')
        return
      case 'close':
        this.keep(rest)
        return
      case 'length':
        if (rest.length > framing.remaining) throw new ResponseFormatError('more body than Content-Length')
        framing.remaining -= rest.length
        this.keep(rest)
        if (framing.remaining === 0) this.complete = true
        return
      case 'chunked':
        while (rest.length > 0) {
          if (this.complete) throw new ResponseFormatError('bytes after the end of the response')
          if (framing.state === 'data') {
            const take = Math.min(framing.remaining, rest.length)
            this.keep(rest.subarray(0, take))
            rest = rest.subarray(take)
            framing.remaining -= take
            if (framing.remaining === 0) framing.state = 'data-end'
            continue
          }
          if (framing.state === 'data-end') {
            if (rest.length < 2) {
              if (rest[0] !== 0x0d) throw new ResponseFormatError('chunk not followed by CRLF')
              this.hold(rest)
              return
            }
            if (rest[0] !== 0x0d || rest[1] !== 0x0a)
              throw new ResponseFormatError('chunk not followed by CRLF')
            rest = rest.subarray(2)
            framing.state = 'size'
            continue
          }
          const end = rest.indexOf(CRLF)
          const limit = framing.state === 'size' ? MAX_CHUNK_LINE_BYTES : MAX_HEAD_BYTES - this.trailerBytes
          if (end < 0 || end > limit) {
            if (rest.length > limit) throw new ResponseFormatError(`${framing.state} line too long`)
            this.hold(rest)
            return
          }
          const line = rest.toString('latin1', 0, end)
          rest = rest.subarray(end + 2)
          if (framing.state === 'size') {
            const size = CHUNK_LINE.exec(line)
            if (size === null) throw new ResponseFormatError('invalid chunk size line')
            framing.remaining = Number.parseInt(size[1] as string, 16)
            if (this.bodyBytes + framing.remaining > MAX_BODY_BYTES) {
              throw new ResponseFormatError(`body larger than ${MAX_BODY_BYTES} bytes`)
            }
            framing.state = framing.remaining === 0 ? 'trailer' : 'data'
          } else if (line === '') {
            this.complete = true
          } else {
            const field = fieldOf(line)
            if (field === null) throw new ResponseFormatError('invalid trailer line')
            if (field[0] === 'content-length') throw new ResponseFormatError('Content-Length in a trailer')
            this.trailerBytes += end + 2
          }
        }
    }
  }

  private keep(bytes: Buffer): void {
    if (bytes.length === 0) return
    this.bodyBytes += bytes.length
    if (this.bodyBytes > MAX_BODY_BYTES)
      throw new ResponseFormatError(`body larger than ${MAX_BODY_BYTES} bytes`)
    this.body.push(this.decoder.write(bytes))
  }

  /** A copy: the caller's buffer is overwritten by the next read. */
  private hold(bytes: Buffer): void {
    this.pending = Buffer.from(bytes)
  }
}

/** A field line's lower-case name, its value without surrounding spaces and tabs, and that value as sent. */
function fieldOf(line: string): [name: string, value: string, raw: string] | null {
  const colon = line.indexOf(':')
  if (colon <= 0) return null
  const name = line.slice(0, colon)
  const raw = line.slice(colon + 1)
  if (!FIELD_NAME.test(name) || !FIELD_VALUE.test(raw)) return null
  let from = 0
  let to = raw.length
  while (from < to && (raw[from] === ' ' || raw[from] === '\t')) from++
  while (to > from && (raw[to - 1] === ' ' || raw[to - 1] === '\t')) to--
  return [name.toLowerCase(), raw.slice(from, to), raw]
}
