/**
 * The catalog store port: small, mutable, versioned records that are not
 * messages (users, API tokens, sessions, cases, holds, policies, export jobs,
 * the audit trail). Adapters: SQLite (embedded, beside the message index)
 * and OpenSearch (scale-out, one index per collection).
 *
 * Concurrency is optimistic: every record carries a `version`; an update
 * names the version it read and fails with CatalogConflictError when
 * another writer got there first. This is what lets many stateless nodes
 * share one catalog.
 */

export interface CatalogRecord<T> {
  id: string;
  /** Increases by one with every write; 1 for a new record. */
  version: number;
  data: T;
}

/** A value a filter or a sort can compare: top-level scalar fields of `data`. */
export type CatalogScalar = string | number | boolean;

/**
 * Names of collections: lower-case letters, digits and `_`, starting with a
 * letter, at most 64 characters (they become OpenSearch index names).
 */
export const COLLECTION_NAME = /^[a-z][a-z0-9_]{0,63}$/;

/** Names of fields that filters and sorts may use (top-level fields of `data`). */
export const FIELD_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

export interface ListOptions {
  /**
   * Equality filters on top-level fields of `data` (string, number or boolean
   * values). Strict: `1` does not match `true` or `"1"`. A record without the
   * field never matches.
   */
  where?: Record<string, CatalogScalar>;
  /**
   * Inclusive range filters on top-level fields of `data`. Strings compare by
   * their UTF-8 bytes (so ISO-8601 UTC times compare as times), numbers as
   * numbers; a bound of the other type never matches.
   */
  range?: Record<string, { gte?: string | number; lte?: string | number }>;
  /**
   * Top-level field of `data` to sort by; ties are broken by id in the same
   * direction. Records without the field come last in either direction.
   * Strings sort by their UTF-8 bytes. Default: id.
   */
  orderBy?: string;
  order?: 'asc' | 'desc';
  /** At most this many (default 100, max 10,000). */
  limit?: number;
  /** Opaque cursor from the previous page. */
  cursor?: string;
}

export interface ListPage<T> {
  records: CatalogRecord<T>[];
  nextCursor?: string;
}

/** Most ids of one `getMany` and items of one `writeMany` (a page of a bulk walk is 500). */
export const MAX_BATCH = 1000;

/** One write of a `writeMany` batch. */
export interface CatalogWrite<T> {
  id: string;
  data: T;
  /** `create`: the record must not exist yet; a number: the version the writer read (as `update`). */
  expectedVersion: number | 'create';
}

/**
 * What became of one write of a batch: written (with its new version), or
 * not written because the record was not as expected: `conflict` (it exists
 * at another version, or exists at all for a `create`) or `not_found` (an
 * update of an absent record). Either way: re-read it and retry that item.
 */
export type CatalogWriteOutcome =
  | { id: string; ok: true; version: number }
  | { id: string; ok: false; reason: 'conflict' | 'not_found' };

export interface CatalogStore {
  readonly driver: string;

  /** Creates collections/tables/indices as needed. Idempotent. Collection names match {@link COLLECTION_NAME}. */
  init(): Promise<void>;

  /** One record, or undefined. */
  get<T>(collection: string, id: string): Promise<CatalogRecord<T> | undefined>;

  /**
   * Creates a record that must not exist yet. Throws CatalogConflictError
   * if it does (two nodes creating the same id: one wins).
   */
  create<T>(collection: string, id: string, data: T): Promise<CatalogRecord<T>>;

  /**
   * Replaces a record if its current version is `expectedVersion`. Throws
   * CatalogConflictError otherwise (re-read and retry), NotFoundError if absent.
   */
  update<T>(collection: string, id: string, data: T, expectedVersion: number): Promise<CatalogRecord<T>>;

  /** Deletes a record if its current version is `expectedVersion`. */
  delete(collection: string, id: string, expectedVersion: number): Promise<void>;

  /**
   * The records of many ids at once (the batch form of `get`, for bulk
   * walks): absent ids are simply missing from the map. Real-time like `get`.
   * At most {@link MAX_BATCH} ids (ValidationError beyond); duplicates are fine.
   * Cost: SQLite one read transaction, OpenSearch one `_mget`.
   */
  getMany<T>(collection: string, ids: string[]): Promise<Map<string, CatalogRecord<T>>>;

  /**
   * Many creates and updates at once (the batch form of `create`/`update`),
   * each with its own optimistic check: an item that is not as expected is
   * not written and comes back `ok: false`; the others are written (a batch
   * is not all-or-nothing). Outcomes are in the order of `items`. At most
   * {@link MAX_BATCH} items, each id at most once (ValidationError otherwise).
   * Throws only when the store fails as a whole (unavailable); items may then
   * have been written or not, so re-read before retrying.
   * Cost: SQLite one transaction (one fsync), OpenSearch one `_mget` of the
   * updated ids and one `_bulk`.
   */
  writeMany<T>(collection: string, items: CatalogWrite<T>[]): Promise<CatalogWriteOutcome[]>;

  /** Records of a collection, filtered and paged. Sees every write that resolved before it was called. */
  list<T>(collection: string, opts?: ListOptions): Promise<ListPage<T>>;

  /**
   * Every record of a collection in id order (UTF-8 bytes), streamed page by
   * page: never the whole collection in memory. For walks over a collection
   * that grows without bound (verifying the audit trail).
   */
  scan<T>(collection: string): AsyncIterable<CatalogRecord<T>>;

  close(): Promise<void>;
}
