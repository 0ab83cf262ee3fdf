/**
 * The embedded search index and message catalog: SQLite with FTS5, through
 * better-sqlite3. One file, `<dataDir>/catalog/catalog.sqlite`, shared by
 * every process of an embedded deployment (server, worker, CLI).
 *
 * Matching semantics: search/MATCHING.md (identical to the OpenSearch adapter).
 *
 * Tables (one generation; a rebuild writes a second one with the suffix
 * `_next` and swaps it in by renaming):
 *
 *   messages   mid INTEGER PRIMARY KEY, id (sha256) UNIQUE, date, size,
 *              has_att, year, message_id, thread_id. Narrow on purpose, so
 *              scans, sorts and counts never touch the documents.
 *              Indexes: (date, id) for the sort and search-after,
 *              (thread_id, date, id), (message_id), (size), (year).
 *   docs       mid → the IndexedMessage as JSON (what hits return).
 *   people     one row per person of a message and role: pid =
 *              mid·2^20 + n (so a message's people are one range of the
 *              table's B-tree), role flags, address, domain, and the domain
 *              reversed (`com.example.mail.`) so "domain or subdomain" is an
 *              index range. Indexes: (address, f), (rdomain, f).
 *   text_fts   contentless FTS5 (rowid = mid): subject_t, body_t, attname_t,
 *              atttext_t, each `analyzed()` text (search/index-analysis.ts).
 *   people_fts contentless FTS5 (rowid = pid): the words of one person (name
 *              and address), so a phrase or NEAR never spans two people.
 *   meta       schema version and the state of a rebuild.
 *
 * better-sqlite3 is synchronous: each call runs to completion on the event
 * loop. Batches are bounded by the callers (an upsert of a few hundred
 * documents takes tens of milliseconds).
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import Database from 'better-sqlite3';
import type { Config } from '../../src/config/config.js';
import type { Logger } from '../../src/logger.js';
import type { IndexedMessage, Participant } from '../../src/domain/indexed-message.js';
import { ServiceUnavailableError, ValidationError } from '../../src/errors.js';
import type {
  FacetBucket,
  Facets,
  IndexHealth,
  IndexRebuild,
  MessageIndex,
  Scope,
  SearchPage,
  SearchRequest,
  SortField,
} from '../../src/ports/message-index.js';
import { analyzed } from '../index-analysis.js';
import { PEOPLE_SPAN, PERSON, SqliteQueryCompiler, reverseDomain, type SqlFragment, type TableNames } from './sqlite-query-compiler.js';

/** Bumped whenever the tables change shape; an older index is dropped and must be rebuilt (`archive reindex`). */
export const SCHEMA_VERSION = 1;

/**
 * How long a statement waits for another process's write lock before failing
 * with SQLITE_BUSY, in milliseconds. Writes are short batches; the longest
 * lock is a rebuild's commit dropping the old tables (seconds at millions of
 * messages). Reads never wait in WAL mode.
 */
const BUSY_TIMEOUT_MS = 30_000;

/** Page cache per connection, in KiB (negative pragma value): 64 MiB keeps the hot FTS segments and indexes in memory. */
const CACHE_KIB = 65_536;

/**
 * Bytes of the file mapped into memory for reads: avoids a copy per page
 * read. Address space only; the OS pages it in and out as it likes.
 */
const MMAP_BYTES = 1024 ** 3;

/**
 * WAL pages (4 KiB each) between automatic checkpoints: 10,000 ≈ 40 MiB. Each
 * checkpoint copies the WAL into the database and fsyncs; SQLite's default
 * (1,000) made a checkpoint nearly every indexing batch and cost ~20% of
 * upsert throughput. Cost: the WAL file grows to about this size.
 */
const WAL_CHECKPOINT_PAGES = 10_000;

/** Free pages returned to the file system per step after a rebuild (4 KiB each: 16 MiB per step, one short write lock). */
const VACUUM_PAGES_PER_STEP = 4096;

/** Largest page a search may ask for (the port's limit). */
const MAX_PAGE_SIZE = 500;

/** Most messages `thread()` returns (the port's limit). */
const MAX_THREAD = 1000;

/** Dynamic statements (one per query shape) kept prepared per connection. */
const STATEMENT_CACHE_SIZE = 256;

/**
 * When the match set is at least this large and this dense (1 in
 * `DENSE_RATIO` messages or more), the page is read by walking the date index
 * and probing the match set, which stops after one page; below it, the match
 * set is sorted (top-N), which costs O(matches).
 */
const DENSE_MIN_HITS = 10_000;
const DENSE_RATIO = 20;

const FACET_SIZE = 10;

const LIVE = '';
const NEXT = '_next';
const OLD = '_old';
const SUFFIXES = [LIVE, NEXT, OLD] as const;

function tableNames(suffix: string): TableNames {
  return {
    messages: `messages${suffix}`,
    docs: `docs${suffix}`,
    people: `people${suffix}`,
    textFts: `text_fts${suffix}`,
    peopleFts: `people_fts${suffix}`,
  };
}

/** DDL of one generation. Index names carry a random tag because an index keeps its name when its table is renamed. */
function createTablesSql(suffix: string): string {
  const t = tableNames(suffix);
  const tag = randomBytes(4).toString('hex');
  return `
    CREATE TABLE ${t.messages} (
      mid INTEGER PRIMARY KEY,
      id TEXT NOT NULL UNIQUE,
      date INTEGER NOT NULL,
      size INTEGER NOT NULL,
      has_att INTEGER NOT NULL,
      year INTEGER NOT NULL,
      message_id TEXT NOT NULL,
      thread_id TEXT NOT NULL
    );
    CREATE INDEX ${t.messages}_date_${tag} ON ${t.messages}(date, id);
    CREATE INDEX ${t.messages}_thread_${tag} ON ${t.messages}(thread_id, date, id);
    CREATE INDEX ${t.messages}_msgid_${tag} ON ${t.messages}(message_id);
    CREATE INDEX ${t.messages}_size_${tag} ON ${t.messages}(size);
    CREATE INDEX ${t.messages}_year_${tag} ON ${t.messages}(year);
    CREATE TABLE ${t.docs} (mid INTEGER PRIMARY KEY, doc TEXT NOT NULL);
    CREATE TABLE ${t.people} (
      pid INTEGER PRIMARY KEY,
      f INTEGER NOT NULL,
      address TEXT NOT NULL,
      domain TEXT NOT NULL,
      rdomain TEXT NOT NULL
    );
    CREATE INDEX ${t.people}_address_${tag} ON ${t.people}(address, f);
    CREATE INDEX ${t.people}_rdomain_${tag} ON ${t.people}(rdomain, f);
    -- The 'ascii' tokenizer splits only on ASCII non-alphanumerics: our analysed
    -- text is tokens of letters/digits/marks joined by single spaces, so it
    -- splits exactly on those spaces (a whitespace tokenizer, like OpenSearch's),
    -- with no Unicode-6.1 category table of its own to disagree with ours.
    CREATE VIRTUAL TABLE ${t.textFts} USING fts5(
      subject_t, body_t, attname_t, atttext_t,
      content='', contentless_delete=1, tokenize='ascii'
    );
    CREATE VIRTUAL TABLE ${t.peopleFts} USING fts5(
      words,
      content='', contentless_delete=1, tokenize='ascii'
    );
  `;
}

function dropTablesSql(suffix: string): string {
  const t = tableNames(suffix);
  return [t.textFts, t.peopleFts, t.people, t.docs, t.messages].map((n) => `DROP TABLE IF EXISTS ${n};`).join('\n');
}

function renameTablesSql(from: string, to: string): string {
  const a = tableNames(from);
  const b = tableNames(to);
  return (Object.keys(a) as (keyof TableNames)[]).map((k) => `ALTER TABLE ${a[k]} RENAME TO ${b[k]};`).join('\n');
}

// ---------------------------------------------------------------- documents → rows

interface PersonRow {
  f: number;
  address: string;
  domain: string;
  rdomain: string;
  words: string;
}

/** Everything one document writes, computed before the write transaction so the lock is held briefly. */
interface DocRow {
  id: string;
  date: number;
  size: number;
  hasAtt: number;
  year: number;
  messageId: string;
  threadId: string;
  json: string;
  subject: string;
  body: string;
  attNames: string;
  attText: string;
  people: PersonRow[];
}

/** The domain of an address: after the last `@`, without trailing dots; empty when there is none. */
export function domainOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at < 0 ? '' : address.slice(at + 1).replace(/\.+$/, '');
}

/**
 * The people of a message, one row per distinct (address, name), with the
 * address fields each counts for (search/MATCHING.md):
 * from = From header; to/cc/bcc = that header plus envelope recipients of
 * that kind; participant = everyone, which adds Sender, Reply-To, envelope
 * recipients of any kind, the lists they were expanded from, the addresses
 * they were forwarded from, and the envelope senders.
 */
function peopleOf(doc: IndexedMessage): PersonRow[] {
  const byKey = new Map<string, { address: string; name: string; f: number; recipient: boolean }>();
  const add = (address: string | undefined, name: string | undefined, f: number, recipient: boolean): void => {
    const a = (address ?? '').trim().toLowerCase();
    const n = name ?? '';
    if (a === '' && n.trim() === '') return;
    const key = `${a}\n${n}`;
    const row = byKey.get(key);
    if (row) {
      row.f |= f;
      row.recipient ||= recipient;
    } else {
      byKey.set(key, { address: a, name: n, f, recipient });
    }
  };
  const header = (list: Participant[] | undefined, f: number, recipient: boolean): void => {
    for (const p of list ?? []) add(p.address, p.name, f, recipient);
  };
  header(doc.from, PERSON.from, false);
  header(doc.sender, 0, false);
  header(doc.to, PERSON.to, true);
  header(doc.cc, PERSON.cc, true);
  header(doc.bcc, PERSON.bcc, true);
  header(doc.replyTo, 0, false);
  for (const r of doc.envelopeRecipients ?? []) {
    const f = r.kind === 'to' ? PERSON.to : r.kind === 'cc' ? PERSON.cc : r.kind === 'bcc' ? PERSON.bcc : 0;
    add(r.address, undefined, f, true);
    if (r.expandedFrom) add(r.expandedFrom, undefined, 0, false);
    if (r.forwardedFrom) add(r.forwardedFrom, undefined, 0, false);
  }
  for (const s of doc.envelopeSenders ?? []) add(s, undefined, 0, false);

  const senders = new Set<string>();
  const domains = new Set<string>();
  const rows: PersonRow[] = [];
  for (const p of byKey.values()) {
    const domain = domainOf(p.address);
    let f = p.f;
    // Facets count messages: flag one row per distinct sender address and recipient domain.
    if (f & PERSON.from && p.address !== '' && !senders.has(p.address)) {
      senders.add(p.address);
      f |= PERSON.senderFacet;
    }
    if (p.recipient && domain !== '' && !domains.has(domain)) {
      domains.add(domain);
      f |= PERSON.domainFacet;
    }
    rows.push({ f, address: p.address, domain, rdomain: reverseDomain(domain), words: analyzed(`${p.name} ${p.address}`) });
  }
  return rows;
}

function toRow(doc: IndexedMessage): DocRow {
  if (typeof doc.id !== 'string' || doc.id === '') throw new ValidationError('indexed message without an id');
  if (!Number.isFinite(doc.date)) throw new ValidationError(`indexed message ${doc.id} has no valid date`, { id: doc.id });
  return {
    id: doc.id,
    date: Math.trunc(doc.date),
    size: Number.isFinite(doc.size) ? Math.trunc(doc.size) : 0,
    hasAtt: doc.hasAttachments ? 1 : 0,
    year: new Date(doc.date).getUTCFullYear(),
    messageId: doc.messageId ?? '',
    threadId: doc.threadId ?? '',
    json: JSON.stringify(doc),
    subject: analyzed(doc.subject ?? ''),
    body: analyzed(doc.body ?? ''),
    attNames: analyzed((doc.attachments ?? []).map((a) => a.filename ?? '').join(' ')),
    attText: analyzed(doc.attachmentText ?? ''),
    people: peopleOf(doc),
  };
}

/** A UTC year as the facet's 4-digit string. */
function yearString(y: number): string {
  return y < 0 ? `-${String(-y).padStart(4, '0')}` : String(y).padStart(4, '0');
}

// ---------------------------------------------------------------- cursors

interface CursorPayload {
  s: SortField;
  o: 'asc' | 'desc';
  /** The last hit's sort values: [date or score, id]. */
  k: [number, string];
}

function encodeCursor(p: CursorPayload): string {
  return Buffer.from(JSON.stringify(p), 'utf8').toString('base64url');
}

function decodeCursor(cursor: string, sort: SortField, order: 'asc' | 'desc'): [number, string] {
  let p: unknown;
  try {
    p = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw new ValidationError('invalid cursor');
  }
  const c = p as Partial<CursorPayload> | null;
  if (!c || !Array.isArray(c.k) || c.k.length !== 2 || typeof c.k[0] !== 'number' || !Number.isFinite(c.k[0]) || typeof c.k[1] !== 'string') {
    throw new ValidationError('invalid cursor');
  }
  if (c.s !== sort || c.o !== order) throw new ValidationError('cursor belongs to a different sort order');
  return [c.k[0], c.k[1]];
}

// ---------------------------------------------------------------- one generation of tables

/** Prepared write statements for one generation of tables, reused for every document. */
class TableWriter {
  readonly names: TableNames;
  private readonly s: ReturnType<TableWriter['prepare']>;

  constructor(private readonly db: Database.Database, suffix: string, private readonly log: Logger) {
    this.names = tableNames(suffix);
    this.s = this.prepare();
  }

  private prepare() {
    const t = this.names;
    const db = this.db;
    return {
      findMid: db.prepare<[string], { mid: number }>(`SELECT mid FROM ${t.messages} WHERE id = ?`),
      insMessage: db.prepare(
        `INSERT INTO ${t.messages} (mid, id, date, size, has_att, year, message_id, thread_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      insDoc: db.prepare(`INSERT INTO ${t.docs} (mid, doc) VALUES (?, ?)`),
      insText: db.prepare(`INSERT INTO ${t.textFts} (rowid, subject_t, body_t, attname_t, atttext_t) VALUES (?, ?, ?, ?, ?)`),
      insPerson: db.prepare(`INSERT INTO ${t.people} (pid, f, address, domain, rdomain) VALUES (?, ?, ?, ?, ?)`),
      insWords: db.prepare(`INSERT INTO ${t.peopleFts} (rowid, words) VALUES (?, ?)`),
      pids: db.prepare<[number, number], { pid: number }>(`SELECT pid FROM ${t.people} WHERE pid BETWEEN ? AND ?`),
      delWords: db.prepare(`DELETE FROM ${t.peopleFts} WHERE rowid = ?`),
      delPeople: db.prepare(`DELETE FROM ${t.people} WHERE pid BETWEEN ? AND ?`),
      delText: db.prepare(`DELETE FROM ${t.textFts} WHERE rowid = ?`),
      delDoc: db.prepare(`DELETE FROM ${t.docs} WHERE mid = ?`),
      delMessage: db.prepare(`DELETE FROM ${t.messages} WHERE mid = ?`),
    };
  }

  /** Inserts or replaces one document. Call inside a write transaction. */
  put(row: DocRow): void {
    const s = this.s;
    const old = s.findMid.get(row.id)?.mid;
    if (old !== undefined) this.removeMid(old);
    const info = s.insMessage.run(old ?? null, row.id, row.date, row.size, row.hasAtt, row.year, row.messageId, row.threadId);
    const mid = old ?? Number(info.lastInsertRowid);
    s.insDoc.run(mid, row.json);
    s.insText.run(mid, row.subject, row.body, row.attNames, row.attText);
    let people = row.people;
    if (people.length > PEOPLE_SPAN) {
      this.log.warn({ id: row.id, people: people.length, kept: PEOPLE_SPAN }, 'message has more people than the index keeps; the rest are not searchable');
      people = people.slice(0, PEOPLE_SPAN);
    }
    const base = mid * PEOPLE_SPAN;
    for (let i = 0; i < people.length; i++) {
      const p = people[i];
      s.insPerson.run(base + i, p.f, p.address, p.domain, p.rdomain);
      if (p.words !== '') s.insWords.run(base + i, p.words);
    }
  }

  /** Removes one document by id; false when absent. Call inside a write transaction. */
  remove(id: string): boolean {
    const mid = this.s.findMid.get(id)?.mid;
    if (mid === undefined) return false;
    this.removeMid(mid);
    return true;
  }

  private removeMid(mid: number): void {
    const s = this.s;
    const lo = mid * PEOPLE_SPAN;
    const hi = lo + PEOPLE_SPAN - 1;
    for (const { pid } of s.pids.all(lo, hi)) s.delWords.run(pid);
    s.delPeople.run(lo, hi);
    s.delText.run(mid);
    s.delDoc.run(mid);
    s.delMessage.run(mid);
  }
}

interface RebuildState {
  token: string;
  startedAt: string;
  pid: number;
}

// ---------------------------------------------------------------- the adapter

export class SqliteMessageIndex implements MessageIndex {
  readonly driver = 'sqlite';
  private conn: Database.Database | undefined;
  private writers = new Map<string, TableWriter>();
  private readonly statements = new Map<string, Database.Statement>();
  private readonly compiler = new SqliteQueryCompiler(tableNames(LIVE));
  private readonly t = tableNames(LIVE);

  constructor(
    private readonly file: string,
    private readonly log: Logger,
  ) {}

  static fromConfig(config: Config, log: Logger): SqliteMessageIndex {
    return new SqliteMessageIndex(path.join(config.dataDir, 'catalog', 'catalog.sqlite'), log);
  }

  private get db(): Database.Database {
    if (!this.conn) throw new ServiceUnavailableError('index_unavailable', 'the SQLite index is not open (call init() first)');
    return this.conn;
  }

  /** A prepared statement for dynamic SQL, cached by text (query shapes repeat). */
  private stmt(sql: string): Database.Statement {
    let s = this.statements.get(sql);
    if (s) {
      // Refresh its place in the LRU order.
      this.statements.delete(sql);
      this.statements.set(sql, s);
      return s;
    }
    s = this.db.prepare(sql);
    this.statements.set(sql, s);
    if (this.statements.size > STATEMENT_CACHE_SIZE) {
      const oldest = this.statements.keys().next().value as string;
      this.statements.delete(oldest);
    }
    return s;
  }

  private writer(suffix: string): TableWriter {
    let w = this.writers.get(suffix);
    if (!w) {
      w = new TableWriter(this.db, suffix, this.log);
      this.writers.set(suffix, w);
    }
    return w;
  }

  private tableExists(name: string): boolean {
    return this.stmt(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?`).get(name) !== undefined;
  }

  private getMeta(key: string): string | undefined {
    return (this.stmt('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined)?.value;
  }

  private setMeta(key: string, value: string): void {
    this.stmt('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value').run(key, value);
  }

  private deleteMeta(key: string): void {
    this.stmt('DELETE FROM meta WHERE key = ?').run(key);
  }

  private rebuildState(): RebuildState | undefined {
    const v = this.getMeta('rebuild');
    return v === undefined ? undefined : (JSON.parse(v) as RebuildState);
  }

  async init(): Promise<void> {
    if (this.conn) return;
    mkdirSync(path.dirname(this.file), { recursive: true });
    const db = new Database(this.file);
    try {
      db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
      // Only takes effect on a new, empty file: lets a rebuild give the old generation's pages back.
      db.pragma('auto_vacuum = INCREMENTAL');
      db.pragma('journal_mode = WAL');
      // The index is derived data, rebuilt from the object store (promise 4), so NORMAL is
      // safe: a power cut can lose the last transactions (reconciliation re-indexes them)
      // but never corrupts the file. FULL would fsync on every commit.
      db.pragma('synchronous = NORMAL');
      db.pragma(`cache_size = -${CACHE_KIB}`);
      db.pragma(`mmap_size = ${MMAP_BYTES}`);
      db.pragma('temp_store = MEMORY');
      db.pragma(`wal_autocheckpoint = ${WAL_CHECKPOINT_PAGES}`);
      // The match set of the search in progress, computed once and reused for total, facets and the page.
      db.exec('CREATE TEMP TABLE IF NOT EXISTS hits (mid INTEGER PRIMARY KEY, score REAL NOT NULL)');
    } catch (err) {
      db.close();
      throw err;
    }
    this.conn = db;
    try {
      this.migrate();
    } catch (err) {
      db.close();
      this.conn = undefined;
      throw err;
    }
  }

  /** Creates or upgrades the schema, in one write transaction so that concurrent starts agree. */
  private migrate(): void {
    const db = this.db;
    db.transaction(() => {
      const hadMeta = this.tableExists('meta');
      if (!hadMeta) db.exec('CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID');
      const stored = hadMeta ? Number(this.getMeta('schema_version') ?? 0) : 0;
      if (stored > SCHEMA_VERSION) {
        throw new ServiceUnavailableError(
          'index_schema_newer',
          `the index at ${this.file} has schema version ${stored}, newer than this program's ${SCHEMA_VERSION}; upgrade the program`,
        );
      }
      const created: string[] = [];
      const dropped: string[] = [];
      if (stored !== SCHEMA_VERSION) {
        for (const s of SUFFIXES) {
          for (const name of Object.values(tableNames(s))) if (this.tableExists(name)) dropped.push(name);
          db.exec(dropTablesSql(s));
        }
        this.deleteMeta('rebuild');
      }
      for (const s of [OLD]) {
        // A rebuild's commit swapped generations but stopped before dropping the old one.
        const names = Object.values(tableNames(s)).filter((n) => this.tableExists(n));
        if (names.length > 0) {
          db.exec(dropTablesSql(s));
          dropped.push(...names);
        }
      }
      if (!this.tableExists(this.t.messages)) {
        db.exec(dropTablesSql(LIVE));
        db.exec(createTablesSql(LIVE));
        created.push(...Object.values(this.t));
      }
      this.setMeta('schema_version', String(SCHEMA_VERSION));
      if (stored === 0 && !hadMeta) {
        this.log.info({ file: this.file, schemaVersion: SCHEMA_VERSION, created }, 'index schema created');
      } else if (stored !== SCHEMA_VERSION) {
        this.log.warn(
          { file: this.file, from: stored, to: SCHEMA_VERSION, dropped, created },
          'index schema changed: the index is now empty; run `archive reindex` to rebuild it from the store',
        );
      } else if (created.length > 0 || dropped.length > 0) {
        this.log.warn({ file: this.file, schemaVersion: SCHEMA_VERSION, dropped, created }, 'index schema repaired');
      } else {
        this.log.debug({ file: this.file, schemaVersion: SCHEMA_VERSION }, 'index schema up to date');
      }
      const rebuild = this.rebuildState();
      if (rebuild) {
        this.log.warn(
          { startedAt: rebuild.startedAt, pid: rebuild.pid },
          'an index rebuild is in progress or was abandoned; writes also go to it until it commits or the next rebuild replaces it',
        );
      }
    }).immediate();
  }

  /**
   * Writers for the generations a live write must reach: the live tables,
   * and the rebuild's tables while one is in progress (in any process), so
   * that mail indexed or disposed of during a rebuild is not lost or revived
   * by its commit. Call inside the write transaction.
   */
  private liveWriters(): TableWriter[] {
    const out = [this.writer(LIVE)];
    if (this.rebuildState()) out.push(this.writer(NEXT));
    return out;
  }

  async upsert(docs: IndexedMessage[]): Promise<void> {
    if (docs.length === 0) return;
    const rows = docs.map(toRow);
    this.db
      .transaction(() => {
        const writers = this.liveWriters();
        for (const row of rows) for (const w of writers) w.put(row);
      })
      .immediate();
  }

  async delete(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    this.db
      .transaction(() => {
        const writers = this.liveWriters();
        for (const id of ids) for (const w of writers) w.remove(id);
      })
      .immediate();
  }

  async existing(ids: string[]): Promise<Set<string>> {
    const out = new Set<string>();
    if (ids.length === 0) return out;
    const s = this.stmt(`SELECT id FROM ${this.t.messages} WHERE id IN (SELECT value FROM json_each(?))`);
    // One JSON array parameter: no limit on the number of bound variables.
    for (const r of s.all(JSON.stringify(ids)) as { id: string }[]) out.add(r.id);
    return out;
  }

  async count(): Promise<number> {
    return (this.stmt(`SELECT count(*) AS n FROM ${this.t.messages}`).get() as { n: number }).n;
  }

  async get(id: string, scope?: Scope | null): Promise<IndexedMessage | undefined> {
    const sc = this.compiler.scope(scope);
    const where = sc ? ` AND ${sc.sql}` : '';
    const row = this.stmt(`SELECT d.doc FROM ${this.t.messages} m JOIN ${this.t.docs} d ON d.mid = m.mid WHERE m.id = ?${where}`).get(
      id,
      ...(sc?.params ?? []),
    ) as { doc: string } | undefined;
    return row ? (JSON.parse(row.doc) as IndexedMessage) : undefined;
  }

  async thread(threadId: string, scope?: Scope | null): Promise<IndexedMessage[]> {
    const sc = this.compiler.scope(scope);
    const where = sc ? ` AND ${sc.sql}` : '';
    const rows = this.stmt(
      `SELECT d.doc FROM ${this.t.messages} m JOIN ${this.t.docs} d ON d.mid = m.mid WHERE m.thread_id = ?${where} ORDER BY m.date ASC, m.id ASC LIMIT ${MAX_THREAD}`,
    ).all(threadId, ...(sc?.params ?? [])) as { doc: string }[];
    return rows.map((r) => JSON.parse(r.doc) as IndexedMessage);
  }

  async search(req: SearchRequest): Promise<SearchPage> {
    if (!Number.isInteger(req.size) || req.size < 1 || req.size > MAX_PAGE_SIZE) {
      throw new ValidationError(`page size must be 1 to ${MAX_PAGE_SIZE}`, { size: req.size });
    }
    if (req.sort !== 'date' && req.sort !== 'relevance') throw new ValidationError(`unknown sort '${String(req.sort)}'`);
    if (req.order !== 'asc' && req.order !== 'desc') throw new ValidationError(`unknown order '${String(req.order)}'`);
    const after = req.cursor === undefined ? undefined : decodeCursor(req.cursor, req.sort, req.order);
    const compiled = this.compiler.compile(req.query);
    const scope = this.compiler.scope(req.scope);
    if (scope?.sql === '0') return { total: 0, hits: [], ...(req.facets ? { facets: { senders: [], domains: [], years: [] } } : {}) };

    return this.db
      .transaction((): SearchPage => {
        const unrestricted = compiled.matchesAll && !scope;
        const relevance = req.sort === 'relevance';
        let total: number;
        if (unrestricted) {
          total = (this.stmt(`SELECT count(*) AS n FROM ${this.t.messages}`).get() as { n: number }).n;
        } else {
          this.fillHits(compiled, req, scope, relevance);
          total = (this.stmt('SELECT count(*) AS n FROM temp.hits').get() as { n: number }).n;
        }
        try {
          const keys = total === 0 ? [] : this.pageKeys(req, after, unrestricted, total);
          const more = keys.length > req.size;
          if (more) keys.length = req.size;
          const docStmt = this.stmt(`SELECT doc FROM ${this.t.docs} WHERE mid = ?`);
          const hits = keys.map((k) => JSON.parse((docStmt.get(k.mid) as { doc: string }).doc) as IndexedMessage);
          const page: SearchPage = { total, hits };
          if (req.facets) page.facets = total === 0 ? { senders: [], domains: [], years: [] } : this.facets(unrestricted);
          if (more) {
            const last = keys[keys.length - 1];
            page.nextCursor = encodeCursor({ s: req.sort, o: req.order, k: [last.key, last.id] });
          }
          return page;
        } finally {
          if (!unrestricted) this.stmt('DELETE FROM temp.hits').run();
        }
      })
      .deferred();
  }

  /** Computes the in-scope match set into temp.hits (with a bm25 score when sorting by relevance). */
  private fillHits(compiled: ReturnType<SqliteQueryCompiler['compile']>, req: SearchRequest, scope: SqlFragment | undefined, relevance: boolean): void {
    const t = this.t;
    const hits = this.stmt('DELETE FROM temp.hits');
    hits.run();
    if (compiled.matchesAll && req.scope) {
      // Only the scope restricts: let its address/domain indexes produce the set.
      const set = this.compiler.scopeSet(req.scope);
      this.stmt(`INSERT OR IGNORE INTO temp.hits (mid, score) SELECT mid, 0 FROM (${set.sql})`).run(...set.params);
      return;
    }
    const where: SqlFragment[] = [compiled.where];
    if (scope) where.push(scope);
    const cond = where.map((w) => `(${w.sql})`).join(' AND ');
    const params = where.flatMap((w) => w.params);
    if (compiled.match !== undefined) {
      const score = relevance ? `bm25(${t.textFts})` : '0';
      this.stmt(
        `INSERT INTO temp.hits (mid, score) SELECT m.mid, ${score} FROM ${t.textFts} CROSS JOIN ${t.messages} m ON m.mid = ${t.textFts}.rowid WHERE ${t.textFts} MATCH ? AND ${cond}`,
      ).run(compiled.match, ...params);
    } else {
      this.stmt(`INSERT INTO temp.hits (mid, score) SELECT m.mid, 0 FROM ${t.messages} m WHERE ${cond}`).run(...params);
    }
  }

  /** One page (plus one row, to know whether more follow) of the match set, in sort order. */
  private pageKeys(
    req: SearchRequest,
    after: [number, string] | undefined,
    unrestricted: boolean,
    total: number,
  ): { mid: number; key: number; id: string }[] {
    const t = this.t;
    const limit = req.size + 1;
    if (req.sort === 'relevance') {
      // bm25 is lower for better matches: best first, then id ascending. `order` does not apply.
      const cond = after ? 'WHERE (h.score, m.id) > (?, ?)' : '';
      const src = unrestricted
        ? `(SELECT mid, 0 AS score FROM ${t.messages}) h CROSS JOIN ${t.messages} m ON m.mid = h.mid`
        : `temp.hits h CROSS JOIN ${t.messages} m ON m.mid = h.mid`;
      return this.stmt(`SELECT m.mid AS mid, h.score AS key, m.id AS id FROM ${src} ${cond} ORDER BY h.score ASC, m.id ASC LIMIT ?`).all(
        ...(after ?? []),
        limit,
      ) as { mid: number; key: number; id: string }[];
    }
    const desc = req.order === 'desc';
    const dir = desc ? 'DESC' : 'ASC';
    const cmp = desc ? '<' : '>';
    const conds: string[] = [];
    if (after) conds.push(`(m.date, m.id) ${cmp} (?, ?)`);
    let sql: string;
    if (unrestricted || this.isDense(total)) {
      // Walk the (date, id) index and stop after one page; `+` keeps the planner off the rowid IN.
      if (!unrestricted) conds.push('+m.mid IN (SELECT mid FROM temp.hits)');
      sql = `SELECT m.mid AS mid, m.date AS key, m.id AS id FROM ${t.messages} m ${conds.length ? `WHERE ${conds.join(' AND ')}` : ''} ORDER BY m.date ${dir}, m.id ${dir} LIMIT ?`;
    } else {
      sql = `SELECT m.mid AS mid, m.date AS key, m.id AS id FROM temp.hits h CROSS JOIN ${t.messages} m ON m.mid = h.mid ${conds.length ? `WHERE ${conds.join(' AND ')}` : ''} ORDER BY m.date ${dir}, m.id ${dir} LIMIT ?`;
    }
    return this.stmt(sql).all(...(after ?? []), limit) as { mid: number; key: number; id: string }[];
  }

  private isDense(total: number): boolean {
    if (total < DENSE_MIN_HITS) return false;
    // max(mid) is an O(log n) estimate of the number of messages.
    const n = (this.stmt(`SELECT max(mid) AS n FROM ${this.t.messages}`).get() as { n: number | null }).n ?? 0;
    return total * DENSE_RATIO >= n;
  }

  /** Top senders, recipient domains and years over the whole match set (temp.hits, or every message). */
  private facets(unrestricted: boolean): Facets {
    const t = this.t;
    const order = `ORDER BY n DESC, value ASC LIMIT ${FACET_SIZE}`;
    const people = (flag: number, column: 'address' | 'domain'): FacetBucket[] => {
      const sql = unrestricted
        ? `SELECT ${column} AS value, count(*) AS n FROM ${t.people} WHERE (f & ${flag}) != 0 GROUP BY ${column} ${order}`
        : `SELECT p.${column} AS value, count(*) AS n FROM temp.hits h CROSS JOIN ${t.people} p ON p.pid BETWEEN h.mid * ${PEOPLE_SPAN} AND h.mid * ${PEOPLE_SPAN} + ${PEOPLE_SPAN - 1} WHERE (p.f & ${flag}) != 0 GROUP BY p.${column} ${order}`;
      return (this.stmt(sql).all() as { value: string; n: number }[]).map((r) => ({ value: r.value, count: r.n }));
    };
    const yearsSql = unrestricted
      ? `SELECT year AS value, count(*) AS n FROM ${t.messages} GROUP BY year ${order}`
      : `SELECT m.year AS value, count(*) AS n FROM temp.hits h CROSS JOIN ${t.messages} m ON m.mid = h.mid GROUP BY m.year ${order}`;
    return {
      senders: people(PERSON.senderFacet, 'address'),
      domains: people(PERSON.domainFacet, 'domain'),
      years: (this.stmt(yearsSql).all() as { value: number; n: number }[]).map((r) => ({ value: yearString(r.value), count: r.n })),
    };
  }

  /**
   * Builds a new generation (`*_next` tables in the same file) while the live
   * one serves. `commit` renames it into place in one transaction: every other
   * connection to the file sees the new tables at its next statement (SQLite
   * re-prepares statements after a schema change), with no restart.
   */
  async beginRebuild(): Promise<IndexRebuild> {
    const token = randomUUID();
    const db = this.db;
    db.transaction(() => {
      const previous = this.rebuildState();
      if (previous) this.log.warn({ startedAt: previous.startedAt, pid: previous.pid }, 'replacing an unfinished index rebuild');
      db.exec(dropTablesSql(NEXT));
      db.exec(createTablesSql(NEXT));
      const state: RebuildState = { token, startedAt: new Date().toISOString(), pid: process.pid };
      this.setMeta('rebuild', JSON.stringify(state));
    }).immediate();
    this.log.info({ file: this.file }, 'index rebuild started');

    let done = false;
    const own = (): void => {
      if (done) throw new ValidationError('this index rebuild has already been committed or aborted');
      if (this.rebuildState()?.token !== token) {
        throw new ServiceUnavailableError('index_rebuild_superseded', 'another index rebuild replaced this one');
      }
    };
    return {
      upsert: async (docs: IndexedMessage[]): Promise<void> => {
        if (docs.length === 0) return;
        const rows = docs.map(toRow);
        db.transaction(() => {
          own();
          const w = this.writer(NEXT);
          for (const row of rows) w.put(row);
        }).immediate();
      },
      commit: async (): Promise<void> => {
        let documents = 0;
        db.transaction(() => {
          own();
          db.exec(dropTablesSql(OLD));
          db.exec(renameTablesSql(LIVE, OLD));
          db.exec(renameTablesSql(NEXT, LIVE));
          this.deleteMeta('rebuild');
          documents = (this.stmt(`SELECT count(*) AS n FROM ${this.t.messages}`).get() as { n: number }).n;
        }).immediate();
        done = true;
        this.log.info({ documents }, 'index rebuild committed');
        // The swap is done and visible; dropping the old generation is housekeeping.
        db.transaction(() => db.exec(dropTablesSql(OLD))).immediate();
        await this.reclaimSpace();
      },
      abort: async (): Promise<void> => {
        if (done) return;
        done = true;
        db.transaction(() => {
          if (this.rebuildState()?.token !== token) return;
          db.exec(dropTablesSql(NEXT));
          this.deleteMeta('rebuild');
        }).immediate();
        this.log.info('index rebuild aborted');
        await this.reclaimSpace();
      },
    };
  }

  /** Returns free pages to the file system in short steps, so other writers get the lock in between. */
  private async reclaimSpace(): Promise<void> {
    const db = this.db;
    if (db.pragma('auto_vacuum', { simple: true }) !== 2) return;
    try {
      while ((db.pragma('freelist_count', { simple: true }) as number) > 0) {
        db.pragma(`incremental_vacuum(${VACUUM_PAGES_PER_STEP})`);
        await yieldToEventLoop();
        if (!this.conn) return;
      }
    } catch (err) {
      this.log.warn({ err }, 'could not return free index pages to the file system; they will be reused');
    }
  }

  async health(): Promise<IndexHealth> {
    try {
      const documents = await this.count();
      return { ok: true, driver: this.driver, documents };
    } catch (err) {
      return { ok: false, driver: this.driver, detail: (err as Error).message };
    }
  }

  async close(): Promise<void> {
    const db = this.conn;
    if (!db) return;
    this.conn = undefined;
    this.statements.clear();
    this.writers.clear();
    db.close();
  }
}
