/**
 * The catalog store contract: one suite that every CatalogStore adapter must
 * pass (SQLite and OpenSearch). A behaviour that differs between adapters is
 * a bug, so nothing here knows which adapter it drives.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CatalogConflictError, NotFoundError, ValidationError } from '../../src/errors.js';
import type { CatalogRecord, CatalogStore } from '../../src/ports/catalog-store.js';

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
