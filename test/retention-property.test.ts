/**
 * Property test of promise 5: random policies, holds, messages and clock
 * steps (seeded, reproducible). After every disposition run, checked against
 * an independent model: no message a hold covers was deleted, and nothing
 * was deleted before the latest retain-until any policy ever gave it.
 * Plus the fail-closed guards (an injected catalog or storage error deletes
 * nothing) and four-eyes mode. Each on both deployments (scale-out: S3
 * Object Lock, OpenSearch index and catalog; its clock stays in the real
 * past, so S3's own Object Lock clock never stands in the way).
 */
import { prng } from '../bench/prng.js';
import { afterEach, describe, expect, it } from 'vitest';
import { DateTime } from 'luxon';
import { retentionFixture, type RetentionFixture } from './helpers/retention-fixture.js';
import { computeRetainUntil, type PolicyInput } from '../retention/index.js';
import type { CatalogStore } from '../src/ports/catalog-store.js';
import type { ObjectStore } from '../src/ports/object-store.js';
import { StorageUnavailableError } from '../src/errors.js';
import { MODES, type Mode } from './helpers/modes.js';


const PEOPLE = ['ann@corp.example', 'bob@corp.example', 'cy@corp.example', 'dee@corp.example', 'eve@other.example', 'fay@other.example'];
const actor = { user: 'officer@corp.example' };
const fixtures: RetentionFixture[] = [];
afterEach(async () => {
  while (fixtures.length) await fixtures.pop()!.close();
});

interface ModelMessage {
  sha: string;
  people: string[];
  date: number;
  receivedAt: number;
  /** Latest retain-until any policy set ever gave it (never shortens). */
  minUntil: string;
  deleted: boolean;
}

/**
 * Embedded always; scale-out when its services run (test/helpers/modes.ts:
 * skipped loudly outside CI, an error in CI), with fewer runs: each step is
 * dozens of S3 and OpenSearch round trips, and the S3 endpoint of the tests
 * (moto) serves some 150 requests/s.
 */
const DEPLOYMENTS: { name: Mode; seeds: number[]; steps: number }[] = MODES.filter((m) => m.enabled).map((m) =>
  m.mode === 'embedded' ? { name: m.mode, seeds: [1, 2, 3, 4, 5, 6], steps: 40 } : { name: m.mode, seeds: [7, 8], steps: 12 },
);

for (const dep of DEPLOYMENTS)
describe(`retention property (${dep.name}): holds always win, nothing goes before its retain-until`, () => {
  for (const seed of dep.seeds) {
    it(`seed ${seed}`, async () => {
      const rnd = prng(seed);
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
      const fx = await retentionFixture({ start: '2020-01-01T00:00:00Z', mode: dep.name });
      fixtures.push(fx);
      const { service, job } = fx;
      const policies = new Map<string, PolicyInput>();
      const def = await service.getPolicy('default');
      const setDefault = async () => {
        const input: PolicyInput = { name: def.name, matcher: {}, period: { unit: 'days', count: 1 + Math.floor(rnd() * 200), from: pick(['sent', 'received'] as const) }, action: 'delete' };
        await service.updatePolicy('default', input, actor);
        policies.set('default', input);
      };
      await setDefault();
      const messages: ModelMessage[] = [];
      const holds = new Map<string, string[]>();
      const caseId = (await service.createCase({ name: 'Case', matterNumber: `M-${seed}`, custodians: [] }, actor)).id;

      const modelUntil = (m: ModelMessage): string => {
        let best: string | undefined;
        for (const [id, p] of policies) {
          if (id === 'default') continue;
          if (p.matcher.custodians!.some((c) => m.people.includes(c))) {
            const u = computeRetainUntil(p.period, m);
            if (!best || u > best) best = u;
          }
        }
        return best ?? computeRetainUntil(policies.get('default')!.period, m);
      };
      /**
       * Scale-out: S3 locks every new object for the store's default retention (the fixture's: 1 day;
       * ARCHIVE_S3_DEFAULT_RETENTION_DAYS) whatever the policies say, and the guard waits for that
       * lock too. The fs store sets no lock of its own.
       */
      const objectFloor = (m: ModelMessage) => (dep.name === 'scale-out' ? new Date(m.receivedAt + 86_400_000).toISOString() : '');
      const refreshModel = () => {
        for (const m of messages) {
          const u = modelUntil(m);
          if (u > m.minUntil) m.minUntil = u;
        }
      };

      let now = DateTime.fromISO('2020-01-01T00:00:00Z', { zone: 'utc' });
      for (let step = 0; step < dep.steps; step++) {
        now = now.plus({ days: 1 + Math.floor(rnd() * 40), hours: Math.floor(rnd() * 24) });
        fx.setNow(now);
        const action = rnd();
        if (action < 0.45) {
          for (let k = 0, n = 1 + Math.floor(rnd() * 3); k < n; k++) {
            const from = pick(PEOPLE);
            const to = [pick(PEOPLE)];
            const bcc = rnd() < 0.3 ? [pick(PEOPLE)] : [];
            const date = now.minus({ days: Math.floor(rnd() * 30) });
            const sha = await fx.archive({ from, to, envelopeTo: bcc, date: date.toISO()! });
            const doc = (await fx.index.get(sha))!;
            const m: ModelMessage = { sha, people: [from, ...to, ...bcc], date: doc.date, receivedAt: doc.receivedAt, minUntil: '', deleted: false };
            m.minUntil = modelUntil(m);
            messages.push(m);
          }
        } else if (action < 0.6) {
          const input: PolicyInput = { name: `p${step}`, matcher: { custodians: [pick(PEOPLE)] }, period: { unit: pick(['days', 'months'] as const), count: 1 + Math.floor(rnd() * 12), from: pick(['sent', 'received'] as const) }, action: 'delete' };
          const ids = [...policies.keys()].filter((k) => k !== 'default');
          if (ids.length && rnd() < 0.5) {
            const id = pick(ids);
            await service.updatePolicy(id, input, actor);
            policies.set(id, input);
          } else policies.set((await service.createPolicy(input, actor)).id, input);
          refreshModel();
        } else if (action < 0.65) {
          await setDefault();
          refreshModel();
        } else if (action < 0.8) {
          const custodians = [pick(PEOPLE)];
          const h = await service.createHold({ caseId, name: `h${step}`, custodians }, actor);
          holds.set(h.id, custodians);
        } else if (action < 0.9 && holds.size) {
          const id = pick([...holds.keys()]);
          await service.releaseHold(id, 'released by the property test', actor);
          holds.delete(id);
        }
        // Which messages a hold covers now, by the model.
        const heldNow = new Set(messages.filter((m) => [...holds.values()].some((cs) => cs.some((c) => m.people.includes(c)))).map((m) => m.sha));
        const report = await job.run({ actor: { user: 'scheduler' } });
        const nowIso = now.toJSDate().toISOString();
        // Only the object's own default lock (scale-out) may hold up a due message, and only until it ends.
        for (const k of report.skipped) {
          const m = messages.find((x) => x.sha === k.sha256)!;
          expect(`${dep.name}: ${k.reason}`).toBe(`scale-out: the stored object is retained until ${objectFloor(m)}`);
          expect(objectFloor(m) > nowIso).toBe(true);
        }
        for (const m of messages) {
          if (m.deleted) continue;
          if (!(await fx.exists(m.sha))) {
            m.deleted = true;
            expect(heldNow.has(m.sha), `held message ${m.sha} deleted at ${nowIso}`).toBe(false);
            expect(m.minUntil <= nowIso, `message ${m.sha} deleted at ${nowIso} before ${m.minUntil}`).toBe(true);
            expect(objectFloor(m) <= nowIso, `message ${m.sha} deleted at ${nowIso} before its object's lock ${objectFloor(m)}`).toBe(true);
          } else if (!heldNow.has(m.sha) && m.minUntil <= nowIso && objectFloor(m) <= nowIso) {
            // Liveness: due and not held, so it must have gone (the model's date is the engine's date).
            const rec = await service.getMessageRetention(m.sha);
            expect((rec?.retainUntil ?? '') > nowIso, `due message ${m.sha} (${m.minUntil}) kept at ${nowIso}: ${JSON.stringify(rec)}`).toBe(true);
          }
        }
      }
      expect(messages.length).toBeGreaterThan(dep.steps > 20 ? 5 : 0);
      // Not vacuous: the runs did delete.
      if (dep.steps > 20) expect(messages.filter((m) => m.deleted).length).toBeGreaterThan(0);
    }, 300_000);
  }
});

/**
 * `target` with some of its methods replaced: each replacement gets the
 * original (bound) and the call's arguments. Failures and races are injected
 * this way; everything else is the real adapter.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- each replacement takes its own method's arguments
function overriding<T extends object>(target: T, methods: Partial<Record<keyof T, (original: (...a: any[]) => Promise<any>, ...args: any[]) => Promise<unknown>>>): T {
  return new Proxy(target, {
    get(t, prop, recv) {
      const v = Reflect.get(t, prop, recv);
      const replace = methods[prop as keyof T];
      if (typeof v !== 'function') return v;
      const original = (v as (...a: unknown[]) => Promise<unknown>).bind(t);
      return replace ? (...args: unknown[]) => replace(original, ...args) : original;
    },
  });
}

/** A catalog whose reads and writes of one collection's records (by default `get` and `update` of message records) fail from a given moment. */
function failingCatalog(c: CatalogStore, armed: () => boolean, methods: (keyof CatalogStore)[] = ['get', 'update'], collection = 'retention_messages'): CatalogStore {
  const fail = async (original: (...a: unknown[]) => Promise<unknown>, ...args: unknown[]) => {
    if (armed() && args[0] === collection) throw new Error('injected catalog failure');
    return original(...args);
  };
  return overriding(c, Object.fromEntries(methods.map((m) => [m, fail])));
}

function failingStore(s: ObjectStore, armed: () => boolean, method: 'getLegalHold' | 'getRetention' | 'statMessage'): ObjectStore {
  return overriding(s, {
    [method]: async (original: (...a: unknown[]) => Promise<unknown>, ...args: unknown[]) => {
      if (armed()) throw new StorageUnavailableError('injected storage failure');
      return original(...args);
    },
  });
}

for (const dep of DEPLOYMENTS)
describe(`fail-closed disposition (${dep.name})`, () => {
  const setup = async (wrap: { wrapCatalog?: (c: CatalogStore) => CatalogStore; wrapStore?: (s: ObjectStore) => ObjectStore }) => {
    const fx = await retentionFixture({ start: '2020-01-01T00:00:00Z', mode: dep.name, ...wrap });
    fixtures.push(fx);
    await fx.service.updatePolicy('default', { name: 'Default', matcher: {}, period: { unit: 'days', count: 10, from: 'received' }, action: 'delete' }, actor);
    const shas = [];
    for (let i = 0; i < 5; i++) shas.push(await fx.archive({ from: 'a@corp.example', to: ['b@corp.example'], date: '2020-01-01T00:00:00Z' }));
    fx.setNow('2021-01-01T00:00:00Z');
    return { fx, shas };
  };

  it('an injected catalog error during disposition deletes nothing', async () => {
    let armed = false;
    const { fx, shas } = await setup({ wrapCatalog: (c) => failingCatalog(c, () => armed) });
    armed = true;
    const r = await fx.job.run({ actor: { user: 'scheduler' } });
    expect(r.disposed).toBe(0);
    expect(r.skipped.length).toBe(5);
    for (const s of shas) expect(await fx.exists(s)).toBe(true);
    armed = false;
    expect((await fx.job.run({ actor: { user: 'scheduler' } })).disposed).toBe(5);
  });

  /** A store whose deleteMessage fails, after deleting (`after`) or before touching anything (`before`). */
  const failingDelete = (s: ObjectStore, armed: () => boolean, when: 'before' | 'after'): ObjectStore =>
    overriding(s, {
      deleteMessage: async (original, sha: string) => {
        if (armed() && when === 'before') throw new StorageUnavailableError('injected storage failure');
        const r = await original(sha);
        if (armed()) throw new StorageUnavailableError('injected storage failure');
        return r;
      },
    });

  // Failures before anything was deleted: nothing goes, every message is back where it was, and the next run deletes them.
  const putBack: [string, (armed: () => boolean) => Parameters<typeof setup>[0], string][] = [
    ['a catalog error when a batch is marked for deletion', (armed) => ({ wrapCatalog: (c) => failingCatalog(c, armed, ['writeMany']) }), 'injected catalog failure'],
    ['a store failure before anything was deleted', (armed) => ({ wrapStore: (s) => failingDelete(s, armed, 'before') }), 'injected storage failure'],
  ];
  for (const [name, wrap, reason] of putBack) {
    it(`${name} deletes nothing and puts the messages back; the next run deletes them`, async () => {
      let armed = false;
      const { fx, shas } = await setup(wrap(() => armed));
      armed = true;
      const r = await fx.job.run({ actor: { user: 'scheduler' } });
      expect(r.disposed).toBe(0);
      expect(r.skipped.map((x) => x.reason)).toEqual(Array(5).fill(reason));
      for (const x of shas) expect(await fx.exists(x)).toBe(true);
      for (const x of shas) expect((await fx.service.getMessageRetention(x))!.state).toBe('active');
      armed = false;
      expect((await fx.job.run({ actor: { user: 'scheduler' } })).disposed).toBe(5);
    });
  }

  it('a failure after the store deleted (the disposition records) is finished by the next run, one record each', async () => {
    let armed = false;
    const { fx, shas } = await setup({ wrapCatalog: (c) => failingCatalog(c, () => armed, ['writeMany'], 'retention_dispositions') });
    armed = true;
    const r1 = await fx.job.run({ actor: { user: 'scheduler' } });
    expect(r1.disposed).toBe(0);
    expect(r1.skipped.map((s) => s.reason)).toEqual(Array(5).fill('injected catalog failure'));
    // Deleted from the store, and left `disposing` (marked before the deletion), not `active` or lost.
    for (const s of shas) expect(await fx.exists(s)).toBe(false);
    for (const s of shas) expect((await fx.service.getMessageRetention(s))!.state).toBe('disposing');
    armed = false;
    fx.setNow('2021-01-02T00:00:00Z');
    const r2 = await fx.job.run({ actor: { user: 'scheduler' } });
    expect(r2.skipped).toEqual([]);
    expect(r2.disposed).toBe(5);
    for (const s of shas) expect((await fx.service.getMessageRetention(s))!.state).toBe('disposed');
    const records = (await fx.catalog.list<{ sha256: string; disposedAt: string }>('retention_dispositions', { limit: 100 })).records.map((x) => x.data);
    expect(records.map((x) => x.sha256).sort()).toEqual([...shas].sort());
    // The record id was fixed when the message was marked: the finishing run wrote it under that id, at its own time.
    expect(new Set(records.map((x) => x.disposedAt))).toEqual(new Set(['2021-01-02T00:00:00.000Z']));
  });

  it('a store failure after the message was deleted leaves it disposing; the next run finishes it, one record each', async () => {
    let armed = false;
    const { fx, shas } = await setup({ wrapStore: (s) => failingDelete(s, () => armed, 'after') });
    armed = true;
    const r1 = await fx.job.run({ actor: { user: 'scheduler' } });
    expect(r1.disposed).toBe(0);
    for (const s of shas) expect(await fx.exists(s)).toBe(false);
    for (const s of shas) expect((await fx.service.getMessageRetention(s))!.state).toBe('disposing');
    armed = false;
    const r2 = await fx.job.run({ actor: { user: 'scheduler' } });
    expect(r2.skipped).toEqual([]);
    expect(r2.disposed).toBe(5);
    const records = (await fx.catalog.list<{ sha256: string }>('retention_dispositions', { limit: 100 })).records;
    expect(records.map((x) => x.data.sha256).sort()).toEqual([...shas].sort());
  });

  it('a final write that failed after it was applied (a timed-out bulk) still counts what became disposed', async () => {
    const lostReply = (c: CatalogStore): CatalogStore =>
      overriding(c, {
        writeMany: async (original, collection: string, items: { data: { state?: string } }[]) => {
          const r = await original(collection, items);
          if (collection === 'retention_messages' && items.some((i) => i.data.state === 'disposed')) throw new Error('injected timeout');
          return r;
        },
      });
    const { fx, shas } = await setup({ wrapCatalog: lostReply });
    const r = await fx.job.run({ actor: { user: 'scheduler' } });
    expect(r.skipped).toEqual([]);
    expect(r.disposed).toBe(5);
    for (const s of shas) expect((await fx.service.getMessageRetention(s))!.state).toBe('disposed');
  });

  it('a hold walk that meets messages gone from the store (disposed of meanwhile, or lost) still holds all the others', async () => {
    const gone = new Set<string>();
    // The store's answer when the disposition job deleted a message after the hold's batch was read.
    const reportsGone = (s: ObjectStore): ObjectStore =>
      overriding(s, {
        setLegalHolds: async (original, shas: string[], on: boolean) => {
          const r = (await original(shas.filter((x) => !gone.has(x)), on)) as { missing: string[] };
          return { missing: [...r.missing, ...shas.filter((x) => gone.has(x))] };
        },
      });
    const { fx, shas } = await setup({ wrapStore: reportsGone });
    const rec = (await fx.catalog.get<Record<string, unknown>>('retention_messages', shas[0]))!;
    await fx.catalog.update('retention_messages', shas[0], { ...rec.data, state: 'disposed' }, rec.version);
    gone.add(shas[0]); // disposed of: its record says so
    gone.add(shas[1]); // lost: its record does not (an integrity problem for `archive verify`, not a reason to stop the hold)
    const kase = await fx.service.createCase({ name: 'Race', matterNumber: 'R-1', custodians: [] }, actor);
    const hold = await fx.service.createHold({ caseId: kase.id, name: 'race hold', query: 'from:a@corp.example' }, actor);
    expect(hold.messageCount).toBe(5);
    for (const s of shas.slice(2)) {
      expect((await fx.service.getMessageRetention(s))!.held).toBe(true);
      expect(await fx.store.getLegalHold(s)).toBe(true);
    }
    expect((await fx.service.getMessageRetention(shas[0]))!.state).toBe('disposed');
  });

  it('a hold placed on a message left disposing (a crash mid-run) reaches the object, and wins', async () => {
    const { fx, shas } = await setup({});
    // As a run that crashed after marking: the record is disposing, the message still stored.
    const rec = (await fx.catalog.get<Record<string, unknown>>('retention_messages', shas[0]))!;
    await fx.catalog.update('retention_messages', shas[0], { ...rec.data, state: 'disposing', dispositionId: `crashed-${shas[0]}` }, rec.version);
    const kase = await fx.service.createCase({ name: 'Late', matterNumber: 'L-1', custodians: [] }, actor);
    await fx.service.createHold({ caseId: kase.id, name: 'late hold', query: 'from:a@corp.example' }, actor);
    expect(await fx.store.getLegalHold(shas[0])).toBe(true);
    expect((await fx.service.getMessageRetention(shas[0]))!.held).toBe(true);
    const r = await fx.job.run({ actor: { user: 'scheduler' } });
    expect(r.disposed).toBe(0);
    for (const s of shas) expect(await fx.exists(s)).toBe(true);
    const [hold] = await fx.service.listHolds(kase.id);
    await fx.service.releaseHold(hold.id, 'matter closed', actor);
    const r2 = await fx.job.run({ actor: { user: 'scheduler' } });
    expect(r2.disposed).toBe(5);
    const records = (await fx.catalog.list<{ sha256: string; id: string }>('retention_dispositions', { limit: 100 })).records;
    expect(records.find((x) => x.data.sha256 === shas[0])!.data.id).toBe(`crashed-${shas[0]}`);
  });

  for (const method of ['getLegalHold', 'getRetention', 'statMessage'] as const) {
    it(`an injected storage error (${method}) during disposition deletes nothing`, async () => {
      let armed = false;
      const { fx, shas } = await setup({ wrapStore: (s) => failingStore(s, () => armed, method) });
      armed = true;
      const r = await fx.job.run({ actor: { user: 'scheduler' } });
      expect(r.disposed).toBe(0);
      expect(r.skipped.map((s) => s.reason)).toEqual(Array(5).fill('injected storage failure'));
      for (const s of shas) expect(await fx.exists(s)).toBe(true);
    });
  }

  it('a legal hold set on the object alone (catalog says free) still blocks deletion', async () => {
    const { fx, shas } = await setup({});
    await fx.store.setLegalHold(shas[0], true);
    const r = await fx.job.run({ actor: { user: 'scheduler' } });
    expect(r.disposed).toBe(4);
    expect(r.skipped).toEqual([{ sha256: shas[0], reason: 'the stored object is under a legal hold' }]);
    expect(await fx.exists(shas[0])).toBe(true);
  });

  it('a lease held by another live node: the run does nothing', async () => {
    const { fx, shas } = await setup({});
    await fx.catalog.create('retention_leases', 'disposition', { owner: 'other-node', expiresAt: Date.now() + 60_000 });
    const r = await fx.job.run({ actor: { user: 'scheduler' } });
    expect(r.acquired).toBe(false);
    for (const s of shas) expect(await fx.exists(s)).toBe(true);
  });

  it('dry run lists what would go and deletes nothing', async () => {
    const { fx, shas } = await setup({});
    const r = await fx.job.run({ dryRun: true, actor: { user: 'cli:test' } });
    expect(r.candidates.map((c) => c.sha256).sort()).toEqual([...shas].sort());
    for (const s of shas) expect(await fx.exists(s)).toBe(true);
  });
});

for (const dep of DEPLOYMENTS)
describe(`four-eyes mode (${dep.name})`, () => {
  it('nothing is deleted before a second person approves; the proposer cannot approve', async () => {
    const fx = await retentionFixture({ start: '2020-01-01T00:00:00Z', fourEyes: true, mode: dep.name });
    fixtures.push(fx);
    await fx.service.updatePolicy('default', { name: 'Default', matcher: {}, period: { unit: 'days', count: 10, from: 'received' }, action: 'delete' }, actor);
    const sha = await fx.archive({ from: 'a@corp.example', to: ['b@corp.example'], date: '2020-01-01T00:00:00Z' });
    fx.setNow('2021-01-01T00:00:00Z');
    const r1 = await fx.job.run({ actor: { user: 'alice@corp.example' } });
    expect(r1).toMatchObject({ disposed: 0, proposed: 1 });
    expect(await fx.exists(sha)).toBe(true);
    expect((await fx.job.pending()).map((p) => p.sha256)).toEqual([sha]);
    await expect(fx.job.approve([sha], { user: 'alice@corp.example' })).rejects.toThrow(/proposer/);
    expect((await fx.job.run({ actor: { user: 'scheduler' } })).disposed).toBe(0);
    expect(await fx.job.approve([sha], { user: 'bob@corp.example' })).toEqual({ approved: 1, waiting: 0 });
    const r2 = await fx.job.run({ actor: { user: 'scheduler' } });
    expect(r2.disposed).toBe(1);
    expect(await fx.exists(sha)).toBe(false);
    const cert = await fx.reports.certificate({ from: '2020-01-01T00:00:00.000Z', to: '2022-01-01T00:00:00.000Z' });
    expect(cert.items[0]).toMatchObject({ sha256: sha, approver: 'bob@corp.example' });
  });
});
