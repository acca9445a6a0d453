// What the compiled proxy loads of Node itself. An ESM `import ... from
// 'node:http'` builds the module's namespace by reading every export, which
// runs Node's lazy getters: node:http's WebSocket then loads Node's bundled
// undici, about 2.4 MB resident in an idle proxy that never uses it
// (bench/results/memory.md). src/ takes node:http, node:crypto, node:fs and
// node:util through process.getBuiltinModule, which reads only what is used.

import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { expect, it } from 'vitest'

const ROOT = new URL('../../', import.meta.url).pathname

it("a proxy's modules, loaded as in a single process and in a worker, leave Node's bundled undici unloaded", async () => {
  const script = `
    for (const m of ['serve', 'cluster', 'commands']) await import('./dist/cli/' + m + '.js')
    process.stdout.write(JSON.stringify(process.moduleLoadList))
  `
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], {
    cwd: ROOT,
  })
  const loaded = JSON.parse(stdout) as string[]
  // The modules were loaded (the check below is not vacuous): the proxy's own needs are there.
  expect(loaded).toEqual(expect.arrayContaining(['NativeModule _http_server', 'NativeModule tls']))
  expect(loaded.filter((m) => m.includes('undici'))).toEqual([])
})
