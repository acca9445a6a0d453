// The backend every throughput contender forwards to. NGINX serving fixed
// bodies, with one worker: it spends a few µs per request, so on a machine
// whose cores the load generator, the backend and the proxy share, req/s and
// latency reflect the proxy rather than the backend. (A Node.js backend, used
// before, spent more CPU per request than NGINX as a proxy does, and hid most
// of the difference between the proxies.) Without NGINX a Node.js backend
// stands in, and the report says so.
//
// Answers, all with keep-alive:
//   GET  /bench/small  50-byte body (`return`: no file, no syscall beyond the write)
//   GET  /bench/64k    64 KiB body (a file, sendfile, descriptor cached)
//   POST /bench/post   the body (16 KiB in the benchmark) is read and dropped, `ok\n`
//                      answered: NGINX's `return` discards a request body and keeps
//                      the connection (checked with pipelined POSTs then a GET).

import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { type Running, startListening } from './contenders.js'
import { nginxVersion, startNginx } from './nginx.js'
import { loopbackPort, nodeTs } from './procs.js'

export const BACKEND_PATHS = {
  small: '/bench/small',
  large: '/bench/64k',
  post: '/bench/post',
} as const

/** Exactly 50 bytes, newline included. */
export const SMALL_BODY = `${'small response from the benchmark backend'.padEnd(49, '.')}\n`
export const LARGE_BODY_BYTES = 64 * 1024
export const POST_BODY_BYTES = 16 * 1024

export interface BenchBackend extends Running {
  readonly kind: 'nginx' | 'node'
  /** One line for the report. */
  readonly what: string
}

export async function startBenchBackend(tmp: string, say: (line: string) => void): Promise<BenchBackend> {
  const version = await nginxVersion()
  if (version === null) {
    say('backend: NGINX is not installed; a Node.js backend stands in (ratios understate proxy costs)')
    const [cmd, args] = nodeTs('backend.ts', [SMALL_BODY, 'backend'])
    const running = await startListening('backend', cmd, args)
    return {
      ...running,
      kind: 'node',
      what: `Node.js ${process.version} http server (bench/backend.ts), one process: NGINX is not installed`,
    }
  }
  const dir = join(tmp, 'backend')
  const port = await loopbackPort()
  const largeFile = join(dir, '64k.bin')
  mkdirSync(dir, { recursive: true })
  writeFileSync(largeFile, Buffer.alloc(LARGE_BODY_BYTES, 'x'))
  const nginx = await startNginx({
    name: 'backend',
    dir,
    workers: 1,
    probeUrl: `http://127.0.0.1:${port}${BACKEND_PATHS.small}`,
    http: `  default_type text/plain;
  sendfile on;
  open_file_cache max=16 inactive=600s;
  open_file_cache_valid 600s;
  etag off;
  server {
    listen 127.0.0.1:${port} backlog=4096;
    location = ${BACKEND_PATHS.small} { return 200 "${SMALL_BODY.replace('\n', '\\n')}"; }
    location = ${BACKEND_PATHS.large} { alias ${largeFile}; }
    location = ${BACKEND_PATHS.post} {
      client_max_body_size 1m;
      return 200 "ok\\n";
    }
    location / { return 404; }
  }`,
  })
  return {
    name: 'backend',
    url: `http://127.0.0.1:${port}`,
    pid: nginx.child.pid,
    stop: () => nginx.stop(),
    kind: 'nginx',
    what: `NGINX ${version}, one worker, fixed bodies (50 B returned, 64 KiB file by sendfile, POST body discarded), keep-alive`,
  }
}
