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
  /** May contain `$path`, replaced by the request path (with query). */
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
  /** Lower-case host without default port; '' for any host; may start with `*.`. */
  readonly host: string
  /** Path prefix, always starting with '/'. A trailing '*' is removed and sets rawPrefix. */
  readonly path: string
  /** `/web*`: plain string prefix match instead of path-segment match. */
  readonly rawPrefix: boolean
  readonly strip: string
  readonly prepend: string
  readonly hostHeader: HostHeaderMode
  readonly proto: 'http' | 'https'
  readonly tlsSkipVerify: boolean
  readonly redirect: Redirect | null
  /** Fixed share of its group's traffic in [0, 1], or null when the tag sets none. */
  readonly weight: number | null
  readonly access: AccessRules | null
  /** The tag's options in their original text, for display and diffs. */
  readonly optionsText: string
}

// ---------------------------------------------------------------- targets

export type TargetSpec =
  | { readonly kind: 'version'; readonly version: string }
  | { readonly kind: 'slice'; readonly slice: string }
  | { readonly kind: 'weights'; readonly weights: Readonly<Record<string, number>> }

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
}

// ---------------------------------------------------------------- table

/** Why an instance on a route does or does not get traffic. */
export type InstanceState = 'serving' | 'unhealthy' | 'maintenance' | 'not-selected' | 'zero-weight'

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
  /** `http://127.0.0.1:8080`, the upstream origin (pools are keyed by it). */
  readonly origin: string
  readonly tlsSkipVerify: boolean
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
}

/** Routes of one host pattern, indexed for lookup. */
export interface HostRoutes {
  /** Segment-prefix routes keyed by their path. */
  readonly byPath: ReadonlyMap<string, Route>
  /** Raw-prefix routes (`/web*`), longest first. */
  readonly rawPrefixes: readonly Route[]
}

export interface RouteTable {
  /** Increases by one on every swap; 0 is the empty table before the first sync. */
  readonly generation: number
  readonly routes: readonly Route[]
  readonly exactHosts: ReadonlyMap<string, HostRoutes>
  /** `*.example.com` patterns as suffix `.example.com`, longest first. */
  readonly globHosts: readonly { readonly suffix: string; readonly routes: HostRoutes }[]
  readonly anyHost: HostRoutes | null
  readonly targets: readonly TargetStatus[]
  readonly problems: readonly Problem[]
}
