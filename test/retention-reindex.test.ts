/**
 * `archive reindex` re-applies retention, on both deployments, through the
 * built CLI: after a reindex, a message whose retention record was lost (a
 * catalog restored from an older backup) gets its retain-until back, one
 * that never went through the retention step (stored, then a crash before
 * indexing) gets its record and the legal-hold flag of the hold that covers
 * it, and a held message stays held.
 */
import { Readable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli, startInProcess, testEnv } from './helpers/archive-process.js';
import { MODES, waitForIndexed } from './helpers/modes.js';
import type { RunningArchive } from '../src/main.js';
import { newEnvelopeId } from '../src/domain/envelope-id.js';
import { COLLECTIONS, type MessageRetention } from '../retention/index.js';

const actor = { user: 'officer@corp.example' };

function mail(from: string, to: string, subject: string, date: string): Buffer {
  return Buffer.from([`From: ${from}`, `To: ${to}`, `Subject: ${subject}`, `Date: ${date}`, `Message-ID: <${subject.replace(/\W/g, '')}-${Math.random().toString(36).slice(2)}@corp.example>`, 'Content-Type: text/plain', '', `Body of ${subject}`, ''].join('\r\n'));
}

for (const { mode, enabled, env } of MODES)
describe.runIf(enabled)(`archive reindex re-applies retention (${mode})`, () => {
  let archive: (RunningArchive & { dataDir: string }) | undefined;
  afterAll(async () => {
    await archive?.close();
  });

  it('gives a message without a retention record its record back, and keeps and restores holds', async () => {
    const extra = { ...(await env()), ARCHIVE_DISPOSITION_INTERVAL_MINUTES: '0' };
    archive = await startInProcess(extra);
    const dataDir = archive.dataDir;
    let s = archive.services;
    const ingest = async (raw: Buffer) => (await s.pipeline.ingest(Readable.from(raw), { source: 'api' })).sha256;

    const finance = await s.retention.createPolicy({ name: 'Finance 7y', matcher: { senders: ['finance.example'] }, period: { unit: 'years', count: 7, from: 'sent' }, action: 'delete' }, actor);
    const held = await ingest(mail('dave@corp.example', 'erin@corp.example', 'Held all along', 'Mon, 01 Jan 2024 09:00:00 +0000'));
    const lost = await ingest(mail('ap@finance.example', 'erin@corp.example', 'Invoice', 'Tue, 02 Jan 2024 09:00:00 +0000'));
    const heldLost = await ingest(mail('frank@corp.example', 'dave@corp.example', 'Held, record lost', 'Wed, 03 Jan 2024 09:00:00 +0000'));
    await waitForIndexed(s, [held, lost, heldLost]);
    const kase = await s.retention.createCase({ name: 'Acme', matterNumber: 'M-1', custodians: ['dave@corp.example'] }, actor);
    const hold = await s.retention.createHold({ caseId: kase.id, name: 'Dave' }, actor);
    expect(hold.messageCount).toBe(2);
    const lostBefore = (await s.retention.getMessageRetention(lost))!;
    expect(lostBefore).toMatchObject({ policyId: finance.id, retainUntil: '2031-01-03T00:00:00.000Z', held: false });

    // Stored but never indexed nor given retention: an ingest that crashed after the store acknowledged it.
    const spooled = await s.pipeline.spool(Readable.from(mail('grace@corp.example', 'dave@corp.example', 'Crashed before indexing', 'Thu, 04 Jan 2024 09:00:00 +0000')));
    await s.store.putMessage({ path: spooled.path, sha256: spooled.sha256, size: spooled.size });
    await s.store.putEnvelope({ id: newEnvelopeId(), sha256: spooled.sha256, source: 'api', receivedAt: new Date().toISOString(), recipients: [{ address: 'dave@corp.example', kind: 'to' }], flags: [] });
    const crashed = spooled.sha256;
    expect(await s.store.getLegalHold(crashed)).toBe(false);

    // The catalog restored from a backup older than two of the records.
    for (const sha of [lost, heldLost]) {
      const rec = (await s.catalog.get<MessageRetention>(COLLECTIONS.messages, sha))!;
      await s.catalog.delete(COLLECTIONS.messages, sha, rec.version);
    }
    for (const sha of [lost, heldLost, crashed]) expect(await s.retention.getMessageRetention(sha)).toBeUndefined();
    await archive.close();
    archive = undefined;

    const r = await runCli(['reindex', '--json'], testEnv(dataDir, extra));
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ messages: 4, retentionApplied: 4, failed: [] });

    archive = await startInProcess(extra, dataDir);
    s = archive.services;
    // The lost record is back, as it was.
    expect(await s.retention.getMessageRetention(lost)).toMatchObject({ policyId: finance.id, retainUntil: lostBefore.retainUntil, held: false, state: 'active' });
    // Held messages are held, in the catalog and on the object (S3: its Object Lock legal hold).
    for (const sha of [held, heldLost, crashed]) {
      expect(await s.retention.getMessageRetention(sha), sha).toMatchObject({ held: true, holdIds: [hold.id], policyId: 'default', retainUntil: '9999-12-31T23:59:59.999Z' });
      expect(await s.store.getLegalHold(sha), sha).toBe(true);
    }
    // The object of the never-retained message now carries the retention too: fs, the archive's own lock
    // record; S3, Object Lock (GOVERNANCE in the test environment), a century ahead for "forever".
    const lock = (await s.store.getRetention(crashed))!;
    expect(lock.mode).toBe(mode === 'embedded' ? 'ARCHIVE' : 'GOVERNANCE');
    expect(lock.retainUntil.getUTCFullYear()).toBeGreaterThanOrEqual(new Date().getUTCFullYear() + 99);
    // And the rebuilt index is live: the crashed message is found by its custodian.
    await s.index.refresh();
    const found = await s.search.search({ q: 'participant:dave@corp.example', sort: 'date', order: 'asc', size: 10, facets: false });
    expect(found.hits.map((h) => h.id).sort()).toEqual([held, heldLost, crashed].sort());
    // Disposition keeps its hands off them.
    const dry = await s.disposition.run({ dryRun: true, actor: { user: 'cli:test' } });
    expect(dry.candidates).toEqual([]);
  }, 180_000);
});
