// What an operator sees of the certificates: the expiry gauge, problems in
// /api/problems and switchyard_problems, the status page section.

import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { describe, expect, it } from 'vitest'
import { ProblemTracker } from '../../src/admin/problems.js'
import { createAdminServer } from '../../src/admin/server.js'
import { renderStatusPage } from '../../src/admin/status-page.js'
import { readiness } from '../../src/admin/views.js'
import { expositionText } from '../../src/metrics/families.js'
import { SwitchyardMetrics } from '../../src/metrics/metrics.js'
import { TableStore } from '../../src/table/store.js'
import type { SyncStatus } from '../../src/table/sync.js'
import type { CertificateReport, CertificateView } from '../../src/tls/store.js'

const NOW = Date.parse('2030-01-02T03:04:05Z')
const status = (): SyncStatus => ({ loaded: true, staleForMs: 0, lastSyncAt: NOW, watches: [], problems: [] })

function view(over: Partial<CertificateView>): CertificateView {
  return {
    source: 'consul',
    name: 'switchyard/certs/web',
    subject: 'CN=web.example.test',
    issuer: 'CN=Test CA\nO=Tests',
    hosts: ['web.example.test'],
    serving: ['web.example.test'],
    default: false,
    notBefore: '2029-12-01T00:00:00.000Z',
    notAfter: '2030-03-01T00:00:00.000Z',
    fingerprint256: 'AA:BB',
    ...over,
  }
}

const badKey = {
  code: 'SWY_ERR_CERTIFICATE' as const,
  subject: 'key switchyard/certs/old',
  message: 'expired on 2029-12-31T00:00:00Z (old.example.test)',
}

describe('certificate metrics', () => {
  it('one expiry series per name served, with its source; names no longer served disappear', async () => {
    let report: CertificateReport = {
      certificates: [
        view({
          hosts: ['web.example.test', 'www.example.test'],
          serving: ['web.example.test', 'www.example.test'],
        }),
        view({
          source: 'file',
          name: '/etc/certs/wild.pem',
          hosts: ['*.example.test', 'web.example.test'],
          serving: ['*.example.test'],
          notAfter: '2030-01-10T00:00:00.000Z',
        }),
      ],
      problems: [badKey],
    }
    const metrics = new SwitchyardMetrics({
      store: new TableStore(),
      status,
      defaultMetrics: false,
      certificates: () => report,
    })
    const series = async () => {
      const text = expositionText((await metrics.text()).body)
      return text.split('\n').filter((l) => /^switchyard_(certificate|problems)/.test(l))
    }
    const march = Date.parse('2030-03-01T00:00:00Z') / 1000
    const jan10 = Date.parse('2030-01-10T00:00:00Z') / 1000
    expect(await series()).toEqual([
      `switchyard_problems{code="SWY_ERR_CERTIFICATE"} 1`,
      `switchyard_certificate_not_after_seconds{host="web.example.test",source="consul"} ${march}`,
      `switchyard_certificate_not_after_seconds{host="www.example.test",source="consul"} ${march}`,
      `switchyard_certificate_not_after_seconds{host="*.example.test",source="file"} ${jan10}`,
    ])

    report = { certificates: [view({})], problems: [] }
    expect(await series()).toEqual([
      `switchyard_certificate_not_after_seconds{host="web.example.test",source="consul"} ${march}`,
    ])
  })
})

describe('certificate problems and the status page', () => {
  it('lists certificate problems with the others, as source "certificates"', () => {
    const tracker = new ProblemTracker(new TableStore(), status, {
      clock: { now: () => NOW, sleep: async () => {} },
      certificates: () => [badKey],
    })
    expect(tracker.current()).toEqual([
      { ...badKey, source: 'certificates', since: new Date(NOW).toISOString() },
    ])
  })

  it('shows each certificate with its names, source and expiry, warns under 14 days, and lists what is set aside', () => {
    const page = renderStatusPage({
      now: NOW,
      readiness: readiness(status(), 60_000, 1),
      swappedAt: NOW,
      routes: [],
      targets: [],
      problems: [],
      certificates: {
        certificates: [
          view({ default: true }),
          view({
            source: 'file',
            name: '/etc/certs/<b>soon</b>.pem',
            subject: 'CN=<script>x</script>',
            hosts: ['soon.example.test', 'web.example.test'],
            serving: ['soon.example.test'],
            notAfter: '2030-01-10T03:04:05.000Z',
          }),
        ],
        problems: [badKey],
      },
      watches: { total: 1, failing: [] },
      refreshSeconds: 0,
      nonce: 'n',
    })
    const section = page.slice(
      page.indexOf('<section id="certificates">'),
      page.indexOf('<section id="routes">'),
    )
    expect(section).toContain('Certificates <span class="count">2</span>')
    expect(section).toContain('web.example.test <span class="badge ok">default</span>')
    expect(section).toContain('<span class="muted">key</span> <code>switchyard/certs/web</code>')
    expect(section).toContain('2030-03-01 <span class="muted">in 57d 20h</span>')
    expect(section).toContain('2030-01-10 <span class="badge warn">in 8d 0h</span>')
    expect(section).toContain('also web.example.test')
    expect(section).toContain('issuer CN=Test CA, O=Tests')
    expect(section).toContain('<code>/etc/certs/&lt;b&gt;soon&lt;/b&gt;.pem</code>')
    expect(section).toContain('CN=&lt;script&gt;x&lt;/script&gt;')
    expect(section).toContain(
      '<span class="state bad">not served</span> expired on 2029-12-31T00:00:00Z (old.example.test)',
    )
    expect(section).toContain('key switchyard/certs/old')
  })

  it('has no certificate section where no certificates are served and none is wanted', () => {
    const page = renderStatusPage({
      certificates: { certificates: [], problems: [] },
      now: NOW,
      readiness: readiness(status(), 60_000, 1),
      swappedAt: NOW,
      routes: [],
      targets: [],
      problems: [],
      watches: { total: 1, failing: [] },
      refreshSeconds: 0,
      nonce: 'n',
    })
    expect(page).not.toContain('id="certificates"')
  })
})

describe('admin API', () => {
  it('/api/certificates lists what is served and set aside; /api/problems includes the latter', async () => {
    const report: CertificateReport = { certificates: [view({ default: true })], problems: [badKey] }
    const admin = createAdminServer({
      store: new TableStore(),
      status,
      readinessMaxStaleMs: 60_000,
      config: {},
      certificates: () => report,
    })
    admin.listen(0, '127.0.0.1')
    await once(admin, 'listening')
    const base = `http://127.0.0.1:${(admin.address() as AddressInfo).port}`
    try {
      const certificates = await (await fetch(`${base}/api/certificates`)).json()
      expect(certificates).toEqual(report)
      const problems = (await (await fetch(`${base}/api/problems`)).json()) as { source: string }[]
      expect(problems).toEqual([{ ...badKey, source: 'certificates', since: expect.any(String) }])
      const page = await (await fetch(`${base}/`)).text()
      expect(page).toContain('<section id="certificates">')
    } finally {
      admin.close()
    }
  })

  it('/api/certificates is empty where no certificates are served', async () => {
    const admin = createAdminServer({
      store: new TableStore(),
      status,
      readinessMaxStaleMs: 60_000,
      config: {},
    })
    admin.listen(0, '127.0.0.1')
    await once(admin, 'listening')
    try {
      const res = await fetch(`http://127.0.0.1:${(admin.address() as AddressInfo).port}/api/certificates`)
      expect(await res.json()).toEqual({ certificates: [], problems: [] })
    } finally {
      admin.close()
    }
  })
})
