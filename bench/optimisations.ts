// Optimisations that landed, with the figures measured before and after on the
// same machine with the same command (the code before the change is gone, so
// its figures are recorded here rather than re-measured). The report prints
// them as its before/after table.

export interface Optimisation {
  readonly what: string
  /** Where the change is, e.g. `src/routing/build.ts`. */
  readonly where: string
  /** What was measured and how: the command that gives the figures. */
  readonly measure: string
  readonly unit: string
  readonly before: number
  readonly after: number
  readonly machine: string
  readonly date: string
}

const ROUTING =
  'npm run bench -- --sections routing (generated 1,000 services x 10 instances; median of 3 runs)'
const MACHINE = '2cpu-amd-epyc (shared, other test suites running)'
const DATE = '2026-11-21'

export const OPTIMISATIONS: readonly Optimisation[] = [
  {
    what: 'Incremental table build: tag parses cached per instance list, a Route whose inputs are the same objects reused',
    where: 'src/routing/build.ts',
    measure: `rebuild after one instance turns critical; ${ROUTING}`,
    unit: 'ms',
    before: 13.5,
    after: 4.1,
    machine: MACHINE,
    date: DATE,
  },
  {
    what: 'Swap diff skips the routes both tables share; route lines computed once per Route',
    where: 'src/routing/canonical.ts',
    measure: `diffTables for that change (the sync logs it on every swap); ${ROUTING}`,
    unit: 'ms',
    before: 17.4,
    after: 0.2,
    machine: MACHINE,
    date: DATE,
  },
  {
    what: 'The price of the caches: a first (cold) build',
    where: 'src/routing/build.ts',
    measure: `full build from objects never seen before; ${ROUTING}`,
    unit: 'ms',
    before: 23.2,
    after: 25.1,
    machine: MACHINE,
    date: DATE,
  },
  {
    what: 'Both, end to end: a health change in Consul until Switchyard serves the new table',
    where: 'src/routing/',
    measure:
      'npm run bench -- --sections scale --contenders switchyard --compare-dist <dist/ of the build before>: ' +
      '1,000 x 10 fleet, median of 8 changes, from the catalog write to the swap log line',
    unit: 'ms',
    before: 84,
    after: 25,
    machine: MACHINE,
    date: DATE,
  },
]
