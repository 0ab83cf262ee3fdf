/**
 * The audit trail (promise 6):
 * - tamper evidence: edit one record, delete one, reorder two, rewrite the
 *   whole chain consistently, cut off the tail: each time verify fails and
 *   names the first bad record, on both deployments (SQLite catalog and
 *   seals in files; OpenSearch catalog and seals in S3 with Object Lock);
 * - appends from several nodes at once stay one gap-free chain;
 * - a crash between the head update and the record write loses nothing;
 * - every listed action writes a record, through the real API;
 * - auditors search the trail (user, action, time range, outcome) and
 *   export CSV that cannot inject formulas (through the API of a running
 *   archive, on both deployments).
 */
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { rm } from 'node:fs/promises';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/config.js';
import { createCatalogStore, createObjectStore } from '../src/factory.js';
import { AUDIT_COLLECTION, AUDIT_HEAD_COLLECTION, AuditTrail, auditId, hashRecord, type AuditEvent, type AuditRecord } from '../src/audit/audit-trail.js';
import { csvField } from '../src/audit/audit-csv.js';
import type { CatalogStore } from '../src/ports/catalog-store.js';
import type { ObjectStore } from '../src/ports/object-store.js';
import { startInProcess, tempDir, testEnv } from './helpers/archive-process.js';
import { makeUser, type TestUser } from './helpers/auth.js';
import { dropModeIndices, MODES, waitForIndexed } from './helpers/modes.js';
import { INDEX_JOB } from '../ingest/index.js';
import { sendRaw } from './helpers/smtp-client.js';
import type { RunningArchive } from '../src/main.js';

const log = pino({ level: process.env.ARCHIVE_TEST_LOG_LEVEL ?? 'silent' });

interface Backend {
  catalog: CatalogStore;
  store: ObjectStore;
  cleanup(): Promise<void>;
}

/** A fresh catalog and object store of a deployment, made by the factory as the archive makes them. */
async function modeBackend(modeEnvOf: () => Promise<Record<string, string>>): Promise<Backend> {
  const dir = await tempDir('archive-audit-');
  const modeEnv = await modeEnvOf();
  const config = loadConfig(testEnv(dir, modeEnv));
  const catalog = await createCatalogStore(config, log);
  const store = await createObjectStore(config, log);
  return {
    catalog,
    store,
    cleanup: async () => {
      await catalog.close();
      await store.close();
      await dropModeIndices(modeEnv);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

const event = (i: number): AuditEvent => ({ action: i % 3 ? 'search' : 'message.view', outcome: 'success', user: `u${i % 4}@corp.example`, clientAddress: '10.0.0.1', target: i % 3 ? null : 'a'.repeat(64), details: { q: `budget ${i}` } });

async function fill(trail: AuditTrail, n: number): Promise<void> {
  for (let i = 1; i <= n; i++) await trail.record(event(i));
}

async function tamper(catalog: CatalogStore, seq: number, change: (r: AuditRecord) => AuditRecord): Promise<void> {
  const cur = await catalog.get<AuditRecord>(AUDIT_COLLECTION, auditId(seq));
  await catalog.update(AUDIT_COLLECTION, auditId(seq), change(cur!.data), cur!.version);
}

function tamperSuite(name: string, enabled: boolean, makeBackend: () => Promise<Backend>): void {
  describe.runIf(enabled)(`audit trail tamper evidence: ${name}`, () => {
    const backends: Backend[] = [];
    const fresh = async (n = 12) => {
      const b = await makeBackend();
      backends.push(b);
      const trail = new AuditTrail({ catalog: b.catalog, store: b.store, log });
      await fill(trail, n);
      return { b, trail };
    };
    afterAll(async () => {
      for (const b of backends) await b.cleanup();
    });

    it('an untouched trail verifies, with its seals', async () => {
      const { trail } = await fresh(5);
      expect((await trail.seal())!.created).toBe(true);
      expect((await trail.seal())!.created).toBe(false);
      await trail.record(event(6));
      await trail.seal();
      const report = await trail.verify();
      expect(report).toMatchObject({ ok: true, records: 6, head: { seq: 6 }, seals: 2 });
      expect(report.firstBad).toBeUndefined();
    });

    it('an edited record is named', async () => {
      const { b, trail } = await fresh();
      await tamper(b.catalog, 7, (r) => ({ ...r, details: { q: 'something harmless' } }));
      const report = await trail.verify();
      expect(report.ok).toBe(false);
      expect(report.firstBad).toMatchObject({ seq: 7, id: auditId(7) });
      expect(report.firstBad!.problem).toMatch(/altered/);
    });

    it('an edited and re-hashed record breaks the chain at the next one', async () => {
      const { b, trail } = await fresh();
      await tamper(b.catalog, 4, (r) => {
        const changed = { ...r, user: 'someone.else@corp.example' };
        return { ...changed, hash: hashRecord(changed) };
      });
      const report = await trail.verify();
      expect(report.firstBad).toMatchObject({ seq: 5 });
      expect(report.firstBad!.problem).toMatch(/does not follow record 4/);
    });

    it('a removed record is named', async () => {
      const { b, trail } = await fresh();
      const cur = await b.catalog.get(AUDIT_COLLECTION, auditId(5));
      await b.catalog.delete(AUDIT_COLLECTION, auditId(5), cur!.version);
      const report = await trail.verify();
      expect(report.firstBad).toMatchObject({ seq: 5, id: auditId(5) });
      expect(report.firstBad!.problem).toMatch(/missing/);
    });

    it('two reordered records: the first of them is named', async () => {
      const { b, trail } = await fresh();
      const r3 = (await b.catalog.get<AuditRecord>(AUDIT_COLLECTION, auditId(3)))!;
      const r8 = (await b.catalog.get<AuditRecord>(AUDIT_COLLECTION, auditId(8)))!;
      await b.catalog.update(AUDIT_COLLECTION, auditId(3), r8.data, r3.version);
      await b.catalog.update(AUDIT_COLLECTION, auditId(8), r3.data, r8.version);
      const report = await trail.verify();
      expect(report.firstBad).toMatchObject({ seq: 3 });
      expect(report.firstBad!.problem).toMatch(/out of place/);

      // Swapped and renumbered (seq fields rewritten to fit their places): still caught at 3.
      const { b: b2, trail: t2 } = await fresh();
      const a = (await b2.catalog.get<AuditRecord>(AUDIT_COLLECTION, auditId(3)))!;
      const c = (await b2.catalog.get<AuditRecord>(AUDIT_COLLECTION, auditId(8)))!;
      await b2.catalog.update(AUDIT_COLLECTION, auditId(3), { ...c.data, seq: 3 }, a.version);
      await b2.catalog.update(AUDIT_COLLECTION, auditId(8), { ...a.data, seq: 8 }, c.version);
      expect((await t2.verify()).firstBad).toMatchObject({ seq: 3 });
    });

    it('a consistently rewritten chain (every hash recomputed) is caught by the seal', async () => {
      const { b, trail } = await fresh(10);
      await trail.seal();
      // Rewrite record 6 and re-chain everything after it, head included: only the seal still knows.
      let prev = (await b.catalog.get<AuditRecord>(AUDIT_COLLECTION, auditId(5)))!.data.hash;
      for (let seq = 6; seq <= 10; seq++) {
        await tamper(b.catalog, seq, (r) => {
          const changed = { ...r, prevHash: prev, ...(seq === 6 ? { details: { q: 'nothing to see' } } : {}) };
          const out = { ...changed, hash: hashRecord(changed) };
          prev = out.hash;
          return out;
        });
      }
      const head = (await b.catalog.get<{ seq: number; hash: string; pending: AuditRecord[] }>(AUDIT_HEAD_COLLECTION, 'head'))!;
      await b.catalog.update(AUDIT_HEAD_COLLECTION, 'head', { ...head.data, hash: prev, pending: [] }, head.version);
      const report = await trail.verify();
      expect(report.ok).toBe(false);
      expect(report.firstBad).toMatchObject({ seq: 10 });
      expect(report.firstBad!.problem).toMatch(/differs from seal audit-000000000010\.json: the trail was rewritten between record 1 and 10/);
    });

    it('records cut off the end after a seal are missed', async () => {
      const { b, trail } = await fresh(8);
      await trail.seal();
      // Remove the last three and move the head back, as if they never were.
      for (const seq of [6, 7, 8]) {
        const cur = await b.catalog.get(AUDIT_COLLECTION, auditId(seq));
        await b.catalog.delete(AUDIT_COLLECTION, auditId(seq), cur!.version);
      }
      const r5 = (await b.catalog.get<AuditRecord>(AUDIT_COLLECTION, auditId(5)))!.data;
      const head = (await b.catalog.get<{ seq: number }>(AUDIT_HEAD_COLLECTION, 'head'))!;
      await b.catalog.update(AUDIT_HEAD_COLLECTION, 'head', { seq: 5, hash: r5.hash, time: r5.time, pending: [] }, head.version);
      const report = await trail.verify();
      expect(report.firstBad).toMatchObject({ seq: 6 });
      expect(report.firstBad!.problem).toMatch(/seal audit-000000000008\.json/);
    });

    it('a crash between the head update and the record write loses nothing', async () => {
      const { b, trail } = await fresh(6);
      // What a node that died right after updating the head leaves: the head holds record 6, the catalog does not.
      const cur = await b.catalog.get(AUDIT_COLLECTION, auditId(6));
      await b.catalog.delete(AUDIT_COLLECTION, auditId(6), cur!.version);
      expect(await trail.verify()).toMatchObject({ ok: true, records: 6 });
      // The next append (here from another node) writes it out first.
      const other = new AuditTrail({ catalog: b.catalog, store: b.store, log });
      await other.record(event(7));
      expect((await b.catalog.get(AUDIT_COLLECTION, auditId(6)))).toBeDefined();
      expect(await other.verify()).toMatchObject({ ok: true, records: 7 });
    });

    it('several nodes appending at once make one gap-free chain', async () => {
      const b = await makeBackend();
      backends.push(b);
      const nodes = [0, 1, 2].map(() => new AuditTrail({ catalog: b.catalog, store: b.store, log }));
      const per = 15;
      const all = await Promise.all(nodes.flatMap((node, n) => Array.from({ length: per }, (_, i) => node.record({ ...event(i), user: `node${n}@corp.example`, details: { i } }))));
      const seqs = all.map((r) => r.seq).sort((x, y) => x - y);
      expect(seqs).toEqual(Array.from({ length: nodes.length * per }, (_, i) => i + 1));
      const report = await nodes[0].verify();
      expect(report).toMatchObject({ ok: true, records: nodes.length * per });
    }, 120_000);
  });
}

// Outside CI, a missing scale-out service skips that run loudly (test/helpers/modes.ts); in CI it fails.
for (const { mode, enabled, env } of MODES) tamperSuite(mode, enabled, () => modeBackend(env));

describe('CSV export escaping', () => {
  it('quotes every field, doubles quotes, defuses formula prefixes', () => {
    expect(csvField('plain')).toBe('"plain"');
    expect(csvField('say "hi"')).toBe('"say ""hi"""');
    expect(csvField('=HYPERLINK("http://evil","x")')).toBe('"\'=HYPERLINK(""http://evil"",""x"")"');
    for (const c of ['=', '+', '-', '@', '\t', '\r']) expect(csvField(`${c}1+1`).startsWith(`"'${c}`)).toBe(true);
    expect(csvField('a,b\r\nc')).toBe('"a,b\r\nc"');
    expect(csvField(null)).toBe('""');
    expect(csvField(42)).toBe('"42"');
  });
});

// ---------------------------------------------------------------- through the API

function mail(headers: Record<string, string>, body: string, attachment?: { name: string; content: string }): Buffer {
  const h = Object.entries(headers).map(([k, v]) => `${k}: ${v}`);
  if (!attachment) return Buffer.from([...h, 'MIME-Version: 1.0', 'Content-Type: text/plain; charset=utf-8', '', body, ''].join('\r\n'));
  return Buffer.from(
    [
      ...h,
      'MIME-Version: 1.0',
      'Content-Type: multipart/mixed; boundary="b1"',
      '',
      '--b1',
      'Content-Type: text/plain; charset=utf-8',
      '',
      body,
      '--b1',
      `Content-Type: text/plain; name="${attachment.name}"`,
      `Content-Disposition: attachment; filename="${attachment.name}"`,
      '',
      attachment.content,
      '--b1--',
      '',
    ].join('\r\n'),
  );
}

describe.each(MODES.filter((m) => m.enabled))('every listed action writes a record (through the API) ($mode)', ({ env }) => {
  let archive: RunningArchive & { dataDir: string };
  let modeEnv: Record<string, string>;
  let base: string;
  let admin: TestUser;
  let officer: TestUser;
  let auditor: TestUser;
  let ids: string[];

  beforeAll(async () => {
    modeEnv = await env();
    archive = await startInProcess({ ...modeEnv, ARCHIVE_COOKIE_SECURE: 'false', ARCHIVE_AUTH_LOCKOUT_THRESHOLD: '3', ARCHIVE_AUTH_BACKOFF_MS: '0' });
    base = `http://127.0.0.1:${archive.httpPort}`;
    admin = await makeUser(archive.services, base, { roles: ['admin'] });
    officer = await makeUser(archive.services, base, { roles: ['officer'] });
    auditor = await makeUser(archive.services, base, { roles: ['auditor'] });
    const raws = [
      mail({ From: 'alice@corp.example', To: 'bob@corp.example', Subject: 'Budget', 'Message-ID': '<m1@corp.example>', Date: 'Mon, 01 Jan 2024 09:00:00 +0000' }, 'budget numbers', { name: 'plan.txt', content: 'the plan' }),
      mail({ From: 'bob@corp.example', To: 'alice@corp.example', Subject: 'Re: Budget', 'Message-ID': '<m2@corp.example>', 'In-Reply-To': '<m1@corp.example>', Date: 'Tue, 02 Jan 2024 09:00:00 +0000' }, 'agreed'),
    ];
    ids = [];
    for (const raw of raws) {
      const r = await sendRaw(archive.smtpPort, { from: 'mta@corp.example', to: ['journal@archive.example'] }, raw);
      expect(r.code).toBe(250);
    }
    await waitForIndexed(
      archive.services,
      raws.map((raw) => createHash('sha256').update(raw).digest('hex')),
      30_000,
    );
    const hits = (await (await officer.fetch('/api/search?q=')).json()) as { hits: { id: string }[] };
    ids = hits.hits.map((h) => h.id);
    expect(ids).toHaveLength(2);
  });
  afterAll(async () => {
    await archive?.close();
    await dropModeIndices(modeEnv);
  });

  const json = { 'content-type': 'application/json' };
  const latest = async (action: string, user?: string) => (await archive.services.audit.search({ action, ...(user ? { user } : {}), limit: 1 })).records[0];

  it('sign-in and sign-out, including failures and lockouts', async () => {
    const u = await makeUser(archive.services, base, { roles: ['reviewer'] });
    const signIn = (password: string) => fetch(`${base}/api/auth/sign-in`, { method: 'POST', headers: json, body: JSON.stringify({ email: u.email, password }) });
    const ok = await signIn(u.password);
    expect(ok.status).toBe(200);
    expect(await latest('auth.sign_in', u.email)).toMatchObject({ outcome: 'success', target: u.email, clientAddress: expect.stringContaining('127.0.0.1'), details: { method: 'password' } });
    const cookie = ok.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
    const { csrf } = (await ok.json()) as { csrf: string };
    expect((await fetch(`${base}/api/auth/sign-out`, { method: 'POST', headers: { cookie, 'x-csrf-token': csrf } })).status).toBe(204);
    expect(await latest('auth.sign_out', u.email)).toMatchObject({ outcome: 'success', user: u.email });
    for (let i = 0; i < 3; i++) expect((await signIn('wrong')).status).toBe(401);
    expect(await latest('auth.sign_in', u.email)).toMatchObject({ outcome: 'failure', details: { reason: 'wrong password', failures: 3 } });
    expect(await latest('auth.lockout', u.email)).toMatchObject({ outcome: 'denied', target: u.email });
  });

  it('every search with its query, every view, raw and attachment download and thread view', async () => {
    const q = 'budget from:alice@corp.example';
    expect((await officer.fetch(`/api/search?q=${encodeURIComponent(q)}`)).status).toBe(200);
    expect(await latest('search', officer.email)).toMatchObject({ outcome: 'success', details: { q, total: 1, sort: 'date' } });
    expect((await officer.fetch('/api/search', { method: 'POST', headers: json, body: JSON.stringify({ q: 'agreed' }) })).status).toBe(200);
    expect(await latest('search', officer.email)).toMatchObject({ details: { q: 'agreed', total: 1 } });
    // A failing search is recorded too, with its query.
    expect((await officer.fetch(`/api/search?q=${encodeURIComponent('(unclosed')}`)).status).toBe(400);
    expect(await latest('search', officer.email)).toMatchObject({ outcome: 'failure', details: { q: '(unclosed', error: 'query_syntax' } });

    const withAttachment = ids[0];
    for (const [path, action] of [
      [`/api/messages/${withAttachment}`, 'message.view'],
      [`/api/messages/${withAttachment}/raw`, 'message.download_raw'],
      [`/api/messages/${withAttachment}/thread`, 'message.thread'],
    ] as const) {
      const r = await officer.fetch(path);
      expect(r.status).toBe(200);
      await r.arrayBuffer();
      expect(await latest(action, officer.email)).toMatchObject({ outcome: 'success', target: withAttachment, user: officer.email });
    }
    const view = (await (await officer.fetch(`/api/messages/${ids[0]}`)).json()) as { attachments: unknown[] };
    const target = view.attachments.length ? ids[0] : ids[1];
    const att = await officer.fetch(`/api/messages/${target}/attachments/0`);
    expect(att.status).toBe(200);
    expect(await att.text()).toContain('the plan');
    expect(await latest('message.download_attachment', officer.email)).toMatchObject({ outcome: 'success', target, details: { attachment: 0 } });
    // An id outside scope or absent: recorded as a failure, answered 404.
    expect((await officer.fetch(`/api/messages/${'0'.repeat(64)}`)).status).toBe(404);
    expect(await latest('message.view', officer.email)).toMatchObject({ outcome: 'failure', target: '0'.repeat(64), details: { error: 'not_found' } });
  });

  it('user, group and token changes', async () => {
    const email = `changed-${randomBytes(3).toString('hex')}@corp.example`;
    expect((await admin.fetch('/api/users', { method: 'POST', headers: json, body: JSON.stringify({ email, roles: ['reviewer'] }) })).status).toBe(201);
    expect(await latest('user.create', admin.email)).toMatchObject({ outcome: 'success', target: email, details: { roles: ['reviewer'] } });
    expect((await admin.fetch(`/api/users/${email}`, { method: 'PATCH', headers: json, body: JSON.stringify({ roles: ['officer'], scope: { domains: ['corp.example'] } }) })).status).toBe(200);
    expect(await latest('user.update', admin.email)).toMatchObject({ outcome: 'success', target: email, details: { roles: ['officer'] } });
    expect((await admin.fetch(`/api/users/${email}/reset-password`, { method: 'POST' })).status).toBe(200);
    expect(await latest('user.reset_password', admin.email)).toMatchObject({ target: email });
    expect((await admin.fetch('/api/users', { method: 'POST', headers: json, body: JSON.stringify({ email, roles: ['reviewer'] }) })).status).toBe(409);
    expect(await latest('user.create', admin.email)).toMatchObject({ outcome: 'failure', target: email, details: { error: 'conflict' } });
    expect((await admin.fetch('/api/custodian-groups/legal', { method: 'PUT', headers: json, body: JSON.stringify({ addresses: ['a@corp.example'] }) })).status).toBe(200);
    expect(await latest('group.put', admin.email)).toMatchObject({ target: 'legal' });
    expect((await admin.fetch('/api/custodian-groups/legal', { method: 'DELETE' })).status).toBe(204);
    expect(await latest('group.delete', admin.email)).toMatchObject({ target: 'legal' });

    const t = (await (await officer.fetch('/api/tokens', { method: 'POST', headers: json, body: JSON.stringify({ name: 'ci' }) })).json()) as { id: string; token: string };
    expect(await latest('token.create', officer.email)).toMatchObject({ outcome: 'success', target: officer.email, details: { name: 'ci' } });
    expect((await officer.fetch(`/api/tokens/${t.id}`, { method: 'DELETE' })).status).toBe(200);
    expect(await latest('token.revoke', officer.email)).toMatchObject({ outcome: 'success', target: t.id });
    // The trail never holds a token or a password.
    const everything = JSON.stringify((await archive.services.audit.search({ limit: 1000 })).records);
    expect(everything).not.toContain(t.token);
  });

  it('auditors search the trail by user, action, outcome and time range, and reading it is recorded', async () => {
    const before = new Date().toISOString();
    await officer.fetch(`/api/search?q=${encodeURIComponent('=HYPERLINK("http://evil.example","click")')}`);
    const after = new Date(Date.now() + 1000).toISOString();
    type Page = { records: AuditRecord[]; nextCursor: string | null };
    const get = async (qs: string) => (await (await auditor.fetch(`/api/audit?${qs}`)).json()) as Page;
    const mine = await get(`user=${encodeURIComponent(officer.email)}&action=search&from=${before}&to=${after}`);
    expect(mine.records).toHaveLength(1);
    expect(mine.records[0].details.q).toBe('=HYPERLINK("http://evil.example","click")');
    expect((await get(`action=search&outcome=failure`)).records.every((r) => r.outcome === 'failure' && r.action === 'search')).toBe(true);
    expect((await get(`from=${after}`)).records).toEqual([]);
    // Newest first by default; pages with a cursor; asc on request.
    const p1 = await get('limit=3');
    expect(p1.records.map((r) => r.seq)).toEqual([...p1.records.map((r) => r.seq)].sort((a, b) => b - a));
    const p2 = await get(`limit=3&cursor=${encodeURIComponent(p1.nextCursor!)}`);
    expect(p2.records[0].seq).toBe(p1.records[2].seq - 1);
    expect((await get('order=asc&limit=1')).records[0].seq).toBe(1);
    expect(await latest('audit.search', auditor.email)).toMatchObject({ outcome: 'success', details: { order: 'asc' } });

    const csv = await auditor.fetch(`/api/audit/export.csv?user=${encodeURIComponent(officer.email)}&action=search`);
    expect(csv.status).toBe(200);
    expect(csv.headers.get('content-type')).toMatch(/^text\/csv/);
    const text = await csv.text();
    const lines = text.trim().split('\r\n');
    expect(lines[0]).toBe('seq,time,user,clientAddress,action,target,outcome,details,prevHash,hash');
    expect(lines.length).toBeGreaterThan(3);
    // The formula in the query is inside a JSON details field here; a bare one is defused too.
    expect(text).toContain('""q"":""=HYPERLINK(');
    expect(text).not.toMatch(/(^|,)"?=HYPERLINK/m);
    expect(await latest('audit.export', auditor.email)).toMatchObject({ outcome: 'success', details: { rows: lines.length - 1, action: 'search' } });

    const verify = (await (await auditor.fetch('/api/audit/verify')).json()) as { ok: boolean; records: number };
    expect(verify.ok).toBe(true);
    expect(await latest('audit.verify', auditor.email)).toMatchObject({ outcome: 'success', details: { ok: true } });
    // Jobs: an admin retrying a job is recorded (here: no such failed job).
    await admin.fetch('/api/jobs/index-message/failed/nope/retry', { method: 'POST' });
    expect(await latest('job.retry', admin.email)).toMatchObject({ target: 'index-message/nope' });

    // A failed index job is listed without the envelope it carries: its recipients (Bcc included) stay internal.
    const bogus = 4242; // not a SHA-256 (not even a string): the job fails at once, in either store
    const envelope = { id: '20240101T000000000Z-failedjob', sha256: bogus, source: 'smtp', receivedAt: '2024-01-01T00:00:00.000Z', recipients: [{ address: 'hidden-bcc@corp.example', kind: 'bcc' }], flags: [] };
    await archive.services.queue.add(INDEX_JOB, { sha256: bogus, size: 10, envelope }, { attempts: 1 });
    let failed: { payload: Record<string, unknown> }[] = [];
    for (let i = 0; i < 200 && !failed.length; i++) {
      const r = await admin.fetch('/api/jobs/index-message/failed');
      expect(r.status).toBe(200);
      failed = ((await r.json()) as { jobs: { payload: Record<string, unknown> }[] }).jobs.filter((j) => j.payload.sha256 === bogus);
      if (!failed.length) await new Promise((res) => setTimeout(res, 50));
    }
    expect(failed).toHaveLength(1);
    expect(failed[0]!.payload).toEqual({ sha256: bogus, size: 10, envelopeId: envelope.id });
    expect(JSON.stringify(failed)).not.toContain('hidden-bcc');
  });

  it('the whole trail of this run verifies, and a seal at shutdown covers it', async () => {
    const report = await archive.services.audit.verify();
    expect(report.ok).toBe(true);
    expect(report.records).toBeGreaterThan(30);
    const sealed = await archive.services.audit.seal();
    expect(sealed!.seal.seq).toBe((await archive.services.audit.head()).seq);
  });

  it('a large raw download streams through the hold-back intact (8 MiB)', async () => {
    const big = mail({ From: 'big@corp.example', To: 'bob@corp.example', Subject: 'Big one', 'Message-ID': '<big@corp.example>' }, 'x'.repeat(100), { name: 'big.txt', content: randomBytes(6 * 1024 * 1024).toString('base64').replace(/.{76}/g, '$&\r\n') });
    const res = await archive.services.pipeline.ingest(Readable.from([big]), { source: 'api' });
    await waitForIndexed(archive.services, [res.sha256], 60_000);
    const again = await officer.fetch(`/api/messages/${res.sha256}/raw`);
    expect(again.status).toBe(200);
    const bytes = Buffer.from(await again.arrayBuffer());
    expect(bytes.length).toBe(big.length);
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(res.sha256);
    expect(await latest('message.download_raw', officer.email)).toMatchObject({ outcome: 'success', target: res.sha256 });
  });

  it('no complete answer without a durable audit record: when the trail cannot be written, the request fails', async () => {
    const trail = archive.services.audit;
    const original = trail.record.bind(trail);
    trail.record = async () => {
      throw new Error('catalog down');
    };
    try {
      const r = await officer.fetch(`/api/messages/${ids[0]}`);
      expect(r.status).toBe(503);
      expect(((await r.json()) as { error: { code: string } }).error.code).toBe('audit_unavailable');
      // A streamed download is refused (its last chunk is held back until the record is written), never completed.
      const raw = await officer
        .fetch(`/api/messages/${ids[0]}/raw`)
        .then(async (res) => {
          await res.arrayBuffer();
          return res.status;
        })
        .catch(() => 'cut off');
      expect([503, 'cut off']).toContain(raw);
    } finally {
      trail.record = original;
    }
  });
});
