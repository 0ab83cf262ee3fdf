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
 *              has_att, message_id, thread_id, fcodes, received_at (NULL when
 *              the document has none). Narrow on purpose, so scans, sorts and
 *              counts never touch the documents.
 *              Indexes: (date, id) for the sort and search-after,
 *              (thread_id, date, id), (message_id), (received_at, size) for
 *              ingest statistics. Size filters scan it.
 *   docs       mid → the IndexedMessage as JSON (what hits return).
 *   people     one row per person of a message: pid = mid·2^24 + roles·2^16
 *              + n (a message's people are one key range, and the roles are
 *              bits of the key; see personKey) → iid, the person's identity.
 *              Index: (iid), from identities to their messages.
 *   idents     one row per distinct (address, display name): iid, address,
 *              name. Correspondents recur, so most messages add no identity.
 *   facet_values  dictionary of facet values (sender address, recipient
 *              domain, year) → dense integer code. `messages.fcodes` holds a
 *              message's codes as little-endian int32s, so facets over a match
 *              set are one `group_concat` of small blobs counted in
 *              JavaScript, instead of a GROUP BY whose sort costs ~0.5 µs per
 *              row (5× slower, measured at 200k messages).
 *   text_fts   contentless FTS5 (rowid = mid): subject_t, body_t, attname_t,
 *              atttext_t, each `analyzed()` text (search/index-analysis.ts).
 *   ident_fts  contentless FTS5 (rowid = iid), one row per identity, so a
 *              phrase or NEAR never spans two people: `words` (name and
 *              address, analysed), `addr` (the whole address as one token)
 *              and `dom` (the reversed domain as one token, so a domain and
 *              its subdomains are a token prefix). Exact addresses and domains
 *              are looked up here rather than in B-tree indexes on strings,
 *              which cost 16 random page writes per message (30% of upsert
 *              time); and an FTS5 row per person rather than per identity
 *              cost another 20% (FTS5 has a large per-row cost).
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
import { supersedes, withoutText, type IndexedMessage, type Participant } from '../../src/domain/indexed-message.js';
import { ServiceUnavailableError, ValidationError } from '../../src/errors.js';
import type {
  FacetBucket,
  Facets,
  IndexHealth,
  IndexRebuild,
  IngestHistogram,
  IngestHistogramRequest,
  MessageIndex,
  ScanRequest,
  Scope,
  SearchPage,
  SearchRequest,
  SortField,
} from '../../src/ports/message-index.js';
import { SCAN_PAGE_SIZE } from '../../src/ports/message-index.js';
import { analyzed } from '../index-analysis.js';
import { bucketStarts, indexedReceivedAt } from '../ingest-histogram.js';
import {
  MAX_PEOPLE,
  PEOPLE_SPAN,
  PERSON,
  ROLE_SHIFT,
  SqliteQueryCompiler,
  exactToken,
  ftsString,
  personKey,
  reverseDomain,
  type CompiledQuery,
  type SqlFragment,
  type TableNames,
} from './sqlite-query-compiler.js';

/**
 * Bumped whenever the tables change shape; an older index is dropped and must
 * be rebuilt (`archive reindex`), unless it is in UPGRADE_IN_PLACE.
 * 2: identities, facet dictionary. 3: messages.received_at.
 */
export const SCHEMA_VERSION = 3;

/**
 * Older schema versions that `init` upgrades in place instead of dropping:
 * 2 → 3 adds `messages.received_at` and fills it from the stored documents
 * (one pass over every document, in one write transaction: about as long as
 * reading the `docs` table once; other processes wait up to BUSY_TIMEOUT_MS).
 */
const UPGRADE_IN_PLACE = new Set([2]);

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

/**
 * A `withoutText` scan's document column: documents over 2 KB (where the text
 * is most of the JSON) lose their body and attachment text in SQLite's own
 * JSON code, before JavaScript parses them; smaller ones are parsed whole
 * (rewriting them would cost more than it saves) and blanked after.
 */
const DOC_WITHOUT_TEXT = `CASE WHEN octet_length(d.doc) > 2048 THEN json_set(d.doc, '$.body', '', '$.attachmentText', '') ELSE d.doc END`;

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

/**
 * Largest match set filtered by scope one message at a time (each reads the
 * message's people rows, ~2 µs: at most ~10 ms). Larger ones are intersected
 * with the scope's set, computed from its posting lists.
 */
const SCOPE_PER_MESSAGE_MAX = 5_000;

/** Ids deleted during a rebuild (see beginRebuild). */
const REBUILD_DELETIONS = 'rebuild_deletions';
const LIVE = '';
const NEXT = '_next';
const OLD = '_old';

function tableNames(suffix: string): TableNames {
  return {
    messages: `messages${suffix}`,
    docs: `docs${suffix}`,
    people: `people${suffix}`,
    idents: `idents${suffix}`,
    textFts: `text_fts${suffix}`,
    identFts: `ident_fts${suffix}`,
    facetValues: `facet_values${suffix}`,
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
      message_id TEXT NOT NULL,
      thread_id TEXT NOT NULL,
      fcodes BLOB NOT NULL,
      received_at INTEGER
    );
    CREATE INDEX ${t.messages}_date_${tag} ON ${t.messages}(date, id);
    ${receivedAtIndexSql(t.messages, tag)}
    CREATE INDEX ${t.messages}_thread_${tag} ON ${t.messages}(thread_id, date, id);
    CREATE INDEX ${t.messages}_msgid_${tag} ON ${t.messages}(message_id);
    CREATE TABLE ${t.docs} (mid INTEGER PRIMARY KEY, doc TEXT NOT NULL);
    CREATE TABLE ${t.people} (
      pid INTEGER PRIMARY KEY,
      iid INTEGER NOT NULL
    );
    CREATE INDEX ${t.people}_iid_${tag} ON ${t.people}(iid);
    CREATE TABLE ${t.idents} (
      iid INTEGER PRIMARY KEY,
      address TEXT NOT NULL,
      name TEXT NOT NULL,
      UNIQUE (address, name)
    );
    CREATE TABLE ${t.facetValues} (
      code INTEGER PRIMARY KEY,
      kind INTEGER NOT NULL,
      value TEXT NOT NULL,
      UNIQUE (kind, value)
    );
    -- The 'ascii' tokenizer splits only on ASCII non-alphanumerics: our analysed
    -- text is tokens of letters/digits/marks joined by single spaces, so it
    -- splits exactly on those spaces (a whitespace tokenizer, like OpenSearch's),
    -- with no Unicode-6.1 category table of its own to disagree with ours.
    CREATE VIRTUAL TABLE ${t.textFts} USING fts5(
      subject_t, body_t, attname_t, atttext_t,
      content='', contentless_delete=1, tokenize='ascii'
    );
    CREATE VIRTUAL TABLE ${t.identFts} USING fts5(
      words, addr, dom,
      content='', contentless_delete=1, tokenize='ascii'
    );
  `;
}

/**
 * The index behind ingest statistics: each bucket is a range count over it
 * that never reads the table (size is in the index). Cost: one more B-tree
 * insert per message, mostly at the right edge (receive times grow).
 */
function receivedAtIndexSql(messages: string, tag: string): string {
  return `CREATE INDEX ${messages}_received_${tag} ON ${messages}(received_at, size);`;
}

function dropTablesSql(suffix: string): string {
  const t = tableNames(suffix);
  return [t.textFts, t.identFts, t.people, t.idents, t.docs, t.messages, t.facetValues].map((n) => `DROP TABLE IF EXISTS ${n};`).join('\n');
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
  name: string;
  /** What ident_fts holds for the identity, in case it is new. */
  text: IdentText;
}

interface IdentText {
  /** Name and address, analysed. */
  words: string;
  /** The address as one FTS5 token; empty when there is no address. */
  addr: string;
  /** The reversed domain as one FTS5 token; empty when there is no domain. */
  dom: string;
}

/**
 * Analysed identities, per process: the same correspondents appear in most
 * messages. Cleared when full (entries are a few hundred bytes: ~10 MB).
 */
const IDENT_TEXT_CACHE_SIZE = 20_000;
const identTextCache = new Map<string, IdentText>();

function identText(address: string, name: string): IdentText {
  const key = `${address}\n${name}`;
  let t = identTextCache.get(key);
  if (!t) {
    if (identTextCache.size >= IDENT_TEXT_CACHE_SIZE) identTextCache.clear();
    t = { words: analyzed(`${name} ${address}`), addr: exactToken(address), dom: exactToken(reverseDomain(domainOf(address))) };
    identTextCache.set(key, t);
  }
  return t;
}

/** Facet kinds: the high bits of a code in `fcodes`. */
const FACET_KIND = { sender: 1, domain: 2, year: 3 } as const;
const KIND_SHIFT = 28;
const CODE_MASK = (1 << KIND_SHIFT) - 1;

/** The facet values of one message, each counted once: distinct From addresses, distinct recipient domains, the UTC year. */
interface FacetValues {
  senders: string[];
  domains: string[];
  year: string;
}

/** Everything one document writes, computed before the write transaction so the lock is held briefly. */
interface DocRow {
  id: string;
  date: number;
  /** Whole epoch ms, or null when the document has no usable receive time. */
  receivedAt: number | null;
  size: number;
  hasAtt: number;
  facets: FacetValues;
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
function domainOf(address: string): string {
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

  const rows: PersonRow[] = [];
  for (const p of byKey.values()) {
    rows.push({ f: p.f | (p.recipient ? PERSON.recipient : 0), address: p.address, name: p.name, text: identText(p.address, p.name) });
  }
  return rows;
}

/**
 * `senders`: From addresses; `domains`: exact domains of To/Cc/Bcc header
 * addresses and of envelope recipients (not their lists or forwarders);
 * `year`: UTC year of the date. Empty addresses and domains count for nothing.
 */
function facetValuesOf(doc: IndexedMessage, people: PersonRow[]): FacetValues {
  const senders = new Set<string>();
  const domains = new Set<string>();
  for (const p of people) {
    if (p.f & PERSON.from && p.address !== '') senders.add(p.address);
    if (p.f & PERSON.recipient) {
      const d = domainOf(p.address);
      if (d !== '') domains.add(d);
    }
  }
  return { senders: [...senders], domains: [...domains], year: yearString(new Date(doc.date).getUTCFullYear()) };
}

function toRow(doc: IndexedMessage): DocRow {
  if (typeof doc.id !== 'string' || doc.id === '') throw new ValidationError('indexed message without an id');
  if (!Number.isFinite(doc.date)) throw new ValidationError(`indexed message ${doc.id} has no valid date`, { id: doc.id });
  const people = peopleOf(doc);
  return {
    id: doc.id,
    date: Math.trunc(doc.date),
    receivedAt: indexedReceivedAt(doc) ?? null,
    size: Number.isFinite(doc.size) ? Math.trunc(doc.size) : 0,
    hasAtt: doc.hasAttachments ? 1 : 0,
    facets: facetValuesOf(doc, people),
    messageId: doc.messageId ?? '',
    threadId: doc.threadId ?? '',
    json: JSON.stringify(doc),
    subject: analyzed(doc.subject ?? ''),
    body: analyzed(doc.body ?? ''),
    attNames: analyzed((doc.attachments ?? []).map((a) => a.filename ?? '').join(' ')),
    attText: analyzed(doc.attachmentText ?? ''),
    people,
  };
}

/** A UTC year as the facet's 4-digit string. */
function yearString(y: number): string {
  return y < 0 ? `-${String(-y).padStart(4, '0')}` : String(y).padStart(4, '0');
}

/** Epoch ms of 1 January of a UTC year (any year; Date.UTC would read 0–99 as 1900–1999). */
function yearStart(y: number): number {
  const d = new Date(0);
  d.setUTCFullYear(y, 0, 1);
  return d.getTime();
}

/** Reads the int32 codes of an `fcodes` blob (or of many, concatenated). */
function* readCodes(buf: Buffer): Generator<number> {
  for (let i = 0; i + 4 <= buf.length; i += 4) yield buf.readInt32LE(i);
}

/** Byte order of UTF-8 (= code point order), as SQLite's BINARY and OpenSearch's terms order compare. */
function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
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
  /** Facet codes and identities of documents removed in this batch, to check in `finish`. */
  private readonly unused = new Set<number>();
  private readonly unusedIdents = new Set<number>();

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
        `INSERT INTO ${t.messages} (mid, id, date, size, has_att, message_id, thread_id, fcodes, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      getCode: db.prepare<[number, string], { code: number }>(`SELECT code FROM ${t.facetValues} WHERE kind = ? AND value = ?`),
      insCode: db.prepare(`INSERT INTO ${t.facetValues} (kind, value) VALUES (?, ?)`),
      fcodes: db.prepare<[number], { fcodes: Buffer }>(`SELECT fcodes FROM ${t.messages} WHERE mid = ?`),
      codeValue: db.prepare<[number], { kind: number; value: string }>(`SELECT kind, value FROM ${t.facetValues} WHERE code = ?`),
      delCode: db.prepare(`DELETE FROM ${t.facetValues} WHERE code = ?`),
      senderUsed: db.prepare(
        `SELECT 1 FROM ${t.idents} i CROSS JOIN ${t.people} p ON p.iid = i.iid WHERE i.address = ? AND ((p.pid >> ${ROLE_SHIFT}) & ${PERSON.from}) != 0 LIMIT 1`,
      ),
      // Walks the domain's identities and stops at the first one still a recipient somewhere.
      domainUsed: db.prepare(
        `SELECT 1 FROM ${t.identFts} CROSS JOIN ${t.people} p ON p.iid = ${t.identFts}.rowid WHERE ${t.identFts} MATCH ? AND ((p.pid >> ${ROLE_SHIFT}) & ${PERSON.recipient}) != 0 LIMIT 1`,
      ),
      getIdent: db.prepare<[string, string], { iid: number }>(`SELECT iid FROM ${t.idents} WHERE address = ? AND name = ?`),
      insIdent: db.prepare(`INSERT INTO ${t.idents} (address, name) VALUES (?, ?)`),
      insIdentText: db.prepare(`INSERT INTO ${t.identFts} (rowid, words, addr, dom) VALUES (?, ?, ?, ?)`),
      identUsed: db.prepare(`SELECT 1 FROM ${t.people} WHERE iid = ? LIMIT 1`),
      delIdent: db.prepare(`DELETE FROM ${t.idents} WHERE iid = ?`),
      delIdentText: db.prepare(`DELETE FROM ${t.identFts} WHERE rowid = ?`),
      yearUsed: db.prepare(`SELECT 1 FROM ${t.messages} WHERE date >= ? AND date < ? LIMIT 1`),
      insDoc: db.prepare(`INSERT INTO ${t.docs} (mid, doc) VALUES (?, ?)`),
      insText: db.prepare(`INSERT INTO ${t.textFts} (rowid, subject_t, body_t, attname_t, atttext_t) VALUES (?, ?, ?, ?, ?)`),
      insPerson: db.prepare(`INSERT INTO ${t.people} (pid, iid) VALUES (?, ?)`),
      iids: db.prepare<[number, number], { iid: number }>(`SELECT iid FROM ${t.people} WHERE pid BETWEEN ? AND ?`),
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
    const codes: number[] = [];
    for (const v of row.facets.senders) codes.push(this.code(FACET_KIND.sender, v));
    for (const v of row.facets.domains) codes.push(this.code(FACET_KIND.domain, v));
    codes.push(this.code(FACET_KIND.year, row.facets.year));
    const fcodes = Buffer.alloc(codes.length * 4);
    codes.forEach((c, i) => fcodes.writeInt32LE(c, i * 4));
    const info = s.insMessage.run(old ?? null, row.id, row.date, row.size, row.hasAtt, row.messageId, row.threadId, fcodes, row.receivedAt);
    const mid = old ?? Number(info.lastInsertRowid);
    s.insDoc.run(mid, row.json);
    s.insText.run(mid, row.subject, row.body, row.attNames, row.attText);
    let people = row.people;
    if (people.length > MAX_PEOPLE) {
      this.log.warn({ id: row.id, people: people.length, kept: MAX_PEOPLE }, 'message has more people than the index keeps; the rest are not searchable');
      people = people.slice(0, MAX_PEOPLE);
    }
    for (let i = 0; i < people.length; i++) {
      const p = people[i];
      let iid = s.getIdent.get(p.address, p.name)?.iid;
      if (iid === undefined) {
        iid = Number(s.insIdent.run(p.address, p.name).lastInsertRowid);
        s.insIdentText.run(iid, p.text.words, p.text.addr, p.text.dom);
      }
      s.insPerson.run(personKey(mid, p.f, i), iid);
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
    const fcodes = s.fcodes.get(mid)?.fcodes;
    for (const { iid } of s.iids.all(lo, hi)) this.unusedIdents.add(iid);
    s.delPeople.run(lo, hi);
    s.delText.run(mid);
    s.delDoc.run(mid);
    s.delMessage.run(mid);
    if (fcodes) for (const c of readCodes(fcodes)) this.unused.add(c & CODE_MASK);
  }

  /** The dictionary code of a facet value, with its kind in the high bits; adds the value when new. */
  private code(kind: number, value: string): number {
    let code = this.s.getCode.get(kind, value)?.code;
    if (code === undefined) code = Number(this.s.insCode.run(kind, value).lastInsertRowid);
    if (code > CODE_MASK) throw new ServiceUnavailableError('index_facets_full', `more than ${CODE_MASK} distinct facet values; rebuild the index`);
    return (kind << KIND_SHIFT) | code;
  }

  /**
   * Ends a batch (inside its transaction): drops the identities and facet
   * values that the removed documents used and no document uses any more,
   * so that the names and addresses of disposed mail do not linger. Checked
   * once per batch, not per document: an FTS5 query flushes the batch's
   * pending index data, which would otherwise happen per document.
   */
  finish(): void {
    const s = this.s;
    for (const iid of this.unusedIdents) {
      if (s.identUsed.get(iid) !== undefined) continue;
      s.delIdentText.run(iid);
      s.delIdent.run(iid);
    }
    this.unusedIdents.clear();
    for (const code of this.unused) {
      const v = s.codeValue.get(code);
      if (!v) continue;
      let used: unknown;
      if (v.kind === FACET_KIND.sender) used = s.senderUsed.get(v.value);
      else if (v.kind === FACET_KIND.domain) used = s.domainUsed.get(`{dom} : ${ftsString(exactToken(reverseDomain(v.value)))}`);
      else {
        const y = Number(v.value);
        used = s.yearUsed.get(yearStart(y), yearStart(y + 1));
      }
      if (used === undefined) s.delCode.run(code);
    }
    this.unused.clear();
  }
}

interface RebuildState {
  token: string;
  startedAt: string;
  pid: number;
}

// ---------------------------------------------------------------- the adapter

/** Thresholds between query plans; tests set them to force each plan. */
export interface SqliteIndexTuning {
  /** See SCOPE_PER_MESSAGE_MAX. */
  scopePerMessageMax: number;
  /** See DENSE_MIN_HITS. */
  denseMinHits: number;
  /** See DENSE_RATIO. */
  denseRatio: number;
}

export class SqliteMessageIndex implements MessageIndex {
  readonly driver = 'sqlite';
  private conn: Database.Database | undefined;
  private writers = new Map<string, TableWriter>();
  private readonly statements = new Map<string, Database.Statement>();
  private readonly compiler = new SqliteQueryCompiler(tableNames(LIVE));
  private readonly t = tableNames(LIVE);
  /** Writes through this connection; with data_version (others' writes) it keys the cache of facets over everything. */
  private ownWrites = 0;
  private allFacets: { version: string; facets: Facets } | undefined;

  private readonly tuning: SqliteIndexTuning;

  constructor(
    private readonly file: string,
    private readonly log: Logger,
    tuning: Partial<SqliteIndexTuning> = {},
  ) {
    this.tuning = { scopePerMessageMax: SCOPE_PER_MESSAGE_MAX, denseMinHits: DENSE_MIN_HITS, denseRatio: DENSE_RATIO, ...tuning };
  }

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

  /** How many rebuilds have been committed (a scan's mids are valid within one generation). */
  private generation(): number {
    return Number(this.getMeta('generation') ?? 0);
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
      const inPlace = stored !== SCHEMA_VERSION && UPGRADE_IN_PLACE.has(stored);
      if (stored !== SCHEMA_VERSION && !inPlace) {
        // The file holds nothing but this index: drop every table of the old layout, whatever its name
        // (virtual tables first, which drops their shadow tables with them).
        const tables = db.prepare("SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name <> 'meta' AND name NOT LIKE 'sqlite_%'").all() as {
          name: string;
          sql: string | null;
        }[];
        tables.sort((a, b) => Number(/^CREATE VIRTUAL/i.test(b.sql ?? '')) - Number(/^CREATE VIRTUAL/i.test(a.sql ?? '')));
        for (const { name } of tables) {
          if (!this.tableExists(name)) continue;
          db.exec(`DROP TABLE "${name.replace(/"/g, '""')}"`);
          dropped.push(name);
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
      const missing = Object.values(this.t).filter((n) => !this.tableExists(n));
      if (missing.length > 0) {
        // A fresh file, or a generation missing tables: the index is derived, so start it over.
        for (const name of Object.values(this.t)) if (this.tableExists(name)) dropped.push(name);
        db.exec(dropTablesSql(LIVE));
        db.exec(createTablesSql(LIVE));
        created.push(...Object.values(this.t));
      }
      // Generations of an older layout kept in place (UPGRADE_IN_PLACE, or a rebuild's tables): add what they lack.
      const upgraded: Record<string, number> = {};
      for (const suffix of [LIVE, NEXT]) {
        const filled = this.addReceivedAt(suffix);
        if (filled !== undefined) upgraded[tableNames(suffix).messages] = filled;
      }
      this.setMeta('schema_version', String(SCHEMA_VERSION));
      if (stored === 0 && !hadMeta) {
        this.log.info({ file: this.file, schemaVersion: SCHEMA_VERSION, created }, 'index schema created');
      } else if (inPlace) {
        this.log.warn({ file: this.file, from: stored, to: SCHEMA_VERSION, upgraded, dropped, created }, 'index schema upgraded in place (no reindex needed)');
      } else if (stored !== SCHEMA_VERSION) {
        this.log.warn(
          { file: this.file, from: stored, to: SCHEMA_VERSION, dropped, created },
          'index schema changed: the index is now empty; run `archive reindex` to rebuild it from the store',
        );
      } else if (created.length > 0 || dropped.length > 0 || Object.keys(upgraded).length > 0) {
        this.log.warn({ file: this.file, schemaVersion: SCHEMA_VERSION, dropped, created, upgraded }, 'index schema repaired');
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
   * Schema 2 → 3, for one generation: adds `received_at` to its messages
   * table when it lacks it, filled from each stored document's `receivedAt`
   * (as `toRow` computes it: whole ms, NULL when absent), and its index.
   * Returns how many rows it filled, or undefined when there was nothing to do.
   * Call inside the migration's write transaction.
   */
  private addReceivedAt(suffix: string): number | undefined {
    const t = tableNames(suffix);
    if (!this.tableExists(t.messages) || !this.tableExists(t.docs)) return undefined;
    const columns = this.db.prepare(`PRAGMA table_info(${t.messages})`).all() as { name: string }[];
    if (columns.some((c) => c.name === 'received_at')) return undefined;
    this.db.exec(`ALTER TABLE ${t.messages} ADD COLUMN received_at INTEGER`);
    // Numbers a Date can hold only, cut to whole ms (CAST truncates toward zero, like Math.trunc): see indexedReceivedAt.
    const filled = this.db
      .prepare(
        `UPDATE ${t.messages} SET received_at = (
           SELECT CASE WHEN json_type(d.doc, '$.receivedAt') IN ('integer', 'real') AND abs(json_extract(d.doc, '$.receivedAt')) <= 8.64e15
                       THEN CAST(json_extract(d.doc, '$.receivedAt') AS INTEGER) END
           FROM ${t.docs} d WHERE d.mid = ${t.messages}.mid)`,
      )
      .run().changes;
    this.db.exec(receivedAtIndexSql(t.messages, randomBytes(4).toString('hex')));
    return filled;
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

  /**
   * Writes documents by id, in one transaction, except one whose live
   * document was built from more of the message's envelopes
   * ({@link supersedes}: a later delivery's document, written first).
   */
  async upsert(docs: IndexedMessage[]): Promise<void> {
    if (docs.length === 0) return;
    const rows = docs.map((d) => ({ doc: d, row: toRow(d) }));
    this.db
      .transaction(() => {
        const generations = this.rebuildState() ? [LIVE, NEXT] : [LIVE];
        for (const gen of generations) {
          const w = this.writer(gen);
          for (const { doc, row } of rows) if (!this.supersededIn(gen, doc)) w.put(row);
          w.finish();
        }
      })
      .immediate();
    this.ownWrites++;
  }

  /** Whether the tables of generation `gen` hold a document of `doc`'s message built from more of its envelopes. */
  private supersededIn(gen: string, doc: IndexedMessage): boolean {
    const t = tableNames(gen);
    const stored = this.stmt(`SELECT d.doc ->> '$.envelopeIds' AS env FROM ${t.messages} m JOIN ${t.docs} d ON d.mid = m.mid WHERE m.id = ?`).get(doc.id) as { env: string | null } | undefined;
    return !!stored?.env && supersedes(JSON.parse(stored.env) as string[], doc);
  }

  async delete(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    this.db
      .transaction(() => {
        const writers = this.liveWriters();
        for (const id of ids) for (const w of writers) w.remove(id);
        for (const w of writers) w.finish();
        if (writers.length > 1) {
          // (Created by beginRebuild; a rebuild begun by an older version lacks it.)
          this.db.exec(`CREATE TABLE IF NOT EXISTS ${REBUILD_DELETIONS} (id TEXT PRIMARY KEY) WITHOUT ROWID`);
          const remember = this.stmt(`INSERT OR IGNORE INTO ${REBUILD_DELETIONS} (id) VALUES (?)`);
          for (const id of ids) remember.run(id);
        }
      })
      .immediate();
    this.ownWrites++;
  }

  async existing(ids: string[]): Promise<Set<string>> {
    const out = new Set<string>();
    if (ids.length === 0) return out;
    const s = this.stmt(`SELECT id FROM ${this.t.messages} WHERE id IN (SELECT value FROM json_each(?))`);
    // One JSON array parameter: no limit on the number of bound variables.
    for (const r of s.all(JSON.stringify(ids)) as { id: string }[]) out.add(r.id);
    return out;
  }

  async indexedEnvelopeIds(ids: string[]): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    if (ids.length === 0) return out;
    const s = this.stmt(`SELECT m.id AS id, d.doc ->> '$.envelopeIds' AS env FROM ${this.t.messages} m JOIN ${this.t.docs} d ON d.mid = m.mid WHERE m.id IN (SELECT value FROM json_each(?))`);
    for (const r of s.all(JSON.stringify(ids)) as { id: string; env: string | null }[]) out.set(r.id, r.env ? (JSON.parse(r.env) as string[]) : []);
    return out;
  }

  /** Nothing to do: a committed SQLite transaction is visible to every later read. */
  async refresh(): Promise<void> {}

  async count(): Promise<number> {
    return (this.stmt(`SELECT count(*) AS n FROM ${this.t.messages}`).get() as { n: number }).n;
  }

  /**
   * One count and sum per bucket, each a range scan of the (received_at,
   * size) index that never reads the table, all in one read transaction so
   * the buckets are one snapshot. Cost: O(buckets · log n + messages in range).
   */
  async ingestHistogram(req: IngestHistogramRequest): Promise<IngestHistogram> {
    const starts = bucketStarts(req);
    return this.db
      .transaction((): IngestHistogram => {
        const range = this.stmt(`SELECT count(*) AS n, coalesce(sum(size), 0) AS bytes FROM ${this.t.messages} WHERE received_at >= ? AND received_at < ?`);
        const buckets = starts.map((start, i) => {
          const r = range.get(start, i + 1 < starts.length ? starts[i + 1] : req.to) as { n: number; bytes: number };
          return { start, messages: r.n, bytes: r.bytes };
        });
        const undated = this.stmt(`SELECT count(*) FROM ${this.t.messages} WHERE received_at IS NULL`).pluck().get() as number;
        return { interval: req.interval, from: req.from, to: req.to, buckets, undated };
      })
      .deferred();
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

  /**
   * One pass over the match set: its mids are read once in id order (8 bytes
   * per match, in one read transaction: a consistent snapshot), then the documents page
   * by page, each page in its own short read, so writers are not held up.
   * A mid keeps its document across re-upserts; only a rebuild's commit
   * gives mids new meanings, and then the scan starts over.
   */
  async *scan(req: ScanRequest): AsyncIterable<IndexedMessage[]> {
    const compiled = this.compiler.compile(req.query);
    const scope = this.compiler.scope(req.scope);
    if (scope?.sql === '0') return;
    const t = this.t;
    for (;;) {
      const snapshot = this.db
        .transaction((): { generation: number; mids: number[] } => {
          const generation = this.generation();
          if (compiled.matchesAll && !scope) return { generation, mids: this.stmt(`SELECT mid FROM ${t.messages} ORDER BY id`).pluck().all() as number[] };
          try {
            this.fillHits(compiled, { query: req.query, scope: req.scope, sort: 'date', order: 'asc', size: 1 }, scope, false);
            return { generation, mids: this.stmt(`SELECT h.mid FROM temp.hits h CROSS JOIN ${t.messages} m ON m.mid = h.mid ORDER BY m.id`).pluck().all() as number[] };
          } finally {
            this.stmt('DELETE FROM temp.hits').run();
          }
        })
        .deferred();
      let rebuilt = false;
      for (let i = 0; i < snapshot.mids.length && !rebuilt; i += SCAN_PAGE_SIZE) {
        const docs = this.db
          .transaction((): string[] | undefined => {
            if (this.generation() !== snapshot.generation) return undefined;
            return this.stmt(`SELECT ${req.withoutText ? DOC_WITHOUT_TEXT : 'd.doc'} FROM json_each(?) j CROSS JOIN ${t.docs} d ON d.mid = j.value ORDER BY j.key`)
              .pluck()
              .all(JSON.stringify(snapshot.mids.slice(i, i + SCAN_PAGE_SIZE))) as string[];
          })
          .deferred();
        if (docs === undefined) {
          rebuilt = true;
          this.log.info('the index was rebuilt during a scan; scanning again');
        } else if (docs.length) {
          yield req.withoutText ? docs.map((d) => withoutText(JSON.parse(d) as IndexedMessage)) : docs.map((d) => JSON.parse(d) as IndexedMessage);
        }
      }
      if (!rebuilt) return;
    }
  }

  /**
   * Computes the in-scope match set into temp.hits (with a bm25 score when
   * sorting by relevance). The query runs first without the scope; then the
   * scope filters: per message (its people rows, ~2 µs each) while the match
   * set is small, else by intersecting with the scope's set from people_fts
   * postings, whose cost follows the scope's size instead.
   */
  private fillHits(compiled: CompiledQuery, req: SearchRequest, scope: SqlFragment | undefined, relevance: boolean): void {
    const t = this.t;
    this.stmt('DELETE FROM temp.hits').run();
    if (compiled.matchesAll && req.scope) {
      // Only the scope restricts: its postings produce the set.
      const set = this.compiler.scopeSet(req.scope);
      this.stmt(`INSERT OR IGNORE INTO temp.hits (mid, score) SELECT mid, 0 FROM (${set.sql})`).run(...set.params);
      return;
    }
    const { where } = compiled;
    if (compiled.match !== undefined) {
      const score = relevance ? `bm25(${t.textFts})` : '0';
      if (where.sql === '1') {
        // Text only: the FTS rowids are the match set; no need to visit the messages.
        this.stmt(`INSERT INTO temp.hits (mid, score) SELECT rowid, ${score} FROM ${t.textFts} WHERE ${t.textFts} MATCH ?`).run(compiled.match);
      } else {
        this.stmt(
          `INSERT INTO temp.hits (mid, score) SELECT m.mid, ${score} FROM ${t.textFts} CROSS JOIN ${t.messages} m ON m.mid = ${t.textFts}.rowid WHERE ${t.textFts} MATCH ? AND (${where.sql})`,
        ).run(compiled.match, ...where.params);
      }
    } else {
      this.stmt(`INSERT INTO temp.hits (mid, score) SELECT m.mid, 0 FROM ${t.messages} m WHERE ${where.sql}`).run(...where.params);
    }
    if (!scope || !req.scope) return;
    const n = (this.stmt('SELECT count(*) FROM temp.hits').pluck().get() as number);
    if (n === 0) return;
    if (n <= this.tuning.scopePerMessageMax) {
      this.stmt(`DELETE FROM temp.hits WHERE mid IN (SELECT m.mid FROM temp.hits h CROSS JOIN ${t.messages} m ON m.mid = h.mid WHERE NOT (${scope.sql}))`).run(
        ...scope.params,
      );
    } else {
      const set = this.compiler.scopeSet(req.scope);
      this.stmt(`DELETE FROM temp.hits WHERE mid NOT IN (${set.sql})`).run(...set.params);
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
      if (unrestricted) {
        // Nothing to score: every message scores 0, so this is id order, along the id index.
        return this.stmt(`SELECT mid, 0 AS key, id FROM ${t.messages} ${after ? 'WHERE id > ?' : ''} ORDER BY id ASC LIMIT ?`).all(
          ...(after ? [after[1]] : []),
          limit,
        ) as { mid: number; key: number; id: string }[];
      }
      const cond = after ? 'WHERE (h.score, m.id) > (?, ?)' : '';
      return this.stmt(
        `SELECT m.mid AS mid, h.score AS key, m.id AS id FROM temp.hits h CROSS JOIN ${t.messages} m ON m.mid = h.mid ${cond} ORDER BY h.score ASC, m.id ASC LIMIT ?`,
      ).all(...(after ?? []), limit) as { mid: number; key: number; id: string }[];
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
    if (total < this.tuning.denseMinHits) return false;
    // max(mid) is an O(log n) estimate of the number of messages.
    const n = (this.stmt(`SELECT max(mid) AS n FROM ${this.t.messages}`).get() as { n: number | null }).n ?? 0;
    return total * this.tuning.denseRatio >= n;
  }

  /**
   * Top senders, recipient domains and years over the whole match set
   * (temp.hits, or every message). SQLite concatenates the matches' `fcodes`
   * (one row per match, no sort); JavaScript counts the codes in typed
   * arrays, then resolves the few winning codes to their values. Ties at the
   * 10th place are broken by value in UTF-8 byte order, like OpenSearch's
   * terms aggregation ordered by `_key`.
   */
  private facets(unrestricted: boolean): Facets {
    const t = this.t;
    if (unrestricted) {
      // Every message: cached until this or another connection writes (data_version changes on others' commits).
      const version = `${this.db.pragma('data_version', { simple: true }) as number}:${this.ownWrites}`;
      if (this.allFacets?.version === version) return this.allFacets.facets;
      const facets = this.countFacets(`SELECT group_concat(hex(fcodes), '') FROM ${t.messages}`);
      this.allFacets = { version, facets };
      return facets;
    }
    return this.countFacets(`SELECT group_concat(hex(m.fcodes), '') FROM temp.hits h CROSS JOIN ${t.messages} m ON m.mid = h.mid`);
  }

  private countFacets(sql: string): Facets {
    const t = this.t;
    const hex = this.stmt(sql).pluck().get() as string | null;
    const buf = Buffer.from(hex ?? '', 'hex');
    const maxCode = ((this.stmt(`SELECT max(code) FROM ${t.facetValues}`).pluck().get() as number | null) ?? 0) + 1;
    const counts = new Int32Array(maxCode);
    const kinds = new Uint8Array(maxCode);
    for (const v of readCodes(buf)) {
      const code = v & CODE_MASK;
      counts[code]++;
      kinds[code] = v >>> KIND_SHIFT;
    }
    const byKind = new Map<number, number[]>([
      [FACET_KIND.sender, []],
      [FACET_KIND.domain, []],
      [FACET_KIND.year, []],
    ]);
    for (let c = 0; c < maxCode; c++) if (counts[c] > 0) byKind.get(kinds[c])?.push(c);
    const top = (codes: number[]): FacetBucket[] => {
      if (codes.length === 0) return [];
      codes.sort((a, b) => counts[b] - counts[a]);
      const cutoff = counts[codes[Math.min(FACET_SIZE, codes.length) - 1]];
      const above = codes.filter((c) => counts[c] > cutoff);
      const tied = codes.filter((c) => counts[c] === cutoff);
      const values = this.stmt(`SELECT code, value FROM ${t.facetValues} WHERE code IN (SELECT value FROM json_each(?))`);
      const buckets = (values.all(JSON.stringify(above)) as { code: number; value: string }[]).map((r) => ({ value: r.value, count: counts[r.code] }));
      buckets.sort((x, y) => y.count - x.count || compareUtf8(x.value, y.value));
      // Of the values tied at the cut, the smallest in byte order (SQLite's BINARY collation).
      const rest = this.stmt(`SELECT value FROM ${t.facetValues} WHERE code IN (SELECT value FROM json_each(?)) ORDER BY value LIMIT ?`)
        .pluck()
        .all(JSON.stringify(tied), FACET_SIZE - buckets.length) as string[];
      return [...buckets, ...rest.map((value) => ({ value, count: cutoff }))];
    };
    return {
      senders: top(byKind.get(FACET_KIND.sender) ?? []),
      domains: top(byKind.get(FACET_KIND.domain) ?? []),
      years: top(byKind.get(FACET_KIND.year) ?? []),
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
      // Ids deleted while the build runs: a document the build read from the store before its message was disposed of must not come back.
      db.exec(`DROP TABLE IF EXISTS ${REBUILD_DELETIONS}; CREATE TABLE ${REBUILD_DELETIONS} (id TEXT PRIMARY KEY) WITHOUT ROWID`);
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
        const rows = docs.map((d) => ({ doc: d, row: toRow(d) }));
        db.transaction(() => {
          own();
          const w = this.writer(NEXT);
          const deleted = this.stmt(`SELECT 1 FROM ${REBUILD_DELETIONS} WHERE id = ?`).pluck();
          // A live write may have put a later delivery's document here since this batch was read from the store,
          // or a live delete removed the message since (a live write after it, a new life, is in NEXT already).
          for (const { doc, row } of rows) if (!deleted.get(doc.id) && !this.supersededIn(NEXT, doc)) w.put(row);
          w.finish();
        }).immediate();
      },
      commit: async (): Promise<void> => {
        let documents = 0;
        db.transaction(() => {
          own();
          db.exec(dropTablesSql(OLD));
          db.exec(`DROP TABLE IF EXISTS ${REBUILD_DELETIONS}`);
          db.exec(renameTablesSql(LIVE, OLD));
          db.exec(renameTablesSql(NEXT, LIVE));
          this.deleteMeta('rebuild');
          // Mids of the new generation mean other documents: a scan that began before must start over.
          this.setMeta('generation', String(this.generation() + 1));
          documents = (this.stmt(`SELECT count(*) AS n FROM ${this.t.messages}`).get() as { n: number }).n;
        }).immediate();
        done = true;
        this.ownWrites++;
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
          db.exec(`DROP TABLE IF EXISTS ${REBUILD_DELETIONS}`);
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
