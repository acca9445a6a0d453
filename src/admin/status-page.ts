// The status page at the admin root: a person's view of the JSON API, rendered
// on the server as plain HTML with inline CSS (no build step, nothing loaded
// from elsewhere). A few lines of inline script re-fetch the page and swap its
// content in place, so it refreshes itself without losing the scroll position;
// without script a <noscript> meta refresh does the same.
//
// Service names, tags, versions and problem texts come from Consul, that is
// from whoever can register a service: every interpolated value is escaped by
// the `html` template below unless it is itself already-built HTML, and the
// page's Content-Security-Policy only lets the page's own script (by nonce) run.

import type { CertificateReport } from '../tls/store.js'
import type { ProblemView } from './problems.js'
import type { VersionTrafficView } from './version-traffic.js'
import type { ReadinessView, RouteView, TargetView } from './views.js'

export interface StatusPageModel {
  /** Milliseconds since the epoch, the moment rendered. */
  readonly now: number
  readonly readiness: ReadinessView
  /** When the table in use was swapped in; 0 before the first. */
  readonly swappedAt: number
  readonly routes: readonly RouteView[]
  readonly targets: readonly TargetView[]
  /** Per service, each version's success rate and latency; absent without metrics. */
  readonly traffic?: ReadonlyMap<string, readonly VersionTrafficView[]>
  readonly problems: readonly ProblemView[]
  /** TLS certificates; no section when there are none and no problem with them. */
  readonly certificates?: CertificateReport
  readonly watches: { readonly total: number; readonly failing: readonly string[] }
  /** Seconds between refreshes; 0 turns refreshing off. */
  readonly refreshSeconds: number
  /** CSP nonce of the inline script. */
  readonly nonce: string
}

class Html {
  readonly text: string
  constructor(text: string) {
    this.text = text
  }
}

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c] as string)
}

function toHtml(value: unknown): string {
  if (value instanceof Html) return value.text
  if (Array.isArray(value)) return value.map(toHtml).join('')
  if (value === null || value === undefined || value === false) return ''
  return escapeHtml(String(value))
}

/** Template tag: interpolated values are escaped unless they are Html already. */
function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  let out = strings[0] ?? ''
  values.forEach((value, i) => {
    out += toHtml(value) + (strings[i + 1] ?? '')
  })
  return new Html(out)
}

export function renderStatusPage(m: StatusPageModel): string {
  const serving = m.routes.reduce((n, r) => n + r.serving, 0)
  // /ready only says whether this proxy can serve; the page's badge must not
  // look all-green while a cutover is stuck or a route has nothing to send to.
  const stuck = m.targets.filter((t) => !t.ready).length
  const empty = m.routes.filter((r) => r.serving === 0).length
  const degraded = [
    stuck > 0 ? `${stuck} ${stuck === 1 ? 'target' : 'targets'} not ready` : '',
    empty > 0 ? `${empty} ${empty === 1 ? 'route' : 'routes'} with no serving instance` : '',
  ].filter((s) => s !== '')
  const instances = m.routes.reduce((n, r) => n + r.instances.length, 0)
  const effective = new Map(m.targets.map((t) => [t.service, t]))
  const title = `${m.readiness.ready ? '' : '(not ready) '}Switchyard status`
  const page = html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title}</title>
${m.refreshSeconds > 0 ? html`<noscript><meta http-equiv="refresh" content="${m.refreshSeconds}"></noscript>` : ''}
<style>${new Html(CSS)}</style>
</head>
<body>
<div id="lost" hidden></div>
<main data-generation="${m.readiness.generation}">
<header>
  <h1>Switchyard</h1>
  <div class="facts">
    ${
      !m.readiness.ready
        ? html`<span class="badge bad" id="ready" title="${m.readiness.reason}">Not ready</span>`
        : degraded.length > 0
          ? html`<span class="badge warn" id="ready" title="the proxy serves (/ready is 200), but not everything is">Ready, ${degraded.join(', ')}</span>`
          : html`<span class="badge ok" id="ready">Ready</span>`
    }
    ${consulFact(m)}
    <span>table generation <b>${m.readiness.generation}</b>${m.swappedAt > 0 ? html`, changed <span title="${iso(m.swappedAt)}">${ago(m.now - m.swappedAt)}</span>` : ''}</span>
    <span><b>${m.routes.length}</b> routes, <b>${serving}</b> of ${instances} instances serving</span>
    <span class="muted">updated ${iso(m.now).slice(11, 19)} UTC${m.refreshSeconds > 0 ? `, every ${m.refreshSeconds}s` : ''}</span>
  </div>
  ${
    m.readiness.ready
      ? ''
      : html`<p class="reason" id="reason">${m.readiness.reason}${m.readiness.since ? html` <span class="since" title="${m.readiness.since}">(${ago(m.now - Date.parse(m.readiness.since))})</span>` : ''}</p>`
  }
</header>

<section id="targets">
  <h2>Targets</h2>
  ${targetsTable(m)}
</section>

<section id="problems">
  <h2>Problems <span class="count">${m.problems.length}</span></h2>
  ${problemsTable(m)}
</section>

${m.certificates && (m.certificates.certificates.length > 0 || m.certificates.problems.length > 0) ? certificatesSection(m, m.certificates) : ''}
<section id="routes">
  <h2>Routes <span class="count">${m.routes.length}</span></h2>
  ${m.routes.length === 0 ? html`<p class="muted">No routes: no healthy or unhealthy instance carries a route tag.</p>` : ''}
  ${m.routes.map((r) => routeBlock(r, effective))}
</section>
</main>
${m.refreshSeconds > 0 ? html`<script nonce="${m.nonce}">${new Html(refreshScript(m.refreshSeconds))}</script>` : ''}
</body>
</html>
`
  return page.text
}

function consulFact(m: StatusPageModel): Html {
  const { readiness, watches } = m
  if (readiness.staleForMs > 0) {
    const failing = watches.failing.join(', ')
    return html`<span class="badge bad" id="consul" title="failing: ${failing}">Consul unreachable for ${ago(readiness.staleForMs, false)}</span>`
  }
  if (readiness.generation === 0)
    return html`<span class="badge warn" id="consul">Consul: first read pending</span>`
  return html`<span class="badge ok" id="consul">Consul in sync (${watches.total} watches)</span>`
}

function targetsTable(m: StatusPageModel): Html {
  const withKey = new Set(m.targets.map((t) => t.service))
  const without = [...new Set(m.routes.flatMap((r) => r.services))].filter((s) => !withKey.has(s)).sort()
  if (m.targets.length === 0 && without.length === 0) return html`<p class="muted">No services.</p>`
  return html`<table class="targets">
<thead><tr><th>Service</th><th>Desired</th><th>Effective</th><th>State</th><th>Traffic by version</th></tr></thead>
<tbody>
${m.targets.map(
  (t) => html`<tr data-service="${t.service}">
  <td class="name">${t.service}</td>
  <td><code>${t.desired}</code></td>
  <td><code>${t.effective}</code></td>
  <td>${t.ready ? html`<span class="state serving">live</span>` : html`<span class="state bad">not ready</span> ${t.reason}`}
  ${t.rollout === null ? '' : html`<div class="rollout">rollout to <b>${t.rollout.to}</b>: ${t.rollout.summary}${t.rollout.message ? html` <span class="muted">&middot; ${t.rollout.message}</span>` : ''}</div>`}</td>
  <td>${versionTraffic(m.traffic?.get(t.service))}</td>
</tr>`,
)}
${without.map(
  (s) => html`<tr data-service="${s}">
  <td class="name">${s}</td>
  <td class="muted">no key</td>
  <td><code>all</code></td>
  <td><span class="state serving">live</span> <span class="muted">every healthy instance</span></td>
  <td>${versionTraffic(m.traffic?.get(s))}</td>
</tr>`,
)}
</tbody>
</table>`
}

/** One line per version: success rate, p99 and rate over the last minute (else since start). */
function versionTraffic(versions: readonly VersionTrafficView[] | undefined): Html {
  if (versions === undefined || versions.length === 0)
    return html`<span class="muted">no versioned traffic</span>`
  return html`${versions.map((v) => {
    const r = v.recent
    const requests = r?.requests ?? v.requests
    const success = r !== null ? r.successRate : v.successRate
    const p99 = r !== null ? r.p99Ms : v.p99Ms
    const when = r !== null ? `last ${r.seconds}s, ${r.requestsPerSecond} req/s` : 'since start'
    return html`<div class="traffic" data-version="${v.version}"><code>${v.version}</code> ${
      requests === 0
        ? html`<span class="muted">no requests (${when})</span>`
        : html`<b>${success === null ? '–' : `${Number((success * 100).toFixed(2))}%`}</b> ok &middot; p99 <b>${p99 === null ? '–' : `${p99} ms`}</b> <span class="muted">&middot; ${requests} requests, ${when}</span>`
    }</div>`
  })}`
}

function problemsTable(m: StatusPageModel): Html {
  if (m.problems.length === 0) return html`<p class="muted">None.</p>`
  return html`<table class="problems">
<thead><tr><th>Since</th><th>Code</th><th>About</th><th>Problem</th></tr></thead>
<tbody>
${m.problems.map(
  (p) => html`<tr>
  <td class="nowrap" title="${p.since}">${ago(m.now - Date.parse(p.since))}</td>
  <td class="nowrap"><code>${p.code}</code></td>
  <td>${p.subject}</td>
  <td>${p.message}</td>
</tr>`,
)}
</tbody>
</table>`
}

/** Certificates expiring sooner than this are flagged (the alert rule uses the same 14 days). */
const EXPIRY_WARNING_MS = 14 * 86_400_000

function certificatesSection(m: StatusPageModel, report: CertificateReport): Html {
  const rows = report.certificates.map((c) => {
    const left = Date.parse(c.notAfter) - m.now
    const unserved = c.hosts.filter((h) => !c.serving.includes(h))
    return html`<tr data-certificate="${c.name}">
  <td>${c.serving.join(', ')}${c.default ? html` <span class="badge ok">default</span>` : ''}${
    unserved.length > 0
      ? html`<div class="muted" title="a certificate that expires later serves these">also ${unserved.join(', ')}</div>`
      : ''
  }</td>
  <td>${c.subject.replace(/\n/g, ', ')}<div class="muted">issuer ${c.issuer.replace(/\n/g, ', ')}</div></td>
  <td><span class="muted">${c.source === 'file' ? 'file' : 'key'}</span> <code>${c.name}</code></td>
  <td class="nowrap" title="${c.notAfter}">${c.notAfter.slice(0, 10)} <span class="${left < EXPIRY_WARNING_MS ? 'badge warn' : 'muted'}">in ${ago(left, false)}</span></td>
</tr>`
  })
  const setAside = report.problems.map(
    (p) => html`<tr class="rejected">
  <td colspan="2"><span class="state bad">not served</span> ${p.message}</td>
  <td colspan="2">${p.subject}</td>
</tr>`,
  )
  return html`<section id="certificates">
  <h2>Certificates <span class="count">${report.certificates.length}</span></h2>
  <table class="certificates">
<thead><tr><th>Host names served</th><th>Subject</th><th>Source</th><th>Expires</th></tr></thead>
<tbody>
${rows}
${setAside}
</tbody>
</table>
</section>
`
}

type InstanceView = RouteView['instances'][number]

function routeBlock(r: RouteView, targets: ReadonlyMap<string, TargetView>): Html {
  const versions = new Map<string, InstanceView[]>()
  for (const i of [...r.instances].sort(byVersionThenId)) {
    const list = versions.get(i.version) ?? []
    if (list.length === 0) versions.set(i.version, list)
    list.push(i)
  }
  const state = r.serving > 0 ? 'ok' : 'bad'
  return html`<article class="route" data-route="${r.id}">
<h3><code>${r.id}</code> <span class="arrow">&rarr;</span> ${r.services.join(', ')}
  <span class="badge ${state}">${r.serving} of ${r.instances.length} serving</span>
  ${r.match === 'prefix' ? html`<span class="muted">raw prefix</span>` : ''}</h3>
<table class="instances">
<colgroup><col style="width:22%"><col style="width:15%"><col style="width:14%"><col style="width:27%"><col style="width:7%"><col style="width:15%"></colgroup>
<thead><tr><th>Instance</th><th>Address</th><th>Node</th><th>State</th><th class="num">Share</th><th>Options</th></tr></thead>
${[...versions].map(([version, list]) => {
  const share = list.reduce((n, i) => n + i.weight, 0)
  const live = list.filter((i) => i.state === 'serving').length
  return html`<tbody data-version="${version}">
<tr class="version"><th colspan="6">${version === '' ? html`<span class="muted">no version</span>` : html`version <b>${version}</b>`}
  <span class="muted">&middot; ${live} of ${list.length} serving &middot; ${percent(share)} of traffic</span></th></tr>
${list.map(
  (i) => html`<tr class="${i.state}">
  <td>${i.id}</td>
  <td><code>${i.address}</code></td>
  <td>${i.node}</td>
  <td><span class="state ${i.state}">${i.state}</span> ${stateReason(i, targets)}</td>
  <td class="num">${percent(i.weight)}</td>
  <td><code>${i.options}</code></td>
</tr>`,
)}
</tbody>`
})}
</table>
</article>`
}

function stateReason(i: InstanceView, targets: ReadonlyMap<string, TargetView>): string {
  switch (i.state) {
    case 'serving':
      return ''
    case 'unhealthy':
      return 'health check failing'
    case 'maintenance':
      return 'maintenance mode'
    case 'zero-weight':
      return 'weight 0'
    case 'not-selected':
      return `not in target ${targets.get(i.service)?.effective ?? ''}`.trim()
    case 'match-only':
      return 'gets only the requests a match rule of the target sends to its version'
  }
}

function byVersionThenId(a: InstanceView, b: InstanceView): number {
  if (a.version !== b.version) return a.version < b.version ? 1 : -1
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0
}

function percent(weight: number): string {
  const p = weight * 100
  return p === 0 ? '0%' : p < 1 ? `${p.toFixed(2)}%` : `${Number(p.toFixed(1))}%`
}

function iso(ms: number): string {
  return new Date(ms).toISOString()
}

/** `42s ago`, `3m 5s ago`, `2h 4m ago`. */
export function ago(ms: number, suffix = true): string {
  const s = Math.max(0, Math.round(ms / 1000))
  const text =
    s < 60
      ? `${s}s`
      : s < 3600
        ? `${Math.floor(s / 60)}m ${s % 60}s`
        : s < 86_400
          ? `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`
          : `${Math.floor(s / 86_400)}d ${Math.floor((s % 86_400) / 3600)}h`
  return suffix ? `${text} ago` : text
}

function refreshScript(seconds: number): string {
  // Swaps <main> for the fresh page's; a failed fetch shows a banner instead of stale silence.
  return `(() => {
  const lost = document.getElementById('lost')
  setInterval(async () => {
    try {
      const res = await fetch(location.href, { cache: 'no-store' })
      if (!res.ok && res.status !== 503) throw new Error('HTTP ' + res.status)
      const doc = new DOMParser().parseFromString(await res.text(), 'text/html')
      const main = doc.querySelector('main')
      if (!main) throw new Error('no content')
      document.querySelector('main').replaceWith(document.adoptNode(main))
      document.title = doc.title
      lost.hidden = true
    } catch (err) {
      if (lost.hidden) lost.textContent = 'Lost contact with Switchyard at ' + new Date().toLocaleTimeString() + ' (' + err.message + '); showing the last answer.'
      lost.hidden = false
    }
  }, ${seconds * 1000})
})()`
}

const CSS = `
:root { --ok: #1a7f37; --ok-bg: #dafbe1; --bad: #c62828; --bad-bg: #ffebe9; --warn: #9a6700; --warn-bg: #fff8c5;
  --muted: #57606a; --line: #d0d7de; --head: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1f2328; background: #fff; }
main { max-width: 1280px; margin: 0 auto; padding: 12px 20px 40px; }
header { border-bottom: 1px solid var(--line); padding-bottom: 10px; margin-bottom: 8px; }
h1 { font-size: 20px; margin: 4px 0 8px; }
h2 { font-size: 16px; margin: 22px 0 8px; }
h3 { font-size: 14px; font-weight: 600; margin: 16px 0 6px; }
.facts { display: flex; flex-wrap: wrap; gap: 6px 18px; align-items: center; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; }
.badge.ok { color: var(--ok); background: var(--ok-bg); }
.badge.bad { color: var(--bad); background: var(--bad-bg); }
.badge.warn { color: var(--warn); background: var(--warn-bg); }
.count { color: var(--muted); font-weight: normal; }
.muted { color: var(--muted); }
.reason { color: var(--bad); margin: 6px 0 0; }
.reason .since { color: var(--muted); }
.arrow { color: var(--muted); }
code { font: 12.5px/1.4 ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; overflow-wrap: anywhere; }
table { border-collapse: collapse; width: 100%; }
table.instances { table-layout: fixed; }
td { overflow-wrap: anywhere; }
th, td { text-align: left; padding: 3px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
thead th { background: var(--head); font-weight: 600; font-size: 12px; color: var(--muted); }
tr.version th { background: #fbfcfd; font-weight: normal; border-top: 1px solid var(--line); }
td.num, th.num { text-align: right; white-space: nowrap; }
td.nowrap { white-space: nowrap; overflow-wrap: normal; }
td.name { font-weight: 600; }
.state { font-weight: 600; }
.state.serving { color: var(--ok); }
.state.bad, .state.unhealthy { color: var(--bad); }
.state.maintenance { color: var(--warn); }
.state.not-selected, .state.zero-weight, .state.match-only { color: var(--muted); }
tr.unhealthy td, tr.maintenance td, tr.not-selected td, tr.zero-weight td { color: #4b535c; }
article.route { margin-bottom: 18px; }
.rollout { margin-top: 2px; }
.traffic { white-space: nowrap; }
#lost { position: sticky; top: 0; background: var(--bad-bg); color: var(--bad); padding: 6px 20px; font-weight: 600; }
`
