// The container image's steps, run without Docker by scripts/image-check: it
// carries out every instruction of the Dockerfile in order (builds, prunes,
// copies, starts the image's command and its health check) on the Node major
// version the Dockerfile names.

import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'

const ROOT = new URL('../../', import.meta.url).pathname

/** The Dockerfile's instructions as Docker reads them: continuations joined, comments dropped. */
function dockerfileSteps(): string[] {
  return readFileSync(`${ROOT}Dockerfile`, 'utf8')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim().replace(/\s+/g, ' '))
    .filter((line) => line !== '' && !line.startsWith('#'))
}

describe('container image', () => {
  it('carries out every Dockerfile instruction, and the image starts, passes its health check and stops', async () => {
    const output = await promisify(execFile)('bash', [`${ROOT}scripts/image-check`], {
      timeout: 280_000,
      maxBuffer: 16 << 20,
    }).then(
      (r) => r.stdout,
      // Show what the script said, not only that it failed.
      (err: { stdout?: string; stderr?: string }) => `${err.stdout ?? ''}${err.stderr ?? ''}`,
    )
    const steps = dockerfileSteps()
    const done = [...output.matchAll(/^image-check: step (\d+)\/(\d+): (.*)$/gm)].map((m) => m[3])
    expect(done).toEqual(steps)

    const from = steps.filter((s) => s.startsWith('FROM '))
    expect(from.length).toBeGreaterThan(0)
    const majors = new Set(from.map((s) => /^FROM node:(\d+)-/.exec(s)?.[1]))
    expect(majors.size).toBe(1)
    const [major] = majors
    expect(output).toMatch(
      new RegExp(
        `^image-check: node v${major}\\.\\S+: image starts from the pruned tree, HEALTHCHECK passes, proxy answers, SIGTERM exits 0$`,
        'm',
      ),
    )
    const expose = steps.find((s) => s.startsWith('EXPOSE '))
    if (expose) expect(output).toContain(`image-check: ${expose}: the image listens on`)
    expect(output).toMatch(/^image-check: all image steps passed$/m)
  }, 300_000)
})
