// `npm run bench [-- flags]`: runs the benchmark and writes its report.
//   full (default)  bench/results/<machine kind>.md and .json, the committed report
//   --quick         a sanity run of about a minute, to bench/results/tmp/
// Flags: --sections throughput,convergence,scale,routing,profile  --profile (adds the profile)
//        --contenders switchyard,nginx  --workloads 'small,https small'  --no-peers
//        --tool wrk|autocannon  --seconds N  --warmup N
//        --rounds N  --trials N  --peer-workers N  --out <path without extension>
//        --dist <dist folder>          (the Switchyard build to measure; default ./dist)
//        --compare-dist <dist folder>  (a second Switchyard from another build, for before/after)
//        (SWITCHYARD_COMPARE_NODE_ARGS='<flags>': that second Switchyard's node flags, for a flag's before/after)

import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { renderMarkdown } from './report.js'
import {
  type BenchOptions,
  type Mode,
  preset,
  runBench,
  SECTIONS,
  type Section,
  workloadsFor,
} from './run.js'

const USAGE = `usage: npm run bench -- [--quick] [--sections a,b] [--profile] [--contenders a,b] [--workloads a,b] [--no-peers]
                      [--tool wrk|autocannon] [--seconds N] [--warmup N] [--rounds N] [--trials N]
                      [--peer-workers N] [--dist DIR] [--compare-dist DIR] [--out PATH]
sections: ${SECTIONS.join(', ')}
workloads: ${workloadsFor(preset('full'))
  .map((w) => w.name)
  .join(', ')}`

function positive(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name}: "${value}" is not a positive integer`)
  return n
}

/** A whole number of seconds, 0 allowed (no warm-up). */
function whole(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name}: "${value}" is not a whole number`)
  return n
}

/** `--workloads a,b`: names of the throughput workloads, checked against the list. */
function workloadNames(value: string | undefined): string[] {
  if (value === undefined) return []
  const known = workloadsFor(preset('full')).map((w) => w.name)
  return value.split(',').map((name) => {
    const trimmed = name.trim()
    if (!known.includes(trimmed))
      throw new Error(`--workloads: unknown workload "${trimmed}" (${known.join(', ')})`)
    return trimmed
  })
}

export function parseBenchArgs(argv: readonly string[]): { options: BenchOptions; out: string | null } {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      quick: { type: 'boolean' },
      smoke: { type: 'boolean' },
      sections: { type: 'string' },
      profile: { type: 'boolean' },
      contenders: { type: 'string' },
      workloads: { type: 'string' },
      'no-peers': { type: 'boolean' },
      tool: { type: 'string' },
      seconds: { type: 'string' },
      warmup: { type: 'string' },
      rounds: { type: 'string' },
      trials: { type: 'string' },
      'peer-workers': { type: 'string' },
      dist: { type: 'string' },
      'compare-dist': { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help) {
    process.stdout.write(`${USAGE}\n`)
    process.exit(0)
  }
  const mode: Mode = values.smoke ? 'smoke' : values.quick ? 'quick' : 'full'
  const base = preset(mode)
  let sections: Section[] = [...base.sections]
  if (values.sections !== undefined) {
    sections = values.sections.split(',').map((s) => {
      if (!(SECTIONS as readonly string[]).includes(s)) throw new Error(`--sections: unknown section "${s}"`)
      return s as Section
    })
  }
  if (values.profile && !sections.includes('profile')) sections.push('profile')
  if (values.tool !== undefined && values.tool !== 'wrk' && values.tool !== 'autocannon') {
    throw new Error(`--tool: "${values.tool}" is not wrk or autocannon`)
  }
  const options: BenchOptions = {
    ...base,
    sections,
    peers: values['no-peers'] ? false : base.peers,
    only: values.contenders ? values.contenders.split(',') : [],
    onlyWorkloads: workloadNames(values.workloads),
    tool: (values.tool as 'wrk' | 'autocannon' | undefined) ?? base.tool,
    seconds: positive('seconds', values.seconds) ?? base.seconds,
    warmupSeconds: whole('warmup', values.warmup) ?? base.warmupSeconds,
    rounds: positive('rounds', values.rounds) ?? base.rounds,
    trials: positive('trials', values.trials) ?? base.trials,
    peerWorkers: positive('peer-workers', values['peer-workers']) ?? base.peerWorkers,
    dist: values.dist ? resolve(values.dist) : null,
    compareDist: values['compare-dist'] ? resolve(values['compare-dist']) : null,
  }
  return { options, out: values.out ?? null }
}

async function main(): Promise<void> {
  const { options, out } = parseBenchArgs(process.argv.slice(2))
  const say = (line: string) => process.stderr.write(`bench: ${line}\n`)
  const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`
  const report = await runBench(options, say, command)
  const results = new URL('results/', import.meta.url).pathname
  const base =
    out ??
    (options.mode === 'full'
      ? `${results}${report.machine.kind}`
      : `${results}tmp/${report.machine.kind}-${options.mode}`)
  mkdirSync(dirname(base), { recursive: true })
  writeFileSync(`${base}.json`, `${JSON.stringify(report, null, 2)}\n`)
  writeFileSync(`${base}.md`, renderMarkdown(report))
  say(`report: ${base}.md and ${base}.json (${report.durationSeconds} s)`)
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
  process.exitCode = 1
})
