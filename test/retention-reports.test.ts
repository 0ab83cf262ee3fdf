/**
 * Report layout with real volume, on both deployments: 130 dispositions make
 * the certificate's item table break across pages (header repeated, rows
 * whole); every page rendered by pdftoppm carries content. The signed
 * certificate's digest is recomputed from the disposition records.
 *
 * Scale-out: the same from the OpenSearch catalog, with the messages on S3
 * (dates in the real past, so S3, whose Object Lock runs on the real clock,
 * lets the disposals happen); the disposed objects' versions are gone from
 * S3 and the held one keeps its flag there. With 40 dispositions, not 130:
 * each message is a few dozen S3 requests to store, lock and delete, the
 * test endpoint serves some 150 a second, and the layout is the same code
 * (it still breaks the table over pages).
 */
import { GetObjectLegalHoldCommand, ListObjectVersionsCommand } from '@aws-sdk/client-s3';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { generateKeyPairSync } from 'node:crypto';
import { retentionFixture, type RetentionFixture } from './helpers/retention-fixture.js';
import { renderPdf } from './helpers/pdf-render.js';
import { tempDir } from './helpers/archive-process.js';
import { certificateDigest, COLLECTIONS, type DispositionRecord } from '../retention/index.js';
import { certificateCsv, certificatePdf, holdReportPdf, retentionReportPdf, signCertificate, verifyCertificate } from '../src/reports/retention-reports.js';
import { fingerprintOf } from '../src/export/signing-key.js';
import { MODES } from './helpers/modes.js';

for (const { mode, enabled } of MODES)
describe.runIf(enabled)(`retention reports with volume (${mode})`, () => {
  let fx: RetentionFixture;
  afterAll(async () => {
    await fx?.close();
  });

  it(`a ${mode === 'embedded' ? 130 : 40}-item certificate, signed, digest checkable, tables breaking cleanly over pages`, async () => {
    fx = await retentionFixture({ start: '2021-01-01T00:00:00Z', mode });
    const actor = { user: 'admin@corp.example' };
    await fx.service.updatePolicy('default', { name: 'Default', matcher: {}, period: { unit: 'days', count: 30, from: 'received' }, action: 'delete' }, actor);
    await fx.service.createPolicy({ name: 'Sales 90 days', matcher: { senders: ['sales.example'] }, period: { unit: 'days', count: 90, from: 'sent' }, action: 'delete' }, actor);
    const n = mode === 'embedded' ? 130 : 40;
    // Eight at a time, as the index job's batches overlap (each is a chain of store and index round trips).
    for (let i = 0; i < n; i += 8) {
      await Promise.all(Array.from({ length: Math.min(8, n - i) }, (_, k) => i + k).map((j) => fx.archive({ from: j % 3 ? `s${j}@sales.example` : `o${j}@corp.example`, to: ['x@corp.example'], date: '2021-01-01T00:00:00Z' })));
    }
    const c = await fx.service.createCase({ name: 'Kept case', matterNumber: 'K-1', description: 'A case with a hold', custodians: ['keep@corp.example'] }, actor);
    const kept = await fx.archive({ from: 'keep@corp.example', to: ['x@corp.example'], date: '2021-01-01T00:00:00Z' });
    const hold = await fx.service.createHold({ caseId: c.id, name: 'Keep' }, actor);
    expect(hold.messageCount).toBe(1);
    fx.setNow('2022-01-01T00:00:00Z');
    const run = await fx.job.run({ actor: { user: 'scheduler' } });
    expect(run.skipped).toEqual([]);
    expect(run.disposed).toBe(n);
    expect(await fx.exists(kept)).toBe(true);
    if (mode === 'scale-out') {
      // What S3 itself holds now: the kept message's version and its envelope's, nothing of the others.
      const listed = await fx.s3!.client.send(new ListObjectVersionsCommand({ Bucket: fx.s3!.bucket, Prefix: fx.s3!.key('').replace(/messages\/$/, '') }));
      expect((listed.Versions ?? []).length).toBe(2);
      expect(listed.DeleteMarkers ?? []).toEqual([]);
      expect((await fx.s3!.client.send(new GetObjectLegalHoldCommand({ Bucket: fx.s3!.bucket, Key: fx.s3!.key(kept) }))).LegalHold?.Status).toBe('ON');
    }

    const period = { from: '2021-06-01T00:00:00.000Z', to: '2022-06-01T00:00:00.000Z' };
    const data = await fx.reports.certificate(period);
    expect(data.count).toBe(n);
    // Every third message is not from sales.example: the default policy's.
    expect(data.perPolicyVersion.map((p) => [p.policyName, p.policyVersion, p.count])).toEqual([
      ['Default', 2, Math.ceil(n / 3)],
      ['Sales 90 days', 1, n - Math.ceil(n / 3)],
    ]);
    const records: DispositionRecord[] = [];
    for await (const r of fx.catalog.scan<DispositionRecord>(COLLECTIONS.dispositions)) records.push(r.data);
    expect(data.digest).toBe(certificateDigest(records));
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const key = { privateKey, publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(), fingerprint: fingerprintOf(publicKey), source: 'config' as const };
    const cert = signCertificate(data, { organisation: 'Example Corp Ltd' }, key);
    expect(verifyCertificate(cert, key.publicKeyPem)).toBe(true);
    expect(verifyCertificate({ ...cert, itemsDigest: '0'.repeat(64) }, key.publicKeyPem)).toBe(false);
    expect(certificateCsv(data).split('\r\n').length).toBe(n + 2);

    const dir = path.join(await tempDir('retention-report-pdf-'), 'out');
    const pages = await renderPdf(await certificatePdf(data, cert, { organisation: 'Example Corp Ltd' }), dir, 'certificate');
    // About 22 item rows a page (130 items: 8 pages, 40 items: 4).
    expect(pages.length).toBeGreaterThanOrEqual(4);
    for (const p of pages) expect(p).toBeGreaterThan(0.002);
    const rep = await fx.reports.retention(period);
    expect(rep.dispositions.count).toBe(n);
    for (const p of await renderPdf(await retentionReportPdf(rep, { organisation: 'Example Corp Ltd' }), dir, 'retention')) expect(p).toBeGreaterThan(0.002);
    for (const p of await renderPdf(await holdReportPdf(await fx.reports.holdReport(c.id), { organisation: 'Example Corp Ltd' }), dir, 'hold')) expect(p).toBeGreaterThan(0.002);
    console.log(`report PDFs rendered to ${dir}`);
  }, 120_000);
});
