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

export interface ListOptions {
  /** Equality filters on top-level fields of `data` (string, number or boolean values). */
  where?: Record<string, string | number | boolean>;
  /** Top-level field of `data` to sort by; ties are broken by id. Default: id. */
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

export interface CatalogStore {
  readonly driver: string;

  /** Creates collections/tables/indices as needed. Idempotent. */
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

  /** Records of a collection, filtered and paged. */
  list<T>(collection: string, opts?: ListOptions): Promise<ListPage<T>>;

  close(): Promise<void>;
}
