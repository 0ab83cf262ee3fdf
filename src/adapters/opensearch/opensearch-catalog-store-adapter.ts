/**
 * The scale-out catalog store: the CatalogStore port on top of
 * `search/opensearch/opensearch-catalog-store.ts` (one index per collection,
 * records in `_source`, writes conditional on `if_seq_no`/`if_primary_term`).
 *
 * The port's integer `version` is kept inside the stored document
 * (`{version, data}`); an update reads the record, checks that version, and
 * writes conditionally on the sequence number it read, so a writer that lost
 * a race gets CatalogConflictError whether it lost before or after its read.
 *
 * Visibility: writes do not wait for a refresh (that would add up to the 1 s
 * refresh interval to every write, and an audited request makes several);
 * `list` and `scan` refresh the collection's index first instead, so they see
 * every write that resolved before them, on any node. `get` is real-time.
 *
 * COST: the underlying store does not index the fields of `data`, so `list`
 * filters, sorts and pages in memory over a full pass of the collection
 * (every page is a full pass). Fine for users, tokens, sessions and groups;
 * for the audit trail, a filtered search costs one pass over the trail.
 * `scan` streams and is one pass in total.
 */
import type { Client } from '@opensearch-project/opensearch';
import type { Logger } from '../../logger.js';
import { CatalogConflictError, NotFoundError } from '../../errors.js';
import type { CatalogRecord, CatalogStore, CatalogWrite, CatalogWriteOutcome, ListOptions, ListPage } from '../../ports/catalog-store.js';
import {
  CatalogConflictError as OsConflictError,
  OpenSearchCatalogStore,
  type CatalogRecord as OsRecord,
} from '../../../search/opensearch/opensearch-catalog-store.js';
import { assertBatch, assertCollection, assertWrites, listInMemory, normalizeList } from '../shared/catalog-list.js';

/** What the adapter stores as the underlying record's document. */
interface Stored<T> {
  version: number;
  data: T;
}

export interface OpenSearchCatalogStoreAdapterOptions {
  client: Client;
  indexPrefix: string;
  log: Logger;
  /** Closes the client on `close()` (when the adapter made it). */
  ownsClient?: boolean;
}

export class OpenSearchCatalogStoreAdapter implements CatalogStore {
  readonly driver = 'opensearch';
  private readonly inner: OpenSearchCatalogStore;
  private readonly client: Client;
  private readonly ownsClient: boolean;

  constructor(opts: OpenSearchCatalogStoreAdapterOptions) {
    this.client = opts.client;
    this.ownsClient = opts.ownsClient ?? false;
    this.inner = new OpenSearchCatalogStore({ client: opts.client, indexPrefix: opts.indexPrefix, log: opts.log, waitForRefresh: false });
  }

  /** Collections are created on first use. */
  async init(): Promise<void> {
    await this.client.cluster.health({});
  }

  async get<T>(collection: string, id: string): Promise<CatalogRecord<T> | undefined> {
    assertCollection(collection);
    const r = await this.inner.get<Stored<T>>(collection, id);
    return r ? { id, version: r.doc.version, data: r.doc.data } : undefined;
  }

  async create<T>(collection: string, id: string, data: T): Promise<CatalogRecord<T>> {
    assertCollection(collection);
    await this.write(() => this.inner.put<Stored<T>>(collection, id, { version: 1, data }, 'absent'), collection, id);
    return { id, version: 1, data };
  }

  async update<T>(collection: string, id: string, data: T, expectedVersion: number): Promise<CatalogRecord<T>> {
    const current = await this.current<T>(collection, id, expectedVersion);
    await this.write(() => this.inner.put<Stored<T>>(collection, id, { version: expectedVersion + 1, data }, current.version), collection, id);
    return { id, version: expectedVersion + 1, data };
  }

  async delete(collection: string, id: string, expectedVersion: number): Promise<void> {
    const current = await this.current(collection, id, expectedVersion);
    await this.write(() => this.inner.delete(collection, id, current.version), collection, id);
  }

  async getMany<T>(collection: string, ids: string[]): Promise<Map<string, CatalogRecord<T>>> {
    assertCollection(collection);
    assertBatch(ids, 'getMany');
    const out = new Map<string, CatalogRecord<T>>();
    for (const [id, r] of await this.inner.getMany<Stored<T>>(collection, ids)) out.set(id, { id, version: r.doc.version, data: r.doc.data });
    return out;
  }

  /**
   * As `update` does per record, for a batch: one `_mget` reads the stored
   * versions of the updated ids, an item at another version is a conflict
   * right away, and one `_bulk` writes the rest conditionally on the
   * sequence numbers read (`create` for new records), so an item that lost a
   * race after the read is a conflict too.
   */
  async writeMany<T>(collection: string, items: CatalogWrite<T>[]): Promise<CatalogWriteOutcome[]> {
    assertCollection(collection);
    assertWrites(items);
    const updates = items.filter((i) => i.expectedVersion !== 'create').map((i) => i.id);
    const current = updates.length ? await this.inner.getMany<Stored<T>>(collection, updates) : new Map<string, OsRecord<Stored<T>>>();
    const out: CatalogWriteOutcome[] = [];
    const writes: { id: string; doc: Stored<T>; expect: 'absent' | OsRecord<unknown>['version'] }[] = [];
    const slots: number[] = [];
    for (const it of items) {
      if (it.expectedVersion === 'create') {
        slots.push(out.push({ id: it.id, ok: true, version: 1 }) - 1);
        writes.push({ id: it.id, doc: { version: 1, data: it.data }, expect: 'absent' });
        continue;
      }
      const cur = current.get(it.id);
      if (!cur) out.push({ id: it.id, ok: false, reason: 'not_found' });
      else if (cur.doc.version !== it.expectedVersion) out.push({ id: it.id, ok: false, reason: 'conflict' });
      else {
        slots.push(out.push({ id: it.id, ok: true, version: it.expectedVersion + 1 }) - 1);
        writes.push({ id: it.id, doc: { version: it.expectedVersion + 1, data: it.data }, expect: cur.version });
      }
    }
    const results = await this.inner.putMany(collection, writes);
    results.forEach((r, k) => {
      if (r === 'conflict') out[slots[k]] = { id: writes[k].id, ok: false, reason: 'conflict' };
    });
    return out;
  }

  /** The record as stored, if it is at `expectedVersion`. */
  private async current<T>(collection: string, id: string, expectedVersion: number): Promise<OsRecord<Stored<T>>> {
    assertCollection(collection);
    const r = await this.inner.get<Stored<T>>(collection, id);
    if (!r) throw new NotFoundError(`${collection}/${id} not found`);
    if (r.doc.version !== expectedVersion) throw new CatalogConflictError(`${collection}/${id} was changed by another writer; re-read it and retry`);
    return r;
  }

  private async write<R>(fn: () => Promise<R>, collection: string, id: string): Promise<R> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof OsConflictError) throw new CatalogConflictError(`${collection}/${id} was changed by another writer; re-read it and retry`);
      throw err;
    }
  }

  async list<T>(collection: string, opts: ListOptions = {}): Promise<ListPage<T>> {
    assertCollection(collection);
    const q = normalizeList(opts);
    const all: CatalogRecord<T>[] = [];
    for await (const r of this.scan<T>(collection)) all.push(r);
    return listInMemory(all, q);
  }

  async *scan<T>(collection: string): AsyncIterable<CatalogRecord<T>> {
    assertCollection(collection);
    await this.refresh(collection);
    for await (const r of this.inner.list<Stored<T>>(collection)) yield { id: r.id, version: r.doc.version, data: r.doc.data };
  }

  /** Makes every acknowledged write of the collection visible to searches (any node's). */
  private async refresh(collection: string): Promise<void> {
    await this.inner.ensureCollection(collection);
    await this.client.indices.refresh({ index: this.inner.indexOf(collection) });
  }

  /** Drops a collection (tests). */
  async dropCollection(collection: string): Promise<void> {
    await this.inner.dropCollection(collection);
  }

  async close(): Promise<void> {
    if (this.ownsClient) await this.client.close();
  }
}
