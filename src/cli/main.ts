#!/usr/bin/env node
// The `switchyard` command. Exit codes: 0 done, 1 failed at run time, 2 bad
// usage or configuration (nothing was started or written).
//
// A proxy worker forked by `serve`'s primary loads only what serves traffic
// (cluster.ts); the config parser (zod, yaml) and the operator commands are
// loaded by commands.ts in every other process. Each worker is smaller by what
// it does not load (bench/results/memory.md).

import cluster from 'node:cluster'
import { SwitchyardError } from '../errors.js'

const USAGE_CODES: readonly string[] = [
  'SWY_ERR_CONFIG',
  'SWY_ERR_TOKEN_FILE',
  'SWY_ERR_TARGET_INVALID',
  'SWY_ERR_TARGET_REFUSED',
  'SWY_ERR_USAGE',
  'SWY_ERR_ROLLOUT_ACTIVE',
]

function report(err: unknown): number {
  if (err instanceof SwitchyardError) {
    process.stderr.write(`switchyard: ${err.code}: ${err.message}\n`)
    return USAGE_CODES.includes(err.code) ? 2 : 1
  }
  process.stderr.write(`switchyard: ${(err as Error)?.stack ?? String(err)}\n`)
  return 1
}

const run = cluster.isWorker
  ? import('./cluster.js').then((m) => m.serveAsWorker(process.env))
  : import('./commands.js').then((m) => m.main(process.argv.slice(2), process.env))

run.then(
  (code) => {
    process.exitCode = code
  },
  (err) => {
    process.exitCode = report(err)
  },
)
