/**
 * The embedded catalog store: one SQLite table of versioned JSON records,
 * in `<dataDir>/catalog/records.sqlite` (beside the message index's file,
 * shared by every process of an embedded deployment: server, CLI).
 *
 *   records(collection, id, version, data)  PRIMARY KEY (collection, id)
 *
 * Optimistic concurrency is one statement: `UPDATE … WHERE version = ?`
 * changes no row when another writer got there first. WAL lets readers run
 * beside a writer; `busy_timeout` makes a second process wait for the write
 * lock instead of failing. Commits are fully synchronous: the audit trail is
 * evidence, so each commit pays one fsync (~0.3 ms here). Bulk writers (the
 * retention engine keeps a record per message) use `writeMany`: one
 * transaction, so one fsync, per batch.
 *
 * better-sqlite3 is synchronous; every method runs to completion on the
 * event loop. Filters compile to `json_extract` over the collection's rows
 * (no secondary indexes: collections are small, and a full pass over 100,000
 * audit records takes tens of milliseconds).
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type Database from 'better-sqlite3';
import { openDurableSqlite } from './durable-sqlite.js';
import type { Config } from '../../config/config.js';
import type { Logger } from '../../logger.js';
import { CatalogConflictError, NotFoundError, ServiceUnavailableError } from '../../errors.js';
import type { CatalogRecord, CatalogStore, CatalogWrite, CatalogWriteOutcome, ListOptions, ListPage } from '../../ports/catalog-store.js';
import { assertBatch, assertCollection, assertWrites, normalizeList, pageOf } from '../shared/catalog-list.js';

/** Records per page of `scan` (each page is one short query; memory is one page). */
const SCAN_PAGE = 1000;

interface Row {
  id: string;
  version: number;
  data: string;
}

export class SqliteCatalogStore implements CatalogStore {
  readonly driver = 'sqlite';
  private db: Database.Database | undefined;
  private readonly statements = new Map<string, Database.Statement>();

  constructor(
    private readonly file: string,
    private readonly log: Logger,
  ) {}

  static fromConfig(config: Config, log: Logger): SqliteCatalogStore {
    return new SqliteCatalogStore(path.join(config.dataDir, 'catalog', 'records.sqlite'), log.child({ driver: 'sqlite' }));
  }

  async init(): Promise<void> {
    if (this.db) return;
    try {
      if (this.file !== ':memory:') mkdirSync(path.dirname(this.file), { recursive: true });
      const db = openDurableSqlite(this.file);
      db.exec(`CREATE TABLE IF NOT EXISTS records (
        collection TEXT NOT NULL,
        id TEXT NOT NULL,
        version INTEGER NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (collection, id)
      ) WITHOUT ROWID`);
      this.db = db;
      this.log.debug({ file: this.file }, 'catalog store open');
    } catch (err) {
      throw new ServiceUnavailableError('catalog_unavailable', `cannot open the catalog ${this.file}: ${(err as Error).message}`, { cause: err });
    }
  }

  private stmt(sql: string): Database.Statement {
    if (!this.db) throw new ServiceUnavailableError('catalog_unavailable', 'catalog store is not open');
    let s = this.statements.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      // Bounded: list() makes one statement per filter shape, and there are few shapes.
      if (this.statements.size > 500) this.statements.clear();
      this.statements.set(sql, s);
    }
    return s;
  }

  async get<T>(collection: string, id: string): Promise<CatalogRecord<T> | undefined> {
    assertCollection(collection);
    const row = this.stmt('SELECT id, version, data FROM records WHERE collection = ? AND id = ?').get(collection, id) as Row | undefined;
    return row ? toRecord<T>(row) : undefined;
  }

  async create<T>(collection: string, id: string, data: T): Promise<CatalogRecord<T>> {
    assertCollection(collection);
    const json = JSON.stringify(data);
    try {
      this.stmt('INSERT INTO records (collection, id, version, data) VALUES (?, ?, 1, ?)').run(collection, id, json);
    } catch (err) {
      if ((err as { code?: string }).code?.startsWith('SQLITE_CONSTRAINT')) throw new CatalogConflictError(`${collection}/${id} already exists`);
      throw err;
    }
    return { id, version: 1, data: JSON.parse(json) as T };
  }

  async update<T>(collection: string, id: string, data: T, expectedVersion: number): Promise<CatalogRecord<T>> {
    assertCollection(collection);
    const json = JSON.stringify(data);
    const r = this.stmt('UPDATE records SET data = ?, version = version + 1 WHERE collection = ? AND id = ? AND version = ?').run(json, collection, id, expectedVersion);
    if (r.changes === 0) this.explainMiss(collection, id);
    return { id, version: expectedVersion + 1, data: JSON.parse(json) as T };
  }

  async delete(collection: string, id: string, expectedVersion: number): Promise<void> {
    assertCollection(collection);
    const r = this.stmt('DELETE FROM records WHERE collection = ? AND id = ? AND version = ?').run(collection, id, expectedVersion);
    if (r.changes === 0) this.explainMiss(collection, id);
  }

  async getMany<T>(collection: string, ids: string[]): Promise<Map<string, CatalogRecord<T>>> {
    assertCollection(collection);
    assertBatch(ids, 'getMany');
    const get = this.stmt('SELECT id, version, data FROM records WHERE collection = ? AND id = ?');
    const out = new Map<string, CatalogRecord<T>>();
    // One read transaction: one snapshot, no lock taken per row.
    this.db!.transaction(() => {
      for (const id of ids) {
        const row = get.get(collection, id) as Row | undefined;
        if (row) out.set(id, toRecord<T>(row));
      }
    })();
    return out;
  }

  async writeMany<T>(collection: string, items: CatalogWrite<T>[]): Promise<CatalogWriteOutcome[]> {
    assertCollection(collection);
    assertWrites(items);
    const insert = this.stmt('INSERT INTO records (collection, id, version, data) VALUES (?, ?, 1, ?) ON CONFLICT (collection, id) DO NOTHING');
    const update = this.stmt('UPDATE records SET data = ?, version = version + 1 WHERE collection = ? AND id = ? AND version = ?');
    const exists = this.stmt('SELECT 1 FROM records WHERE collection = ? AND id = ?');
    // One write transaction (IMMEDIATE: takes the write lock up front, so a
    // second process waits in busy_timeout instead of failing mid-batch):
    // one commit, one fsync, for the whole batch.
    return this.db!.transaction((): CatalogWriteOutcome[] =>
      items.map((it): CatalogWriteOutcome => {
        const json = JSON.stringify(it.data);
        if (it.expectedVersion === 'create') {
          return insert.run(collection, it.id, json).changes ? { id: it.id, ok: true, version: 1 } : { id: it.id, ok: false, reason: 'conflict' };
        }
        if (update.run(json, collection, it.id, it.expectedVersion).changes) return { id: it.id, ok: true, version: it.expectedVersion + 1 };
        return { id: it.id, ok: false, reason: exists.get(collection, it.id) ? 'conflict' : 'not_found' };
      }),
    ).immediate();
  }

  /** A conditional write changed nothing: say whether the record is gone or moved on. */
  private explainMiss(collection: string, id: string): never {
    const exists = this.stmt('SELECT 1 FROM records WHERE collection = ? AND id = ?').get(collection, id);
    if (!exists) throw new NotFoundError(`${collection}/${id} not found`);
    throw new CatalogConflictError(`${collection}/${id} was changed by another writer; re-read it and retry`);
  }

  async list<T>(collection: string, opts: ListOptions = {}): Promise<ListPage<T>> {
    assertCollection(collection);
    const q = normalizeList(opts);
    const conds = ['collection = ?'];
    const args: unknown[] = [collection];
    const path = (f: string) => `'$.${f}'`; // field names are checked against FIELD_NAME
    for (const [f, v] of q.where) {
      if (typeof v === 'boolean') {
        conds.push(`json_type(data, ${path(f)}) = ?`);
        args.push(v ? 'true' : 'false');
      } else {
        conds.push(`json_type(data, ${path(f)}) ${typeof v === 'string' ? "= 'text'" : "IN ('integer', 'real')"} AND json_extract(data, ${path(f)}) = ?`);
        args.push(v);
      }
    }
    for (const [f, r] of q.range) {
      for (const [bound, op] of [
        [r.gte, '>='],
        [r.lte, '<='],
      ] as const) {
        if (bound === undefined) continue;
        conds.push(`json_type(data, ${path(f)}) ${typeof bound === 'string' ? "= 'text'" : "IN ('integer', 'real')"} AND json_extract(data, ${path(f)}) ${op} ?`);
        args.push(bound);
      }
    }
    const cmp = q.desc ? '<' : '>';
    const dir = q.desc ? 'DESC' : 'ASC';
    let order: string;
    if (q.orderBy === undefined) {
      order = `id ${dir}`;
      if (q.after) {
        conds.push(`id ${cmp} ?`);
        args.push(q.after.id);
      }
    } else {
      // Strings and numbers sort; anything else (missing, booleans, objects) is NULL and comes last.
      const k = `(CASE json_type(data, ${path(q.orderBy)}) WHEN 'text' THEN json_extract(data, ${path(q.orderBy)}) WHEN 'integer' THEN json_extract(data, ${path(q.orderBy)}) WHEN 'real' THEN json_extract(data, ${path(q.orderBy)}) END)`;
      order = `(${k} IS NULL), ${k} ${dir}, id ${dir}`;
      if (q.after) {
        if (q.after.value === null) {
          conds.push(`${k} IS NULL AND id ${cmp} ?`);
          args.push(q.after.id);
        } else {
          conds.push(`(${k} IS NULL OR ${k} ${cmp} ? OR (${k} = ? AND id ${cmp} ?))`);
          args.push(q.after.value, q.after.value, q.after.id);
        }
      }
    }
    const sql = `SELECT id, version, data FROM records WHERE ${conds.join(' AND ')} ORDER BY ${order} LIMIT ?`;
    const rows = this.stmt(sql).all(...args, q.limit + 1) as Row[];
    const records = rows.slice(0, q.limit).map((r) => toRecord<T>(r));
    return pageOf(records, rows.length > q.limit, q);
  }

  async *scan<T>(collection: string): AsyncIterable<CatalogRecord<T>> {
    assertCollection(collection);
    let after: string | undefined;
    for (;;) {
      const rows = (
        after === undefined
          ? this.stmt('SELECT id, version, data FROM records WHERE collection = ? ORDER BY id LIMIT ?').all(collection, SCAN_PAGE)
          : this.stmt('SELECT id, version, data FROM records WHERE collection = ? AND id > ? ORDER BY id LIMIT ?').all(collection, after, SCAN_PAGE)
      ) as Row[];
      for (const r of rows) yield toRecord<T>(r);
      if (rows.length < SCAN_PAGE) return;
      after = rows[rows.length - 1].id;
    }
  }

  async close(): Promise<void> {
    this.statements.clear();
    this.db?.close();
    this.db = undefined;
  }
}

function toRecord<T>(row: Row): CatalogRecord<T> {
  return { id: row.id, version: row.version, data: JSON.parse(row.data) as T };
}
