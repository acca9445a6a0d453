import { defineConfig } from 'vitest/config'

// Three tiers, run in this order by `vitest run` (and `npm test`):
//   unit         pure code: no Consul, no dist/, files in parallel, seconds;
//   integration  the real Consul started by the harness and the compiled CLI,
//                one file at a time: on a 2-core machine the timing bounds
//                (convergence under a second, request rates) would otherwise
//                compete with another file's load;
//   slow         the same setup, for the long runs: soak, demo, bench smoke,
//                image, Consul faults, outage and restart.
// `npm run test:unit` (and test:integration, test:slow) runs one tier.
const SLOW = [
  'test/integration/soak.test.ts',
  'test/integration/demo.test.ts',
  'test/integration/bench.test.ts',
  'test/integration/image.test.ts',
  'test/integration/consul-faults.test.ts',
  'test/integration/consul-outage.test.ts',
  'test/integration/consul-restart.test.ts',
]

const withConsul = {
  globalSetup: ['test/harness/global-setup.ts'],
  testTimeout: 60_000,
  hookTimeout: 60_000,
  fileParallelism: false,
}

export default defineConfig({
  test: {
    reporters: ['default', './test/harness/summary-reporter.ts'],
    pool: 'forks',
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          testTimeout: 30_000,
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          exclude: SLOW,
          sequence: { groupOrder: 1 },
          ...withConsul,
        },
      },
      {
        test: {
          name: 'slow',
          include: SLOW,
          sequence: { groupOrder: 2 },
          ...withConsul,
        },
      },
    ],
  },
})
