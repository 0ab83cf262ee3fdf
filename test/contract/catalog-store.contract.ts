/**
 * The catalog store contract: one suite that every CatalogStore adapter must
 * pass (SQLite and OpenSearch). A behaviour that differs between adapters is
 * a bug, so nothing here knows which adapter it drives.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CatalogConflictError, NotFoundError, ValidationError } from '../../src/errors.js';
import { MAX_BATCH, type CatalogRecord, type CatalogStore } from '../../src/ports/catalog-store.js';

export interface CatalogFixture {
  store: CatalogStore;
  cleanup(): Promise<void>;
}

interface Item {
  name: string;
  n?: number;
  flag?: boolean;
  group?: string;
  at?: string;
  tags?: string[];
}

/** Reads, changes and writes one record until the write wins (what every caller of `update` does). */
async function incrementWithRetry(store: CatalogStore, collection: string, id: string): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    const cur = await store.get<{ count: number }>(collection, id);
    try {
      await store.update(collection, id, { count: cur!.data.count + 1 }, cur!.version);
      return attempt;
    } catch (err) {
      if (!(err instanceof CatalogConflictError) || attempt > 200) throw err;
      await new Promise((r) => setTimeout(r, Math.random() * 5));
    }
  }
}

async function listAll<T>(store: CatalogStore, collection: string, opts: Parameters<CatalogStore['list']>[1]): Promise<CatalogRecord<T>[]> {
  const out: CatalogRecord<T>[] = [];
  let cursor: string | undefined;
  for (let pages = 0; pages < 1000; pages++) {
    const page = await store.list<T>(collection, { ...opts, cursor });
    out.push(...page.records);
    if (!page.nextCursor) return out;
    cursor = page.nextCursor;
  }
  throw new Error('too many pages');
}

export function catalogStoreContract(name: string, makeStore: () => Promise<CatalogFixture>): void {
  describe(`CatalogStore contract: ${name}`, () => {
    let fx: CatalogFixture;
    let store: CatalogStore;

    beforeEach(async () => {
      fx = await makeStore();
      store = fx.store;
      await store.init();
    });
    afterEach(async () => {
      await fx?.cleanup();
    });

    it('create, get, update and delete with versions', async () => {
      expect(await store.get('things', 'a')).toBeUndefined();
      const created = await store.create<Item>('things', 'a', { name: 'Alpha', n: 1, tags: ['x'] });
      expect(created).toEqual({ id: 'a', version: 1, data: { name: 'Alpha', n: 1, tags: ['x'] } });
      expect(await store.get('things', 'a')).toEqual(created);

      const updated = await store.update<Item>('things', 'a', { name: 'Alpha 2', n: 2 }, 1);
      expect(updated).toEqual({ id: 'a', version: 2, data: { name: 'Alpha 2', n: 2 } });
      expect(await store.get('things', 'a')).toEqual(updated);

      await expect(store.update('things', 'a', { name: 'stale' }, 1)).rejects.toBeInstanceOf(CatalogConflictError);
      await expect(store.delete('things', 'a', 1)).rejects.toBeInstanceOf(CatalogConflictError);
      expect((await store.get<Item>('things', 'a'))!.data.name).toBe('Alpha 2');

      await store.delete('things', 'a', 2);
      expect(await store.get('things', 'a')).toBeUndefined();
      await expect(store.update('things', 'a', { name: 'gone' }, 2)).rejects.toBeInstanceOf(NotFoundError);
      await expect(store.delete('things', 'a', 2)).rejects.toBeInstanceOf(NotFoundError);
      // A deleted id can be created again.
      expect((await store.create('things', 'a', { name: 'again' })).version).toBe(1);
    });

    it('create of an existing id conflicts and keeps the first record', async () => {
      await store.create('things', 'dup', { name: 'first' });
      await expect(store.create('things', 'dup', { name: 'second' })).rejects.toBeInstanceOf(CatalogConflictError);
      expect((await store.get<Item>('things', 'dup'))!.data.name).toBe('first');
    });

    it('collections are separate, and names are checked', async () => {
      await store.create('things', 'x', { name: 'thing' });
      await store.create('other_things', 'x', { name: 'other' });
      expect((await store.get<Item>('things', 'x'))!.data.name).toBe('thing');
      expect((await store.get<Item>('other_things', 'x'))!.data.name).toBe('other');
      expect((await store.list('other_things')).records.map((r) => r.id)).toEqual(['x']);
      await expect(store.get('Bad-Name', 'x')).rejects.toBeInstanceOf(ValidationError);
      await expect(store.list('things', { where: { "x') OR 1=1 --": 1 } })).rejects.toBeInstanceOf(ValidationError);
    });

    it('concurrent creates of one id: exactly one wins', async () => {
      const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => store.create('things', 'race', { name: `w${i}` })));
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(CatalogConflictError);
    });

    it('concurrent updates from one version: exactly one wins, the others conflict', async () => {
      await store.create('counters', 'c', { count: 0 });
      const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => store.update('counters', 'c', { count: i + 1 }, 1)));
      const won = results.filter((r) => r.status === 'fulfilled');
      expect(won).toHaveLength(1);
      for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(CatalogConflictError);
      expect((await store.get('counters', 'c'))!.version).toBe(2);
    });

    it('concurrent read-modify-write with retry loses no increment', async () => {
      await store.create('counters', 'n', { count: 0 });
      const attempts = await Promise.all(Array.from({ length: 20 }, () => incrementWithRetry(store, 'counters', 'n')));
      const final = await store.get<{ count: number }>('counters', 'n');
      expect(final!.data.count).toBe(20);
      expect(final!.version).toBe(21);
      // The writers really raced (otherwise this test shows nothing).
      expect(attempts.some((a) => a > 1)).toBe(true);
    });

    it('concurrent deletes: one wins; a delete racing an update conflicts or wins, never both', async () => {
      await store.create('things', 'd', { name: 'doomed' });
      const results = await Promise.allSettled([store.delete('things', 'd', 1), store.delete('things', 'd', 1), store.update('things', 'd', { name: 'saved' }, 1)]);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const after = await store.get<Item>('things', 'd');
      if (results[2].status === 'fulfilled') expect(after!.data.name).toBe('saved');
      else expect(after).toBeUndefined();
    });

    it('getMany: the records of the ids that exist, with their versions; absent ids are missing', async () => {
      expect((await store.getMany('things', [])).size).toBe(0);
      expect((await store.getMany('never_written', ['a'])).size).toBe(0);
      await store.create<Item>('things', 'a', { name: 'A' });
      await store.create<Item>('things', 'b', { name: 'B' });
      await store.update<Item>('things', 'b', { name: 'B2' }, 1);
      await store.create<Item>('other_things', 'c', { name: 'elsewhere' });
      const got = await store.getMany<Item>('things', ['b', 'zz', 'a', 'c', 'a']);
      expect([...got.keys()].sort()).toEqual(['a', 'b']);
      expect(got.get('a')).toEqual({ id: 'a', version: 1, data: { name: 'A' } });
      expect(got.get('b')).toEqual({ id: 'b', version: 2, data: { name: 'B2' } });
      await expect(store.getMany('things', Array.from({ length: MAX_BATCH + 1 }, (_, i) => `k${i}`))).rejects.toBeInstanceOf(ValidationError);
    });

    it('writeMany: a mixed batch writes what is as expected and reports the rest, in order', async () => {
      await store.create<Item>('things', 'exists', { name: 'first' });
      await store.create<Item>('things', 'current', { name: 'v1' });
      await store.create<Item>('things', 'stale', { name: 'v1' });
      await store.update<Item>('things', 'stale', { name: 'v2' }, 1);
      const out = await store.writeMany<Item>('things', [
        { id: 'new', data: { name: 'created' }, expectedVersion: 'create' },
        { id: 'exists', data: { name: 'second' }, expectedVersion: 'create' },
        { id: 'current', data: { name: 'v2' }, expectedVersion: 1 },
        { id: 'stale', data: { name: 'lost' }, expectedVersion: 1 },
        { id: 'absent', data: { name: 'nowhere' }, expectedVersion: 3 },
      ]);
      expect(out).toEqual([
        { id: 'new', ok: true, version: 1 },
        { id: 'exists', ok: false, reason: 'conflict' },
        { id: 'current', ok: true, version: 2 },
        { id: 'stale', ok: false, reason: 'conflict' },
        { id: 'absent', ok: false, reason: 'not_found' },
      ]);
      const after = await store.getMany<Item>('things', ['new', 'exists', 'current', 'stale', 'absent']);
      expect(after.get('new')).toEqual({ id: 'new', version: 1, data: { name: 'created' } });
      expect(after.get('exists')).toEqual({ id: 'exists', version: 1, data: { name: 'first' } });
      expect(after.get('current')).toEqual({ id: 'current', version: 2, data: { name: 'v2' } });
      expect(after.get('stale')).toEqual({ id: 'stale', version: 2, data: { name: 'v2' } });
      expect(after.has('absent')).toBe(false);
      // The written versions are the ones single-record calls continue from.
      expect((await store.update<Item>('things', 'current', { name: 'v3' }, 2)).version).toBe(3);
      await expect(store.update('things', 'new', { name: 'x' }, 2)).rejects.toBeInstanceOf(CatalogConflictError);
      // And list sees every write of a resolved batch.
      expect((await store.list('things', { where: { name: 'created' } })).records.map((r) => r.id)).toEqual(['new']);
      expect(await store.writeMany('things', [])).toEqual([]);
    });

    it('writeMany: creating existing ids and updating from stale versions write nothing of those items', async () => {
      const ids = Array.from({ length: 20 }, (_, i) => `r${String(i).padStart(2, '0')}`);
      const created = await store.writeMany<{ count: number }>('counters', ids.map((id) => ({ id, data: { count: 0 }, expectedVersion: 'create' as const })));
      expect(created.every((o) => o.ok && o.version === 1)).toBe(true);
      // Every second record moves on behind the batch writer's back.
      for (const id of ids.filter((_, i) => i % 2)) await store.update('counters', id, { count: 100 }, 1);
      const again = await store.writeMany<{ count: number }>('counters', ids.map((id) => ({ id, data: { count: -1 }, expectedVersion: 'create' as const })));
      expect(again.every((o) => !o.ok && o.reason === 'conflict')).toBe(true);
      const bumped = await store.writeMany<{ count: number }>('counters', ids.map((id) => ({ id, data: { count: 1 }, expectedVersion: 1 })));
      expect(bumped.map((o) => o.ok)).toEqual(ids.map((_, i) => i % 2 === 0));
      const now = await store.getMany<{ count: number }>('counters', ids);
      ids.forEach((id, i) => expect(now.get(id)).toEqual({ id, version: 2, data: { count: i % 2 ? 100 : 1 } }));
    });

    it('writeMany: concurrent batches over the same records: each record is won by exactly one writer', async () => {
      const ids = Array.from({ length: 30 }, (_, i) => `c${i}`);
      await store.writeMany('counters', ids.map((id) => ({ id, data: { count: 0 }, expectedVersion: 'create' as const })));
      const writers = 4;
      const results = await Promise.all(
        Array.from({ length: writers }, (_, w) => store.writeMany('counters', ids.map((id) => ({ id, data: { count: w + 1 }, expectedVersion: 1 })))),
      );
      const final = await store.getMany<{ count: number }>('counters', ids);
      ids.forEach((id, k) => {
        const winners = results.map((r, w) => (r[k].ok ? w : -1)).filter((w) => w >= 0);
        expect(winners).toHaveLength(1);
        for (const r of results) if (!r[k].ok) expect(r[k]).toEqual({ id, ok: false, reason: 'conflict' });
        expect(final.get(id)).toEqual({ id, version: 2, data: { count: winners[0] + 1 } });
      });
    });

    it('writeMany checks its batch: ids once each, a bounded size, versions or create', async () => {
      await expect(store.writeMany('things', [
        { id: 'a', data: {}, expectedVersion: 'create' },
        { id: 'a', data: {}, expectedVersion: 'create' },
      ])).rejects.toBeInstanceOf(ValidationError);
      await expect(store.writeMany('things', Array.from({ length: MAX_BATCH + 1 }, (_, i) => ({ id: `k${i}`, data: {}, expectedVersion: 'create' as const })))).rejects.toBeInstanceOf(ValidationError);
      await expect(store.writeMany('things', [{ id: 'a', data: {}, expectedVersion: 0 }])).rejects.toBeInstanceOf(ValidationError);
      await expect(store.writeMany('Bad-Name', [{ id: 'a', data: {}, expectedVersion: 'create' }])).rejects.toBeInstanceOf(ValidationError);
      // Nothing of a refused batch was written.
      expect(await store.get('things', 'a')).toBeUndefined();
    });

    it('writeMany of a full batch: creates, then updates, of MAX_BATCH records', async () => {
      const ids = Array.from({ length: MAX_BATCH }, (_, i) => `m${String(i).padStart(4, '0')}`);
      const c = await store.writeMany<Item>('many', ids.map((id) => ({ id, data: { name: id, n: 0 }, expectedVersion: 'create' as const })));
      expect(c.filter((o) => o.ok)).toHaveLength(MAX_BATCH);
      const u = await store.writeMany<Item>('many', ids.map((id) => ({ id, data: { name: id, n: 1 }, expectedVersion: 1 })));
      expect(u.filter((o) => o.ok && o.version === 2)).toHaveLength(MAX_BATCH);
      const got = await store.getMany<Item>('many', ids);
      expect(got.size).toBe(MAX_BATCH);
      for (const id of ids) expect(got.get(id)!.data.n).toBe(1);
      expect((await store.list('many', { where: { n: 1 }, limit: MAX_BATCH })).records).toHaveLength(MAX_BATCH);
    }, 60_000);

    it('list: strict equality filters on strings, numbers and booleans', async () => {
      await store.create<Item>('items', 'a', { name: 'a', n: 1, flag: true, group: 'g1' });
      await store.create<Item>('items', 'b', { name: 'b', n: 2, flag: false, group: 'g1' });
      await store.create<Item>('items', 'c', { name: 'c', n: 1, flag: true, group: 'g2' });
      await store.create('items', 'd', { name: 'd', n: '1', flag: 1, group: 'g2' });
      await store.create<Item>('items', 'e', { name: 'e' });
      const ids = async (where: Record<string, string | number | boolean>) => (await store.list('items', { where })).records.map((r) => r.id);
      expect(await ids({ group: 'g1' })).toEqual(['a', 'b']);
      expect(await ids({ n: 1 })).toEqual(['a', 'c']);
      expect(await ids({ n: '1' })).toEqual(['d']);
      expect(await ids({ flag: true })).toEqual(['a', 'c']);
      expect(await ids({ flag: false })).toEqual(['b']);
      expect(await ids({ flag: true, group: 'g2' })).toEqual(['c']);
      expect(await ids({ group: 'nope' })).toEqual([]);
      expect(await ids({})).toEqual(['a', 'b', 'c', 'd', 'e']);
    });

    it('list: inclusive ranges on ISO times and numbers', async () => {
      for (let i = 0; i < 10; i++) await store.create('events', `e${i}`, { at: new Date(Date.UTC(2026, 0, 1 + i)).toISOString(), n: i });
      const ids = async (range: Record<string, { gte?: string | number; lte?: string | number }>) => (await store.list('events', { range })).records.map((r) => r.id);
      expect(await ids({ at: { gte: '2026-01-03T00:00:00.000Z', lte: '2026-01-05T00:00:00.000Z' } })).toEqual(['e2', 'e3', 'e4']);
      expect(await ids({ at: { gte: '2026-01-09' } })).toEqual(['e8', 'e9']);
      expect(await ids({ n: { lte: 1 } })).toEqual(['e0', 'e1']);
      expect(await ids({ n: { gte: 3, lte: 4 }, at: { lte: '2026-01-04T12:00:00Z' } })).toEqual(['e3']);
      // A bound of the other type never matches.
      expect(await ids({ n: { gte: '0' } })).toEqual([]);
    });

    it('list: order by a field, ties by id, missing values last, both directions, and pages cover every record once', async () => {
      const groups = ['b', 'a', 'c', 'a', 'b', undefined, 'a', 'c', undefined, 'b', 'a', 'c', 'b'];
      for (let i = 0; i < groups.length; i++) {
        const id = `r${String(i).padStart(2, '0')}`;
        await store.create('rows', id, groups[i] === undefined ? { name: id } : { name: id, group: groups[i] });
      }
      const expected = (desc: boolean) => {
        const rows = groups.map((g, i) => ({ id: `r${String(i).padStart(2, '0')}`, g }));
        const dir = desc ? -1 : 1;
        return rows
          .sort((x, y) => {
            if (x.g === undefined || y.g === undefined) return x.g === y.g ? (x.id < y.id ? -dir : dir) : x.g === undefined ? 1 : -1;
            return x.g !== y.g ? (x.g < y.g ? -dir : dir) : x.id < y.id ? -dir : dir;
          })
          .map((r) => r.id);
      };
      for (const order of ['asc', 'desc'] as const) {
        const one = (await store.list('rows', { orderBy: 'group', order, limit: 100 })).records.map((r) => r.id);
        expect(one).toEqual(expected(order === 'desc'));
        for (const limit of [1, 2, 3, 5]) {
          const all = await listAll(store, 'rows', { orderBy: 'group', order, limit });
          expect(all.map((r) => r.id)).toEqual(expected(order === 'desc'));
        }
      }
      const byIdDesc = await listAll(store, 'rows', { order: 'desc', limit: 4 });
      expect(byIdDesc.map((r) => r.id)).toEqual([...byIdDesc.map((r) => r.id)].sort().reverse());
      expect(byIdDesc).toHaveLength(groups.length);
      // Filter + order + pages together.
      const aOnly = await listAll(store, 'rows', { where: { group: 'a' }, orderBy: 'name', order: 'desc', limit: 1 });
      expect(aOnly.map((r) => r.id)).toEqual(['r10', 'r06', 'r03', 'r01']);
    });

    it('list: numbers sort as numbers; a page after the last has no cursor', async () => {
      for (const n of [10, 9, 100, -1, 2.5]) await store.create('nums', `n${n}`, { n });
      expect((await store.list('nums', { orderBy: 'n' })).records.map((r) => (r.data as { n: number }).n)).toEqual([-1, 2.5, 9, 10, 100]);
      const page = await store.list('nums', { limit: 5 });
      expect(page.records).toHaveLength(5);
      expect(page.nextCursor).toBeUndefined();
    });

    it('ids order by their UTF-8 bytes', async () => {
      const ids = ['b', 'A', 'a', 'é', 'z', '中', '😀', 'ｚ', '0'];
      for (const id of ids) await store.create('unicode', id, { name: id });
      const byBytes = [...ids].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
      expect((await store.list('unicode')).records.map((r) => r.id)).toEqual(byBytes);
      const scanned: string[] = [];
      for await (const r of store.scan('unicode')) scanned.push(r.id);
      expect(scanned).toEqual(byBytes);
    });

    it('list checks its options', async () => {
      await expect(store.list('things', { limit: 0 })).rejects.toBeInstanceOf(ValidationError);
      await expect(store.list('things', { limit: 10_001 })).rejects.toBeInstanceOf(ValidationError);
      await expect(store.list('things', { cursor: 'not-a-cursor' })).rejects.toBeInstanceOf(ValidationError);
      expect((await store.list('never_written')).records).toEqual([]);
    });

    it('scan streams every record in id order, across pages', async () => {
      const n = 1234;
      const ids = Array.from({ length: n }, (_, i) => `k${String(i).padStart(5, '0')}`);
      const shuffled = [...ids].sort(() => Math.random() - 0.5);
      for (let i = 0; i < shuffled.length; i += 50) await Promise.all(shuffled.slice(i, i + 50).map((id) => store.create('many', id, { name: id })));
      const seen: string[] = [];
      for await (const r of store.scan<Item>('many')) {
        expect(r.data.name).toBe(r.id);
        expect(r.version).toBe(1);
        seen.push(r.id);
      }
      expect(seen).toEqual(ids);
      const empty: string[] = [];
      for await (const r of store.scan('never_written')) empty.push(r.id);
      expect(empty).toEqual([]);
    }, 120_000);
  });
}
