/**
 * A small versioned document store on OpenSearch, for the catalog data that
 * lives beside the message index in scale-out mode (holds, policies, cases,
 * users, audit, exports: one collection each).
 *
 * Each collection is its own index `<prefix>-catalog-<collection>`, created on
 * first use with one shard and a `dynamic: strict` mapping that stores the
 * document in `_source` without indexing it. (A collection that later needs
 * queries on some of its fields gets a mapping of its own then.)
 *
 * Concurrency: several app nodes may update the same record. Every read
 * returns the record's `seqNo` and `primaryTerm`; a write that passes them
 * back succeeds only if nobody wrote in between (`if_seq_no` /
 * `if_primary_term`), otherwise it throws {@link CatalogConflictError}, and
 * the caller re-reads and retries (or reports the conflict to the user).
 */
import { errors as osErrors, type Client } from '@opensearch-project/opensearch';
import type { Logger } from 'pino';
import { AppError, ServiceUnavailableError, ValidationError } from '../../src/errors.js';

/** Another writer changed (or created, or deleted) the record since it was read. */
export class CatalogConflictError extends AppError {
  constructor(collection: string, id: string) {
    super('conflict', 409, `${collection}/${id} was changed by someone else; reload it and try again`, { collection, id });
  }
}

/** Where a record stands in its history: pass it back to write only over this very version. */
export interface CatalogVersion {
  seqNo: number;
  primaryTerm: number;
}

export interface CatalogRecord<T> {
  id: string;
  doc: T;
  version: CatalogVersion;
}

/** What a write expects to find: `absent` (create only), a version (update only that one), or nothing (overwrite). */
export type CatalogExpectation = 'absent' | CatalogVersion | undefined;

export interface OpenSearchCatalogStoreOptions {
  client: Client;
  indexPrefix: string;
  log: Logger;
  /**
   * Make each write visible to `list()` before it returns (`refresh=wait_for`,
   * up to the 1 s refresh interval per write). `get()` is real-time either
   * way. Catalog writes are rare human actions, so the default is on.
   */
  waitForRefresh?: boolean;
}

const COLLECTION_RE = /^[a-z][a-z0-9_]{0,63}$/;

/** Records per page in `list()`. */
const LIST_PAGE = 500;

function statusOf(err: unknown): number | undefined {
  return err instanceof osErrors.ResponseError ? err.statusCode : undefined;
}

function errorType(err: unknown): string | undefined {
  if (!(err instanceof osErrors.ResponseError)) return undefined;
  const e = (err.meta?.body as { error?: { type?: string } } | undefined)?.error;
  return typeof e === 'object' ? e?.type : undefined;
}

function wrap(what: string, err: unknown): Error {
  const s = statusOf(err);
  if (
    err instanceof osErrors.ConnectionError ||
    err instanceof osErrors.TimeoutError ||
    err instanceof osErrors.NoLivingConnectionsError ||
    s === 429 ||
    s === 502 ||
    s === 503 ||
    s === 504
  ) {
    return new ServiceUnavailableError('catalog_unavailable', `OpenSearch unavailable (${what}): ${(err as Error).message}`, { cause: err });
  }
  return err instanceof Error ? err : new Error(String(err));
}

export class OpenSearchCatalogStore {
  private readonly client: Client;
  private readonly prefix: string;
  private readonly log: Logger;
  private readonly refresh: 'wait_for' | false;
  private readonly ready = new Map<string, Promise<void>>();

  constructor(opts: OpenSearchCatalogStoreOptions) {
    this.client = opts.client;
    this.prefix = opts.indexPrefix;
    this.log = opts.log;
    this.refresh = opts.waitForRefresh === false ? false : 'wait_for';
  }

  /** The index holding a collection. */
  indexOf(collection: string): string {
    if (!COLLECTION_RE.test(collection)) throw new ValidationError(`bad catalog collection name "${collection}"`);
    return `${this.prefix}-catalog-${collection}`;
  }

  /**
   * Creates the collection's index if missing (idempotent, race-safe). Called
   * by every other method; once per collection and process.
   */
  async ensureCollection(collection: string): Promise<void> {
    const index = this.indexOf(collection);
    let p = this.ready.get(collection);
    if (!p) {
      p = this.create(index).catch((err: unknown) => {
        this.ready.delete(collection);
        throw err;
      });
      this.ready.set(collection, p);
    }
    await p;
  }

  private async create(index: string): Promise<void> {
    const properties = { id: { type: 'keyword' }, doc: { type: 'object', enabled: false }, updatedAt: { type: 'long' } };
    try {
      if ((await this.client.indices.exists({ index })).statusCode === 200) return;
      await this.client.indices.create({
        index,
        body: {
          // One shard: catalog collections are small; replicas follow the cluster size.
          settings: { index: { number_of_shards: 1, auto_expand_replicas: '0-1' } },
          mappings: { dynamic: 'strict', _meta: { owner: 'mail-archive' }, properties },
        } as never,
      });
      this.log.info({ index }, 'created catalog collection');
    } catch (err) {
      if (errorType(err) === 'resource_already_exists_exception') return; // another node won the race
      throw wrap('create catalog collection', err);
    }
  }

  /** One record with its version, or undefined. Real-time (sees writes not yet refreshed). */
  async get<T>(collection: string, id: string): Promise<CatalogRecord<T> | undefined> {
    await this.ensureCollection(collection);
    try {
      const r = await this.client.get({ index: this.indexOf(collection), id });
      const b = r.body as { found: boolean; _seq_no: number; _primary_term: number; _source?: { doc: T } };
      if (!b.found || !b._source) return undefined;
      return { id, doc: b._source.doc, version: { seqNo: b._seq_no, primaryTerm: b._primary_term } };
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw wrap('catalog get', err);
    }
  }

  /**
   * Writes a record. With `expect` = a version it replaces only that version,
   * with `'absent'` it only creates; either throws CatalogConflictError when
   * the record is not as expected. Returns the new version.
   */
  async put<T>(collection: string, id: string, doc: T, expect?: CatalogExpectation): Promise<CatalogVersion> {
    await this.ensureCollection(collection);
    try {
      const r = await this.client.index({
        index: this.indexOf(collection),
        id,
        body: { id, doc, updatedAt: Date.now() } as never,
        refresh: this.refresh,
        ...(expect === 'absent' ? { op_type: 'create' as const } : {}),
        ...(expect && expect !== 'absent' ? { if_seq_no: expect.seqNo, if_primary_term: expect.primaryTerm } : {}),
      });
      const b = r.body as { _seq_no: number; _primary_term: number };
      return { seqNo: b._seq_no, primaryTerm: b._primary_term };
    } catch (err) {
      if (statusOf(err) === 409) throw new CatalogConflictError(collection, id);
      throw wrap('catalog put', err);
    }
  }

  /** Records of many ids in one `_mget` (absent ids are missing from the map). Real-time, like `get`. */
  async getMany<T>(collection: string, ids: string[]): Promise<Map<string, CatalogRecord<T>>> {
    await this.ensureCollection(collection);
    const out = new Map<string, CatalogRecord<T>>();
    if (!ids.length) return out;
    let docs: { _id: string; found?: boolean; _seq_no?: number; _primary_term?: number; _source?: { doc: T } }[];
    try {
      const r = await this.client.mget({ index: this.indexOf(collection), body: { ids: [...new Set(ids)] } });
      docs = (r.body as { docs: typeof docs }).docs;
    } catch (err) {
      throw wrap('catalog mget', err);
    }
    for (const d of docs) {
      if (d.found && d._source && d._seq_no !== undefined && d._primary_term !== undefined) {
        out.set(d._id, { id: d._id, doc: d._source.doc, version: { seqNo: d._seq_no, primaryTerm: d._primary_term } });
      }
    }
    return out;
  }

  /**
   * Many conditional writes in one `_bulk` (each as `put` would: `'absent'`
   * creates only, a version replaces only that version). Per item, in order:
   * the new version, or `'conflict'` when the record was not as expected.
   * Any other item failure (a rejected or failed write) throws, after the
   * other items may have been written: the caller re-reads before retrying.
   */
  async putMany<T>(collection: string, writes: { id: string; doc: T; expect: 'absent' | CatalogVersion }[]): Promise<(CatalogVersion | 'conflict')[]> {
    await this.ensureCollection(collection);
    if (!writes.length) return [];
    const index = this.indexOf(collection);
    const now = Date.now();
    const lines: unknown[] = [];
    for (const w of writes) {
      lines.push(
        w.expect === 'absent'
          ? { create: { _index: index, _id: w.id } }
          : { index: { _index: index, _id: w.id, if_seq_no: w.expect.seqNo, if_primary_term: w.expect.primaryTerm } },
        { id: w.id, doc: w.doc, updatedAt: now },
      );
    }
    let items: Record<string, { status: number; _seq_no?: number; _primary_term?: number; error?: { type?: string; reason?: string } }>[];
    try {
      const r = await this.client.bulk({ body: lines as never, refresh: this.refresh });
      items = (r.body as unknown as { items: typeof items }).items;
    } catch (err) {
      throw wrap('catalog bulk', err);
    }
    const failed: string[] = [];
    const out = items.map((item, i): CatalogVersion | 'conflict' => {
      const res = Object.values(item)[0];
      if (res.status === 409) return 'conflict';
      if (res.status < 300 && res._seq_no !== undefined && res._primary_term !== undefined) return { seqNo: res._seq_no, primaryTerm: res._primary_term };
      failed.push(`${writes[i].id}: ${res.status} ${res.error?.type ?? ''} ${res.error?.reason ?? ''}`.trim());
      return 'conflict';
    });
    if (failed.length) {
      const msg = `catalog bulk write to ${collection}: ${failed.length} of ${writes.length} items failed (${failed.slice(0, 3).join('; ')})`;
      // 429 (write queue full) is an outage to retry later; anything else is a bug or a mapping problem.
      if (items.some((item) => Object.values(item)[0].status === 429)) throw new ServiceUnavailableError('catalog_unavailable', msg);
      throw new Error(msg);
    }
    return out;
  }

  /** Deletes a record (only that version, when given). Returns false when it was absent. */
  async delete(collection: string, id: string, expect?: CatalogVersion): Promise<boolean> {
    await this.ensureCollection(collection);
    try {
      await this.client.delete({
        index: this.indexOf(collection),
        id,
        refresh: this.refresh,
        ...(expect ? { if_seq_no: expect.seqNo, if_primary_term: expect.primaryTerm } : {}),
      });
      return true;
    } catch (err) {
      if (statusOf(err) === 409) throw new CatalogConflictError(collection, id);
      if (statusOf(err) === 404 && !expect) return false;
      if (statusOf(err) === 404) throw new CatalogConflictError(collection, id);
      throw wrap('catalog delete', err);
    }
  }

  /** Every record of a collection, by id, page by page (search-after, no deep offsets). */
  async *list<T>(collection: string): AsyncGenerator<CatalogRecord<T>> {
    await this.ensureCollection(collection);
    let after: unknown[] | undefined;
    for (;;) {
      let hits: { _id: string; _seq_no: number; _primary_term: number; _source: { doc: T }; sort: unknown[] }[];
      try {
        const r = await this.client.search({
          index: this.indexOf(collection),
          body: {
            query: { match_all: {} },
            sort: [{ id: { order: 'asc' } }],
            size: LIST_PAGE,
            seq_no_primary_term: true,
            ...(after ? { search_after: after } : {}),
          } as never,
        });
        hits = (r.body as unknown as { hits: { hits: typeof hits } }).hits.hits;
      } catch (err) {
        throw wrap('catalog list', err);
      }
      for (const h of hits) yield { id: h._id, doc: h._source.doc, version: { seqNo: h._seq_no, primaryTerm: h._primary_term } };
      if (hits.length < LIST_PAGE) return;
      after = hits[hits.length - 1].sort;
    }
  }

  /** Drops a collection's index (tests, and removing a retired collection). */
  async dropCollection(collection: string): Promise<void> {
    const index = this.indexOf(collection);
    this.ready.delete(collection);
    try {
      await this.client.indices.delete({ index });
    } catch (err) {
      if (statusOf(err) !== 404) throw wrap('drop catalog collection', err);
    }
  }
}
