// The data that flows through Switchyard. Watchers produce snapshots, the pure
// table builder turns a snapshot into a RouteTable, and the proxy reads tables.
// Everything here is plain data (no functions, no classes), so a table can be
// handed to worker processes with structured clone and compared in tests.

import type { ErrorCode } from '../errors.js'

// ---------------------------------------------------------------- snapshots

/** A Consul health check as the catalog reports it for one instance. */
export interface CheckSnapshot {
  readonly id: string
  readonly name: string
  /** passing | warning | critical | maintenance (as Consul says it) */
  readonly status: string
  /** Empty for node-level checks (serfHealth, _node_maintenance). */
  readonly serviceId: string
}

/** One registered service instance with its node and service checks. */
export interface InstanceSnapshot {
  readonly id: string
  readonly service: string
  readonly node: string
  /** Service address, or the node's address when the service has none. */
  readonly address: string
  readonly port: number
  readonly tags: readonly string[]
  readonly meta: Readonly<Record<string, string>>
  readonly checks: readonly CheckSnapshot[]
}

/** What the catalog watchers know: every routed service with all its instances. */
export interface CatalogSnapshot {
  readonly services: ReadonlyMap<string, readonly InstanceSnapshot[]>
  /**
   * Routed services whose instances could not be read yet, with the tags the
   * service list gives them: their routes answer 503 rather than let a
   * shorter route of another service take their requests.
   */
  readonly pending?: ReadonlyMap<string, readonly string[]>
}

/** One key under the target prefix, value already base64-decoded. */
export interface TargetEntry {
  readonly key: string
  readonly value: string
  readonly modifyIndex: number
}

// ---------------------------------------------------------------- problems

export interface Problem {
  readonly code: ErrorCode
  /** What the problem is about: `service web, instance web-1`, `key switchyard/targets/web`. */
  readonly subject: string
  readonly message: string
}

// ---------------------------------------------------------------- tags

export type HostHeaderMode =
  | { readonly kind: 'client' }
  | { readonly kind: 'dst' }
  | { readonly kind: 'name'; readonly name: string }

export interface Redirect {
  readonly status: number
  /**
   * May contain `$path` (the request path after strip/prepend, with the
   * query) and `$host` (the request's Host); see redirect.ts.
   */
  readonly url: string
}

export interface Cidr {
  readonly family: 4 | 6
  readonly address: string
  readonly prefix: number
}

export interface AccessRules {
  readonly allow: readonly Cidr[]
  readonly deny: readonly Cidr[]
}

/** What one `urlprefix-` tag says, parsed. */
export interface RouteSpec {
  /**
   * Lower-case host, with the port when the tag names one (`example.com:80`
   * and `example.com` are different routes); '' for no host; `*.` globs a
   * subdomain, a lone `*` any host name.
   */
  readonly host: string
  /**
   * Path prefix, always starting with '/'. A trailing '*' is removed and sets
   * rawPrefix; under the glob matcher the whole pattern is kept.
   */
  readonly path: string
  /** `/web*`: plain string prefix match instead of path-segment match. */
  readonly rawPrefix: boolean
  readonly strip: string
  readonly prepend: string
  readonly hostHeader: HostHeaderMode
  /** grpc and grpcs: HTTP/2 to the instance (cleartext or TLS). */
  readonly proto: 'http' | 'https' | 'grpc' | 'grpcs'
  readonly tlsSkipVerify: boolean
  /** `tlsservername=`: the name to verify in an https instance's certificate (and to send as SNI). */
  readonly tlsServerName: string | null
  readonly redirect: Redirect | null
  /**
   * Fixed share of its group's traffic (above 0; shares adding up to more than
   * 1 are scaled down), or null when the tag sets none or `weight=0` (Fabio:
   * no fixed weight).
   */
  readonly weight: number | null
  readonly access: AccessRules | null
  /** `auth=<scheme>`: basic auth against a `proxy.auth` scheme of that name, or null. */
  readonly auth: string | null
  /** The tag's options in their original text, for display and diffs. */
  readonly optionsText: string
}

// ---------------------------------------------------------------- targets

/**
 * A request that carries a header or cookie with exactly this value goes to
 * `version` (while it has a healthy instance), whatever the rest of the
 * target says: the header and cookie canaries of a target's `match` list.
 */
export interface MatchRule {
  readonly source: 'header' | 'cookie'
  /** Header names lower-cased; cookie names as written (they are case-sensitive). */
  readonly name: string
  readonly equals: string
  readonly version: string
}

/** Fields any target may carry besides what selects the default traffic. */
interface TargetRules {
  /** Checked in order before the default selection; absent or empty for none. */
  readonly match?: readonly MatchRule[]
}

export type TargetSpec =
  | ({ readonly kind: 'version'; readonly version: string } & TargetRules)
  | ({ readonly kind: 'slice'; readonly slice: string } & TargetRules)
  | ({
      readonly kind: 'weights'
      readonly weights: Readonly<Record<string, number>>
      /** A client keeps the version it first got (signed cookie) while that version stays in the split. */
      readonly sticky?: boolean
    } & TargetRules)

export interface TargetStatus {
  readonly service: string
  /** What the KV key asks for; null when there is no (valid) key. */
  readonly desired: TargetSpec | null
  /** What traffic actually follows. Differs from desired while not ready. */
  readonly effective: TargetSpec | null
  readonly ready: boolean
  /** Why not ready, e.g. "no healthy instance of version 1.6.0". */
  readonly reason: string
  readonly key: string
  readonly modifyIndex: number
  /** A rollout's state record (`<prefix>/<service>/rollout`), as the rollout command last wrote it; null for none. */
  readonly rollout: RolloutRecord | null
}

/**
 * What `switchyard rollout` keeps in KV beside the target, so every operator
 * (and every proxy's status page) sees it. Written only by the rollout
 * commands; read leniently by the proxy (display only).
 */
export interface RolloutRecord {
  readonly service: string
  readonly to: string
  /** running | paused | completed | rolled-back | aborted | interrupted */
  readonly state: string
  /** Weight steps in percent of traffic to `to`, e.g. [10, 25, 50, 100]. */
  readonly steps: readonly number[]
  /** Index into steps of the step in force; -1 before the first write. */
  readonly step: number
  /** The target before the rollout, as it was in KV: what a rollback writes back. */
  readonly before: string
  readonly startedAt: string
  readonly updatedAt: string
  /** The last check, or why it stopped, in words. */
  readonly message: string
}

// ---------------------------------------------------------------- table

/** Why an instance on a route does or does not get traffic. */
export type InstanceState =
  | 'serving'
  | 'unhealthy'
  | 'maintenance'
  | 'not-selected'
  | 'zero-weight'
  /** Healthy, outside the default selection, and sent the requests a match rule of the target names its version for. */
  | 'match-only'

/**
 * A backend: one instance as seen on one route, with everything the proxy
 * needs precomputed. (The KV "target" is the desired version of a service;
 * a backend is what a request is sent to.)
 */
export interface Backend {
  /** Stable identity across tables: `node/serviceId`. */
  readonly key: string
  readonly service: string
  readonly instanceId: string
  readonly node: string
  readonly address: string
  readonly port: number
  readonly version: string
  readonly slice: string
  /**
   * `http://127.0.0.1:8080`, the upstream origin (pools are keyed by it); the
   * scheme says the protocol: http, https, or grpc/grpcs for HTTP/2.
   */
  readonly origin: string
  readonly tlsSkipVerify: boolean
  /** Name to verify in an https instance's certificate; null: see the data plane. */
  readonly tlsServerName: string | null
  readonly strip: string
  readonly prepend: string
  /** Host header to send; null keeps the client's. */
  readonly hostHeader: string | null
  readonly redirect: Redirect | null
  /** Share of the route's traffic, 0..1; the serving targets of a route sum to 1. */
  readonly weight: number
  readonly state: InstanceState
  readonly optionsText: string
}

export interface Route {
  /** `host/path` exactly as routed, e.g. `/web`, `api.example.com/v1`, `*.example.com/`. */
  readonly id: string
  readonly host: string
  readonly path: string
  readonly rawPrefix: boolean
  readonly services: readonly string[]
  /** Instances that get traffic, in a stable order. */
  readonly backends: readonly Backend[]
  /** Instances on this route that get none, with the reason in `state`. */
  readonly idle: readonly Backend[]
  /**
   * Smooth weighted round-robin order over `targets` (indices), built once per
   * table so a request only advances a counter.
   */
  readonly schedule: readonly number[]
  /** Running sums of target weights, for the random picker. */
  readonly cumulative: readonly number[]
  /** Every distinct rule set of the route's instances; a request must pass all. */
  readonly access: readonly AccessRules[]
  /** Every distinct `auth=` scheme of the route's instances, sorted; a request must pass all. */
  readonly auth: readonly string[]
  /**
   * Match rules and sticky splits of the targets of the route's services,
   * compiled against its backends; null when no target of them has any, so
   * the request path only checks for null.
   */
  readonly variants: RouteVariants | null
}

/** What a picker needs of a route, or of a pool of its backends. */
export type Pickable = Pick<Route, 'id' | 'backends' | 'schedule' | 'cumulative'>

/**
 * Some backends of a route with their own picking order: the backends of
 * one version of one service. Picked like a route (same fields), under its
 * own id so its round-robin position is its own.
 */
export interface BackendPool {
  /** Unique among routes and pools: `<route id> <service> version <v>` (route ids have no space). */
  readonly id: string
  readonly service: string
  readonly version: string
  /** Serving (or match-only) backends of that version on the route; may be empty. */
  readonly backends: readonly Backend[]
  readonly schedule: readonly number[]
  readonly cumulative: readonly number[]
}

export interface CompiledRule {
  readonly source: 'header' | 'cookie'
  readonly name: string
  readonly equals: string
  readonly pool: BackendPool
}

/**
 * A sticky weights split of one service on a route. A client's cookie holds a
 * bucket in [0, 1); the bucket falls in one version's slice of the cumulative
 * weights (versions in sorted order), so when the weights change only the
 * clients whose bucket changed slice move, and the split of clients follows
 * the weights.
 */
export interface StickySplit {
  readonly service: string
  /** Cookie name, one per service: `switchyard_<service>` with other characters as `_`. */
  readonly cookie: string
  /** Versions with a weight above 0, sorted; `upTo` is the end of the version's slice (the last is 1). */
  readonly versions: readonly {
    readonly version: string
    readonly upTo: number
    readonly pool: BackendPool
  }[]
}

export interface RouteVariants {
  readonly rules: readonly CompiledRule[]
  /** Only on a route of one service (a shared route cannot keep one cookie per client). */
  readonly sticky: StickySplit | null
}

/**
 * How a request path matches a route path (`routing.matcher`): `segment`
 * (Switchyard's default: `/web` matches `/web/x`, not `/website`), and
 * Fabio's `prefix` (plain string prefix), `iprefix` (the same, ignoring case)
 * and `glob` (the whole path against a glob pattern).
 */
export type PathMatcher = 'segment' | 'prefix' | 'iprefix' | 'glob'

/** Routes of one host pattern, indexed for lookup. */
export interface HostRoutes {
  /** Segment-prefix routes keyed by their path (segment matcher only). */
  readonly byPath: ReadonlyMap<string, Route>
  /**
   * String-prefix routes, longest first: `/web*` routes, or every route under
   * the prefix and iprefix matchers (`prefix` lower-cased under iprefix).
   */
  readonly rawPrefixes: readonly { readonly prefix: string; readonly route: Route }[]
  /** Glob matcher only: route patterns in Fabio's order (reverse lexical); the first match wins. */
  readonly globs: readonly { readonly pattern: RegExp; readonly route: Route }[]
}

/** Routes of a `*.suffix` or `*` host pattern, with or without a port. */
export interface GlobHost {
  /** `.example.com` for `*.example.com`; '' for `*` (any host name). */
  readonly suffix: string
  /** The port the route names, 0 for none. */
  readonly port: number
  readonly routes: HostRoutes
}

export interface RouteTable {
  /** Increases by one on every swap; 0 is the empty table before the first sync. */
  readonly generation: number
  readonly routes: readonly Route[]
  readonly matcher: PathMatcher
  /** Keyed by `host` or `host:port` as the route writes it. */
  readonly exactHosts: ReadonlyMap<string, HostRoutes>
  /** Whether any exact host names a port (else lookup skips the `host:port` key). */
  readonly portHosts: boolean
  /** Longest suffix first, a port before none; `*` (suffix '') last. */
  readonly globHosts: readonly GlobHost[]
  readonly anyHost: HostRoutes | null
  /** Body of the 404 answer when no route matches, from KV (`routing.fabio.noRouteHtmlPath`); null for plain text. */
  readonly noRouteHtml: string | null
  readonly targets: readonly TargetStatus[]
  readonly problems: readonly Problem[]
}
