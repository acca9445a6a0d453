import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/harness/global-setup.ts'],
    reporters: ['default', './test/harness/summary-reporter.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // One test file at a time: on a 2-core machine the integration tests'
    // timing bounds (convergence under a second, request rates) would otherwise
    // compete with another file's load, and the run takes about as long.
    fileParallelism: false,
  },
})
