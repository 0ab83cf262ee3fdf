/**
 * The scale-out message index: OpenSearch (tested against 2.19).
 *
 * Layout, for ARCHIVE_OPENSEARCH_INDEX_PREFIX = `<p>`:
 *   `<p>-messages`                     alias every read and write goes through
 *   `<p>-messages-v<N>-<timestamp>`    the concrete index behind it (N = MAPPING_VERSION)
 *   index template `<p>-messages`      settings + mappings for `<p>-messages-v*`
 *   `<p>-messages-next`                alias of the index a rebuild is building, if any
 *   `<p>-messages-build-v<N>-<ts>`     that rebuild's own write alias
 *   `<p>-messages-deletions`           recent deletions (id, time), for a rebuild's commit
 *
 * `init()` creates the template and, when the alias is missing, a concrete
 * index behind it; an existing index of an older mapping version gets the
 * added fields with put_mapping. `beginRebuild()` builds a new concrete index
 * beside the live one and `commit()` swaps the alias in one `_aliases` call,
 * so every app node switches at once, then drops the old index. Mail indexed
 * or deleted by other nodes while the rebuild runs is carried over at commit.
 *
 * Matching semantics: search/MATCHING.md, compiled in
 * opensearch-query-compiler.ts over the fields of opensearch-mappings.ts.
 * Date-sorted results (ids, order, totals, facets) are identical to the SQLite
 * adapter's; the shared contract suite checks it.
 *
 * TLS: verification is always on (`rejectUnauthorized: true`); a private CA
 * is added with ARCHIVE_OPENSEARCH_CA, never worked around.
 */
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, errors as osErrors, type ClientOptions } from '@opensearch-project/opensearch';
import type { Logger } from 'pino';
import type { Config } from '../../src/config/config.js';
import { supersedes, withoutText, type IndexedMessage } from '../../src/domain/indexed-message.js';
import { AppError, ConfigError, ServiceUnavailableError, ValidationError } from '../../src/errors.js';
import type {
  Facets,
  FacetBucket,
  HistogramInterval,
  IndexHealth,
  IndexRebuild,
  IngestHistogram,
  IngestHistogramRequest,
  MessageIndex,
  ScanRequest,
  Scope,
  SearchPage,
  SearchRequest,
} from '../../src/ports/message-index.js';
import { SCAN_PAGE_SIZE } from '../../src/ports/message-index.js';

/** What a `withoutText` scan leaves out of `_source` (blanked in the documents it yields). */
const TEXT_SOURCE_FIELDS = ['msg.body', 'msg.attachmentText'];
import { FACET_DOMAIN_FIELD, MAPPING_PROPERTIES, MAPPING_VERSION, cut, diffMappings, indexBody, toIndexDocument, yearString } from './opensearch-mappings.js';
import { compileQuery, withScope, type OsQuery } from './opensearch-query-compiler.js';
import { bucketStarts } from '../ingest-histogram.js';

// ---------------------------------------------------------------- knobs

/**
 * Largest `_bulk` request body, in bytes. OpenSearch accepts up to
 * `http.max_content_length` (100 MB by default), but one request is parsed
 * and held in memory on the coordinating node, and a 429 makes us send it
 * again: 5 MB keeps both cheap while amortising the per-request overhead.
 * A single document larger than this goes alone.
 */
export const DEFAULT_BULK_MAX_BYTES = 5 * 1024 * 1024;
/** Most documents per `_bulk` request (same reasoning, for many small documents). */
export const DEFAULT_BULK_MAX_DOCS = 1000;

export interface RetryOptions {
  /** Attempts of one bulk request (or of its rejected items) before giving up with ServiceUnavailableError. */
  maxAttempts: number;
  /** First backoff delay, ms; doubled at each attempt, with ±50 % jitter so writers do not retry in step. */
  baseDelayMs: number;
  /** Ceiling of one backoff delay, ms. */
  maxDelayMs: number;
}

/**
 * Retry of 429 (OpenSearch's write queue is full): 8 attempts with 200 ms
 * doubling to at most 10 s wait about 25 s in all before the job fails and
 * its queue retries it later. Each wait holds the caller's batch in memory.
 */
export const DEFAULT_RETRY: RetryOptions = { maxAttempts: 8, baseDelayMs: 200, maxDelayMs: 10_000 };

/**
 * How far before a rebuild's start (ms) its commit looks for documents other
 * nodes wrote to the old index: covers clock skew between app nodes (each
 * stamps `indexedAt` with its own clock). 0 trusts NTP-synced clocks; a larger
 * margin also carries over documents written just before the rebuild started,
 * which the rebuild meant to replace (e.g. one deleted from the store since).
 */
const REBUILD_CATCH_UP_SKEW_MS = 0;

/** Ids per `mget` in `existing()`; each id is ~70 bytes in the request. */
const MGET_CHUNK = 1000;

/** Page size when a rebuild copies documents from the old index (each page is held in memory once). */
const COPY_PAGE = 500;

/** Largest page a search may ask for (the port's limit). */
const MAX_PAGE_SIZE = 500;

/** Buckets per facet (the port's top 10). */
const FACET_SIZE = 10;

/** Most messages `thread()` returns (the port's bound). */
const THREAD_LIMIT = 1000;

/** date_histogram calendar intervals of the port's bucket widths (all in UTC). */
const CALENDAR_INTERVAL: Record<HistogramInterval, string> = { hour: '1h', day: '1d', month: '1M' };

/**
 * How long deletion records (see `delete()`) are kept, ms. They only matter to
 * a rebuild running at the time of the deletion; 30 days outlasts any rebuild.
 * Each is ~100 bytes.
 */
const DELETION_RECORD_TTL_MS = 30 * 86_400_000;

/** The rebuild was replaced by a newer one (`beginRebuild` elsewhere); its writes and commit fail. */
export class RebuildSupersededError extends ServiceUnavailableError {
  constructor(index: string) {
    super('index_rebuild_superseded', `another index rebuild replaced this one (${index})`);
  }
}

// ---------------------------------------------------------------- errors

/** OpenSearch refused some documents for a reason retrying will not fix (e.g. a mapping error). */
export class IndexWriteError extends AppError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('index_write_failed', 500, message, details);
  }
}

function statusOf(err: unknown): number | undefined {
  return err instanceof osErrors.ResponseError ? err.statusCode : undefined;
}

/** The reason OpenSearch gave, or the client's message. */
function reasonOf(err: unknown): string {
  if (err instanceof osErrors.ResponseError) {
    const body = err.meta?.body as { error?: { type?: string; reason?: string; root_cause?: { reason?: string }[] } | string } | undefined;
    const e = body?.error;
    if (typeof e === 'string') return e;
    if (e) return `${e.type ?? 'error'}: ${e.root_cause?.[0]?.reason ?? e.reason ?? ''}`;
    return `HTTP ${err.statusCode}`;
  }
  return err instanceof Error ? err.message : String(err);
}

function errorType(err: unknown): string | undefined {
  if (!(err instanceof osErrors.ResponseError)) return undefined;
  const e = (err.meta?.body as { error?: { type?: string } } | undefined)?.error;
  return typeof e === 'object' ? e?.type : undefined;
}

/** Transient: OpenSearch is down, unreachable, overloaded or restarting; a later retry may work. */
function isUnavailable(err: unknown): boolean {
  if (err instanceof osErrors.ConnectionError || err instanceof osErrors.TimeoutError || err instanceof osErrors.NoLivingConnectionsError) return true;
  const s = statusOf(err);
  return s === 429 || s === 502 || s === 503 || s === 504;
}

function unavailable(what: string, err: unknown): ServiceUnavailableError {
  return new ServiceUnavailableError('index_unavailable', `OpenSearch unavailable (${what}): ${reasonOf(err)}`, { cause: err });
}

/** Runs one OpenSearch call; transient failures become ServiceUnavailableError (the caller's job retries). */
async function call<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (isUnavailable(err)) throw unavailable(what, err);
    if (err instanceof osErrors.ResponseError) {
      if (errorType(err) === 'too_many_clauses' || /too_many_clauses|maxClauseCount/i.test(reasonOf(err))) {
        throw new ValidationError('query too broad: a wildcard matches too many words; use a longer prefix');
      }
      throw new Error(`OpenSearch ${what} failed: ${reasonOf(err)}`, { cause: err });
    }
    throw err;
  }
}

// ---------------------------------------------------------------- client options

type OpenSearchConfig = Pick<Config, 'ARCHIVE_OPENSEARCH_URL' | 'ARCHIVE_OPENSEARCH_USERNAME' | 'ARCHIVE_OPENSEARCH_PASSWORD' | 'ARCHIVE_OPENSEARCH_CA'>;

/**
 * Client options from the configuration. TLS verification is on and stays on:
 * `rejectUnauthorized` is set to true explicitly, and a private CA is trusted
 * by adding it (ARCHIVE_OPENSEARCH_CA), never by turning checks off.
 */
export function clientOptionsFromConfig(config: OpenSearchConfig, readFile: (path: string) => Buffer = (p) => readFileSync(p)): ClientOptions {
  const user = config.ARCHIVE_OPENSEARCH_USERNAME;
  const password = config.ARCHIVE_OPENSEARCH_PASSWORD;
  if (!!user !== !!password) throw new ConfigError('ARCHIVE_OPENSEARCH_USERNAME and ARCHIVE_OPENSEARCH_PASSWORD must be set together');
  const ssl: NonNullable<ClientOptions['ssl']> = { rejectUnauthorized: true };
  if (config.ARCHIVE_OPENSEARCH_CA) {
    try {
      ssl.ca = readFile(config.ARCHIVE_OPENSEARCH_CA);
    } catch (err) {
      throw new ConfigError(`ARCHIVE_OPENSEARCH_CA: cannot read "${config.ARCHIVE_OPENSEARCH_CA}": ${(err as Error).message}`);
    }
  }
  return {
    node: config.ARCHIVE_OPENSEARCH_URL,
    ...(user && password ? { auth: { username: user, password } } : {}),
    ssl,
    // Transport-level retries of connection errors and 502/503/504 on another attempt (not 429: see upsert).
    maxRetries: 2,
    // Per request, ms. A 5 MB bulk with refresh=wait_for takes ~1-2 s; 30 s leaves room for a busy cluster.
    requestTimeout: 30_000,
  };
}

// ---------------------------------------------------------------- the adapter

export interface OpenSearchMessageIndexOptions {
  client: Client;
  /** ARCHIVE_OPENSEARCH_INDEX_PREFIX: names the alias, indices and template. */
  indexPrefix: string;
  log: Logger;
  bulkMaxBytes?: number;
  bulkMaxDocs?: number;
  retry?: Partial<RetryOptions>;
  /** Clock for `indexedAt` and index names; tests may pin it. */
  now?: () => number;
}

interface BulkOp {
  /** `create`: only if no document with the id exists. */
  action: 'index' | 'create' | 'delete';
  id: string;
  /** Serialized document, for `index` and `create`. */
  source?: string;
  /** Only if the document is still at this version. */
  ifSeqNo?: number;
  ifPrimaryTerm?: number;
  /**
   * A conditional op's conflict (409: it changed since it was read, or a
   * `create` found one): `leave` it (the default), or `report` its id to
   * the caller, which decides again.
   */
  conflicts?: 'leave' | 'report';
}

/** Rounds of read-then-conditional-write before a document that keeps changing fails its batch. */
const MAX_WRITE_ROUNDS = 5;

interface SearchResponse {
  hits: { total: { value: number } | number; hits: Hit[] };
  aggregations?: Record<string, { buckets: { key: string | number; doc_count: number }[] }>;
}

interface WriteOptions {
  /** Make the writes visible to search before returning (`refresh=wait_for` on the last request). */
  refresh: boolean;
  /** Target must be an alias (never auto-create an index named like the alias). */
  requireAlias: boolean;
}

interface Hit {
  _id: string;
  _source?: { msg?: IndexedMessage };
  sort?: unknown[];
  _seq_no?: number;
  _primary_term?: number;
}

interface CursorPayload {
  v: 1;
  s: 'date' | 'relevance';
  o: 'asc' | 'desc';
  a: unknown[];
}

/** yyyymmddhhmmssSSS (UTC), for index names (which must be lower-case). */
function stamp(ms: number): string {
  return new Date(ms)
    .toISOString()
    .replace(/[-:.TZ]/g, '')
    .toLowerCase();
}

function encodeCursor(c: CursorPayload): string {
  return Buffer.from(JSON.stringify(c)).toString('base64url');
}

function decodeCursor(cursor: string, sort: 'date' | 'relevance', order: 'asc' | 'desc'): unknown[] {
  let c: CursorPayload;
  try {
    c = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as CursorPayload;
  } catch {
    throw new ValidationError('invalid cursor');
  }
  const ok =
    c !== null &&
    typeof c === 'object' &&
    c.v === 1 &&
    c.s === sort &&
    (sort === 'relevance' || c.o === order) &&
    Array.isArray(c.a) &&
    c.a.length === 2 &&
    typeof c.a[0] === 'number' &&
    Number.isFinite(c.a[0]) &&
    typeof c.a[1] === 'string';
  if (!ok) throw new ValidationError('invalid cursor: it does not belong to this search (sort or order differ)');
  return c.a;
}

export class OpenSearchMessageIndex implements MessageIndex {
  readonly driver = 'opensearch';
  /** The alias every read and write goes through: `<p>-messages`. */
  readonly alias: string;
  /** Points at the index of the rebuild in progress, if any: `<p>-messages-next`. */
  readonly nextAlias: string;
  /** Records of deletions, so a rebuild does not revive what was deleted while it ran: `<p>-messages-deletions`. */
  readonly deletionsIndex: string;
  readonly templateName: string;
  /** Pattern of this prefix's concrete message indices. */
  readonly indexPattern: string;
  private readonly client: Client;
  private readonly log: Logger;
  private readonly bulkMaxBytes: number;
  private readonly bulkMaxDocs: number;
  private readonly retry: RetryOptions;
  private readonly now: () => number;
  /** Set by init() when the live index needs `archive reindex`; reported by health(). */
  private outdated: string | undefined;

  constructor(opts: OpenSearchMessageIndexOptions) {
    if (!/^[a-z0-9][a-z0-9_-]*$/.test(opts.indexPrefix)) throw new ConfigError(`ARCHIVE_OPENSEARCH_INDEX_PREFIX: bad index prefix "${opts.indexPrefix}"`);
    this.client = opts.client;
    this.log = opts.log;
    this.alias = `${opts.indexPrefix}-messages`;
    this.nextAlias = `${opts.indexPrefix}-messages-next`;
    this.deletionsIndex = `${opts.indexPrefix}-messages-deletions`;
    this.templateName = `${opts.indexPrefix}-messages`;
    this.indexPattern = `${opts.indexPrefix}-messages-v*`;
    this.bulkMaxBytes = opts.bulkMaxBytes ?? DEFAULT_BULK_MAX_BYTES;
    this.bulkMaxDocs = opts.bulkMaxDocs ?? DEFAULT_BULK_MAX_DOCS;
    this.retry = { ...DEFAULT_RETRY, ...opts.retry };
    this.now = opts.now ?? Date.now;
  }

  static fromConfig(config: Config, log: Logger): OpenSearchMessageIndex {
    const client = new Client(clientOptionsFromConfig(config));
    return new OpenSearchMessageIndex({ client, indexPrefix: config.ARCHIVE_OPENSEARCH_INDEX_PREFIX, log: log.child({ driver: 'opensearch' }) });
  }

  /** The underlying client (tests; one connection pool per index). */
  get openSearchClient(): Client {
    return this.client;
  }

  // ------------------------------------------------------------ init

  /**
   * Creates or updates the template and the live index, logging each change.
   * Idempotent; safe to run from several app nodes at once.
   */
  async init(): Promise<void> {
    await this.ensureTemplate();
    await this.ensureDeletionsIndex();
    let targets = await this.aliasTargets(this.alias, true);
    if (targets.length === 0) {
      const index = await this.createIndex({ aliases: [this.alias] });
      targets = await this.aliasTargets(this.alias);
      if (targets.length > 1) {
        // Another node created one at the same moment: all keep the oldest name, the others drop theirs.
        const keep = [...targets].sort()[0];
        if (index !== keep) {
          await this.deleteIndices([index]);
          this.log.info({ index, kept: keep }, 'another node created the message index at the same time; dropped ours');
        }
        targets = [keep];
      } else {
        this.log.info({ index, alias: this.alias, mappingVersion: MAPPING_VERSION }, 'created message index');
        return;
      }
    }
    // Nodes that lost the creation race above drop their index within milliseconds: wait for that.
    for (let i = 0; targets.length > 1 && i < 20; i++) {
      await sleep(100);
      targets = await this.aliasTargets(this.alias);
    }
    if (targets.length > 1) {
      // Only a crash in the middle of the race above leaves this; writes through the alias fail until it is fixed.
      this.log.error({ alias: this.alias, indices: targets }, 'the message alias points to several indices; writes will fail until one is removed');
      throw new ConfigError(`OpenSearch alias ${this.alias} points to several indices (${targets.join(', ')}); remove it from all but one`);
    }
    await this.updateMapping(targets[0]);
    await this.warnAboutOtherIndices(targets[0]);
  }

  private async ensureTemplate(): Promise<void> {
    const existing = await call('get index template', () =>
      this.client.indices.getIndexTemplate({ name: this.templateName }).then(
        (r) => r.body.index_templates?.[0]?.index_template,
        (err: unknown) => {
          if (statusOf(err) === 404) return undefined;
          throw err;
        },
      ),
    );
    if (existing && existing.version === MAPPING_VERSION) return;
    const body = indexBody();
    await call('put index template', () =>
      this.client.indices.putIndexTemplate({
        name: this.templateName,
        body: {
          index_patterns: [this.indexPattern],
          // Above the default 0 so a catch-all template of the cluster does not win; ours set the fields we query.
          priority: 100,
          version: MAPPING_VERSION,
          _meta: { owner: 'mail-archive', mappingVersion: MAPPING_VERSION },
          template: body as never,
        },
      }),
    );
    this.log.info({ template: this.templateName, from: existing?.version ?? null, to: MAPPING_VERSION }, existing ? 'updated index template' : 'created index template');
  }

  /** The deletion records' index (see `delete()`), created once; records older than DELETION_RECORD_TTL_MS are dropped. */
  private async ensureDeletionsIndex(): Promise<void> {
    const index = this.deletionsIndex;
    const exists = await call('check index', () => this.client.indices.exists({ index }).then((r) => r.statusCode === 200));
    if (!exists) {
      try {
        await this.client.indices.create({
          index,
          body: {
            settings: { index: { number_of_shards: 1, auto_expand_replicas: '0-1' } },
            mappings: { dynamic: 'strict', _meta: { owner: 'mail-archive' }, properties: { id: { type: 'keyword' }, deletedAt: { type: 'long' } } },
          } as never,
        });
        this.log.info({ index }, 'created message deletion records index');
      } catch (err) {
        if (errorType(err) !== 'resource_already_exists_exception') {
          if (isUnavailable(err)) throw unavailable('create index', err);
          throw new Error(`OpenSearch create index ${index} failed: ${reasonOf(err)}`, { cause: err });
        }
      }
      return;
    }
    try {
      await this.client.deleteByQuery({
        index,
        conflicts: 'proceed',
        body: { query: { range: { deletedAt: { lt: this.now() - DELETION_RECORD_TTL_MS } } } } as never,
      });
    } catch (err) {
      // Housekeeping only: a cluster without the reindex module (delete_by_query) keeps them.
      this.log.warn({ index, err: reasonOf(err) }, 'could not drop old message deletion records');
    }
  }

  /**
   * Concrete indices behind an alias; [] when the alias does not exist. With
   * `checkNotIndex`, refuses an index squatting on the alias's name (one that
   * a write without `require_alias` auto-created).
   */
  private async aliasTargets(alias: string, checkNotIndex = false): Promise<string[]> {
    const exists = await call('check alias', () => this.client.indices.existsAlias({ name: alias }).then((r) => r.statusCode === 200));
    if (!exists) {
      if (checkNotIndex) {
        const indexExists = await call('check index', () => this.client.indices.exists({ index: alias }).then((r) => r.statusCode === 200));
        if (indexExists) {
          throw new ConfigError(
            `OpenSearch has an index named "${alias}" where the archive expects an alias; delete it (it was probably auto-created) and restart, then run \`archive reindex\``,
          );
        }
      }
      return [];
    }
    const r = await call('get alias', () =>
      this.client.indices.getAlias({ name: alias }).catch((err: unknown) => {
        if (statusOf(err) === 404) return { body: {} };
        throw err;
      }),
    );
    return Object.keys(r.body as Record<string, unknown>).sort();
  }

  /** Creates `<p>-messages-v<N>-<timestamp>` with the given aliases. Returns its name. */
  private async createIndex(opts: { aliases: string[] | ((name: string) => string[]); bulkLoad?: boolean }): Promise<string> {
    const body = indexBody();
    if (opts.bulkLoad) {
      // A rebuild writes many documents and nobody searches the index until commit: no periodic refresh
      // (each refresh writes a small segment that merges must later rewrite). Commit restores the default.
      body.settings.index.refresh_interval = '-1';
    }
    for (let attempt = 0; ; attempt++) {
      const name = `${this.alias}-v${MAPPING_VERSION}-${stamp(this.now() + attempt)}`;
      const aliases = typeof opts.aliases === 'function' ? opts.aliases(name) : opts.aliases;
      try {
        await this.client.indices.create({
          index: name,
          body: { ...body, aliases: Object.fromEntries(aliases.map((a) => [a, {}])) } as never,
        });
        return name;
      } catch (err) {
        if (errorType(err) === 'resource_already_exists_exception' && attempt < 10) continue;
        if (isUnavailable(err)) throw unavailable('create index', err);
        throw new Error(`OpenSearch create index ${name} failed: ${reasonOf(err)}`, { cause: err });
      }
    }
  }

  /** Brings an existing index's mapping up to date when that is additive; logs what it did or why not. */
  private async updateMapping(index: string): Promise<void> {
    const r = await call('get mapping', () => this.client.indices.getMapping({ index }));
    const mapping = (r.body as Record<string, { mappings?: { _meta?: { mappingVersion?: number }; properties?: Record<string, unknown> } }>)[index]?.mappings ?? {};
    const version = typeof mapping._meta?.mappingVersion === 'number' ? mapping._meta.mappingVersion : 0;
    this.outdated = undefined;
    if (version === MAPPING_VERSION) {
      this.log.debug({ index, mappingVersion: version }, 'message index mapping is current');
      return;
    }
    if (version > MAPPING_VERSION) {
      this.log.warn({ index, indexVersion: version, appVersion: MAPPING_VERSION }, 'message index mapping is newer than this app (rolling upgrade?); left unchanged');
      return;
    }
    const diff = diffMappings(mapping.properties);
    if (diff.changed.length > 0 || diff.added.length === 0) {
      this.outdated = `index mapping v${version} differs from v${MAPPING_VERSION}${diff.changed.length ? ` (changed: ${diff.changed.join(', ')})` : ''}: run \`archive reindex\``;
      this.log.warn({ index, indexVersion: version, appVersion: MAPPING_VERSION, changed: diff.changed }, 'message index mapping cannot be updated in place; run `archive reindex`');
      return;
    }
    const properties = Object.fromEntries(diff.added.map((f) => [f, MAPPING_PROPERTIES[f]]));
    await call('put mapping', () =>
      this.client.indices.putMapping({
        index,
        body: { _meta: { mappingVersion: MAPPING_VERSION, owner: 'mail-archive' }, properties } as never,
      }),
    );
    this.log.warn(
      { index, from: version, to: MAPPING_VERSION, added: diff.added },
      'message index mapping updated: fields added (empty on existing documents until `archive reindex`)',
    );
  }

  /** Says which other message indices of this prefix exist: a rebuild in progress, or one left by a crash. */
  private async warnAboutOtherIndices(live: string): Promise<void> {
    const r = await call('list indices', () => this.client.indices.get({ index: this.indexPattern, expand_wildcards: 'open' }));
    const others = Object.keys(r.body as Record<string, unknown>).filter((n) => n !== live);
    if (others.length === 0) return;
    const next = await this.aliasTargets(this.nextAlias);
    const building = others.filter((n) => next.includes(n));
    const stray = others.filter((n) => !next.includes(n));
    if (building.length) this.log.warn({ indices: building, live }, 'an index rebuild is in progress or was abandoned; the next `archive reindex` replaces it');
    if (stray.length) this.log.warn({ indices: stray, live }, 'message indices left by a crashed rebuild or init; delete them');
  }

  // ------------------------------------------------------------ writes

  /**
   * Indexes the documents by id (replacing), through the alias. Resolves once
   * they are durable (acknowledged by the primary, in its translog) and
   * visible to `get`/`existing`; searches see them after the next periodic
   * refresh (refresh_interval, 1 s by default) or `refresh()`. No
   * `refresh=wait_for` here: it held every batch up to a second, and the
   * index jobs that wait on their batch with it, which capped scale-out
   * indexing at a few batches per second.
   */
  async upsert(docs: IndexedMessage[]): Promise<void> {
    await this.writeDocs(this.alias, docs, { refresh: false, requireAlias: true });
  }

  /** Forces a refresh of the live index: every write that resolved before is searchable on return. */
  async refresh(): Promise<void> {
    await call('refresh', () => this.client.indices.refresh({ index: this.alias }));
  }

  /**
   * Removes documents by id (absent ones ignored); visible on return, like
   * upsert. First records each deletion (id, time) in the deletions index, so
   * that a rebuild running meanwhile, which may have read the message from the
   * store before it was disposed of, drops it again at commit.
   */
  async delete(ids: string[]): Promise<void> {
    const unique = [...new Set(ids)];
    if (unique.length === 0) return;
    const at = this.now();
    await this.bulkWrite(
      this.deletionsIndex,
      unique.map((id) => ({ action: 'index' as const, id, source: JSON.stringify({ id, deletedAt: at }) })),
      { refresh: false, requireAlias: false },
    );
    await this.bulkWrite(
      this.alias,
      unique.map((id) => ({ action: 'delete' as const, id })),
      { refresh: true, requireAlias: true },
    );
  }

  /**
   * Writes documents by id, never replacing one built from more of the
   * message's envelopes ({@link supersedes}: another node indexed a later
   * delivery meanwhile). Optimistic: the stored documents' envelope ids and
   * sequence numbers are read first (one `_mget`, realtime), then each write
   * is conditional on them (`create` where none was stored, `if_seq_no`
   * otherwise); a document that changed in between is read and decided again.
   */
  private async writeDocs(target: string, docs: IndexedMessage[], opts: WriteOptions): Promise<void> {
    if (docs.length === 0) return;
    // Last one wins when a batch holds an id twice, as a sequence of upserts would (so not over more envelopes).
    const byId = new Map<string, IndexedMessage>();
    for (const d of docs) {
      if (typeof d.id !== 'string' || d.id === '') throw new ValidationError('indexed message without an id');
      if (!Number.isFinite(d.date)) throw new ValidationError(`indexed message ${d.id} has no valid date`, { id: d.id });
      if (!supersedes(byId.get(d.id)?.envelopeIds, d)) byId.set(d.id, d);
    }
    const at = this.now();
    let todo = [...byId.values()];
    for (let round = 1; todo.length; round++) {
      const stored = await this.storedVersions(target, todo.map((d) => d.id));
      const ops: BulkOp[] = [];
      for (const d of todo) {
        const s = stored.get(d.id);
        if (s && supersedes(s.envelopeIds, d)) continue; // a later delivery's document is already there
        const source = JSON.stringify(toIndexDocument(d, at));
        ops.push(s ? { action: 'index', id: d.id, source, ifSeqNo: s.seqNo, ifPrimaryTerm: s.primaryTerm, conflicts: 'report' } : { action: 'create', id: d.id, source, conflicts: 'report' });
      }
      const changed = await this.bulkWrite(target, ops, opts);
      if (changed.size && round >= MAX_WRITE_ROUNDS) {
        throw new IndexWriteError(`${changed.size} documents kept changing while they were written (e.g. ${[...changed][0]}); the job retries`, { target });
      }
      todo = todo.filter((d) => changed.has(d.id));
    }
  }

  /** Envelope ids and sequence numbers of the stored documents among `ids` (realtime `_mget`). */
  private async storedVersions(target: string, ids: string[]): Promise<Map<string, { envelopeIds: string[]; seqNo: number; primaryTerm: number }>> {
    const out = new Map<string, { envelopeIds: string[]; seqNo: number; primaryTerm: number }>();
    const r = await call('mget', () => this.client.mget({ index: target, body: { ids }, _source_includes: 'msg.envelopeIds' } as never));
    const docs = (r.body as unknown as { docs: { _id: string; found?: boolean; _seq_no?: number; _primary_term?: number; _source?: { msg?: { envelopeIds?: string[] } } }[] }).docs;
    for (const d of docs) {
      if (d.found && d._seq_no !== undefined && d._primary_term !== undefined) out.set(d._id, { envelopeIds: d._source?.msg?.envelopeIds ?? [], seqNo: d._seq_no, primaryTerm: d._primary_term });
    }
    return out;
  }

  /**
   * Splits into requests of at most bulkMaxBytes / bulkMaxDocs and sends them
   * one after another. Returns the ids of the conditional ops that conflicted
   * and asked to be reported.
   */
  private async bulkWrite(target: string, ops: BulkOp[], opts: WriteOptions): Promise<Set<string>> {
    const conflicted = new Set<string>();
    if (ops.length === 0) return conflicted;
    const chunks: BulkOp[][] = [];
    let chunk: BulkOp[] = [];
    let bytes = 0;
    for (const op of ops) {
      const size = 100 + (op.source ? Buffer.byteLength(op.source) : 0);
      if (chunk.length > 0 && (chunk.length >= this.bulkMaxDocs || bytes + size > this.bulkMaxBytes)) {
        chunks.push(chunk);
        chunk = [];
        bytes = 0;
      }
      chunk.push(op);
      bytes += size;
    }
    if (chunk.length) chunks.push(chunk);
    for (let i = 0; i < chunks.length; i++) {
      // One refresh at the end exposes every earlier chunk too (a refresh covers the whole index).
      for (const id of await this.sendBulk(target, chunks[i], { ...opts, refresh: opts.refresh && i === chunks.length - 1 })) conflicted.add(id);
    }
    return conflicted;
  }

  /**
   * Sends one bulk request; retries the whole request on 429 and the items
   * rejected with 429 (`es_rejected_execution_exception`) with exponential
   * backoff. Other item failures are permanent: IndexWriteError.
   */
  private async sendBulk(target: string, ops: BulkOp[], opts: WriteOptions): Promise<string[]> {
    const conflicted: string[] = [];
    let pending = ops;
    for (let attempt = 1; ; attempt++) {
      let lines = '';
      for (const op of pending) {
        const meta: Record<string, unknown> = { _id: op.id };
        if (op.ifSeqNo !== undefined) Object.assign(meta, { if_seq_no: op.ifSeqNo, if_primary_term: op.ifPrimaryTerm });
        lines += `${JSON.stringify({ [op.action]: meta })}\n`;
        if (op.action !== 'delete') lines += `${op.source}\n`;
      }
      let items: Record<string, { status: number; error?: { type?: string; reason?: string } }>[];
      try {
        const r = await this.client.bulk({
          index: target,
          body: lines as never,
          refresh: opts.refresh ? 'wait_for' : false,
          ...(opts.requireAlias ? { require_alias: true } : {}),
        });
        items = r.body.items as never;
      } catch (err) {
        if (statusOf(err) === 429 && attempt < this.retry.maxAttempts) {
          await this.backoff(attempt, { target, docs: pending.length, reason: 'request rejected (429)' });
          continue;
        }
        if (isUnavailable(err)) throw unavailable('bulk', err);
        throw new IndexWriteError(`OpenSearch bulk request failed: ${reasonOf(err)}`, { target });
      }
      const retry: BulkOp[] = [];
      const failed: { id: string; status: number; type?: string; reason?: string }[] = [];
      items.forEach((item, i) => {
        const res = Object.values(item)[0];
        const op = pending[i];
        if (res.status < 300) return;
        if (op.action === 'delete' && res.status === 404) return; // absent: nothing to delete
        if ((op.ifSeqNo !== undefined || op.action === 'create') && res.status === 409) {
          if (op.conflicts === 'report') conflicted.push(op.id);
          return; // changed since it was read: left as it is, or reported
        }
        if (res.status === 429) retry.push(op);
        else failed.push({ id: op.id, status: res.status, type: res.error?.type, reason: res.error?.reason });
      });
      if (failed.length) {
        this.log.error({ target, failed: failed.slice(0, 10), count: failed.length }, 'OpenSearch refused documents');
        throw new IndexWriteError(`OpenSearch refused ${failed.length} of ${pending.length} documents: ${failed[0].type ?? failed[0].status}: ${failed[0].reason ?? ''}`, {
          failed: failed.slice(0, 10),
        });
      }
      if (retry.length === 0) return conflicted;
      if (attempt >= this.retry.maxAttempts) {
        throw new ServiceUnavailableError('index_overloaded', `OpenSearch kept rejecting ${retry.length} documents (429) after ${attempt} attempts`);
      }
      await this.backoff(attempt, { target, docs: retry.length, reason: 'items rejected (429)' });
      pending = retry;
    }
  }

  private async backoff(attempt: number, info: Record<string, unknown>): Promise<void> {
    const exp = Math.min(this.retry.maxDelayMs, this.retry.baseDelayMs * 2 ** (attempt - 1));
    const delay = Math.round(exp * (0.5 + Math.random()));
    this.log.warn({ ...info, attempt, delayMs: delay }, 'OpenSearch is overloaded; backing off');
    await sleep(delay);
  }

  // ------------------------------------------------------------ reads

  async get(id: string, scope?: Scope | null): Promise<IndexedMessage | undefined> {
    const hits = await this.searchHits({ query: withScope({ term: { id: { value: id } } }, scope), size: 1 });
    return hits[0]?._source?.msg;
  }

  async search(req: SearchRequest): Promise<SearchPage> {
    if (!Number.isInteger(req.size) || req.size < 1 || req.size > MAX_PAGE_SIZE) {
      throw new ValidationError(`page size must be 1 to ${MAX_PAGE_SIZE}`, { size: req.size });
    }
    if (req.sort !== 'date' && req.sort !== 'relevance') throw new ValidationError(`unknown sort '${String(req.sort)}'`);
    if (req.order !== 'asc' && req.order !== 'desc') throw new ValidationError(`unknown order '${String(req.order)}'`);
    const sort =
      req.sort === 'relevance'
        ? [{ _score: { order: 'desc' } }, { id: { order: 'asc' } }]
        : [{ date: { order: req.order } }, { id: { order: req.order } }];
    const body: Record<string, unknown> = {
      query: withScope(compileQuery(req.query), req.scope),
      sort,
      // One more than the page, to know whether another page follows.
      size: req.size + 1,
      track_total_hits: true,
      _source: ['msg'],
    };
    if (req.cursor !== undefined) body.search_after = decodeCursor(req.cursor, req.sort, req.order);
    let res: SearchResponse;
    if (!req.facets) {
      res = (await call('search', () => this.client.search({ index: this.alias, body: body as never }))).body as unknown as SearchResponse;
    } else {
      res = await this.searchWithFacets(body);
    }
    const all = res.hits.hits;
    const page = all.slice(0, req.size);
    const out: SearchPage = {
      total: typeof res.hits.total === 'number' ? res.hits.total : res.hits.total.value,
      hits: page.map((h) => this.msgOf(h)),
    };
    if (req.facets) {
      const buckets = (name: string, key: (k: string | number) => string = String): FacetBucket[] =>
        (res.aggregations?.[name]?.buckets ?? []).map((b) => ({ value: key(b.key), count: b.doc_count }));
      const facets: Facets = { senders: buckets('senders'), domains: buckets('domains'), years: buckets('years', (k) => yearString(Number(k))) };
      out.facets = facets;
    }
    if (all.length > req.size) {
      const last = page[page.length - 1];
      out.nextCursor = encodeCursor({ v: 1, s: req.sort, o: req.order, a: last.sort ?? [] });
    }
    return out;
  }

  /** Id order, search_after on the documents' own ids: the walk survives an alias swap by `archive reindex`. */
  async *scan(req: ScanRequest): AsyncIterable<IndexedMessage[]> {
    const source = req.withoutText ? { includes: ['msg'], excludes: TEXT_SOURCE_FIELDS } : ['msg'];
    const body = { query: withScope(compileQuery(req.query), req.scope), sort: [{ id: { order: 'asc' } }], size: SCAN_PAGE_SIZE, _source: source };
    for await (const hits of this.pages(this.alias, body)) yield hits.map((h) => (req.withoutText ? withoutText(this.msgOf(h)) : this.msgOf(h)));
  }

  /**
   * The page and the three facets as four searches in one `_msearch`: the
   * cluster runs them side by side (one search runs on one thread per shard,
   * and this index has one shard), so a facet-heavy search over the whole
   * archive costs about its slowest part instead of the sum (1,000,000
   * messages, 2 cores: 371 → 133 ms median for the match-all search). The
   * facet searches have `size: 0`, which the shard request cache keeps until
   * the next refresh, so paging through a result set recounts nothing.
   * Single shard (see INDEX_SETTINGS): terms counts are exact. Ties broken by
   * value, as SQLite does (keywords by UTF-8 bytes like SQLite's BINARY
   * collation, years as numbers).
   */
  private async searchWithFacets(body: Record<string, unknown>): Promise<SearchResponse> {
    const terms = (field: string) => ({ terms: { field, size: FACET_SIZE, order: [{ _count: 'desc' }, { _key: 'asc' }] } });
    const facets: [string, string][] = [
      ['senders', 'from_a'],
      ['domains', FACET_DOMAIN_FIELD],
      ['years', 'year'],
    ];
    const lines: unknown[] = [{}, body];
    for (const [name, field] of facets) lines.push({}, { query: body.query, size: 0, track_total_hits: false, aggs: { [name]: terms(field) } });
    const r = await call('search', () => this.client.msearch({ index: this.alias, body: lines as never }));
    const responses = (r.body as unknown as { responses: (SearchResponse & { error?: { type?: string; reason?: string }; status?: number })[] }).responses;
    const failed = responses.find((x) => x.error);
    if (failed) {
      // Classified like a failed single search: overloaded or down → unavailable, a refused query → its reason.
      const err = new osErrors.ResponseError({ body: { error: failed.error, status: failed.status }, statusCode: failed.status, headers: {}, meta: {} } as never);
      await call('search', () => Promise.reject(err));
    }
    const [page, ...aggs] = responses;
    return { hits: page!.hits, aggregations: Object.assign({}, ...aggs.map((a) => a.aggregations)) };
  }

  async thread(threadId: string, scope?: Scope | null): Promise<IndexedMessage[]> {
    const hits = await this.searchHits({
      query: withScope({ term: { threadId: { value: cut(threadId) } } }, scope),
      size: THREAD_LIMIT,
      sort: [{ date: { order: 'asc' } }, { id: { order: 'asc' } }],
    });
    return hits.map((h) => this.msgOf(h));
  }

  async existing(ids: string[]): Promise<Set<string>> {
    return this.existingIn(this.alias, ids);
  }

  async indexedEnvelopeIds(ids: string[]): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    const unique = [...new Set(ids)];
    for (let i = 0; i < unique.length; i += MGET_CHUNK) {
      for (const [id, v] of await this.storedVersions(this.alias, unique.slice(i, i + MGET_CHUNK))) out.set(id, v.envelopeIds);
    }
    return out;
  }

  /** Which of `ids` an index holds; real-time (`mget` sees writes not yet refreshed). */
  private async existingIn(index: string, ids: string[]): Promise<Set<string>> {
    const found = new Set<string>();
    const unique = [...new Set(ids)];
    for (let i = 0; i < unique.length; i += MGET_CHUNK) {
      const chunk = unique.slice(i, i + MGET_CHUNK);
      const r = await call('mget', () => this.client.mget({ index, _source: false, body: { ids: chunk } }));
      for (const d of (r.body as { docs: { _id: string; found?: boolean }[] }).docs) if (d.found) found.add(d._id);
    }
    return found;
  }

  async count(): Promise<number> {
    const r = await call('count', () => this.client.count({ index: this.alias }));
    return r.body.count;
  }

  /**
   * One request: a date_histogram of `receivedAt` (calendar buckets in UTC)
   * with the sum of `size` per bucket, over the range, and a `missing` count
   * of documents without `receivedAt`. Only non-empty buckets come back; the
   * empty ones are filled in from the same bucket starts the SQLite adapter uses.
   */
  async ingestHistogram(req: IngestHistogramRequest): Promise<IngestHistogram> {
    const starts = bucketStarts(req);
    const body = {
      size: 0,
      track_total_hits: false,
      aggs: {
        dated: {
          filter: { range: { receivedAt: { gte: req.from, lt: req.to } } },
          aggs: {
            buckets: {
              date_histogram: { field: 'receivedAt', calendar_interval: CALENDAR_INTERVAL[req.interval], time_zone: 'UTC', min_doc_count: 1 },
              aggs: { bytes: { sum: { field: 'size' } } },
            },
          },
        },
        undated: { missing: { field: 'receivedAt' } },
      },
    };
    const r = await call('ingest histogram', () => this.client.search({ index: this.alias, body: body as never }));
    const aggs = (
      r.body as unknown as {
        aggregations: { dated: { buckets: { buckets: { key: number; doc_count: number; bytes: { value: number | null } }[] } }; undated: { doc_count: number } };
      }
    ).aggregations;
    const found = new Map(aggs.dated.buckets.buckets.map((b) => [b.key, b]));
    const buckets = starts.map((start) => {
      const b = found.get(start);
      // A sum aggregation answers a double; sizes are whole bytes.
      return { start, messages: b?.doc_count ?? 0, bytes: Math.round(b?.bytes.value ?? 0) };
    });
    const counted = buckets.reduce((n, b) => n + b.messages, 0);
    const expected = aggs.dated.buckets.buckets.reduce((n, b) => n + b.doc_count, 0);
    if (counted !== expected) throw new Error(`OpenSearch ingest histogram: buckets at unexpected keys (${counted} of ${expected} messages placed)`);
    return { interval: req.interval, from: req.from, to: req.to, buckets, undated: aggs.undated.doc_count };
  }

  async health(): Promise<IndexHealth> {
    try {
      const h = await this.client.cluster.health({ timeout: '5s' });
      const status = h.body.status;
      const documents = await this.count();
      const ok = status === 'green' || status === 'yellow';
      const detail = [`cluster ${h.body.cluster_name} ${status}`, this.outdated].filter(Boolean).join('; ');
      return { ok, driver: this.driver, detail, documents };
    } catch (err) {
      return { ok: false, driver: this.driver, detail: reasonOf(err instanceof ServiceUnavailableError && err.cause ? err.cause : err) };
    }
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  private msgOf(h: Hit): IndexedMessage {
    const m = h._source?.msg;
    if (!m) throw new Error(`OpenSearch document ${h._id} has no stored message (_source.msg)`);
    return m;
  }

  private async searchHits(body: { query: OsQuery; size: number; sort?: unknown[] }, index = this.alias): Promise<Hit[]> {
    const r = await call('search', () => this.client.search({ index, body: { ...body, _source: ['msg'] } as never }));
    return (r.body as unknown as { hits: { hits: Hit[] } }).hits.hits;
  }

  // ------------------------------------------------------------ rebuild

  /**
   * Creates a fresh concrete index beside the live one, and points the
   * `-next` alias at it (replacing an unfinished rebuild, whose index is
   * dropped: its writes and its commit then fail). The caller upserts every
   * message into it, then commits (or aborts). Searches and writes go to the
   * live index through the alias until commit.
   */
  async beginRebuild(): Promise<IndexRebuild> {
    const startedAt = this.now();
    // Its own alias: rebuild writes go through it with require_alias, so once the index is dropped
    // (superseded, aborted) they fail instead of auto-creating an index of that name.
    const buildAlias = (name: string) => `${this.alias}-build-${name.slice(this.alias.length + 1)}`;
    const index = await this.createIndex({ aliases: (name) => [buildAlias(name)], bulkLoad: true });
    const writeAlias = buildAlias(index);
    const previous = (await this.aliasTargets(this.nextAlias)).filter((n) => n !== index);
    // One atomic step: `-next` leaves whatever it pointed at and points at this index alone.
    await call('point next alias', () =>
      this.client.indices.updateAliases({
        body: { actions: [{ remove: { index: this.indexPattern, alias: this.nextAlias } }, { add: { index, alias: this.nextAlias } }] } as never,
      }),
    );
    if (previous.length) {
      const live = await this.aliasTargets(this.alias);
      const drop = previous.filter((n) => !live.includes(n));
      this.log.warn({ replaced: drop }, 'replacing an unfinished index rebuild');
      await this.deleteIndices(drop);
    }
    this.log.info({ index, alias: this.alias }, 'index rebuild started');
    let state: 'open' | 'committed' | 'aborted' = 'open';
    const assertOpen = () => {
      if (state !== 'open') throw new ValidationError(`this index rebuild has already been ${state}`);
    };
    return {
      upsert: async (docs) => {
        assertOpen();
        try {
          // No refresh: nothing searches this index before commit, which refreshes once.
          await this.writeDocs(writeAlias, docs, { refresh: false, requireAlias: true });
        } catch (err) {
          if (err instanceof IndexWriteError && !(await this.isNext(index))) throw new RebuildSupersededError(index);
          throw err;
        }
      },
      commit: async () => {
        assertOpen();
        await this.commitRebuild(index, writeAlias, startedAt);
        state = 'committed';
      },
      abort: async () => {
        if (state !== 'open') return;
        state = 'aborted';
        await this.deleteIndices([index]);
        this.log.info({ index }, 'index rebuild aborted');
      },
    };
  }

  private async isNext(index: string): Promise<boolean> {
    return (await this.aliasTargets(this.nextAlias)).includes(index);
  }

  /**
   * Makes `index` the live one, in one `_aliases` call that also checks that
   * no newer rebuild replaced it. Documents other nodes wrote to the old index
   * while the rebuild ran (new mail) are copied over before and right after
   * the swap (by `indexedAt`), and deletions recorded meanwhile are applied,
   * so none is lost or revived; then the old index goes.
   */
  private async commitRebuild(index: string, writeAlias: string, startedAt: number): Promise<void> {
    if (!(await this.isNext(index))) throw new RebuildSupersededError(index);
    await call('restore refresh interval', () => this.client.indices.putSettings({ index, body: { index: { refresh_interval: null } } as never }));
    const old = (await this.aliasTargets(this.alias)).filter((n) => n !== index);
    const since = startedAt - REBUILD_CATCH_UP_SKEW_MS;
    let copied = await this.copyWrittenSince(old, writeAlias, since);
    const actions: unknown[] = [
      // must_exist: fails the whole swap if another rebuild took `-next` meanwhile.
      { remove: { index, alias: this.nextAlias, must_exist: true } },
      { remove: { index, alias: writeAlias } },
      ...old.map((o) => ({ remove: { index: o, alias: this.alias } })),
      { add: { index, alias: this.alias } },
    ];
    try {
      await this.client.indices.updateAliases({ body: { actions } as never });
    } catch (err) {
      if (errorType(err) === 'aliases_not_found_exception') throw new RebuildSupersededError(index);
      if (isUnavailable(err)) throw unavailable('swap alias', err);
      throw new Error(`OpenSearch swap alias failed: ${reasonOf(err)}`, { cause: err });
    }
    const swappedAt = this.now();
    this.log.info({ alias: this.alias, from: old, to: index }, 'index rebuild: alias swapped');
    // Writes already on their way to the old index when the alias moved (or stamped before the first
    // pass but not yet visible to it): the same window again; copying a document twice is harmless.
    copied += await this.copyWrittenSince(old, this.alias, since);
    const revived = await this.applyDeletionsSince(old, index, since, swappedAt);
    await call('refresh', () => this.client.indices.refresh({ index }));
    if (old.length) await this.deleteIndices(old);
    this.log.info({ index, dropped: old, caughtUp: copied, deletedAgain: revived }, 'index rebuild committed');
  }

  /** Re-derives into `target` every document written to `sources` after `since` (ms). Returns how many. */
  private async copyWrittenSince(sources: string[], target: string, since: number): Promise<number> {
    if (sources.length === 0) return 0;
    let n = 0;
    await this.forEachPage(sources, { range: { indexedAt: { gt: since } } }, ['msg'], async (hits) => {
      await this.writeDocs(
        target,
        hits.map((h) => this.msgOf(h)),
        { refresh: false, requireAlias: true },
      );
      n += hits.length;
    });
    return n;
  }

  /**
   * Deletions recorded after `since` of messages the old index no longer
   * holds: removed from the new index too, unless written there after the
   * swap (`indexedAt` ≥ `swappedAt`: indexed again since) or changed
   * concurrently (the delete is conditional on the version read). Returns how
   * many it removed.
   */
  private async applyDeletionsSince(old: string[], index: string, since: number, swappedAt: number): Promise<number> {
    await call('refresh', () => this.client.indices.refresh({ index: this.deletionsIndex }));
    let removed = 0;
    await this.forEachPage([this.deletionsIndex], { range: { deletedAt: { gt: since } } }, false, async (hits) => {
      const ids = hits.map((h) => h._id);
      const still = old.length ? await this.existingIn(old.join(','), ids) : new Set<string>();
      const gone = ids.filter((id) => !still.has(id));
      if (gone.length === 0) return;
      const r = await call('search', () =>
        this.client.search({
          index,
          body: {
            query: { bool: { filter: [{ ids: { values: gone } }, { range: { indexedAt: { lt: swappedAt } } }] } },
            size: gone.length,
            _source: false,
            seq_no_primary_term: true,
          } as never,
        }),
      );
      const victims = (r.body as unknown as { hits: { hits: Hit[] } }).hits.hits;
      if (victims.length === 0) return;
      await this.bulkWrite(
        index,
        victims.map((h) => ({ action: 'delete' as const, id: h._id, ifSeqNo: h._seq_no, ifPrimaryTerm: h._primary_term })),
        { refresh: false, requireAlias: false },
      );
      removed += victims.length;
    });
    return removed;
  }

  /** Pages through `indices` (by id, search-after) and hands each page to `fn`. */
  private async forEachPage(indices: string[], query: OsQuery, source: string[] | false, fn: (hits: Hit[]) => Promise<void>): Promise<void> {
    const index = indices.join(',');
    await call('refresh', () => this.client.indices.refresh({ index }));
    for await (const hits of this.pages(index, { query, sort: [{ id: { order: 'asc' } }], size: COPY_PAGE, _source: source })) await fn(hits);
  }

  /**
   * Every hit of a sorted query, page by page (search_after on the sort keys,
   * no totals: with `track_total_hits: false` Lucene's sort optimisation skips
   * documents that cannot enter a page, so a page costs about its own size).
   */
  private async *pages(index: string, body: { query: OsQuery; sort: unknown[]; size: number; _source: string[] | false | { includes: string[]; excludes: string[] } }): AsyncIterable<Hit[]> {
    let after: unknown[] | undefined;
    for (;;) {
      const r = await call('search', () =>
        this.client.search({ index, body: { ...body, track_total_hits: false, ...(after ? { search_after: after } : {}) } as never }),
      );
      const hits = (r.body as unknown as { hits: { hits: Hit[] } }).hits.hits;
      if (hits.length) yield hits;
      if (hits.length < body.size) return;
      after = hits[hits.length - 1].sort;
    }
  }

  private async deleteIndices(indices: string[]): Promise<void> {
    if (indices.length === 0) return;
    await call('delete index', () =>
      this.client.indices.delete({ index: indices.join(','), ignore_unavailable: true }).catch((err: unknown) => {
        if (statusOf(err) === 404) return undefined;
        throw err;
      }),
    );
  }
}
