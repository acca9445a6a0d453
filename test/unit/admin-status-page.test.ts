// The status page's HTML and the problem tracker's since-times, without Consul.

import { describe, expect, it } from 'vitest'
import { ProblemTracker } from '../../src/admin/problems.js'
import { ago, escapeHtml, renderStatusPage, type StatusPageModel } from '../../src/admin/status-page.js'
import { readiness, routesView, targetsView } from '../../src/admin/views.js'
import type { Clock } from '../../src/clock.js'
import { buildRouteTable } from '../../src/routing/build.js'
import type { RouteTable } from '../../src/routing/types.js'
import { TableStore } from '../../src/table/store.js'
import type { SyncStatus } from '../../src/table/sync.js'
import { BUILD, catalogOf, instance, target } from './helpers.js'

const NOW = Date.parse('2030-01-02T03:04:05Z')

function status(overrides: Partial<SyncStatus> = {}): SyncStatus {
  return { loaded: true, staleForMs: 0, lastSyncAt: NOW, watches: [], problems: [], ...overrides }
}

function model(table: RouteTable, overrides: Partial<StatusPageModel> = {}): StatusPageModel {
  return {
    now: NOW,
    readiness: readiness(status(), 60_000, table.generation),
    swappedAt: NOW - 65_000,
    routes: routesView(table),
    targets: targetsView(table),
    problems: [],
    watches: { total: 3, failing: [] },
    refreshSeconds: 5,
    nonce: 'abc123',
    ...overrides,
  }
}

describe('status page', () => {
  const evil = '<script>window.pwned=1</script>'
  const table = buildRouteTable(
    catalogOf([
      instance('shop', ['urlprefix-/shop'], { id: 'shop-a', meta: { version: '1.5.0' } }),
      instance('shop', ['urlprefix-/shop'], { id: 'shop-b', meta: { version: '1.6.0' } }),
      instance('shop', ['urlprefix-/shop'], {
        id: 'shop-c',
        meta: { version: '1.6.0' },
        checks: [{ id: 'ttl', name: 'ttl', status: 'critical', serviceId: 'shop-c' }],
      }),
      instance('x', [`urlprefix-/x opt="${evil}"`], { id: `x-${evil}`, meta: { version: evil } }),
    ]),
    [target('shop', { version: '1.6.0' })],
    BUILD,
  ).table

  it('shows routes with their instances by version, why idle ones are idle, and targets', () => {
    const page = renderStatusPage(model(table))
    expect(page).toMatch(/^<!doctype html>/)
    expect(page).toContain('<code>/shop</code>')
    expect(page).toContain('version <b>1.6.0</b>')
    expect(page).toContain('version <b>1.5.0</b>')
    expect(page).toContain('<span class="state not-selected">not-selected</span> not in target version=1.6.0')
    expect(page).toContain('<span class="state unhealthy">unhealthy</span> health check failing')
    expect(page).not.toContain('idle')
    expect(page).toContain('1 of 2 serving &middot; 100% of traffic')
    expect(page).toContain('<span class="state serving">live</span>')
    expect(page).toContain('changed <span title="2030-01-02T03:03:00.000Z">1m 5s ago</span>')
    expect(page).toContain('<span class="badge ok" id="ready">Ready</span>')
    expect(page).toContain('<script nonce="abc123">')
  })

  it('escapes everything that comes from Consul', () => {
    const page = renderStatusPage(
      model(table, {
        problems: [
          {
            code: 'SWY_ERR_TAG_OPTION',
            subject: `service ${evil}`,
            message: `bad "${evil}"`,
            source: 'table',
            since: new Date(NOW - 5000).toISOString(),
          },
        ],
      }),
    )
    // The only <script> element is the page's own, with its nonce.
    expect(page.match(/<script/g)).toHaveLength(1)
    expect(page).toContain('&lt;script&gt;window.pwned=1&lt;/script&gt;')
    expect(page).toContain('bad &quot;&lt;script&gt;')
    expect(escapeHtml(`<a href='x'>&</a>`)).toBe('&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;')
  })

  it('says why it is not ready and how long Consul has been away; refresh can be turned off', () => {
    const stale = status({ staleForMs: 95_000 })
    const page = renderStatusPage(
      model(table, {
        readiness: readiness(stale, 60_000, table.generation),
        watches: { total: 3, failing: ['services', 'targets'] },
        refreshSeconds: 0,
      }),
    )
    expect(page).toContain(
      'id="ready" title="Consul unreachable for 95s (limit 60s); serving the last table">Not ready',
    )
    expect(page).toContain('title="failing: services, targets">Consul unreachable for 1m 35s')
    expect(page).toContain('<title>(not ready) Switchyard status</title>')
    expect(page).not.toContain('<script')
    expect(page).not.toContain('http-equiv="refresh"')
  })

  it('shows no green Ready badge beside a target that is not ready or a route with nothing serving', () => {
    const stuck = buildRouteTable(
      catalogOf([
        instance('shop', ['urlprefix-/shop'], { id: 'shop-a', meta: { version: '1.5.0' } }),
        instance('lone', ['urlprefix-/lone'], {
          id: 'lone-1',
          checks: [{ id: 'ttl', name: 'ttl', status: 'critical', serviceId: 'lone-1' }],
        }),
      ]),
      [target('shop', { version: '2.0.0' })],
      BUILD,
    ).table
    const page = renderStatusPage(model(stuck))
    expect(page).toContain(
      '<span class="badge warn" id="ready" title="the proxy serves (/ready is 200), but not everything is">Ready, 1 target not ready, 1 route with no serving instance</span>',
    )
    expect(page).not.toContain('class="badge ok" id="ready"')
    expect(page).toContain('<span class="badge bad">0 of 1 serving</span>')
  })

  it('names the cause of not being ready and since when', () => {
    const since = NOW - 42_000
    const failing = (name: string, code: string, message: string) => ({
      name,
      index: 0,
      requests: 3,
      errors: 3,
      consecutiveErrors: 3,
      lastSuccessAt: 0,
      failingSince: since,
      lastError: Object.assign(new Error(message), { code }),
    })
    const denied = readiness(
      status({
        loaded: false,
        startedAt: NOW - 60_000,
        watches: [
          failing('services', 'SWY_ERR_CONSUL_UNREACHABLE', 'Consul at http://c:8500 unreachable: ETIMEDOUT'),
          failing(
            'targets',
            'SWY_ERR_CONSUL_PERMISSION',
            'token cannot read key prefix switchyard/targets/: 403 Permission denied',
          ),
        ],
      }),
      60_000,
      0,
    )
    expect(denied).toMatchObject({
      ready: false,
      reason:
        'no routing table yet: the token lacks a permission (see config/acl/switchyard-proxy.hcl): token cannot read key prefix switchyard/targets/: 403 Permission denied (watch targets, failing since 2030-01-02T03:03:23.000Z)',
      since: '2030-01-02T03:03:23.000Z',
      cause: { code: 'SWY_ERR_CONSUL_PERMISSION', watch: 'targets' },
    })
    const waiting = readiness(status({ loaded: false, startedAt: NOW - 5_000 }), 60_000, 0)
    expect(waiting.reason).toBe(
      'no routing table yet: waiting for the first complete read of Consul (since 2030-01-02T03:04:00.000Z)',
    )
    const away = readiness(
      status({
        staleForMs: 95_000,
        watches: [
          failing(
            'services',
            'SWY_ERR_CONSUL_UNREACHABLE',
            'Consul at http://c:8500 unreachable: ECONNREFUSED',
          ),
        ],
      }),
      60_000,
      7,
    )
    expect(away.reason).toBe(
      'Consul unreachable for 95s (limit 60s): Consul at http://c:8500 unreachable: ECONNREFUSED (watch services, since 2030-01-02T03:03:23.000Z); serving the last table',
    )
    const page = renderStatusPage(model(table, { readiness: denied }))
    expect(page).toContain('403 Permission denied (watch targets, failing since 2030-01-02T03:03:23.000Z)')
    expect(page).toContain('<span class="since" title="2030-01-02T03:03:23.000Z">(42s ago)</span>')
  })

  it('formats ages', () => {
    expect(ago(0)).toBe('0s ago')
    expect(ago(59_400)).toBe('59s ago')
    expect(ago(3_599_000, false)).toBe('59m 59s')
    expect(ago(7_380_000)).toBe('2h 3m ago')
    expect(ago(90_000_000)).toBe('1d 1h ago')
  })
})

describe('ProblemTracker', () => {
  function fakeClock(start: number): Clock & { t: number } {
    return {
      t: start,
      now() {
        return this.t
      },
      sleep: async () => {},
    }
  }

  it('keeps the time a problem was first seen until it goes away', () => {
    const clock = fakeClock(NOW)
    const store = new TableStore(clock)
    let sync = status()
    const tracker = new ProblemTracker(store, () => sync, { clock })
    const bad = instance('bad', ['urlprefix-/a strip=x'], { id: 'bad-1' })
    const swap = (next: RouteTable) => store.swap(next)

    swap(buildRouteTable(catalogOf([bad]), [], BUILD, store.current).table)
    clock.t += 30_000
    swap(buildRouteTable(catalogOf([bad, instance('ok', ['urlprefix-/ok'])]), [], BUILD, store.current).table)
    clock.t += 30_000
    const [tag] = tracker.current()
    expect(tag).toMatchObject({
      code: 'SWY_ERR_TAG_SYNTAX',
      source: 'table',
      since: new Date(NOW).toISOString(),
    })

    // A failing watch dates from its first failure; a filtered answer from when it was first seen.
    sync = status({
      watches: [
        {
          name: 'services',
          index: 1,
          requests: 9,
          errors: 4,
          consecutiveErrors: 4,
          lastSuccessAt: NOW,
          failingSince: NOW + 1000,
          lastError: new Error('connect ECONNREFUSED'),
        },
      ],
      problems: [
        { code: 'SWY_ERR_CONSUL_UNREACHABLE', subject: 'watch services', message: 'connect ECONNREFUSED' },
        { code: 'SWY_ERR_CONSUL_PERMISSION', subject: 'watch health:x', message: 'filtered' },
      ],
    })
    const views = tracker.current()
    expect(views.map((p) => [p.code, p.source, p.since])).toEqual([
      ['SWY_ERR_CONSUL_UNREACHABLE', 'consul', new Date(NOW + 1000).toISOString()],
      ['SWY_ERR_CONSUL_PERMISSION', 'consul', new Date(NOW + 60_000).toISOString()],
      ['SWY_ERR_TAG_SYNTAX', 'table', new Date(NOW).toISOString()],
    ])

    // Gone, then back: a new since.
    sync = status()
    swap(buildRouteTable(catalogOf([]), [], BUILD, store.current).table)
    expect(tracker.current()).toEqual([])
    clock.t += 10_000
    swap(buildRouteTable(catalogOf([bad]), [], BUILD, store.current).table)
    expect(tracker.current()[0]?.since).toBe(new Date(NOW + 70_000).toISOString())
  })
})
