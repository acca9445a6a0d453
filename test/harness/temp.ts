// Temporary folders that a test file removes when it ends, so runs leave
// nothing in /tmp (some hold private keys or tokens).

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll } from 'vitest'

/**
 * A fresh folder under the system temp dir, removed after the enclosing
 * describe block (or the file, when called at the top level).
 */
export function tempDir(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `switchyard-${name}-`))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}
