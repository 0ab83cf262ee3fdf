/**
 * Placing a hold saves it first (in force from then on: the disposition
 * guard re-checks every active hold) and then applies it to the archived
 * mail (records marked, legal-hold flags set). When that application cannot
 * finish (storage down, node stopped), the hold comes back `applyPending`
 * and the disposition job resumes it, at each run and at start-up, one
 * walker per hold. A hold released while it is applied (by its walk, or
 * to new mail at ingest) ends with nothing held, even when a read fails
 * on the way. On both deployments (scale-out when its services run).
 */
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { rawMail, retentionFixture, silent, type RetentionFixture } from './helpers/retention-fixture.js';
import { newEnvelopeId } from '../src/domain/envelope-id.js';
import { SCAN_PAGE_SIZE } from '../src/ports/message-index.js';
import { documentFor } from '../ingest/index-message.job.js';
import { batches, eachLimit } from '../retention/retention-service.js';
import type { IndexedMessage } from '../src/domain/indexed-message.js';
import { MODES, type Mode } from './helpers/modes.js';
import { StorageUnavailableError } from '../src/errors.js';
import type { ObjectStore } from '../src/ports/object-store.js';
import type { CatalogStore } from '../src/ports/catalog-store.js';
import { CatalogLease } from '../retention/lease.js';
import { COLLECTIONS, RetentionService, type Hold, type MessageRetention } from '../retention/index.js';

const actor = { user: 'officer@corp.example' };
const scheduler = { actor: { user: 'scheduler' } };
const fixtures: RetentionFixture[] = [];
afterEach(async () => {
  while (fixtures.length) await fixtures.pop()!.close();
});

/** The store, with a hook run before each `setLegalHolds`, and one before each `getLegalHold` (the disposition guard's read). */
function hookedLegalHolds(store: ObjectStore, before: (on: boolean) => Promise<void>, beforeGet?: () => Promise<void>): ObjectStore {
  return new Proxy(store, {
    get(target, prop, recv) {
      const v = Reflect.get(target, prop, recv);
      if (prop === 'setLegalHolds') {
        return async (ids: string[], on: boolean) => {
          await before(on);
          return target.setLegalHolds(ids, on);
        };
      }
      if (prop === 'getLegalHold' && beforeGet) {
        return async (sha256: string) => {
          await beforeGet();
          return target.getLegalHold(sha256);
        };
      }
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

async function setup(
  mode: Mode,
  before: (on: boolean, fx: RetentionFixture) => Promise<void> = async () => undefined,
  wrapCatalog?: (c: CatalogStore) => CatalogStore,
  beforeGet?: (fx: RetentionFixture) => Promise<void>,
) {
  const ref: { fx?: RetentionFixture } = {};
  let inner: ObjectStore | undefined;
  // The real past, so that S3's own clock lets the scale-out store delete.
  const fx = await retentionFixture({
    start: '2020-01-01T00:00:00Z',
    mode,
    wrapCatalog,
    wrapStore: (s) => hookedLegalHolds((inner = s), (on) => before(on, ref.fx!), beforeGet && (() => beforeGet(ref.fx!))),
  });
  ref.fx = fx;
  fixtures.push(fx);
  await fx.service.updatePolicy('default', { name: 'Default', matcher: {}, period: { unit: 'days', count: 10, from: 'received' }, action: 'delete' }, actor);
  const shas: string[] = [];
  for (let i = 0; i < 3; i++) shas.push(await fx.archive({ from: `s${i}@corp.example`, to: ['cust@corp.example'], date: '2020-01-01T00:00:00Z' }));
  const kase = await fx.service.createCase({ name: 'Case', matterNumber: 'M-1', custodians: ['cust@corp.example'] }, actor);
  const held = async () => Promise.all(shas.map(async (sha) => (await fx.catalog.get<MessageRetention>(COLLECTIONS.messages, sha))!.data.held));
  const flags = async () => Promise.all(shas.map((sha) => inner!.getLegalHold(sha)));
  const hold = async (id: string) => (await fx.catalog.get<Hold>(COLLECTIONS.holds, id))!.data;
  return { fx, shas, caseId: kase.id, held, flags, hold };
}

/** Stores `n` messages to `to` (8 at a time), then indexes them and applies retention as one batch (the index job's steps). */
async function archiveBulk(fx: RetentionFixture, n: number, to: string): Promise<string[]> {
  const shas: string[] = [];
  await eachLimit(Array.from({ length: n }, (_, i) => i), 8, async (i) => {
    const bytes = rawMail({ from: `bulk${i}@corp.example`, to: [to], date: '2020-01-01T00:00:00Z' });
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const file = path.join(fx.dir, `bulk-${i}.eml`);
    await writeFile(file, bytes);
    await fx.store.putMessage({ path: file, sha256, size: bytes.length });
    await fx.store.putEnvelope({ id: newEnvelopeId(fx.now().toJSDate()), sha256, source: 'import', receivedAt: fx.now().toJSDate().toISOString(), recipients: [{ address: to, kind: 'to' }], flags: [] });
    shas.push(sha256);
  });
  const docs: IndexedMessage[] = [];
  await eachLimit(shas, 8, async (sha) => void docs.push((await documentFor(fx.store, sha))!));
  await fx.index.upsert(docs);
  await fx.index.refresh();
  await fx.service.applyToDocuments(docs);
  return shas;
}

/** The hold is applied to the three messages of `setup`: counted, no longer pending, every record held and every flag on. */
async function expectApplied(s: Awaited<ReturnType<typeof setup>>, id: string): Promise<void> {
  const h = await s.hold(id);
  expect(h).toMatchObject({ status: 'active', messageCount: 3 });
  expect(h).not.toHaveProperty('applyPending');
  expect(await s.held()).toEqual([true, true, true]);
  expect(await s.flags()).toEqual([true, true, true]);
}

/** A hold placed while the store refuses legal holds (so its application is pending); `up()` brings the store back. */
async function pendingHold(mode: Mode) {
  let down = true;
  const s = await setup(mode, async (on) => {
    if (down && on) throw new StorageUnavailableError('could not set the legal holds: the store is down (injected)');
  });
  const h = await s.fx.service.createHold({ caseId: s.caseId, name: 'Cust' }, actor);
  return { ...s, h, up: () => void (down = false) };
}

for (const { mode, enabled } of MODES)
describe.runIf(enabled)(`hold application: failures, interruptions and releases under way (${mode})`, () => {
  it('is placed and in force, answered pending, and the next disposition run applies it', async () => {
    const s = await pendingHold(mode);
    const { h } = s;
    expect(h).toMatchObject({ status: 'active', applyPending: true, messageCount: 0 });
    expect(h.lastApplyError).toMatch(/store is down/);
    expect(await s.held()).toEqual([false, false, false]);
    expect(await s.flags()).toEqual([false, false, false]);

    // Due, store still down: the guard refuses every message the hold covers, and the retry fails again.
    s.fx.setNow('2020-03-01T00:00:00Z');
    const during = await s.fx.job.run(scheduler);
    expect(during).toMatchObject({ disposed: 0, holdsApplied: 0, holdsApplyPending: 1 });
    expect(during.skipped.map((x) => x.reason)).toEqual(s.shas.map(() => expect.stringMatching(new RegExp(`covered by active hold ${h.id}`))));
    for (const sha of s.shas) expect(await s.fx.exists(sha)).toBe(true);

    s.up();
    const after = await s.fx.job.run(scheduler);
    expect(after).toMatchObject({ disposed: 0, holdsApplied: 1, holdsApplyPending: 0 });
    const done = await s.hold(h.id);
    expect(done).toMatchObject({ status: 'active', messageCount: 3 });
    expect(done).not.toHaveProperty('applyPending');
    expect(done).not.toHaveProperty('lastApplyError');
    expect(await s.held()).toEqual([true, true, true]);
    expect(await s.flags()).toEqual([true, true, true]);
    expect((await s.fx.job.run(scheduler)).holdsApplied).toBe(0);
    expect((await s.fx.audit.verify()).ok).toBe(true);
  }, 120_000);

  it('is resumed by the start-up pass of the disposition job (even with no schedule)', async () => {
    const s = await pendingHold(mode);
    const { h } = s;
    expect(h.applyPending).toBe(true);
    s.up();
    s.fx.job.start(0);
    await expect.poll(async () => (await s.hold(h.id)).applyPending, { timeout: 60_000 }).toBeUndefined();
    await s.fx.job.stop();
    await expectApplied(s, h.id);
  }, 120_000);

  it('is left to the node that holds its lease, and applied once that lease is gone', async () => {
    const s = await pendingHold(mode);
    const { h } = s;
    s.up();
    const other = new CatalogLease(s.fx.catalog, `hold-apply:${h.id}`, 'another-node', 60_000);
    expect(await other.acquire()).toBe(true);
    expect(await s.fx.service.retryApplies()).toEqual({ holds: 1, applied: 0, pending: 1 });
    expect(await s.held()).toEqual([false, false, false]);
    await other.release();
    expect(await s.fx.service.retryApplies()).toEqual({ holds: 1, applied: 1, pending: 0 });
    expect(await s.held()).toEqual([true, true, true]);
  }, 120_000);

  it('a node that stops mid-walk leaves the hold pending, and the next walk finishes it', async () => {
    let down = true;
    let stopping = false;
    const s = await setup(mode, async (on) => {
      if (!on) return;
      if (down) throw new StorageUnavailableError('down (injected)');
      stopping = true; // the node starts to stop while the first page is applied
    });
    // More than one page of the walk (SCAN_PAGE_SIZE) in all.
    const all = [...s.shas, ...(await archiveBulk(s.fx, SCAN_PAGE_SIZE, 'cust@corp.example'))];
    const h = await s.fx.service.createHold({ caseId: s.caseId, name: 'Cust' }, actor);
    expect(h.applyPending).toBe(true);
    down = false;
    const heldCount = async () => {
      let n = 0;
      for (const part of batches(all, 500)) n += [...(await s.fx.catalog.getMany<MessageRetention>(COLLECTIONS.messages, part)).values()].filter((r) => r.data.held).length;
      return n;
    };

    expect(await s.fx.service.retryApplies(() => stopping)).toEqual({ holds: 1, applied: 0, pending: 1 });
    expect(await s.hold(h.id)).toMatchObject({ applyPending: true, lastApplyError: expect.stringMatching(/interrupted/), messageCount: 0 });
    expect(await heldCount()).toBe(SCAN_PAGE_SIZE); // the page under way was finished; the next was not started

    stopping = false;
    expect(await s.fx.service.retryApplies(() => stopping)).toEqual({ holds: 1, applied: 1, pending: 0 });
    expect(await s.hold(h.id)).toMatchObject({ messageCount: all.length });
    expect(await heldCount()).toBe(all.length);
  }, 300_000);

  it('released while it is being applied: nothing stays held, and the release is complete', async () => {
    let released = false;
    const s = await setup(mode, async (on, fx) => {
      if (!on || released) return;
      released = true;
      // Another officer releases the hold after its walk read the page and before the page is written.
      const [h] = await fx.service.activeHolds();
      await fx.service.releaseHold(h.id, 'Matter settled', actor);
    });
    const h = await s.fx.service.createHold({ caseId: s.caseId, name: 'Cust' }, actor);
    expect(released).toBe(true);
    expect(h).toMatchObject({ status: 'released', releaseReason: 'Matter settled' });
    expect(h).not.toHaveProperty('applyPending');
    expect(h).not.toHaveProperty('clearsPending');
    expect(await s.held()).toEqual([false, false, false]);
    expect(await s.flags()).toEqual([false, false, false]);
    s.fx.setNow('2020-03-01T00:00:00Z');
    expect((await s.fx.job.run(scheduler)).disposed).toBe(3);
  }, 120_000);
  it('released while it is applied, then a failed read of the hold: the release retry still frees every message', async () => {
    let released = false;
    let blip = false;
    // The catalog fails the first read of a hold after the release (the walk's own check that it was released).
    const flaky = (c: CatalogStore): CatalogStore =>
      new Proxy(c, {
        get(target, prop, recv) {
          const v = Reflect.get(target, prop, recv);
          if (prop === 'get') {
            return async (collection: string, id: string) => {
              if (blip && collection === COLLECTIONS.holds) {
                blip = false;
                throw new Error('catalog unavailable (injected)');
              }
              return target.get(collection, id);
            };
          }
          return typeof v === 'function' ? v.bind(target) : v;
        },
      });
    const s = await setup(
      mode,
      async (on, fx) => {
        if (!on || released) return;
        released = true;
        const [h] = await fx.service.activeHolds();
        await fx.service.releaseHold(h.id, 'Matter settled', actor);
        blip = true;
      },
      flaky,
    );
    // Placed, and answered (not an error), although its walk ended on the failed read.
    const h = await s.fx.service.createHold({ caseId: s.caseId, name: 'Cust' }, actor);
    expect(h.lastApplyError).toMatch(/catalog unavailable/);
    // The walk marked the page after the release went by: those records name the released hold, and the release stays pending.
    expect(await s.held()).toEqual([true, true, true]);
    expect(await s.hold(h.id)).toMatchObject({ status: 'released', clearsPending: true, applyPending: true });

    s.fx.setNow('2020-03-01T00:00:00Z');
    const run = await s.fx.job.run(scheduler);
    expect(run).toMatchObject({ holdFlagsCleared: 3, holdFlagsPending: 0, disposed: 3 });
    const after = await s.hold(h.id);
    for (const field of ['applyPending', 'lastApplyError', 'clearsPending']) expect(after).not.toHaveProperty(field);
  }, 120_000);
  it('released while new mail meets it at ingest: the new message does not stay held by the released hold', async () => {
    let armed = false;
    const s = await setup(mode, async (on, fx) => {
      if (!on || !armed) return;
      armed = false;
      // The index job read the hold as active; it is released before the new message's record is written.
      const [h] = await fx.service.activeHolds();
      expect(await fx.service.releaseHold(h.id, 'Matter settled', actor)).toMatchObject({ released: 3, pending: 0 });
    });
    const h = await s.fx.service.createHold({ caseId: s.caseId, name: 'Cust' }, actor);
    expect(h.messageCount).toBe(3);
    armed = true;
    const late = await s.fx.archive({ from: 'late@corp.example', to: ['cust@corp.example'], date: '2020-01-01T00:00:00Z' });
    expect(armed).toBe(false);
    expect(await s.fx.service.getMessageRetention(late)).toMatchObject({ held: false, holdIds: [] });
    expect(await s.fx.store.getLegalHold(late)).toBe(false);
    expect(await s.held()).toEqual([false, false, false]);
    expect(await s.hold(h.id)).not.toHaveProperty('clearsPending');
  }, 120_000);
  it('answered before its application ends (waitMs): in force at once, applied in the background, and close() waits for it', async () => {
    let open!: () => void;
    let entered!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const inWalk = new Promise<void>((r) => (entered = r));
    const s = await setup(mode, async (on) => {
      if (!on) return;
      entered();
      await gate; // the store is slow to set the flags
    });
    const h = await s.fx.service.createHold({ caseId: s.caseId, name: 'Cust' }, actor, { waitMs: 50 });
    expect(h).toMatchObject({ status: 'active', applyPending: true, messageCount: 0 });
    expect(h.lastApplyError).toBeUndefined();
    await inWalk; // its walk (which holds the hold's lease) is setting the flags
    // In force before any record or flag says so: due, and the guard refuses every message it covers.
    s.fx.setNow('2020-03-01T00:00:00Z');
    const run = await s.fx.job.run(scheduler);
    expect(run.disposed).toBe(0);
    expect(run.skipped.map((x) => x.reason)).toEqual(s.shas.map(() => expect.stringMatching(new RegExp(`covered by active hold ${h.id}`))));
    // The run left the walk to its owner (the lease), rather than walking it twice.
    expect(run).toMatchObject({ holdsApplied: 0, holdsApplyPending: 1 });
    open();
    await s.fx.service.close();
    await expectApplied(s, h.id);
  }, 120_000);

  it('placed while a disposition run is under way: protects the messages its walk has not reached yet', async () => {
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    let placeHold: (() => Promise<void>) | undefined;
    let holdId = '';
    const s = await setup(
      mode,
      async (on) => {
        if (on) await gate; // the hold's walk is slow to set the flags
      },
      undefined,
      async () => {
        // The run is guarding its first candidate (its holds were read at its start) when an officer places a hold.
        const place = placeHold;
        placeHold = undefined;
        await place?.();
      },
    );
    s.fx.setNow('2020-03-01T00:00:00Z');
    placeHold = async () => {
      holdId = (await s.fx.service.createHold({ caseId: s.caseId, name: 'Cust' }, actor, { waitMs: 0 })).id;
    };
    const run = await s.fx.job.run(scheduler);
    expect(holdId).not.toBe('');
    expect(run.disposed).toBe(0);
    for (const sha of s.shas) expect(await s.fx.exists(sha)).toBe(true);
    expect(run.skipped.map((x) => x.reason)).toEqual(s.shas.map(() => expect.stringMatching(new RegExp(`covered by hold ${holdId}, placed during this run`))));
    // Put back (active, not left disposing) before the hold's walk got to them.
    for (const sha of s.shas) expect((await s.fx.service.getMessageRetention(sha))!.state).toBe('active');
    expect(await s.held()).toEqual([false, false, false]);
    open();
    await s.fx.service.close();
    expect(await s.held()).toEqual([true, true, true]);
    expect(await s.flags()).toEqual([true, true, true]);
  }, 120_000);
  it('placed while the node shuts down: saved and in force, its application left to the disposition job', async () => {
    const s = await setup(mode);
    await s.fx.service.close();
    const h = await s.fx.service.createHold({ caseId: s.caseId, name: 'Cust' }, actor);
    expect(h).toMatchObject({ status: 'active', applyPending: true, messageCount: 0 });
    expect(await s.held()).toEqual([false, false, false]);
    // Not walked at all (not even started and interrupted).
    const saved = await s.hold(h.id);
    expect(saved).toMatchObject({ applyPending: true });
    expect(saved).not.toHaveProperty('lastApplyError');
  }, 120_000);

  it('reaches the records a disposition run has marked disposing before it walks the rest', async () => {
    const calls: string[][] = [];
    const s = await setup(mode);
    const store = s.fx.store;
    const recorded = new Proxy(store, {
      get(target, prop, recv) {
        const v = Reflect.get(target, prop, recv);
        if (prop === 'setLegalHolds') return async (ids: string[], on: boolean) => (on && calls.push([...ids]), target.setLegalHolds(ids, on));
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
    // A run is deleting the last message (marked, not yet deleted).
    const rec = (await s.fx.catalog.get<MessageRetention>(COLLECTIONS.messages, s.shas[2]))!;
    await s.fx.catalog.update(COLLECTIONS.messages, rec.id, { ...rec.data, state: 'disposing', dispositionId: `test-${rec.id}` }, rec.version);
    const service = new RetentionService({ catalog: s.fx.catalog, index: s.fx.index, store: recorded, audit: s.fx.audit, clock: s.fx.now, log: silent });
    const h = await service.createHold({ caseId: s.caseId, name: 'Cust' }, actor);
    expect(h.messageCount).toBe(3);
    expect(calls[0]).toEqual([s.shas[2]]);
    expect(await s.flags()).toEqual([true, true, true]);
  }, 120_000);
});
