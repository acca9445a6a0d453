#!/usr/bin/env node
// `npm run test:stress`: the integration tier with the CPU deliberately
// contended, so a test that only passes on a quiet machine fails here first.
// Two busy processes (one per core of the 2-core development machines) spin
// beside vitest. Each stops by itself after HOG_LIMIT_MS, so even a killed run
// leaves nothing spinning, and they are killed as soon as vitest ends.
//   npm run test:stress                        # --project integration
//   npm run test:stress -- --project slow      # other vitest arguments instead
//   STRESS_HOGS=4 npm run test:stress          # more busy processes

import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const HOGS = Number(process.env.STRESS_HOGS ?? 2)
const HOG_LIMIT_MS = 30 * 60_000
const args = process.argv.slice(2)
const vitestArgs = ['run', ...(args.length > 0 ? args : ['--project', 'integration'])]

const hogs = Array.from({ length: HOGS }, () =>
  spawn(process.execPath, ['-e', `const end = Date.now() + ${HOG_LIMIT_MS}; while (Date.now() < end) {}`], {
    stdio: 'ignore',
  }),
)
const stopHogs = () => {
  for (const hog of hogs) if (hog.exitCode === null && hog.signalCode === null) hog.kill('SIGKILL')
}
process.on('exit', stopHogs)
console.log(
  `test:stress: ${HOGS} busy processes (pids ${hogs.map((h) => h.pid).join(', ')}), vitest ${vitestArgs.join(' ')}`,
)

const started = Date.now()
const vitest = spawn(process.execPath, ['node_modules/vitest/vitest.mjs', ...vitestArgs], {
  cwd: ROOT,
  stdio: 'inherit',
})
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    vitest.kill(signal)
    stopHogs()
    process.exit(130)
  })
}
vitest.on('exit', (code, signal) => {
  stopHogs()
  console.log(
    `test:stress: vitest ${signal ?? `exit ${code}`} after ${((Date.now() - started) / 1000).toFixed(0)} s under ${HOGS} busy processes`,
  )
  process.exit(code ?? 1)
})
