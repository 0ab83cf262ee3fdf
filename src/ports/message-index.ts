/**
 * The search index and message catalog port. Adapters: `SqliteMessageIndex`
 * (embedded, FTS5) and `OpenSearchMessageIndex` (scale-out). Both compile the
 * same query AST (search/query-ast.ts) and must give identical results for
 * date-sorted searches: ids, order, totals and facet counts.
 *
 * THE MATCHING SEMANTICS BOTH ADAPTERS IMPLEMENT ARE IN search/MATCHING.md
 * (the contract; read it before writing an adapter or a compiler).
 */
import type { IndexedMessage } from '../domain/indexed-message.js';
import type { QueryNode } from '../../search/query-ast.js';

/**
 * Which mail a user may see. A message is in scope when any of its
 * participants (From, Sender, To, Cc, Bcc, Reply-To), envelope recipients
 * (including the lists they were expanded from) or envelope senders has an
 * address in `addresses` or a domain in `domains` (a domain covers its
 * subdomains). `null`/undefined means unrestricted; an empty scope sees nothing.
 */
export interface Scope {
  addresses: string[];
  domains: string[];
}

export type SortField = 'date' | 'relevance';

export interface SearchRequest {
  query: QueryNode;
  scope?: Scope | null;
  /** `date` sorts by date then id; `relevance` by the engine's score then id (engines may differ). */
  sort: SortField;
  order: 'asc' | 'desc';
  /** Page size, 1 to 500. */
  size: number;
  /** Opaque cursor from a previous page's `nextCursor` (search-after, no deep offsets). */
  cursor?: string;
  /** Compute facets over the whole match set (not just the page). */
  facets?: boolean;
}

export interface FacetBucket {
  value: string;
  count: number;
}

/** Top 10 of each, by count descending then value ascending. Counts are messages. */
export interface Facets {
  /** From addresses. */
  senders: FacetBucket[];
  /** Domains of To, Cc, Bcc and envelope recipients (exact domains, not parents). */
  domains: FacetBucket[];
  /** UTC year of the message date, as a 4-digit string. */
  years: FacetBucket[];
}

export interface SearchPage {
  /** Exact number of matching messages in scope. */
  total: number;
  hits: IndexedMessage[];
  facets?: Facets;
  /** Present when more hits follow. */
  nextCursor?: string;
}

/** What a bulk walk selects: a query within a scope (no sort, no paging, no totals). */
export interface ScanRequest {
  query: QueryNode;
  scope?: Scope | null;
  /**
   * The documents come with `body` and `attachmentText` empty (every other
   * field whole), for walks that look at neither: a hold or policy whose
   * matchers use no words of the body (queryUsesText). In a real archive the
   * text is most of a document, so a bulk walk then reads and parses a
   * fraction of it (on OpenSearch the text stays out of `_source`).
   */
  withoutText?: boolean;
}

/** Most documents in one page of a `scan`. */
export const SCAN_PAGE_SIZE = 1000;

/** A new index being built beside the live one; the live one serves searches until `commit`. */
export interface IndexRebuild {
  upsert(docs: IndexedMessage[]): Promise<void>;
  /** Atomically makes the rebuilt index the live one (every process sees it), and drops the old. */
  commit(): Promise<void>;
  /** Drops the half-built index; the live one is untouched. */
  abort(): Promise<void>;
}

export interface IndexHealth {
  ok: boolean;
  driver: string;
  detail?: string;
  documents?: number;
}

/** Width of an ingest statistics bucket: a UTC hour, day or calendar month. */
export type HistogramInterval = 'hour' | 'day' | 'month';

export interface IngestHistogramRequest {
  interval: HistogramInterval;
  /** Epoch ms (UTC), inclusive; must be the start of an `interval` bucket. */
  from: number;
  /** Epoch ms (UTC), exclusive; must be the start of an `interval` bucket, after `from`. */
  to: number;
}

export interface IngestBucket {
  /** Epoch ms (UTC) where the bucket starts; it ends where the next one starts. */
  start: number;
  /** Messages whose `receivedAt` falls in the bucket. */
  messages: number;
  /** Sum of their raw sizes (`size`), in bytes. */
  bytes: number;
}

export interface IngestHistogram {
  interval: HistogramInterval;
  from: number;
  to: number;
  /** Every bucket of [from, to), oldest first, empty ones included (zero). */
  buckets: IngestBucket[];
  /**
   * Indexed messages with no receive time in the index, in no bucket: OpenSearch
   * documents written before the mapping had `receivedAt` (until `archive reindex`).
   */
  undated: number;
}

export interface MessageIndex {
  readonly driver: string;

  /** Creates or updates schema/mappings; logs what it changed. Idempotent. */
  init(): Promise<void>;

  /**
   * Inserts or replaces documents by id, as one batch. Durable on return, and
   * visible to `existing` at once; visible to `get`, `search`, `scan` and
   * `thread` within the engine's refresh interval (OpenSearch: 1 s; SQLite:
   * at once), or at once after `refresh()`.
   */
  upsert(docs: IndexedMessage[]): Promise<void>;

  /**
   * Makes every write that resolved before the call visible to `search`
   * (OpenSearch forces a refresh; SQLite has nothing to do). For the few
   * readers that must see the latest writes: applying a new legal hold to
   * the messages already archived, and tests.
   */
  refresh(): Promise<void>;

  /** One document, or undefined when absent or outside `scope`. */
  get(id: string, scope?: Scope | null): Promise<IndexedMessage | undefined>;

  search(req: SearchRequest): Promise<SearchPage>;

  /**
   * Every document matching a query within a scope, in pages of at most
   * SCAN_PAGE_SIZE, in ascending id order: the bulk walk behind applying a
   * legal hold or a policy to what it selects. Id order is the key order of
   * the per-message records those walks write (catalog, lock table), so a
   * batch of writes lands on neighbouring pages instead of one page per
   * message. Costs one pass over the match set, where paging `search` would
   * pay for totals on every page (SQLite re-materialises the whole match set
   * per page). Sees what `search` sees when it starts: every such document
   * that is not deleted meanwhile is yielded, at least once (a rebuild
   * committed during the scan restarts it, from the lowest id); documents
   * written after the start may or may not be.
   */
  scan(req: ScanRequest): AsyncIterable<IndexedMessage[]>;

  /** Every message of a thread inside `scope`, oldest first (date, then id). At most 1,000. */
  thread(threadId: string, scope?: Scope | null): Promise<IndexedMessage[]>;

  /** Which of `ids` are indexed (for start-up reconciliation with the store). */
  existing(ids: string[]): Promise<Set<string>>;

  /**
   * For each of `ids` that is indexed: the envelope ids its document was
   * built from (start-up reconciliation finds documents that lack a stored
   * envelope). Sees what `existing` sees.
   */
  indexedEnvelopeIds(ids: string[]): Promise<Map<string, string[]>>;

  /** Removes documents (disposition). Absent ids are ignored. */
  delete(ids: string[]): Promise<void>;

  /** Number of indexed messages. */
  count(): Promise<number>;

  /**
   * Ingest statistics over the whole archive (no scope): messages and bytes
   * per `interval` bucket by `receivedAt`, over [from, to) in UTC, every
   * bucket present. Sees what `search` sees. At most MAX_HISTOGRAM_BUCKETS
   * (1,000) buckets; a request for more, an unaligned or empty range or an
   * unknown interval is a ValidationError. Both adapters give identical buckets.
   */
  ingestHistogram(req: IngestHistogramRequest): Promise<IngestHistogram>;

  /** Starts building a fresh index beside the live one (`archive reindex`). */
  beginRebuild(): Promise<IndexRebuild>;

  health(): Promise<IndexHealth>;

  close(): Promise<void>;
}
