/**
 * The fs store's lock state (legal hold, retain-until) as one SQLite table,
 * `<store>/locks.sqlite`:
 *
 *   locks(sha256 PRIMARY KEY, seq, legal_hold, retain_until)
 *
 * Why a table and not a file per change (the store's first layout, still
 * read: see FsObjectStore.readLock): a lock change must be durable before it
 * is acknowledged, and a file per message costs a file fsync plus a
 * directory fsync in that message's shard directory, so a hold over a
 * million messages costs two million fsyncs spread over 65,536 directories,
 * which no batching can merge (measured on the 2-core reference box: creating
 * one empty file alone took 0.4-0.6 ms while other processes fsync'd, and a
 * hold ran at 400-2,150 messages/s). A batch of lock changes is one
 * transaction here: one WAL fsync for the whole batch.
 *
 * `seq` counts the changes of one message's lock state, continuing the
 * sequence of its lock files if it has any; a write names the seq it read
 * and changes nothing when another writer (the server and a CLI share the
 * store) got there first, so no change is ever lost. WAL with
 * `synchronous = FULL`: a committed change survives a crash;
 * `busy_timeout` makes a second process wait for the write lock.
 *
 * better-sqlite3 is synchronous: a batch of 500 changes holds the event
 * loop for a few milliseconds, its commit for one fsync.
 */
import type Database from 'better-sqlite3';
import { openDurableSqlite } from '../sqlite/durable-sqlite.js';

/** The recorded lock state of one message. */
export interface FsLock {
  legalHold: boolean;
  /** ISO-8601 UTC; only ever moved later. */
  retainUntil?: string;
}

export interface LockRow {
  seq: number;
  lock: FsLock;
}

/** One conditional change: written only if the stored row is still at `prevSeq` (0: no row yet). */
export interface LockWrite {
  sha256: string;
  prevSeq: number;
  seq: number;
  lock: FsLock;
}

interface Row {
  sha256: string;
  seq: number;
  legal_hold: number;
  retain_until: string | null;
}

export class FsLockTable {
  private db: Database.Database | undefined;
  private stmts: Record<'get' | 'insert' | 'update' | 'delete', Database.Statement> | undefined;

  constructor(readonly file: string) {}

  /** Opens (and creates) the table on first use, so a store that never locks anything never opens it. */
  private open(): NonNullable<FsLockTable['stmts']> {
    if (this.stmts) return this.stmts;
    const db = openDurableSqlite(this.file);
    try {
      db.exec(`CREATE TABLE IF NOT EXISTS locks (
        sha256 TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        legal_hold INTEGER NOT NULL,
        retain_until TEXT
      ) WITHOUT ROWID`);
      this.stmts = {
        get: db.prepare('SELECT sha256, seq, legal_hold, retain_until FROM locks WHERE sha256 = ?'),
        insert: db.prepare('INSERT INTO locks (sha256, seq, legal_hold, retain_until) VALUES (?, ?, ?, ?) ON CONFLICT (sha256) DO NOTHING'),
        update: db.prepare('UPDATE locks SET seq = ?, legal_hold = ?, retain_until = ? WHERE sha256 = ? AND seq = ?'),
        delete: db.prepare('DELETE FROM locks WHERE sha256 = ?'),
      };
    } catch (err) {
      db.close();
      throw err;
    }
    this.db = db;
    return this.stmts;
  }

  get(sha256: string): LockRow | undefined {
    const r = this.open().get.get(sha256) as Row | undefined;
    return r && toLockRow(r);
  }

  /** The rows of many messages, in one read transaction. */
  getMany(sha256s: string[]): Map<string, LockRow> {
    const { get } = this.open();
    const out = new Map<string, LockRow>();
    this.db!.transaction(() => {
      for (const sha of sha256s) {
        const r = get.get(sha) as Row | undefined;
        if (r) out.set(sha, toLockRow(r));
      }
    })();
    return out;
  }

  /**
   * Writes many changes in one transaction (one commit, one fsync), each only
   * if its row is still at `prevSeq`. Returns the messages whose change lost
   * to another writer (not written: re-read and retry them).
   */
  putMany(writes: LockWrite[]): Set<string> {
    const { insert, update } = this.open();
    const lost = new Set<string>();
    this.db!.transaction(() => {
      for (const w of writes) {
        const hold = w.lock.legalHold ? 1 : 0;
        const until = w.lock.retainUntil ?? null;
        const r = w.prevSeq === 0 ? insert.run(w.sha256, w.seq, hold, until) : update.run(w.seq, hold, until, w.sha256, w.prevSeq);
        if (r.changes === 0) lost.add(w.sha256);
      }
    }).immediate();
    return lost;
  }

  /** Removes a message's row (disposition). True when there was one. */
  delete(sha256: string): boolean {
    return this.open().delete.run(sha256).changes > 0;
  }

  close(): void {
    this.stmts = undefined;
    this.db?.close();
    this.db = undefined;
  }
}

function toLockRow(r: Row): LockRow {
  return { seq: r.seq, lock: r.retain_until === null ? { legalHold: r.legal_hold === 1 } : { legalHold: r.legal_hold === 1, retainUntil: r.retain_until } };
}
