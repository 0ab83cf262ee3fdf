/**
 * The disposition guard re-checks every active hold against the message's
 * indexed document. That document must reflect every stored envelope: a
 * later delivery of the same message (a Bcc to a custodian) that the index
 * has not caught up with (its index job refused while Redis was down, or lost
 * in a crash between the envelope write and indexing) would otherwise let a
 * custodian hold miss the message, and the message be deleted. The guard
 * compares the store's envelope listing with the document, skips the message
 * when they differ, and asks for it to be indexed again. On both deployments.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { retentionFixture, silent, type RetentionFixture } from './helpers/retention-fixture.js';
import { MODES } from './helpers/modes.js';
import { newEnvelopeId } from '../src/domain/envelope-id.js';
import { documentFor } from '../ingest/index-message.job.js';
import { DispositionJob } from '../retention/index.js';

const actor = { user: 'officer@corp.example' };
const scheduler = { actor: { user: 'scheduler' } };
const fixtures: RetentionFixture[] = [];
afterEach(async () => {
  while (fixtures.length) await fixtures.pop()!.close();
});

/** The fixture's disposition job, with a way to ask for indexing. */
function jobWith(fx: RetentionFixture, requestIndex: (sha256: string, size: number) => Promise<void>): DispositionJob {
  return new DispositionJob({ catalog: fx.catalog, index: fx.index, store: fx.store, audit: fx.audit, service: fx.service, clock: fx.now, log: silent, fourEyes: false, budgetMs: 120_000, requestIndex });
}

for (const { mode, enabled } of MODES)
describe.runIf(enabled)(`the disposition guard and envelopes the index lacks (${mode})`, () => {
  const setup = async () => {
    // The real past, so that S3's own clock lets the scale-out store delete.
    const fx = await retentionFixture({ start: '2020-01-01T00:00:00Z', mode });
    fixtures.push(fx);
    await fx.service.updatePolicy('default', { name: 'Default', matcher: {}, period: { unit: 'days', count: 10, from: 'received' }, action: 'delete' }, actor);
    const requested: string[] = [];
    /** The index job's steps: the document from the store's envelopes, indexed, retention applied. */
    const indexAgain = async (sha: string) => {
      const doc = (await documentFor(fx.store, sha))!;
      await fx.index.upsert([doc]);
      await fx.index.refresh();
      await fx.service.applyToDocuments([doc]);
    };
    const job = jobWith(fx, async (sha) => void requested.push(sha));
    return { fx, job, requested, indexAgain };
  };

  it('a Bcc delivery not yet indexed: skipped (not deleted), indexing requested; once indexed, the custodian hold holds it', async () => {
    const { fx, job, requested, indexAgain } = await setup();
    const sha = await fx.archive({ from: 'a@corp.example', to: ['b@corp.example'], date: '2020-01-01T00:00:00Z' });
    const plain = await fx.archive({ from: 'a@corp.example', to: ['b@corp.example'], date: '2020-01-01T00:00:00Z' });
    // A second delivery of the first message names the custodian as a Bcc; its index job never ran.
    await fx.store.putEnvelope({ id: newEnvelopeId(fx.now().toJSDate()), sha256: sha, source: 'smtp', receivedAt: fx.now().toJSDate().toISOString(), recipients: [{ address: 'dave@corp.example', kind: 'bcc' }], flags: [] });
    const kase = await fx.service.createCase({ name: 'Dave', matterNumber: 'M-7', custodians: ['dave@corp.example'] }, actor);
    // The hold's walk goes by the index, which does not know Dave received it yet.
    expect((await fx.service.createHold({ caseId: kase.id, name: 'Dave' }, actor)).messageCount).toBe(0);

    fx.setNow('2020-03-01T00:00:00Z');
    // A dry run reports the skip and changes nothing: no indexing is requested.
    const dry = await job.run({ ...scheduler, dryRun: true });
    expect(dry.candidates.map((c) => c.sha256)).toEqual([plain]);
    expect(dry.skipped.map((x) => x.reason)).toEqual([expect.stringMatching(/index lacks 1 of its stored envelopes.*not a dry run requests it/)]);
    expect(requested).toEqual([]);

    const run = await job.run(scheduler);
    expect(run.disposed).toBe(1);
    expect(await fx.exists(plain)).toBe(false);
    expect(await fx.exists(sha)).toBe(true);
    expect(run.skipped).toHaveLength(1);
    expect(run.skipped[0]).toMatchObject({ sha256: sha });
    expect(run.skipped[0].reason).toMatch(/index lacks 1 of its stored envelopes.*\(requested\)/);
    expect(requested).toEqual([sha]);

    // The requested index job runs: the document now names Dave, and the hold reaches the message at ingest.
    await indexAgain(sha);
    expect(await fx.service.getMessageRetention(sha)).toMatchObject({ held: true });
    const again = await job.run(scheduler);
    expect(again.disposed).toBe(0);
    expect(await fx.exists(sha)).toBe(true);
    expect(await fx.store.getLegalHold(sha)).toBe(true);
  }, 120_000);

  it('when indexing cannot be requested the message is still skipped, and the reason says how to repair it', async () => {
    const { fx } = await setup();
    const sha = await fx.archive({ from: 'a@corp.example', to: ['b@corp.example'], date: '2020-01-01T00:00:00Z' });
    await fx.store.putEnvelope({ id: newEnvelopeId(fx.now().toJSDate()), sha256: sha, source: 'smtp', receivedAt: fx.now().toJSDate().toISOString(), recipients: [{ address: 'c@corp.example', kind: 'bcc' }], flags: [] });
    const job = jobWith(fx, async () => {
      throw new Error('queue unavailable');
    });
    fx.setNow('2020-03-01T00:00:00Z');
    const run = await job.run(scheduler);
    expect(run.disposed).toBe(0);
    expect(run.skipped.map((s) => s.reason)).toEqual([expect.stringMatching(/could not be requested: queue unavailable; `archive reindex` does it/)]);
    expect(await fx.exists(sha)).toBe(true);
  }, 120_000);
});
