/**
 * The retention engine applies holds and policies in batches (one catalog
 * read, the store's locks for the batch, one catalog write). What batching
 * must not change: a record another writer changed mid-batch is re-read and
 * redone with that writer's change kept; the object is locked before the
 * catalog says so, so a store failure leaves no record claiming a hold; a
 * message missing from the store fails the call without costing the rest of
 * the batch its hold. On both deployments (scale-out when its services run).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { retentionFixture, type RetentionFixture } from './helpers/retention-fixture.js';
import { SCALE_OUT_AVAILABLE, type Mode } from './helpers/modes.js';
import { COLLECTIONS, type MessageRetention } from '../retention/index.js';
import type { CatalogStore, CatalogWrite } from '../src/ports/catalog-store.js';
import type { ObjectStore } from '../src/ports/object-store.js';
import { StorageUnavailableError } from '../src/errors.js';

const actor = { user: 'officer@corp.example' };
const fixtures: RetentionFixture[] = [];
afterEach(async () => {
  while (fixtures.length) await fixtures.pop()!.close();
});

/** The catalog, with a hook run before each `writeMany` of message records. */
function hookedCatalog(c: CatalogStore, before: (items: CatalogWrite<MessageRetention>[]) => Promise<void>): CatalogStore {
  return new Proxy(c, {
    get(target, prop, recv) {
      const v = Reflect.get(target, prop, recv);
      if (prop === 'writeMany') {
        return async (collection: string, items: CatalogWrite<MessageRetention>[]) => {
          if (collection === COLLECTIONS.messages) await before(items);
          return target.writeMany(collection, items);
        };
      }
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

/** The store, with `setLegalHolds` replaced. */
function hookedStore(s: ObjectStore, setLegalHolds: ObjectStore['setLegalHolds']): ObjectStore {
  return new Proxy(s, {
    get(target, prop, recv) {
      if (prop === 'setLegalHolds') return setLegalHolds;
      const v = Reflect.get(target, prop, recv);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

const modes: Mode[] = SCALE_OUT_AVAILABLE ? ['embedded', 'scale-out'] : ['embedded'];

for (const mode of modes)
describe(`retention batches (${mode})`, () => {
  const setup = async (opts: Parameters<typeof retentionFixture>[0] = { start: '2020-01-01T00:00:00Z' }, n = 6) => {
    const fx = await retentionFixture({ ...opts, mode });
    fixtures.push(fx);
    const shas: string[] = [];
    for (let i = 0; i < n; i++) shas.push(await fx.archive({ from: `sender${i}@corp.example`, to: ['cust@corp.example'], date: '2019-12-01T00:00:00Z' }));
    const kase = await fx.service.createCase({ name: 'Case', matterNumber: 'M-1', custodians: ['cust@corp.example'] }, actor);
    return { fx, shas, caseId: kase.id };
  };
  const record = async (fx: RetentionFixture, sha: string) => (await fx.catalog.get<MessageRetention>(COLLECTIONS.messages, sha))!;

  it('a record another writer changes mid-batch is re-read and redone, keeping that change', async () => {
    let armed = false;
    let base: CatalogStore | undefined;
    const { fx, shas, caseId } = await setup({
      start: '2020-01-01T00:00:00Z',
      wrapCatalog: (c) => {
        base = c;
        return hookedCatalog(c, async (items) => {
          if (!armed) return;
          armed = false;
          // Another node proposes two of the batch's messages for disposition between the batch's read and its write.
          for (const it of items.slice(0, 2)) {
            const cur = (await base!.get<MessageRetention>(COLLECTIONS.messages, it.id))!;
            await base!.update(COLLECTIONS.messages, it.id, { ...cur.data, state: 'awaiting_approval', proposedBy: 'other-node', approvals: [] }, cur.version);
          }
        });
      },
    });
    armed = true;
    const hold = await fx.service.createHold({ caseId, name: 'Hold' }, actor);
    expect(armed).toBe(false); // the concurrent writer did run
    expect(hold.messageCount).toBe(shas.length);
    const raced = new Set<string>();
    for (const sha of shas) {
      const r = await record(fx, sha);
      expect(r.data.holdIds).toEqual([hold.id]);
      expect(r.data.held).toBe(true);
      expect(await fx.store.getLegalHold(sha)).toBe(true);
      if (r.data.proposedBy === 'other-node') {
        raced.add(sha);
        expect(r.data.state).toBe('awaiting_approval');
        expect(r.version).toBe(3); // created, proposed by the other node, then held
      } else expect(r.version).toBe(2);
    }
    expect(raced.size).toBe(2);
  });

  it('the object first: when the store cannot set the holds, no record claims one', async () => {
    let failing = false;
    const { fx, shas, caseId } = await setup({
      start: '2020-01-01T00:00:00Z',
      wrapStore: (s) =>
        hookedStore(s, async (ids, on) => {
          if (failing) throw new StorageUnavailableError('injected storage failure');
          return s.setLegalHolds(ids, on);
        }),
    });
    failing = true;
    // The hold is placed all the same (in force through the guard), its application pending with the reason.
    expect(await fx.service.createHold({ caseId, name: 'Hold' }, actor)).toMatchObject({ applyPending: true, lastApplyError: 'injected storage failure' });
    for (const sha of shas) {
      const r = await record(fx, sha);
      expect(r.data.held).toBe(false);
      expect(r.data.holdIds).toEqual([]);
      expect(r.version).toBe(1);
    }
    // New mail meets the hold at ingest; resuming its application once the store is back covers the archive.
    failing = false;
    const [h] = await fx.service.listHolds(caseId);
    expect(await fx.service.retryApplies()).toEqual({ holds: 1, applied: 1, pending: 0 });
    for (const sha of shas) {
      expect((await record(fx, sha)).data.holdIds).toEqual([h.id]);
      expect(await fx.store.getLegalHold(sha)).toBe(true);
    }
  });

  it('a message missing from the store does not stop the hold: the rest of its batch is held', async () => {
    const lost: { sha?: string } = {};
    const { fx, shas, caseId } = await setup({
      start: '2020-01-01T00:00:00Z',
      wrapStore: (s) =>
        hookedStore(s, async (ids, on) => {
          // As if one message had been disposed of between the index walk and the store call.
          const r = await s.setLegalHolds(
            ids.filter((id) => id !== lost.sha),
            on,
          );
          return { missing: [...r.missing, ...(lost.sha && ids.includes(lost.sha) ? [lost.sha] : [])] };
        }),
    });
    const gone = (lost.sha = shas[2]);
    // A hold stopped half-way would leave the later pages unheld; the missing one is logged (`archive verify` reports it).
    const hold = await fx.service.createHold({ caseId, name: 'Hold' }, actor);
    expect(hold.messageCount).toBe(shas.length);
    for (const sha of shas) {
      const r = await record(fx, sha);
      expect(r.data.held, sha).toBe(sha !== gone);
      expect(await fx.store.getLegalHold(sha)).toBe(sha !== gone);
    }
  });

  it('the ingest hook: a batch naming a message twice gives one record, returned for each', async () => {
    const { fx, shas } = await setup({ start: '2020-01-01T00:00:00Z' }, 2);
    const docs = (await Promise.all(shas.map((s) => fx.index.get(s)))).map((d) => d!);
    const out = await fx.service.applyToDocuments([docs[0], docs[1], docs[0]]);
    expect(out.map((r) => r.sha256)).toEqual([shas[0], shas[1], shas[0]]);
    // Nothing changed since they were archived: the records stay at version 1.
    for (const sha of shas) expect((await record(fx, sha)).version).toBe(1);
  });

  it('a hold walks without the text only when no policy matches on it: a body-text policy keeps governing its messages', async () => {
    const fx = await retentionFixture({ start: '2020-01-01T00:00:00Z', mode });
    fixtures.push(fx);
    const merger = await fx.service.createPolicy({ name: 'Merger 10y', matcher: { query: 'body:merger' }, period: { unit: 'years', count: 10, from: 'sent' }, action: 'delete' }, actor);
    const sizes = await fx.service.createPolicy({ name: 'Finance 3y', matcher: { senders: ['finance.example'] }, period: { unit: 'years', count: 3, from: 'sent' }, action: 'delete' }, actor);
    const m1 = await fx.archive({ from: 'a@corp.example', to: ['cust@corp.example'], date: '2019-12-01T00:00:00Z', body: 'About the merger with Contoso.' });
    const m2 = await fx.archive({ from: 'cfo@finance.example', to: ['cust@corp.example'], date: '2019-12-01T00:00:00Z', body: 'Quarterly numbers.' });
    const m3 = await fx.archive({ from: 'b@corp.example', to: ['cust@corp.example'], date: '2019-12-01T00:00:00Z', body: 'Lunch?' });
    const before = await Promise.all([m1, m2, m3].map((s) => record(fx, s)));
    expect(before.map((r) => r.data.policyId)).toEqual([merger.id, sizes.id, before[2]!.data.policyId]);
    const kase = await fx.service.createCase({ name: 'Case', matterNumber: 'M-2', custodians: ['cust@corp.example'] }, actor);
    const hold = await fx.service.createHold({ caseId: kase.id, name: 'Custodian hold' }, actor);
    expect(hold.messageCount).toBe(3);
    const after = await Promise.all([m1, m2, m3].map((s) => record(fx, s)));
    for (const [i, r] of after.entries()) {
      expect(r.data.held).toBe(true);
      // The hold's walk evaluated the policies on whole documents: each keeps its policy and dates.
      expect(r.data.policyId).toBe(before[i]!.data.policyId);
      expect(r.data.policyRetainUntil).toBe(before[i]!.data.policyRetainUntil);
    }
    // The simulator sees the text too.
    const sim = await fx.service.simulate({ name: 'Merger 12y', matcher: { query: 'body:merger' }, period: { unit: 'years', count: 12, from: 'sent' }, action: 'delete' }, merger.id);
    expect(sim.governed).toBe(1);
    expect(sim.extended).toBe(1);
  });
});
