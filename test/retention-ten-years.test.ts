/**
 * Ten years of an archive with an injected clock, on both deployments.
 * Messages under several policies expire on exactly the right day (UTC,
 * across leap years); holds block deletion and their release lets it
 * resume; shortening a policy shortens nothing.
 *
 * Embedded (fs store, SQLite): 2020-2030, disposition every day at 00:00 UTC.
 * Scale-out (S3 Object Lock on the test endpoint, OpenSearch index and
 * catalog) differs in two ways, both forced by S3:
 * - the S3 endpoint enforces Object Lock retention by its own clock, the
 *   real one (that is the point of Object Lock: no client clock can shorten
 *   it). An object can only be deleted there once its retain-until is in the
 *   real past, so the plan moves back 8 years (2012-2022): a multiple of 4,
 *   so the same leap days fall at the same places (2012/2016/2020 for
 *   2020/2024/2028) and every expected date keeps its day. The S3 store's own
 *   guard still judges retention by the injected clock;
 * - each run is a few dozen S3 and OpenSearch round trips, so disposition
 *   runs on the day before and the day of every expected disposal, and on
 *   every 1st of January: a deletion a day early is caught by the run the
 *   day before, any earlier one by an earlier run, and a held message meets
 *   runs past its policy's date while its hold lasts.
 * And it asserts what only S3 shows: the object's own Object Lock retention
 * (COMPLIANCE) mirrors the catalog's retain-until, and while a message is
 * held S3 itself refuses to delete its version.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DateTime } from 'luxon';
import { DeleteObjectCommand, GetObjectLegalHoldCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { retentionFixture, type RetentionFixture } from './helpers/retention-fixture.js';
import { MODES, type Mode } from './helpers/modes.js';
import { RetentionLockedError } from '../src/errors.js';
import { COLLECTIONS, computeRetainUntil, type DispositionRecord, type MessageRetention } from '../retention/index.js';

const admin = { user: 'admin@corp.example' };
const officer = { user: 'officer@corp.example' };

describe('computeRetainUntil', () => {
  it('is calendar-correct in UTC: kept through the end day, disposable from the next midnight', () => {
    const at = (iso: string) => ({ date: Date.parse(iso), receivedAt: Date.parse(iso) });
    expect(computeRetainUntil({ unit: 'years', count: 1, from: 'sent' }, at('2020-02-29T10:00:00Z'))).toBe('2021-03-01T00:00:00.000Z');
    expect(computeRetainUntil({ unit: 'years', count: 4, from: 'sent' }, at('2020-02-29T10:00:00Z'))).toBe('2024-03-01T00:00:00.000Z');
    expect(computeRetainUntil({ unit: 'months', count: 30, from: 'sent' }, at('2021-08-31T23:59:59Z'))).toBe('2024-03-01T00:00:00.000Z');
    expect(computeRetainUntil({ unit: 'days', count: 90, from: 'received' }, at('2020-12-15T12:00:00Z'))).toBe('2021-03-16T00:00:00.000Z');
    expect(computeRetainUntil({ unit: 'days', count: 1, from: 'sent' }, at('2023-12-31T23:59:59.999Z'))).toBe('2024-01-02T00:00:00.000Z');
    expect(computeRetainUntil({ unit: 'forever', count: 0, from: 'sent' }, at('2020-01-01T00:00:00Z'))).toBe('9999-12-31T23:59:59.999Z');
  });
});

/** Years the plan moves back per deployment (see above). */
const SHIFT_YEARS: Record<Mode, number> = { embedded: 0, 'scale-out': 8 };

for (const { mode, enabled } of MODES)
describe.runIf(enabled)(`ten years with an injected clock (${mode})`, () => {
  let fx: RetentionFixture;
  const disposedOn = new Map<string, string>();
  const names = new Map<string, string>();
  /** A date or time of the 2020-2030 plan, moved back for this deployment. */
  const at = (iso: string): string => `${Number(iso.slice(0, 4)) - SHIFT_YEARS[mode]}${iso.slice(4)}`;
  const retentionMode = mode === 'embedded' ? 'ARCHIVE' : 'COMPLIANCE';

  /** Scale-out: what S3 itself says of a message's legal hold, and whether it refuses to delete the object's version. */
  const s3Flag = async (sha: string) => (await fx.s3!.client.send(new GetObjectLegalHoldCommand({ Bucket: fx.s3!.bucket, Key: fx.s3!.key(sha) }))).LegalHold?.Status;
  const s3RefusesDelete = async (sha: string) => {
    const { VersionId } = await fx.s3!.client.send(new HeadObjectCommand({ Bucket: fx.s3!.bucket, Key: fx.s3!.key(sha) }));
    const err = await fx.s3!.client.send(new DeleteObjectCommand({ Bucket: fx.s3!.bucket, Key: fx.s3!.key(sha), VersionId })).then(() => undefined, (e: unknown) => e);
    return !!err && (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 403;
  };

  beforeAll(async () => {
    if (mode === 'scale-out') expect(at('2030-01-02') < DateTime.utc().toISODate()!, 'the scale-out plan must lie in the real past').toBe(true);
    fx = await retentionFixture({ start: at('2020-01-01T00:00:00Z'), mode });
  });
  afterAll(async () => {
    await fx?.close();
  });

  it(`runs ${at('2020')}-${at('2030')} ${mode === 'embedded' ? 'day by day' : 'around every expected disposal, and yearly'}`, async () => {
    const { service, job } = fx;
    // Default: five years from receipt, then delete.
    const def = await service.getPolicy('default');
    await service.updatePolicy('default', { name: def.name, matcher: {}, period: { unit: 'years', count: 5, from: 'received' }, action: 'delete' }, admin);
    const finance = await service.createPolicy({ name: 'Finance 7y', matcher: { senders: ['finance.example'] }, period: { unit: 'years', count: 7, from: 'sent' }, action: 'delete' }, admin);
    await service.createPolicy({ name: 'Short 90d', matcher: { recipients: ['short.example'] }, period: { unit: 'days', count: 90, from: 'received' }, action: 'delete' }, admin);
    await service.createPolicy({ name: 'Legal 30m', matcher: { custodians: ['legal@corp.example'] }, period: { unit: 'months', count: 30, from: 'sent' }, action: 'delete' }, admin);
    await service.createPolicy({ name: 'Board forever', matcher: { query: 'subject:board' }, period: { unit: 'forever', count: 0, from: 'sent' }, action: 'delete' }, admin);

    // [name, arrives at, mail, expected disposal day or null (never in these ten years)], in 2020-2030 terms
    const plan2020: [string, string, Parameters<RetentionFixture['archive']>[0], string | null][] = [
      ['leap-finance', '2020-02-29T10:00:00Z', { from: 'a@finance.example', to: ['x@corp.example'], date: '2020-02-29T10:00:00Z' }, '2027-03-01'],
      ['short', '2020-12-15T12:00:00Z', { from: 'b@corp.example', to: ['x@short.example'], date: '2020-12-14T09:00:00Z' }, '2021-03-16'],
      ['longest-wins', '2020-06-30T23:00:00Z', { from: 'c@finance.example', to: ['y@short.example'], date: '2020-06-30T23:00:00Z' }, '2027-07-01'],
      ['legal-leap', '2021-08-31T23:59:59Z', { from: 'd@corp.example', to: ['z@corp.example'], envelopeTo: ['legal@corp.example'], date: '2021-08-31T23:59:59Z' }, '2024-03-01'],
      ['default', '2020-03-01T00:00:00Z', { from: 'e@corp.example', to: ['w@corp.example'], date: '2020-02-28T00:00:00Z' }, '2025-03-02'],
      ['board', '2020-05-05T05:05:05Z', { from: 'f@corp.example', to: ['w@corp.example'], subject: 'Board minutes', date: '2020-05-05T05:05:05Z' }, null],
      // Held from 2021-01-01 until the release on 2028-06-01; would have gone on 2027-01-02.
      ['held-existing', '2020-01-01T08:00:00Z', { from: 'g@finance.example', to: ['held@corp.example'], date: '2020-01-01T08:00:00Z' }, '2028-06-01'],
      // Arrives while the hold is active (a future message held at ingest, Bcc only); default would end 2027-05-06.
      ['held-future', '2022-05-05T10:00:00Z', { from: 'h@corp.example', to: ['v@corp.example'], envelopeTo: ['held@corp.example'], date: '2022-05-05T10:00:00Z' }, '2028-06-01'],
    ];
    const plan = plan2020.map(([name, arrives, mail, day]): (typeof plan2020)[number] => [name, at(arrives), { ...mail, date: at(mail.date) }, day && at(day)]);
    // Scale-out runs disposition around each expected disposal and on each 1st of January.
    const runDays = new Set(plan.flatMap(([, , , day]) => (day ? [day, DateTime.fromISO(day, { zone: 'utc' }).minus({ days: 1 }).toISODate()!] : [])));
    const runsOn = (d: string) => mode === 'embedded' || d.endsWith('-01-01') || runDays.has(d);
    const byDay = new Map<string, typeof plan>();
    for (const p of plan) byDay.set(p[1].slice(0, 10), [...(byDay.get(p[1].slice(0, 10)) ?? []), p]);
    const shas = new Map<string, string>();
    let holdId = '';

    let runs = 0;
    for (let day = DateTime.fromISO(at('2020-01-01T00:00:00Z'), { zone: 'utc' }); day < DateTime.fromISO(at('2030-01-02T00:00:00Z'), { zone: 'utc' }); day = day.plus({ days: 1 })) {
      const d = day.toISODate()!;
      fx.setNow(day);
      if (runsOn(d)) {
        runs++;
        const report = await job.run({ actor: { user: 'scheduler' } });
        expect(report.acquired).toBe(true);
        expect(report.skipped).toEqual([]);
        for (const [name, sha] of shas) if (!disposedOn.has(name) && !(await fx.exists(sha))) disposedOn.set(name, d);
      }

      for (const [name, at, mail] of byDay.get(d) ?? []) {
        fx.setNow(at);
        const sha = await fx.archive(mail);
        shas.set(name, sha);
        names.set(sha, name);
      }
      if (d === at('2021-01-01')) {
        const c = await service.createCase({ name: 'Acme v. Corp', matterNumber: 'M-2021-001', description: 'Contract dispute', custodians: ['held@corp.example'] }, officer);
        const h = await service.createHold({ caseId: c.id, name: 'Custodian hold' }, officer);
        expect(h.messageCount).toBe(1);
        holdId = h.id;
        expect(await fx.store.getLegalHold(shas.get('held-existing')!)).toBe(true);
        // Held: the store refuses to delete it (fs: its own lock record; S3: the store reads the flag)...
        await expect(fx.store.deleteMessage(shas.get('held-existing')!)).rejects.toBeInstanceOf(RetentionLockedError);
        if (mode === 'scale-out') {
          // ...and on S3 the flag is Object Lock's own: S3 itself refuses to delete the version.
          expect(await s3Flag(shas.get('held-existing')!)).toBe('ON');
          expect(await s3RefusesDelete(shas.get('held-existing')!)).toBe(true);
        }
      }
      if (d === at('2021-06-01')) {
        // Shortening a policy shortens nothing.
        const before = (await service.getMessageRetention(shas.get('leap-finance')!))!.retainUntil;
        await service.updatePolicy(finance.id, { name: 'Finance 1y', matcher: { senders: ['finance.example'] }, period: { unit: 'years', count: 1, from: 'sent' }, action: 'delete' }, admin);
        const after = (await service.getMessageRetention(shas.get('leap-finance')!))!;
        expect(after.retainUntil).toBe(before);
        expect(after.policyVersion).toBe(2);
        expect(after.keptLonger).toBe(true);
        expect(after.policyRetainUntil).toBe(at('2021-03-01T00:00:00.000Z'));
        // The object's own retention (fs: the archive's lock record; S3: Object Lock) keeps the longer date too.
        expect(await fx.store.getRetention(shas.get('leap-finance')!)).toEqual({ mode: retentionMode, retainUntil: new Date(at('2027-03-01T00:00:00.000Z')) });
        const rep = await fx.reports.retention({ from: at('2020-01-01T00:00:00.000Z'), to: at('2021-06-01T00:00:00.000Z') });
        expect(rep.keptLonger.map((k) => k.sha256)).toContain(shas.get('leap-finance'));
      }
      if (d === at('2022-05-06')) {
        expect((await service.getMessageRetention(shas.get('held-future')!))!.holdIds).toEqual([holdId]);
        expect(await fx.store.getLegalHold(shas.get('held-future')!)).toBe(true);
        if (mode === 'scale-out') expect(await s3Flag(shas.get('held-future')!)).toBe('ON');
      }
      if (d === at('2027-02-28')) {
        // The last second of the leap-year message's retention: the engine keeps it, and the store refuses by itself.
        fx.setNow(at('2027-02-28T23:59:59.999Z'));
        await job.run({ actor: { user: 'scheduler' } });
        expect(await fx.exists(shas.get('leap-finance')!)).toBe(true);
        await expect(fx.store.deleteMessage(shas.get('leap-finance')!)).rejects.toThrow(/retained until/);
      }
      if (d === at('2028-05-31')) {
        expect(await fx.exists(shas.get('held-existing')!)).toBe(true);
        expect(await fx.exists(shas.get('held-future')!)).toBe(true);
        await expect(service.releaseHold(holdId, '', officer)).rejects.toThrow(/reason/);
        fx.setNow(at('2028-05-31T12:00:00Z'));
        const r = await service.releaseHold(holdId, 'Matter settled', officer);
        expect(r).toEqual({ released: 2, stillHeld: 0, pending: 0 });
        expect(await fx.store.getLegalHold(shas.get('held-existing')!)).toBe(false);
        if (mode === 'scale-out') expect([await s3Flag(shas.get('held-existing')!), await s3Flag(shas.get('held-future')!)]).toEqual(['OFF', 'OFF']);
      }
    }
    if (mode === 'embedded') expect(runs).toBe(3654);

    const expected = Object.fromEntries(plan.map(([name, , , day]) => [name, day]));
    const actual = Object.fromEntries(plan.map(([name]) => [name, disposedOn.get(name) ?? null]));
    expect(actual).toEqual(expected);
  }, 300_000);

  it('left an immutable disposition record for every deletion, with policy version and approver', async () => {
    const records: DispositionRecord[] = [];
    for await (const r of fx.catalog.scan<DispositionRecord>(COLLECTIONS.dispositions)) records.push(r.data);
    expect(records.map((r) => names.get(r.sha256)).sort()).toEqual([...disposedOn.keys()].sort());
    const leap = records.find((r) => names.get(r.sha256) === 'leap-finance')!;
    expect(leap).toMatchObject({ policyName: 'Finance 1y', policyVersion: 2, retainUntil: at('2027-03-01T00:00:00.000Z'), disposedAt: at('2027-03-01T00:00:00.000Z'), approver: expect.stringMatching(/^policy:pol-/) });
    expect(leap.messageId).toMatch(/@test\.example$/);
    for (const r of records) expect(r.disposedAt >= r.retainUntil).toBe(true);
    const left: MessageRetention[] = [];
    for await (const r of fx.catalog.scan<MessageRetention>(COLLECTIONS.messages)) if (r.data.state !== 'disposed') left.push(r.data);
    expect(left.map((m) => names.get(m.sha256))).toEqual(['board']);
    const v = await fx.audit.verify();
    expect(v.ok).toBe(true);
  });
});
