/**
 * The retention API over HTTP on the real app, on both deployments
 * (embedded: fs, SQLite, in-process queue; scale-out: S3 Object Lock,
 * OpenSearch, bull on Redis): roles, policies, cases and holds (a future
 * message held at ingest through the index job's hook), disposition, and the
 * auditors' reports as JSON, CSV and PDF. The PDFs are rendered to PNG with
 * pdftoppm (poppler-utils) and every page must carry content.
 */
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { renderPdf } from './helpers/pdf-render.js';
import path from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startInProcess, tempDir } from './helpers/archive-process.js';
import { makeUser, type TestUser } from './helpers/auth.js';
import type { RunningArchive } from '../src/main.js';
import { MODES, waitForIndexed } from './helpers/modes.js';
import { verifyCertificate, type SignedCertificate } from '../src/reports/retention-reports.js';
import { certificateDigest, type DispositionRecord } from '../retention/index.js';

const run = promisify(execFile);

function mail(from: string, to: string, subject: string, date: string, extra: string[] = []): Buffer {
  return Buffer.from([`From: ${from}`, `To: ${to}`, `Subject: ${subject}`, `Date: ${date}`, `Message-ID: <${subject.replace(/\W/g, '')}-${Math.random().toString(36).slice(2)}@corp.example>`, ...extra, 'Content-Type: text/plain', '', `Body of ${subject}`, ''].join('\r\n'));
}

for (const { mode, enabled, env } of MODES)
describe.runIf(enabled)(`retention API (${mode})`, () => {
  let archive: RunningArchive & { dataDir: string };
  let base: string;
  let admin: TestUser;
  let officer: TestUser;
  let auditor: TestUser;
  let reviewer: TestUser;
  const ingest = async (raw: Buffer) => {
    const r = await archive.services.pipeline.ingest(Readable.from(raw), { source: 'api' });
    // Indexed, retention applied by the index job's hook, and searchable.
    await waitForIndexed(archive.services, [r.sha256], 30_000);
    return r.sha256;
  };
  const json = (body: unknown) => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

  beforeAll(async () => {
    // Scale-out signs with a configured key (every node the same); embedded generates one in its data directory.
    const signing: Record<string, string> = mode === 'scale-out' ? { ARCHIVE_SIGNING_KEY: generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() } : {};
    archive = await startInProcess({ ...(await env()), ...signing, ARCHIVE_ORG_NAME: 'Example Corp Ltd', ARCHIVE_DISPOSITION_INTERVAL_MINUTES: '0' });
    expect(archive.services.store.driver).toBe(mode === 'embedded' ? 'fs' : 's3');
    base = `http://127.0.0.1:${archive.httpPort}`;
    admin = await makeUser(archive.services, base, { roles: ['admin'] });
    officer = await makeUser(archive.services, base, { roles: ['officer'] });
    auditor = await makeUser(archive.services, base, { roles: ['auditor'] });
    reviewer = await makeUser(archive.services, base, { roles: ['reviewer'] });
  }, 60_000);
  afterAll(async () => {
    await archive?.close();
  });

  let sha1 = '';
  let caseId = '';
  let holdId = '';
  const heldShas: string[] = [];

  it('sets retain-until at ingest with the default policy; admin manages policies, others may not', async () => {
    sha1 = await ingest(mail('alice@corp.example', 'bob@corp.example', 'Quarterly numbers', 'Mon, 01 Jan 2024 09:00:00 +0000'));
    const state = await (await admin.fetch(`/api/retention/messages/${sha1}`)).json();
    expect(state).toMatchObject({ policyId: 'default', retainUntil: '9999-12-31T23:59:59.999Z', held: false, state: 'active' });
    // Forever on the object is a century ahead (extended whenever a policy asks for more): fs, the archive's
    // own lock record; S3, Object Lock in the configured mode (GOVERNANCE in the test environment).
    const lock = (await archive.services.store.getRetention(sha1))!;
    expect(lock.mode).toBe(mode === 'embedded' ? 'ARCHIVE' : 'GOVERNANCE');
    expect(lock.retainUntil.getUTCFullYear()).toBeGreaterThanOrEqual(new Date().getUTCFullYear() + 99);

    const policy = { name: 'Old mail 30 days', matcher: { senders: ['corp.example'] }, period: { unit: 'days', count: 30, from: 'sent' }, action: 'delete' };
    expect((await officer.fetch('/api/retention/policies', json(policy))).status).toBe(403);
    expect((await reviewer.fetch('/api/retention/policies')).status).toBe(403);
    const sim = await (await admin.fetch('/api/retention/policies/simulate', json({ policy }))).json();
    expect(sim).toMatchObject({ examined: 1, governed: 1, keptLonger: 1 });
    const created = await admin.fetch('/api/retention/policies', json(policy));
    expect(created.status).toBe(201);
    const p = (await created.json()) as { id: string };
    // Forever was applied first; a 30-day policy shortens nothing.
    const after = await (await admin.fetch(`/api/retention/messages/${sha1}`)).json();
    expect(after).toMatchObject({ policyId: p.id, retainUntil: '9999-12-31T23:59:59.999Z', keptLonger: true, policyRetainUntil: '2024-02-01T00:00:00.000Z' });
    const del = await admin.fetch(`/api/retention/policies/${p.id}`, { method: 'DELETE' });
    expect(del.status).toBe(409);
    expect((await admin.fetch('/api/retention/policies/default', { method: 'DELETE' })).status).toBe(400);
    const list = (await (await auditor.fetch('/api/retention/policies')).json()) as { policies: unknown[] };
    expect(list.policies).toHaveLength(2);
  });

  it('officers open cases and place holds that cover existing and future mail; release needs a reason', async () => {
    heldShas.push(await ingest(mail('carol@corp.example', 'dave@corp.example', 'Contract draft', 'Tue, 02 Jan 2024 09:00:00 +0000')));
    const c = await officer.fetch('/api/cases', json({ name: 'Acme v. Example', matterNumber: 'M-2024-7', description: 'Supply contract dispute', custodians: ['dave@corp.example'] }));
    expect(c.status).toBe(201);
    caseId = ((await c.json()) as { id: string }).id;
    expect((await admin.fetch('/api/cases', json({ name: 'x', matterNumber: 'y' }))).status).toBe(403);
    const h = await officer.fetch(`/api/cases/${caseId}/holds`, json({ name: 'Dave custodian hold', custodians: ['dave@corp.example'] }));
    expect(h.status).toBe(201);
    const hold = (await h.json()) as { id: string; messageCount: number };
    holdId = hold.id;
    expect(hold.messageCount).toBe(1);
    // A future message of the custodian, Bcc only, is held at ingest.
    const sha3 = await ingest(mail('erin@corp.example', 'frank@corp.example', 'Pricing', 'Wed, 03 Jan 2024 09:00:00 +0000', ['Bcc: dave@corp.example']));
    const st = (await (await officer.fetch(`/api/retention/messages/${sha3}`)).json()) as { holdIds: string[] };
    expect(st.holdIds).toEqual([holdId]);
    expect(await archive.services.store.getLegalHold(sha3)).toBe(true);
    heldShas.push(sha3);
    expect((await officer.fetch(`/api/holds/${holdId}/release`, json({ reason: '' }))).status).toBe(400);
  });

  it('disposition: a dry run lists, a run deletes only what is due and free', async () => {
    const dry = (await (await admin.fetch('/api/retention/dispose', json({ dryRun: true }))).json()) as { candidates: unknown[]; dryRun: boolean };
    expect(dry.dryRun).toBe(true);
    expect(dry.candidates).toEqual([]);
    expect((await officer.fetch('/api/retention/dispose', json({}))).status).toBe(403);
    const r = (await (await admin.fetch('/api/retention/dispose', json({}))).json()) as { disposed: number; acquired: boolean };
    expect(r).toMatchObject({ disposed: 0, acquired: true });
  });

  it('reports: JSON, CSV and PDF for auditors; the certificate is signed; PDFs render with content on every page', async () => {
    expect((await officer.fetch('/api/reports/retention')).status).toBe(403);
    const rep = (await (await auditor.fetch('/api/reports/retention?fixity=true')).json()) as { totals: { messages: number; held: number }; fixity: { checked: number; problems: number }; holds: unknown[]; immutability: string };
    expect(rep.totals).toMatchObject({ messages: 3, held: 2 });
    // Auditors learn whether storage itself refuses early deletion.
    expect(rep.immutability).toMatch(mode === 'embedded' ? /^Local file system: .*enforced by the archive/ : /^S3 Object Lock on bucket \S+ \(versioned\), (COMPLIANCE|GOVERNANCE) mode: every message object is written with \d+ days.*Storage refuses early deletion on its own/);
    expect(rep.fixity).toMatchObject({ checked: 3, problems: 0 });
    const csv = await auditor.fetch('/api/reports/retention?format=csv');
    expect(csv.headers.get('content-type')).toMatch(/text\/csv/);
    expect(await csv.text()).toContain('"policy","default"');

    const cert = (await (await auditor.fetch('/api/reports/certificate?from=2000-01-01&to=2100-01-01')).json()) as { certificate: SignedCertificate; items: DispositionRecord[] };
    expect(cert.certificate.count).toBe(0);
    expect(cert.certificate.itemsDigest).toBe(certificateDigest(cert.items));
    const key = (await (await fetch(`${base}/api/keys/signing`)).json()) as { publicKey?: string };
    expect(verifyCertificate(cert.certificate, key.publicKey ?? '')).toBe(true);
    expect(verifyCertificate({ ...cert.certificate, count: 7 }, cert.certificate.signature.publicKeyPem)).toBe(false);

    const dir = path.join(await tempDir('retention-pdf-'), 'out');
    for (const [name, url] of [
      ['retention', '/api/reports/retention?format=pdf'],
      ['certificate', '/api/reports/certificate?format=pdf'],
      ['hold', `/api/reports/holds/${caseId}?format=pdf`],
    ] as const) {
      const res = await auditor.fetch(url);
      expect(res.status, name).toBe(200);
      expect(res.headers.get('content-type')).toBe('application/pdf');
      const pdf = Buffer.from(await res.arrayBuffer());
      expect(pdf.subarray(0, 5).toString()).toBe('%PDF-');
      const pages = await renderPdf(pdf, dir, name);
      expect(pages.length, name).toBeGreaterThanOrEqual(2);
      for (const share of pages) expect(share, `${name}: a page without content`).toBeGreaterThan(0.002);
      const text = (await run('pdftotext', [path.join(dir, `${name}.pdf`), '-'])).stdout;
      expect(text).toContain('Example Corp Ltd');
      if (name === 'retention') expect(text).toContain(mode === 'embedded' ? 'Local file system' : 'S3 Object Lock');
    }
    console.log(`retention report PDFs rendered to ${dir}`);
  }, 60_000);

  it('releasing the hold clears the flags (reason recorded in the audit trail)', async () => {
    const r = await officer.fetch(`/api/holds/${holdId}/release`, json({ reason: 'Matter settled' }));
    expect(await r.json()).toEqual({ released: 2, stillHeld: 0, pending: 0 });
    expect(heldShas).toHaveLength(2);
    for (const sha of heldShas) expect(await archive.services.store.getLegalHold(sha)).toBe(false);
    const audit = archive.services.audit;
    const page = await audit.search({ action: 'retention.hold.release' });
    expect(JSON.stringify(page)).toContain('Matter settled');
  });

  it('a hold still being applied when ARCHIVE_HOLD_WAIT_SECONDS is up answers 202, in force, and finishes in the background', async () => {
    const config = archive.services.config as { ARCHIVE_HOLD_WAIT_SECONDS: number };
    const wait = config.ARCHIVE_HOLD_WAIT_SECONDS;
    config.ARCHIVE_HOLD_WAIT_SECONDS = 0; // answer at once
    try {
      const r = await officer.fetch(`/api/cases/${caseId}/holds`, json({ name: 'Dave again', custodians: ['dave@corp.example'] }));
      expect(r.status).toBe(202);
      const placed = (await r.json()) as { id: string; status: string; applyPending?: boolean; lastApplyError?: string };
      expect(placed).toMatchObject({ status: 'active', applyPending: true });
      expect(placed.lastApplyError).toBeUndefined();
      const end = Date.now() + 60_000;
      let hold: { applyPending?: boolean; messageCount: number } | undefined;
      do {
        await new Promise((res) => setTimeout(res, 100));
        hold = ((await (await officer.fetch('/api/holds')).json()) as { holds: { id: string; applyPending?: boolean; messageCount: number }[] }).holds.find((x) => x.id === placed.id);
      } while (hold?.applyPending && Date.now() < end);
      expect(hold).toMatchObject({ messageCount: 2 });
      expect(hold).not.toHaveProperty('applyPending');
      for (const sha of heldShas) expect(await archive.services.store.getLegalHold(sha)).toBe(true);
      expect(await (await officer.fetch(`/api/holds/${placed.id}/release`, json({ reason: 'Test over' }))).json()).toEqual({ released: 2, stillHeld: 0, pending: 0 });
    } finally {
      config.ARCHIVE_HOLD_WAIT_SECONDS = wait;
    }
  });
});
