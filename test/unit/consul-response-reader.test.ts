// The reader of Consul's HTTP responses (Node's llhttp, taken from a pool only
// while an answer arrives): what it accepts, split anywhere and through a
// buffer overwritten after each read, and what it refuses, compared with
// node:http's client on the same bytes.

import { once } from 'node:events'
import { request } from 'node:http'
import { type AddressInfo, createServer, type Server } from 'node:net'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MAX_HEAD_BYTES, ResponseFormatError, ResponseReader } from '../../src/consul/response-reader.js'

type Outcome = { ok: true; status: number; body: string } | { ok: false }

const SCRATCH = Buffer.alloc(64 * 1024)

/** Feeds `bytes` in the given pieces, then the end of the connection. */
function read(bytes: Buffer, cuts: readonly number[] = []): Outcome & { reusable?: boolean } {
  const reader = new ResponseReader()
  try {
    let from = 0
    for (const cut of [...cuts, bytes.length]) {
      if (cut <= from) continue
      // Through one scratch buffer, overwritten after each push, as the client's
      // shared read buffer is: the reader must keep copies, not views.
      const piece = SCRATCH.subarray(0, cut - from)
      bytes.copy(piece, 0, from, cut)
      reader.push(piece)
      piece.fill(0x58)
      from = cut
    }
    if (!reader.end() || reader.head === null) return { ok: false }
    return { ok: true, status: reader.head.status, body: reader.bodyText(), reusable: reader.reusable }
  } catch (err) {
    expect(err).toBeInstanceOf(ResponseFormatError)
    return { ok: false }
  }
}

const CHUNKED_WITH_TRAILER = Buffer.from(
  'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Consul-Index: 7\r\nTransfer-Encoding: chunked\r\n\r\n' +
    '4;ext=1\r\n[{"a\r\n' +
    // 7 bytes: é is two in UTF-8.
    '7;name="q \\" v"\r\n":"é"}\r\n' +
    '1\r\n]\r\n0\r\nX-Trailer: yes\r\n\r\n',
)

describe('ResponseReader', () => {
  it('reads a Content-Length body and keeps the connection, in any split', () => {
    const bytes = Buffer.from(
      'HTTP/1.1 200 OK\r\nX-Consul-Index: 42\r\nContent-Length: 12\r\n\r\n[{"k":"é"}]',
    )
    const whole = read(bytes)
    expect(whole).toEqual({ ok: true, status: 200, body: '[{"k":"é"}]', reusable: true })
    for (let cut = 1; cut < bytes.length; cut++) expect(read(bytes, [cut])).toEqual(whole)
  })

  it('reads chunks with extensions and trailers, in any split', () => {
    const whole = read(CHUNKED_WITH_TRAILER)
    expect(whole).toEqual({ ok: true, status: 200, body: '[{"a":"é"}]', reusable: true })
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: CHUNKED_WITH_TRAILER.length - 1 })), (cuts) => {
        expect(
          read(
            CHUNKED_WITH_TRAILER,
            cuts.sort((a, b) => a - b),
          ),
        ).toEqual(whole)
      }),
      { numRuns: 500 },
    )
  })

  it('gives the header values and knows when the connection cannot be reused', () => {
    const reader = new ResponseReader()
    reader.push(
      Buffer.from(
        'HTTP/1.1 404 Not Found\r\nConnection: close\r\nA: 1\r\na:  2 \r\nContent-Length: 0\r\n\r\n',
      ),
    )
    expect(reader.complete).toBe(true)
    expect(reader.reusable).toBe(false)
    expect(reader.head?.status).toBe(404)
    expect(reader.head?.headers.get('a')).toBe('1, 2')
    expect(read(Buffer.from('HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n[]'))).toMatchObject({
      reusable: false,
    })
    expect(read(Buffer.from('HTTP/1.1 204 No Content\r\n\r\n'))).toMatchObject({
      ok: true,
      body: '',
      reusable: true,
    })
  })

  it('takes a body without length to the end of the connection, and only then', () => {
    const reader = new ResponseReader()
    expect(reader.push(Buffer.from('HTTP/1.1 200 OK\r\n\r\n[1,'))).toBe(false)
    expect(reader.push(Buffer.from('2]'))).toBe(false)
    expect(reader.end()).toBe(true)
    expect([reader.bodyText(), reader.reusable]).toEqual(['[1,2]', false])
  })

  it('is incomplete, not wrong, when the connection ends early', () => {
    expect(read(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n[1'))).toEqual({ ok: false })
    expect(read(Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[]\r\n'))).toEqual({
      ok: false,
    })
    expect(read(Buffer.from('HTTP/1.1 200 OK\r\nContent-Le'))).toEqual({ ok: false })
  })

  it('refuses a head larger than Node allows', () => {
    const big = Buffer.from(
      `HTTP/1.1 200 OK\r\nX: ${'a'.repeat(MAX_HEAD_BYTES)}\r\nContent-Length: 0\r\n\r\n`,
    )
    expect(() => new ResponseReader().push(big)).toThrow(/HPE_HEADER_OVERFLOW/)
    const reader = new ResponseReader()
    expect(() => {
      for (let i = 0; i < big.length; i += 1000) reader.push(big.subarray(i, i + 1000))
    }).toThrow(ResponseFormatError)
  })
})

// Responses Node's client parser refuses; the reader must refuse each too.
const REFUSED: Record<string, string> = {
  'no status code': 'HTTP/1.1 OK\r\n\r\n',
  'HTTP/2 status line': 'HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n',
  'space before the colon': 'HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\n[]',
  'obsolete line folding': 'HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\nContent-Length: 2\r\n\r\n[]',
  'NUL in a value': 'HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 2\r\n\r\n[]',
  'bare CR in a value': 'HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 2\r\n\r\n[]',
  'two Content-Lengths': 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n[]',
  'Content-Length with a sign': 'HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\n[]',
  'Content-Length not a number': 'HTTP/1.1 200 OK\r\nContent-Length: 2a\r\n\r\n[]',
  'Content-Length beside chunked':
    'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[]\r\n0\r\n\r\n',
  'chunk size not hex': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n[]\r\n0\r\n\r\n',
  'chunk size negative': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-2\r\n[]\r\n0\r\n\r\n',
  'chunk without CRLF after it': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[]XX0\r\n\r\n',
  'chunk size line with LF only': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\n[]\r\n0\r\n\r\n',
  'more body than Content-Length': 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]]',
  'space before a chunk extension':
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2 ;a=b\r\n[]\r\n0\r\n\r\n',
  'space inside a chunk extension':
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;a = b\r\n[]\r\n0\r\n\r\n',
  'Content-Length in a trailer':
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[]\r\n0\r\nContent-Length: 2\r\n\r\n',
}
// Where the reader is stricter than Node on purpose: a transfer coding it would
// have to decode, an interim response Switchyard never asks for.
const REFUSED_HERE_ONLY: Record<string, string> = {
  'gzip coding': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\n[]\r\n0\r\n\r\n',
  'interim 100 Continue': 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]',
}
// Accepted by both, with the same status and body.
const ACCEPTED: Record<string, string> = {
  'no reason phrase': 'HTTP/1.1 200\r\nContent-Length: 2\r\n\r\n[]',
  'empty value and tabs': 'HTTP/1.1 200 OK\r\nX-Empty:\r\nX-Tab:\t v \t\r\nContent-Length: 2\r\n\r\n[]',
  'chunked, upper-case hex and extension': `HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\nA;x=y\r\n${'0123456789'}\r\n0\r\n\r\n`,
  'leading zeros in Content-Length': 'HTTP/1.1 200 OK\r\nContent-Length: 002\r\n\r\n[]',
  'close-delimited body': 'HTTP/1.1 200 OK\r\n\r\n[1,2,3]',
  'chunks with a quoted extension, UTF-8 and a trailer': CHUNKED_WITH_TRAILER.toString('latin1'),
}

describe("ResponseReader against Node's client parser", () => {
  let server: Server
  let answer = ''
  beforeAll(async () => {
    server = createServer((socket) => {
      socket.once('data', () => socket.end(Buffer.from(answer, 'latin1')))
      socket.on('error', () => {})
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
  })
  afterAll(() => server.close())

  /** What node:http makes of the same bytes, sent as one answer followed by the end of the connection. */
  async function node(bytes: string): Promise<Outcome> {
    answer = bytes
    const { port } = server.address() as AddressInfo
    return new Promise((resolve) => {
      const req = request({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
        const parts: Buffer[] = []
        res.on('data', (c: Buffer) => parts.push(c))
        res.on('error', () => resolve({ ok: false }))
        res.on('end', () =>
          resolve({ ok: true, status: res.statusCode ?? 0, body: Buffer.concat(parts).toString('utf8') }),
        )
      })
      req.on('error', () => resolve({ ok: false }))
      req.end()
    })
  }

  for (const [name, bytes] of Object.entries(REFUSED)) {
    it(`refuses ${name}, as Node does`, async () => {
      expect(await node(bytes)).toEqual({ ok: false })
      expect(read(Buffer.from(bytes, 'latin1'))).toEqual({ ok: false })
    })
  }
  for (const [name, bytes] of Object.entries(REFUSED_HERE_ONLY)) {
    it(`refuses ${name} (Node reads it)`, async () => {
      expect(await node(bytes)).toMatchObject({ ok: true })
      expect(read(Buffer.from(bytes, 'latin1'))).toEqual({ ok: false })
    })
  }
  for (const [name, bytes] of Object.entries(ACCEPTED)) {
    it(`reads ${name} as Node does`, async () => {
      const mine = read(Buffer.from(bytes, 'latin1'))
      delete mine.reusable
      expect(mine).toEqual(await node(bytes))
      expect(mine.ok).toBe(true)
    })
  }
})
