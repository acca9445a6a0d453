// Every error Switchyard throws or reports carries a stable code. Operators grep
// logs and alert on these codes, so a code is never renamed or reused: add new
// ones at the end. The README's errors table is checked against this list by a
// test, so the two cannot drift apart.

export const ERROR_CODES = {
  SWY_ERR_CONFIG: 'A configuration value is invalid; the message names the field. Exit code 2.',
  SWY_ERR_TOKEN_FILE: 'The Consul token file cannot be read or is empty. Exit code 2.',
  SWY_ERR_CONSUL_HTTP: 'Consul answered a request with an unexpected HTTP status.',
  SWY_ERR_CONSUL_PERMISSION:
    "Consul refused a read with 403: the token's policy lacks a rule Switchyard needs (see config/acl/).",
  SWY_ERR_CONSUL_UNREACHABLE: 'Consul could not be reached or did not answer in time.',
  SWY_ERR_CONSUL_RESPONSE: 'Consul answered with a body Switchyard could not parse.',
  SWY_ERR_TAG_SYNTAX: 'A urlprefix- tag could not be parsed; that instance gets no traffic on that route.',
  SWY_ERR_TAG_OPTION: 'A urlprefix- tag has an unknown or invalid option.',
  SWY_ERR_ROUTE_CONFLICT: 'Instances on one route disagree (several services, or different access rules).',
  SWY_ERR_TARGET_INVALID: 'A target-state key in KV is not valid JSON or not a valid target; it is ignored.',
  SWY_ERR_TARGET_NOT_READY:
    'The target names a version or slice with no healthy instance; the last selection keeps serving.',
  SWY_ERR_NO_ROUTE: 'No route matches the request (404).',
  SWY_ERR_NO_HEALTHY_INSTANCE: 'The route exists but has no healthy, selected instance (503).',
  SWY_ERR_ACCESS_DENIED: "The client address is not allowed by the route's allow/deny rules (403).",
  SWY_ERR_UPSTREAM_CONNECT: 'Connecting to the instance failed (502).',
  SWY_ERR_UPSTREAM_TIMEOUT: 'The instance did not answer in time (504).',
  SWY_ERR_UPSTREAM_RESET: 'The instance closed the connection before completing the response (502).',
  SWY_ERR_BAD_REQUEST: 'The client sent a request Switchyard will not forward (400).',
  SWY_ERR_TARGET_WRITE: 'The operator command could not write the target (conflict or permission).',
  SWY_ERR_TARGET_WAIT: 'The operator command timed out waiting for the new target to be served.',
  SWY_ERR_HEADERS_TOO_LARGE: 'The request line and headers exceed proxy.maxHeaderSize (431).',
  SWY_ERR_CLIENT_TIMEOUT:
    'The client did not send its request headers within proxy.timeouts.clientHeaders, or let its request body stall longer than proxy.timeouts.clientBody (408).',
  SWY_ERR_METHOD_NOT_ALLOWED: 'CONNECT: Switchyard is a reverse proxy and does not open tunnels (405).',
  SWY_ERR_LISTEN: 'A listener could not open its address (in use, or not permitted). Exit code 1.',
  SWY_ERR_SERVICE_NOT_LOADED:
    "A routed service's instances could not be read from Consul yet; its routes answer 503 meanwhile.",
  SWY_ERR_INSTANCE_ADDRESS:
    'A service instance has an address or port no connection can be made to; it gets no traffic.',
  SWY_ERR_BODY_TOO_LARGE: 'The request body exceeds proxy.limits.maxBodySize (413).',
  SWY_ERR_UPSTREAM_TLS:
    "The TLS handshake with an HTTPS instance failed, or its certificate did not verify against the instance's address or its host= name (502).",
  SWY_ERR_UPSTREAM_BUSY:
    'Every connection to the instance was busy and the request could not wait for one (queue full, or proxy.timeouts.queue passed) (503).',
  SWY_ERR_USAGE: 'The command line is wrong (unknown command or flag, a token given as a flag). Exit code 2.',
  SWY_ERR_TARGET_REFUSED:
    'No registered instance carries the service, version or slice (or no two to toggle). Exit code 2.',
  SWY_ERR_NO_FLEET:
    '--fleet found no Switchyard registered in Consul as service "switchyard" (see config/consul/).',
  SWY_ERR_INSTANCE_UNCHECKED:
    'A routed instance has no service health check; it gets no traffic (as in Fabio).',
  SWY_ERR_AUTH_REQUIRED: 'The route needs basic auth and the request has no valid credentials (401).',
  SWY_ERR_AUTH_SCHEME: 'An auth= option names no proxy.auth scheme; the route refuses every request (503).',
  SWY_ERR_FABIO_CONFIG:
    'A line of the Fabio route overrides in KV (routing.fabio.kvPath) is invalid; it is ignored.',
  SWY_ERR_STICKY_KEY:
    'A target asks for sticky versions and routing.stickyKeyFile is not set; the split applies without stickiness.',
  SWY_ERR_ROLLOUT_ACTIVE:
    'A rollout of the service is running or paused already; a second one is refused (rollout status, rollout abort). Exit code 2.',
  SWY_ERR_ROLLOUT_FAILED:
    'A rollout step crossed a threshold (error rate, p99, too few requests): the target before the rollout was written back. Exit code 1.',
  SWY_ERR_ROLLOUT_STOPPED:
    'A rollout stopped before its end: aborted, or the target was changed by someone else. Exit code 1.',
  SWY_ERR_METRICS:
    'The rollout could not read the metrics it checks (a proxy admin /metrics or the Prometheus URL).',
} as const

export type ErrorCode = keyof typeof ERROR_CODES

export class SwitchyardError extends Error {
  readonly code: ErrorCode

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
    this.name = new.target.name
  }
}

/**
 * Bad configuration; `field` is the dotted path of the offending value and
 * `source` where it came from (`CONSUL_HTTP_ADDR`, `--listen`, a file), so the
 * operator knows what to fix: a variable set in a unit file is easy to forget.
 */
export class ConfigError extends SwitchyardError {
  readonly field: string
  constructor(field: string, message: string, source?: string) {
    super('SWY_ERR_CONFIG', `${field}: ${message}${source ? ` (${source})` : ''}`)
    this.field = field
  }
}

/** A command line Switchyard cannot run; the message ends with how to fix it. */
export class UsageError extends SwitchyardError {
  constructor(message: string) {
    super('SWY_ERR_USAGE', message)
  }
}

/** A guard of the operator commands said no; nothing was written. */
export class TargetRefusedError extends SwitchyardError {
  constructor(message: string) {
    super('SWY_ERR_TARGET_REFUSED', message)
  }
}

export class TokenFileError extends SwitchyardError {
  constructor(path: string, reason: string, source?: string) {
    super(
      'SWY_ERR_TOKEN_FILE',
      `cannot read Consul token file ${path}${source ? ` (${source})` : ''}: ${reason}`,
    )
  }
}

/** A non-2xx answer from Consul. 403 gets its own class because it needs an operator's fix. */
export class ConsulHttpError extends SwitchyardError {
  readonly status: number
  readonly path: string
  constructor(path: string, status: number, body: string, code: ErrorCode = 'SWY_ERR_CONSUL_HTTP') {
    super(code, `${path}: ${status} ${body.trim().slice(0, 200)}`.trim())
    this.status = status
    this.path = path
  }
}

export class ConsulPermissionError extends ConsulHttpError {
  constructor(path: string, body: string, what: string) {
    super(path, 403, body, 'SWY_ERR_CONSUL_PERMISSION')
    this.message = `token cannot read ${what}: 403 ${body.trim() || 'Permission denied'}`
  }
}

export class ConsulUnreachableError extends SwitchyardError {
  constructor(address: string, cause: unknown) {
    const reason =
      cause instanceof Error ? ((cause as NodeJS.ErrnoException).code ?? cause.message) : String(cause)
    super('SWY_ERR_CONSUL_UNREACHABLE', `Consul at ${address} unreachable: ${reason}`, { cause })
  }
}

export class ConsulResponseError extends SwitchyardError {
  constructor(path: string, reason: string) {
    super('SWY_ERR_CONSUL_RESPONSE', `${path}: ${reason}`)
  }
}
