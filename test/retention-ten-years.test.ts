/**
 * Ten years of an embedded archive with an injected clock: disposition runs
 * every day at 00:00 UTC. Messages under several policies expire on exactly
 * the right day (UTC, across leap years); holds block deletion and their
 * release lets it resume; shortening a policy shortens nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DateTime } from 'luxon';
import { retentionFixture, type RetentionFixture } from './helpers/retention-fixture.js';
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

describe('ten years with an injected clock (embedded: fs + SQLite)', () => {
  let fx: RetentionFixture;
  const disposedOn = new Map<string, string>();
  const names = new Map<string, string>();

  beforeAll(async () => {
    fx = await retentionFixture({ start: '2020-01-01T00:00:00Z' });
  });
  afterAll(async () => {
    await fx?.close();
  });

  it('runs 2020-2030 day by day', async () => {
    const { service, job } = fx;
    // Default: five years from receipt, then delete.
    const def = await service.getPolicy('default');
    await service.updatePolicy('default', { name: def.name, matcher: {}, period: { unit: 'years', count: 5, from: 'received' }, action: 'delete' }, admin);
    const finance = await service.createPolicy({ name: 'Finance 7y', matcher: { senders: ['finance.example'] }, period: { unit: 'years', count: 7, from: 'sent' }, action: 'delete' }, admin);
    await service.createPolicy({ name: 'Short 90d', matcher: { recipients: ['short.example'] }, period: { unit: 'days', count: 90, from: 'received' }, action: 'delete' }, admin);
    await service.createPolicy({ name: 'Legal 30m', matcher: { custodians: ['legal@corp.example'] }, period: { unit: 'months', count: 30, from: 'sent' }, action: 'delete' }, admin);
    await service.createPolicy({ name: 'Board forever', matcher: { query: 'subject:board' }, period: { unit: 'forever', count: 0, from: 'sent' }, action: 'delete' }, admin);

    // [name, arrives at, mail, expected disposal day or null (never in these ten years)]
    const plan: [string, string, Parameters<RetentionFixture['archive']>[0], string | null][] = [
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
    const byDay = new Map<string, typeof plan>();
    for (const p of plan) byDay.set(p[1].slice(0, 10), [...(byDay.get(p[1].slice(0, 10)) ?? []), p]);
    const shas = new Map<string, string>();
    let holdId = '';

    for (let day = DateTime.fromISO('2020-01-01T00:00:00Z', { zone: 'utc' }); day < DateTime.fromISO('2030-01-02T00:00:00Z', { zone: 'utc' }); day = day.plus({ days: 1 })) {
      const d = day.toISODate()!;
      fx.setNow(day);
      const report = await job.run({ actor: { user: 'scheduler' } });
      expect(report.acquired).toBe(true);
      expect(report.skipped).toEqual([]);
      for (const [name, sha] of shas) if (!disposedOn.has(name) && !(await fx.exists(sha))) disposedOn.set(name, d);

      for (const [name, at, mail] of byDay.get(d) ?? []) {
        fx.setNow(at);
        const sha = await fx.archive(mail);
        shas.set(name, sha);
        names.set(sha, name);
      }
      if (d === '2021-01-01') {
        const c = await service.createCase({ name: 'Acme v. Corp', matterNumber: 'M-2021-001', description: 'Contract dispute', custodians: ['held@corp.example'] }, officer);
        const h = await service.createHold({ caseId: c.id, name: 'Custodian hold' }, officer);
        expect(h.messageCount).toBe(1);
        holdId = h.id;
        expect(await fx.store.getLegalHold(shas.get('held-existing')!)).toBe(true);
      }
      if (d === '2021-06-01') {
        // Shortening a policy shortens nothing.
        const before = (await service.getMessageRetention(shas.get('leap-finance')!))!.retainUntil;
        await service.updatePolicy(finance.id, { name: 'Finance 1y', matcher: { senders: ['finance.example'] }, period: { unit: 'years', count: 1, from: 'sent' }, action: 'delete' }, admin);
        const after = (await service.getMessageRetention(shas.get('leap-finance')!))!;
        expect(after.retainUntil).toBe(before);
        expect(after.policyVersion).toBe(2);
        expect(after.keptLonger).toBe(true);
        expect(after.policyRetainUntil).toBe('2021-03-01T00:00:00.000Z');
        expect((await fx.store.getRetention(shas.get('leap-finance')!))!.retainUntil.toISOString()).toBe('2027-03-01T00:00:00.000Z');
        const rep = await fx.reports.retention({ from: '2020-01-01T00:00:00.000Z', to: '2021-06-01T00:00:00.000Z' });
        expect(rep.keptLonger.map((k) => k.sha256)).toContain(shas.get('leap-finance'));
      }
      if (d === '2022-05-06') {
        expect((await service.getMessageRetention(shas.get('held-future')!))!.holdIds).toEqual([holdId]);
        expect(await fx.store.getLegalHold(shas.get('held-future')!)).toBe(true);
      }
      if (d === '2027-02-28') {
        // The last second of the leap-year message's retention.
        fx.setNow('2027-02-28T23:59:59.999Z');
        await job.run({ actor: { user: 'scheduler' } });
        expect(await fx.exists(shas.get('leap-finance')!)).toBe(true);
      }
      if (d === '2028-05-31') {
        expect(await fx.exists(shas.get('held-existing')!)).toBe(true);
        expect(await fx.exists(shas.get('held-future')!)).toBe(true);
        await expect(service.releaseHold(holdId, '', officer)).rejects.toThrow(/reason/);
        fx.setNow('2028-05-31T12:00:00Z');
        const r = await service.releaseHold(holdId, 'Matter settled', officer);
        expect(r).toEqual({ released: 2, stillHeld: 0 });
        expect(await fx.store.getLegalHold(shas.get('held-existing')!)).toBe(false);
      }
    }

    const expected = Object.fromEntries(plan.map(([name, , , day]) => [name, day]));
    const actual = Object.fromEntries(plan.map(([name]) => [name, disposedOn.get(name) ?? null]));
    expect(actual).toEqual(expected);
  }, 300_000);

  it('left an immutable disposition record for every deletion, with policy version and approver', async () => {
    const records: DispositionRecord[] = [];
    for await (const r of fx.catalog.scan<DispositionRecord>(COLLECTIONS.dispositions)) records.push(r.data);
    expect(records.map((r) => names.get(r.sha256)).sort()).toEqual([...disposedOn.keys()].sort());
    const leap = records.find((r) => names.get(r.sha256) === 'leap-finance')!;
    expect(leap).toMatchObject({ policyName: 'Finance 1y', policyVersion: 2, retainUntil: '2027-03-01T00:00:00.000Z', disposedAt: '2027-03-01T00:00:00.000Z', approver: expect.stringMatching(/^policy:pol-/) });
    expect(leap.messageId).toMatch(/@test\.example$/);
    for (const r of records) expect(r.disposedAt >= r.retainUntil).toBe(true);
    const left: MessageRetention[] = [];
    for await (const r of fx.catalog.scan<MessageRetention>(COLLECTIONS.messages)) if (r.data.state !== 'disposed') left.push(r.data);
    expect(left.map((m) => names.get(m.sha256))).toEqual(['board']);
    const v = await fx.audit.verify();
    expect(v.ok).toBe(true);
  });
});
