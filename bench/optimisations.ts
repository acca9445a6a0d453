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
const QUIET = '2cpu-amd-epyc (no other work running)'
const THROUGHPUT =
  'npm run bench -- --quick --sections throughput --rounds 4 --contenders "switchyard,switchyard (compared build)" ' +
  '--compare-dist <dist/ before>, wrk, medians of 4 interleaved rounds'

const XEON = '2cpu-intel-xeon (no other work running)'
const XEON_DATE = '2026-11-30'
const ENGINE_RUN =
  'npm run bench -- --sections throughput --contenders "switchyard,switchyard (compared build),nginx" ' +
  '--compare-dist <dist/ before> --workloads "small,64k,post 16k,1000 conns" --seconds 4 --rounds 3, medians of 3 interleaved rounds'

export const OPTIMISATIONS: readonly Optimisation[] = [
  {
    what: 'Incremental table build: tag parses cached per instance list, a Route whose inputs are the same objects reused',
    where: 'src/routing/facts.ts, src/routing/reuse.ts',
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
    where: 'src/routing/facts.ts, src/routing/reuse.ts',
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
  {
    what: 'Response head sent with the first body bytes when the length is known (flushed at once only for streams)',
    where: 'src/proxy/forward.ts',
    measure: `small workload req/s; ${THROUGHPUT}`,
    unit: 'req/s',
    before: 26_919,
    after: 31_684,
    machine: QUIET,
    date: DATE,
  },
  {
    what: 'Same change, CPU per request',
    where: 'src/proxy/forward.ts',
    measure: `small workload, Switchyard CPU µs per request; ${THROUGHPUT}`,
    unit: 'µs',
    before: 36.5,
    after: 32.1,
    machine: QUIET,
    date: DATE,
  },
  {
    what: 'Same change, 64 KiB bodies',
    where: 'src/proxy/forward.ts',
    measure: `64k workload req/s; ${THROUGHPUT}`,
    unit: 'req/s',
    before: 10_781,
    after: 14_853,
    machine: QUIET,
    date: DATE,
  },
  {
    what: 'Each watch keeps a digest of the last Consul answer instead of the answer',
    where: 'src/consul/blocking-query.ts',
    measure:
      'npm run bench -- --sections scale --contenders "switchyard,switchyard (compared build)" --compare-dist <dist/ before>: ' +
      'V8 heap after the first table, 1,000 x 10 fleet',
    unit: 'MB',
    before: 93,
    after: 83,
    machine: QUIET,
    date: DATE,
  },
  {
    what: 'Client sockets buffer 64 KiB before pushing back (Node default 16 KiB): fewer pause/resume cycles per body',
    where: 'src/proxy/server.ts',
    measure: `64k workload req/s (the small workload did not move beyond noise: 31.0k before, 29.9k after); ${THROUGHPUT}`,
    unit: 'req/s',
    before: 11_623,
    after: 13_005,
    machine: QUIET,
    date: DATE,
  },
  {
    what: 'Parsers read their sockets themselves (parser.consume, as node:http): no Buffer, stream push or data event per read',
    where: 'src/llhttp.ts (SocketReader)',
    measure: `small workload req/s; ${ENGINE_RUN}`,
    unit: 'req/s',
    before: 19_314,
    after: 26_388,
    machine: XEON,
    date: XEON_DATE,
  },
  {
    what: 'Same change, CPU per request',
    where: 'src/llhttp.ts (SocketReader)',
    measure: `small workload, Switchyard CPU µs per request; ${ENGINE_RUN}`,
    unit: 'µs',
    before: 51.6,
    after: 37.2,
    machine: XEON,
    date: XEON_DATE,
  },
  {
    what: 'Same change, 64 KiB bodies',
    where: 'src/llhttp.ts (SocketReader)',
    measure: `64k workload req/s; ${ENGINE_RUN}`,
    unit: 'req/s',
    before: 5_433,
    after: 7_959,
    machine: XEON,
    date: XEON_DATE,
  },
  {
    what: 'Same change, POST 16 KiB',
    where: 'src/llhttp.ts (SocketReader)',
    measure: `post 16k workload req/s; ${ENGINE_RUN}`,
    unit: 'req/s',
    before: 12_755,
    after: 17_228,
    machine: XEON,
    date: XEON_DATE,
  },
  {
    what: '64 SO_REUSEPORT listening sockets per proxy address (libuv accepts one connection per socket per loop turn)',
    where: 'src/cli/serve.ts (openProxyListener), src/proxy/listener.ts (addAcceptor)',
    measure: `1000 conns workload, p99; ${ENGINE_RUN.replace('small,64k,post 16k,1000 conns', 'small,1000 conns')}`,
    unit: 'ms',
    before: 2_818.69,
    after: 72.65,
    machine: XEON,
    date: XEON_DATE,
  },
]
