// The container image's steps, run without Docker by scripts/image-check: the
// Dockerfile's build script, the pruned production tree, its ENTRYPOINT/CMD and
// HEALTHCHECK on Node 20 and Node 24, and the unit tests on Node 24.

import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'

const ROOT = new URL('../../', import.meta.url).pathname

describe('container image', () => {
  it('the Dockerfile runs only steps that scripts/image-check covers', () => {
    const dockerfile = readFileSync(`${ROOT}Dockerfile`, 'utf8')
    const runs = dockerfile.split('\n').filter((l) => l.startsWith('RUN '))
    expect(runs).toEqual(['RUN bash scripts/image-build'])
    expect(dockerfile).toMatch(/^FROM node:24-\S+ AS build$/m)
    expect(dockerfile).toMatch(/^USER node$/m)
    expect(dockerfile).toMatch(/^EXPOSE 9999 9998$/m)
    const script = readFileSync(`${ROOT}scripts/image-check`, 'utf8')
    for (const word of [
      'read_cmd ENTRYPOINT',
      'read_cmd CMD',
      'read_cmd HEALTHCHECK',
      'scripts/image-build',
    ]) {
      expect(script).toContain(word)
    }
  })

  it('builds, prunes, starts and passes its health check on Node 20 and Node 24', async () => {
    const stdout = await promisify(execFile)('bash', [`${ROOT}scripts/image-check`], {
      timeout: 280_000,
      maxBuffer: 16 << 20,
      env: { ...process.env, SWITCHYARD_SKIP_BUILD: '1' },
    }).then(
      (r) => r.stdout,
      // Show what the script said, not only that it failed.
      (err: { stdout?: string; stderr?: string }) => `${err.stdout ?? ''}${err.stderr ?? ''}`,
    )
    expect(stdout).toMatch(
      /node v20\.\S+: image starts from the pruned tree, HEALTHCHECK passes, proxy answers, SIGTERM exits 0/,
    )
    expect(stdout).toMatch(
      /node v24\.\S+: image starts from the pruned tree, HEALTHCHECK passes, proxy answers, SIGTERM exits 0/,
    )
    expect(stdout).toContain('image-check: all image steps passed')
  }, 300_000)
})
