// The status page in a real headless browser (Debian's chromium driven by
// playwright-core; nothing is downloaded): it shows the routes and their
// versions, follows a cutover made in KV by refreshing itself, shows names
// from Consul as text (never as markup), and leaves a screenshot in
// test-results/status-page.png.
// biome-ignore-all lint/performance/useDomNodeTextContent: Locator.innerText is Playwright's, the text a person sees

import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type BrowserContext, chromium, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConsulApi } from '../harness/consul-api.js'
import { describeWithConsul } from '../harness/context.js'
import { startTestProxy, type TestProxy } from '../harness/switchyard.js'
import { startUpstream, type Upstream } from '../harness/upstream.js'
import { eventually, uniqueName } from '../harness/wait.js'

const CHROMIUM = '/usr/bin/chromium'
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]
const SCREENSHOT = new URL('../../test-results/status-page.png', import.meta.url).pathname
const missing = existsSync(CHROMIUM) ? '' : `${CHROMIUM} is not installed (apt-get install -y chromium)`

if (missing !== '' && process.env.CI !== 'true') {
  describe.skip(`status page in a browser (skipped: ${missing})`, () => {})
} else {
  describeWithConsul('status page in a browser', (consul) => {
    const api = new ConsulApi(consul)
    const prefix = `${uniqueName('sp')}-`
    const targetPrefix = `switchyard/targets/${uniqueName('status')}`
    const shop = uniqueName('shop')
    const evil = `evil-${uniqueName('x')}<script>window.pwnedByName=1</script>`
    const evilVersion = '<script>window.pwned=1</script>'
    const ids = [`${shop}-a`, `${shop}-b`, `${shop}-c`, 'evil-1']
    const upstreams: Upstream[] = []
    const profile = mkdtempSync(join(tmpdir(), 'switchyard-chromium-'))
    let proxy: TestProxy
    let context: BrowserContext
    let page: Page

    beforeAll(async () => {
      if (missing !== '') throw new Error(`${missing}; CI=true, so the browser test must run`)
      upstreams.push(await startUpstream('a'), await startUpstream('b'), await startUpstream('c'))
      const versions = ['1.5.0', '1.6.0', '1.6.0']
      for (const [i, id] of ids.slice(0, 3).entries()) {
        await api.register({
          id,
          name: shop,
          port: upstreams[i]!.port,
          tags: [`${prefix}/shop`, `${prefix}shop.example.com/`],
          meta: { version: versions[i]! },
        })
      }
      await api.register({
        id: 'evil-1',
        name: evil,
        port: upstreams[0]!.port,
        tags: [`${prefix}/evil note=<img src=x onerror="window.pwnedByTag=1">`],
        meta: { version: evilVersion },
      })
      await api.kvPut(`${targetPrefix}/${shop}`, JSON.stringify({ version: '1.5.0' }))
      proxy = await startTestProxy(consul, { routing: { tagPrefix: prefix, targetPrefix } })
      await eventually(async () => {
        const routes = JSON.parse((await proxy.admin('/api/routes')).body) as { id: string }[]
        expect(routes.map((r) => r.id)).toContain('/evil')
      })
      context = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        args: ARGS,
        headless: true,
        viewport: { width: 1366, height: 900 },
      })
      page = context.pages()[0] ?? (await context.newPage())
    })

    afterAll(async () => {
      await context?.close()
      rmSync(profile, { recursive: true, force: true })
      await proxy?.stop()
      for (const id of ids) await api.deregister(id).catch(() => {})
      await api.kvDelete(`${targetPrefix}/${shop}`).catch(() => {})
      await Promise.all(upstreams.map((u) => u.close()))
    })

    function route(id: string) {
      return page.locator(`article[data-route="${id}"]`)
    }

    it('shows the routes with their instances per version and the target', async () => {
      await page.goto(`${proxy.app.adminUrl}/?refresh=1`)
      expect(await page.title()).toBe('Switchyard status')
      await expect.poll(() => route('/shop').isVisible()).toBe(true)
      expect(await route('shop.example.com/').isVisible()).toBe(true)
      const shopRoute = route('/shop')
      expect(await shopRoute.locator('h3').innerText()).toContain(`1 of 3 serving`)
      expect(await shopRoute.locator('tbody[data-version="1.5.0"] tr.serving').count()).toBe(1)
      expect(await shopRoute.locator('tbody[data-version="1.6.0"] tr.not-selected').count()).toBe(2)
      expect(await shopRoute.locator('tbody[data-version="1.6.0"]').innerText()).toContain(
        'not in target version=1.5.0',
      )
      const target = page.locator(`#targets tr[data-service="${shop}"]`)
      expect(await target.innerText()).toMatch(/version=1\.5\.0\s+version=1\.5\.0\s+live/)
      expect(await page.locator('#ready').innerText()).toBe('Ready')
      expect(await page.locator('#consul').innerText()).toMatch(/Consul in sync/)
    })

    it('follows a cutover written to KV by refreshing itself', async () => {
      const generation = Number(await page.locator('main').getAttribute('data-generation'))
      await api.kvPut(`${targetPrefix}/${shop}`, JSON.stringify({ version: '1.6.0' }))
      // No reload from the test: the page's own refresh must bring the change.
      await expect
        .poll(() => page.locator(`#targets tr[data-service="${shop}"]`).innerText(), { timeout: 10_000 })
        .toMatch(/version=1\.6\.0\s+version=1\.6\.0\s+live/)
      const shopRoute = route('/shop')
      expect(await shopRoute.locator('tbody[data-version="1.6.0"] tr.serving').count()).toBe(2)
      expect(await shopRoute.locator('tbody[data-version="1.5.0"] tr.not-selected').count()).toBe(1)
      expect(await shopRoute.locator('h3').innerText()).toContain('2 of 3 serving')
      expect(await shopRoute.locator('tbody[data-version="1.6.0"] tr.version').innerText()).toContain(
        '100% of traffic',
      )
      expect(Number(await page.locator('main').getAttribute('data-generation'))).toBeGreaterThan(generation)
    })

    it('shows names, versions and tags from Consul as text, never as markup', async () => {
      const evilRoute = route('/evil')
      expect(await evilRoute.locator('h3').innerText()).toContain(evil)
      expect(await evilRoute.innerText()).toContain(`version ${evilVersion}`)
      expect(await page.locator('#problems').innerText()).toContain(
        '<img src=x onerror="window.pwnedByTag=1">',
      )
      expect(await page.locator('main script, main img').count()).toBe(0)
      // Page-side expressions are strings: this project's TypeScript has no DOM types.
      const flags = await page.evaluate<string[]>(
        '[typeof window.pwned, typeof window.pwnedByName, typeof window.pwnedByTag]',
      )
      expect(flags).toEqual(['undefined', 'undefined', 'undefined'])
    })

    it('is readable on a laptop screen; the screenshot is kept in test-results/', async () => {
      // Nothing wider than the viewport: no sideways scrolling at 1366 px.
      const overflow = await page.evaluate<number>('document.documentElement.scrollWidth - window.innerWidth')
      expect(overflow).toBeLessThanOrEqual(0)
      const fontSize = await page.evaluate<number>('parseFloat(getComputedStyle(document.body).fontSize)')
      expect(fontSize).toBeGreaterThanOrEqual(13)
      mkdirSync(join(SCREENSHOT, '..'), { recursive: true })
      await page.screenshot({ path: SCREENSHOT, fullPage: true })
      expect(existsSync(SCREENSHOT)).toBe(true)
    })
  })
}
