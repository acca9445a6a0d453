// Every error Switchyard throws or reports carries a stable code. Operators grep
// logs and alert on these codes, so a code is never renamed or reused: add new
// ones at the end. The README's errors table is checked against this list by a
// test, so the two cannot drift apart.

/**
 * Every code with its meaning and, for an error the proxy answers a request
 * with, the HTTP status it sends. The proxy takes the status from here
 * (`httpStatus`), so a code always comes with the same status.
 */
export const ERRORS = {
  SWY_ERR_CONFIG: { meaning: 'A configuration value is invalid; the message names the field. Exit code 2.' },
  SWY_ERR_TOKEN_FILE: { meaning: 'The Consul token file cannot be read or is empty. Exit code 2.' },
  SWY_ERR_CONSUL_HTTP: { meaning: 'Consul answered a request with an unexpected HTTP status.' },
  SWY_ERR_CONSUL_PERMISSION: {
    meaning:
      "Consul refused a read with 403: the token's policy lacks a rule Switchyard needs (see config/acl/).",
  },
  SWY_ERR_CONSUL_UNREACHABLE: { meaning: 'Consul could not be reached or did not answer in time.' },
  SWY_ERR_CONSUL_RESPONSE: { meaning: 'Consul answered with a body Switchyard could not parse.' },
  SWY_ERR_TAG_SYNTAX: {
    meaning: 'A urlprefix- tag could not be parsed; that instance gets no traffic on that route.',
  },
  SWY_ERR_TAG_OPTION: { meaning: 'A urlprefix- tag has an unknown or invalid option.' },
  SWY_ERR_ROUTE_CONFLICT: {
    meaning: 'Instances on one route disagree (several services, or different access rules).',
  },
  SWY_ERR_TARGET_INVALID: {
    meaning: 'A target-state key in KV is not valid JSON or not a valid target; it is ignored.',
  },
  SWY_ERR_TARGET_NOT_READY: {
    meaning:
      'The target names a version or slice with no healthy instance; the last selection keeps serving.',
  },
  SWY_ERR_NO_ROUTE: { status: 404, meaning: 'No route matches the request.' },
  SWY_ERR_NO_HEALTHY_INSTANCE: {
    status: 503,
    meaning: 'The route exists but has no healthy, selected instance.',
  },
  SWY_ERR_ACCESS_DENIED: {
    status: 403,
    meaning: "The client address is not allowed by the route's allow/deny rules.",
  },
  SWY_ERR_UPSTREAM_CONNECT: { status: 502, meaning: 'Connecting to the instance failed.' },
  SWY_ERR_UPSTREAM_TIMEOUT: { status: 504, meaning: 'The instance did not answer in time.' },
  SWY_ERR_UPSTREAM_RESET: {
    status: 502,
    meaning: 'The instance closed the connection before completing the response.',
  },
  SWY_ERR_BAD_REQUEST: { status: 400, meaning: 'The client sent a request Switchyard will not forward.' },
  SWY_ERR_TARGET_WRITE: {
    meaning: 'The operator command could not write the target (conflict or permission).',
  },
  SWY_ERR_TARGET_WAIT: { meaning: 'The operator command timed out waiting for the new target to be served.' },
  SWY_ERR_HEADERS_TOO_LARGE: {
    status: 431,
    meaning: 'The request line and headers exceed proxy.maxHeaderSize.',
  },
  SWY_ERR_CLIENT_TIMEOUT: {
    status: 408,
    meaning:
      'The client did not send its request headers within proxy.timeouts.clientHeaders, or let its request body stall longer than proxy.timeouts.clientBody.',
  },
  SWY_ERR_METHOD_NOT_ALLOWED: {
    status: 405,
    meaning: 'CONNECT: Switchyard is a reverse proxy and does not open tunnels.',
  },
  SWY_ERR_LISTEN: {
    meaning: 'A listener could not open its address (in use, or not permitted). Exit code 1.',
  },
  SWY_ERR_SERVICE_NOT_LOADED: {
    meaning:
      "A routed service's instances could not be read from Consul yet; its routes answer 503 meanwhile.",
  },
  SWY_ERR_INSTANCE_ADDRESS: {
    meaning: 'A service instance has an address or port no connection can be made to; it gets no traffic.',
  },
  SWY_ERR_BODY_TOO_LARGE: { status: 413, meaning: 'The request body exceeds proxy.limits.maxBodySize.' },
  SWY_ERR_UPSTREAM_TLS: {
    status: 502,
    meaning:
      "The TLS handshake with an HTTPS instance failed, or its certificate did not verify against the instance's address or its host= name.",
  },
  SWY_ERR_UPSTREAM_BUSY: {
    status: 503,
    meaning:
      'Every connection to the instance was busy and the request could not wait for one (queue full, or proxy.timeouts.queue passed).',
  },
  SWY_ERR_USAGE: {
    meaning: 'The command line is wrong (unknown command or flag, a token given as a flag). Exit code 2.',
  },
  SWY_ERR_TARGET_REFUSED: {
    meaning:
      'No registered instance carries the service, version or slice (or no two to toggle). Exit code 2.',
  },
  SWY_ERR_NO_FLEET: {
    meaning: '--fleet found no Switchyard registered in Consul as service "switchyard" (see config/consul/).',
  },
  SWY_ERR_INSTANCE_UNCHECKED: {
    meaning: 'A routed instance has no service health check; it gets no traffic (as in Fabio).',
  },
  SWY_ERR_AUTH_REQUIRED: {
    status: 401,
    meaning: 'The route needs basic auth and the request has no valid credentials.',
  },
  SWY_ERR_AUTH_SCHEME: {
    status: 503,
    meaning: 'An auth= option names no proxy.auth scheme; the route refuses every request.',
  },
  SWY_ERR_FABIO_CONFIG: {
    meaning: 'A line of the Fabio route overrides in KV (routing.fabio.kvPath) is invalid; it is ignored.',
  },
  SWY_ERR_CERTIFICATE: {
    meaning:
      'A TLS certificate (a PEM file or a KV key) cannot be served: it does not parse, its private key is missing or does not match, it has expired or is not valid yet. It is set aside; every other certificate keeps serving.',
  },
  SWY_ERR_UPGRADE_UNSUPPORTED: {
    status: 501,
    meaning:
      'An Upgrade to another protocol than WebSocket, on a request with a body: only WebSocket is tunnelled.',
  },
  SWY_ERR_STICKY_KEY: {
    meaning:
      'A target asks for sticky versions and routing.stickyKeyFile is not set; the split applies without stickiness.',
  },
  SWY_ERR_ROLLOUT_ACTIVE: {
    meaning:
      'A rollout of the service is running or paused already; a second one is refused (rollout status, rollout abort). Exit code 2.',
  },
  SWY_ERR_ROLLOUT_FAILED: {
    meaning:
      'A rollout step crossed a threshold (error rate, p99, too few requests): the target before the rollout was written back. Exit code 1.',
  },
  SWY_ERR_ROLLOUT_STOPPED: {
    meaning:
      'A rollout stopped before its end: aborted, or the target was changed by someone else. Exit code 1.',
  },
  SWY_ERR_METRICS: {
    meaning:
      'The rollout could not read the metrics it checks (a proxy admin /metrics or the Prometheus URL).',
  },
} as const satisfies Record<string, { readonly status?: number; readonly meaning: string }>

export type ErrorCode = keyof typeof ERRORS

/** The codes the proxy answers a request with. */
export type HttpErrorCode = {
  [C in ErrorCode]: (typeof ERRORS)[C] extends { readonly status: number } ? C : never
}[ErrorCode]

/** The HTTP status the proxy answers with for `code`. */
export function httpStatus(code: HttpErrorCode): number {
  return ERRORS[code].status
}

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
