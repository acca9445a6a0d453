// What the command line accepts, the help texts, and the one-line answers to
// a command line that cannot run: each names what is wrong and how to fix it,
// instead of node:util parseArgs' own wording.

import { CONFIG_FLAGS, type CommandFlags, type FlagValues } from '../config/load.js'
import { UsageError } from '../errors.js'

const { parseArgs } = process.getBuiltinModule('node:util')

export const CONFIG_HELP = `config flags (override the file and the environment):
  --config <file>            YAML config file (env SWITCHYARD_CONFIG; default: none, built-in defaults)
  --listen <host:port>       proxy listener (env SWITCHYARD_LISTEN; default 0.0.0.0:9999)
  --admin-listen <host:port> admin listener (env SWITCHYARD_ADMIN_LISTEN; default 127.0.0.1:9998)
  --consul-addr <addr>       Consul HTTP address (env CONSUL_HTTP_ADDR; default 127.0.0.1:8500)
  --consul-token-file <file> file holding the ACL token (env CONSUL_HTTP_TOKEN_FILE)
  --consul-datacenter <dc>   datacenter to read (env CONSUL_DATACENTER)
  --tag-prefix <prefix>      route tag prefix (env SWITCHYARD_TAG_PREFIX; default urlprefix-)
  --target-prefix <prefix>   KV prefix of target state (env SWITCHYARD_TARGET_PREFIX; default switchyard/targets)
  --strategy <name>          round-robin | random | least-outstanding
  --workers <n|auto>         proxy worker processes (env SWITCHYARD_WORKERS; default auto: one per core)
  --access-log               log every request
  --log-level <level>        fatal | error | warn | info | debug | trace | silent (env SWITCHYARD_LOG_LEVEL)

The token is read from CONSUL_HTTP_TOKEN_FILE (or CONSUL_HTTP_TOKEN), never from a flag:
a flag would show in ps.`

export const GENERAL_HELP = `usage: switchyard <command> [flags]

commands:
  serve                      run the proxy (and admin listener) until SIGTERM/SIGINT
  routes [--json]            print the routing table Switchyard would build now, then exit
  target get <service>       the target in Consul and what each running proxy serves
  target set <service> --version V | --slice S | --weights V1=90,V2=10
                             write the target (guarded, check-and-set); --wait until proxies serve it
  target toggle <service>    blue/green: switch between the service's two versions (or slices)
  target clear <service>     delete the target: every healthy instance gets traffic again
  rollout <service> --to V   move traffic to version V in steps, checking error rate and p99 between
                             them; writes the target from before back when a limit is crossed
  rollout status|pause|resume|abort <service>
  healthcheck                exit 0 if this host's Switchyard answers /health (the container HEALTHCHECK)

  switchyard <command> --help    flags of one command
  switchyard --version           the version

${CONFIG_HELP}
`

const ASK_HELP = `  --admin <url>              ask the Switchyard whose admin listener is at <url> (repeatable)
  --fleet                    ask every Switchyard registered in Consul as service "switchyard"
                             (meta admin_port; see config/consul/switchyard.hcl)
                             Without either, a dry-run build from Consul stands in, and says so.`

const WAIT_HELP = `  --wait                     return once every proxy asked serves the target (exit 1 after --timeout,
                             naming those that do not)
  --timeout <duration>       how long --wait waits (default 30s)`

const TARGET_HELP = `usage: switchyard target get|set|toggle|clear <service> [flags]

Target state lives in Consul KV at <target-prefix>/<service>. set, toggle and clear need an
operator token (config/acl/switchyard-operator.hcl); every write is check-and-set and prints
the command that undoes it.

  target get <service> [--admin URL]... [--fleet] [--json]
      the key's value, and per proxy what it desires and really serves, instances per version

  target set <service> (--version V | --slice S | --weights V1=90,V2=10 [--sticky])
             [--match RULE]... [--cas INDEX] [--force] [--wait [--timeout 30s]] [--admin URL]... [--fleet]
      refuses a service that is not in the catalog and a version or slice no registered
      instance carries, unless --force

  target toggle <service> [--to V] [--cas INDEX] [--wait [--timeout 30s]] [--admin URL]... [--fleet]
      with exactly two versions (or slices) registered, switch to the one not in force;
      --to V switches to V, and does nothing if V is in force already

  target clear <service> [--cas INDEX]
      delete the key: every healthy instance gets traffic again

flags:
${ASK_HELP}
${WAIT_HELP}
  --match <rule>             header:NAME=VALUE->VERSION or cookie:NAME=VALUE->VERSION: requests with
                             that header or cookie value go to VERSION (repeatable, checked in order)
  --sticky                   with --weights: a client keeps the version it got (signed cookie;
                             needs routing.stickyKeyFile on the proxies)
  --cas <index>              write only if the key is still at this modify index (as get prints it)
  --force                    write a target no registered instance carries
  --json                     get: machine-readable output

${CONFIG_HELP}
`

const ROLLOUT_HELP = `usage: switchyard rollout <service> --to <version> [flags]
       switchyard rollout status|pause|resume|abort <service>

Moves the service's traffic from the version in force (its target: a version, or weights) to
<version> in steps. Each step's target is written with check-and-set; the command then waits for
the proxies to serve it and, after --interval, reads the new version's requests, 5xx rate and p99
over the interval. Above a limit, or with the metrics unreadable, it writes the target from before
the rollout back and exits 1 naming the metric and the values. Needs an operator token
(config/acl/switchyard-operator.hcl).

The rollout's state is kept beside the target, at <target-prefix>/<service>/rollout: rollout status
and target get show it, and so does every proxy's status page. A second rollout of the same service
is refused while one runs. pause holds the current step (checks go on), resume continues, abort
(from any shell, or Ctrl-C of the running command) writes the target from before back.

  --to <version>             the version to roll out; an instance of it must be registered
  --steps <list>             percent of traffic to it at each step, ending at 100 (default 10,25,50,100)
  --interval <duration>      time each step runs before its check (default 60s)
  --max-error-rate <pct>     most 5xx answers of the new version, as a percentage (default 1%)
  --max-p99 <duration>       longest p99 of the new version (default: not checked)
  --min-requests <n>         fewest requests of the new version for a check to count; fewer waits
                             another interval, three such intervals in a row roll back (default 100)
  --sticky                   write the weights with "sticky": true (clients keep their version)
  --timeout <duration>       how long each step waits for the proxies to serve it (default 30s)
  --prometheus <url>         read the metrics from this Prometheus instead of the proxies
${ASK_HELP}
                             The proxies asked are also where the metrics come from, unless --prometheus.
  --json                     status: machine-readable output

${CONFIG_HELP}
`

export const COMMAND_HELP: Readonly<Record<string, string>> = {
  serve: `usage: switchyard serve [flags]

Runs the proxy and its admin listener until SIGTERM or SIGINT, then drains in-flight requests.
Reads Consul with a read-only token (config/acl/switchyard-proxy.hcl).

${CONFIG_HELP}
`,
  routes: `usage: switchyard routes [--json] [flags]

Prints the routing table Switchyard would build from Consul right now, then exits.

  --json                     the routes as JSON

${CONFIG_HELP}
`,
  target: TARGET_HELP,
  rollout: ROLLOUT_HELP,
  healthcheck: `usage: switchyard healthcheck [flags]

Exits 0 if the Switchyard on this host answers /health on its admin listener (--admin-listen,
SWITCHYARD_ADMIN_LISTEN or the config file say where), else 1. Needs nothing but node.

${CONFIG_HELP}
`,
}

const TOKEN_FIX =
  'write the token to a file only you can read and set CONSUL_HTTP_TOKEN_FILE=<file> (or --consul-token-file <file>), or set CONSUL_HTTP_TOKEN'

/**
 * Parses the flags and positionals of `command` (config flags plus its own),
 * or throws a UsageError that says what is wrong and how to fix it.
 */
export function parseCommandLine(
  command: string,
  argv: readonly string[],
  flags: CommandFlags,
  positionals: { readonly min: number; readonly max: number; readonly what: string },
): { values: FlagValues; positionals: string[] } {
  const help = `see switchyard ${command.split(' ')[0]} --help`
  for (const arg of argv) {
    if (arg === '--') break
    if (/^--?(consul-|http-)?token(=|$)/.test(arg))
      throw new UsageError(
        `${command}: ${arg.split('=')[0]} is not accepted (a token on the command line shows in ps): ${TOKEN_FIX}`,
      )
    if (/^--?token-file(=|$)/.test(arg))
      throw new UsageError(
        `${command}: ${arg.split('=')[0]} is spelt --consul-token-file <file> here (or set CONSUL_HTTP_TOKEN_FILE)`,
      )
  }
  const options: CommandFlags = {
    config: { type: 'string' },
    ...Object.fromEntries(Object.entries(CONFIG_FLAGS).map(([name, f]) => [name, { type: f.type }])),
    ...flags,
  }
  let parsed: { values: FlagValues; positionals: string[] }
  try {
    parsed = parseArgs({ args: [...argv], options, allowPositionals: true, strict: true }) as typeof parsed
  } catch (err) {
    const e = err as Error & { code?: string }
    const option = /'(-[^' ]+)/.exec(e.message)?.[1] ?? ''
    const name = option.replace(/^-+/, '').split('=')[0] ?? ''
    switch (e.code) {
      case 'ERR_PARSE_ARGS_UNKNOWN_OPTION': {
        const near = Object.keys(options)
          .map((known) => ({ known, d: distance(known, name) }))
          .filter(({ d }) => d <= 2)
          .sort((a, b) => a.d - b.d)[0]
        throw new UsageError(
          `${command}: unknown flag ${option}${near ? ` (did you mean --${near.known}?)` : ''}; ${help}`,
        )
      }
      case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
        throw new UsageError(
          options[name]?.type === 'boolean'
            ? `${command}: --${name} takes no value; ${help}`
            : `${command}: --${name} needs a value; ${help}`,
        )
      default:
        throw new UsageError(`${command}: ${e.message}; ${help}`)
    }
  }
  const extra = parsed.positionals.length - positionals.max
  if (extra > 0)
    throw new UsageError(`${command}: unexpected argument "${parsed.positionals[positionals.max]}"; ${help}`)
  if (parsed.positionals.length < positionals.min)
    throw new UsageError(`${command}: give ${positionals.what}; ${help}`)
  return parsed
}

/** The config flags a command line gave, as words to repeat in a command printed for later. */
export function configArgs(values: FlagValues): string[] {
  const words: string[] = []
  for (const name of ['config', ...Object.keys(CONFIG_FLAGS)]) {
    const value = values[name]
    if (value === true) words.push(`--${name}`)
    else if (typeof value === 'string') words.push(`--${name}`, value)
  }
  return words
}

/** Edit distance, for "did you mean". */
export function distance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    const next = [i]
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      next[j] = Math.min((row[j] ?? 0) + 1, (next[j - 1] ?? 0) + 1, (row[j - 1] ?? 0) + cost)
    }
    row = next
  }
  return row[b.length] ?? 0
}
