/**
 * Opens a SQLite file that holds records of evidence (the catalog, the
 * filesystem store's lock table): every commit is durable on return
 * (`synchronous = FULL` in WAL mode, one fsync per transaction), and several
 * processes may share the file (a writer waits for another's lock instead of
 * failing at once).
 */
import Database from 'better-sqlite3';

/** ms a process waits for another process's write lock before failing with SQLITE_BUSY. */
const BUSY_TIMEOUT_MS = 10_000;

/**
 * Page cache per connection, KiB (SQLite's default is 2 MiB). Both users keep
 * one row per message and their bulk passes (a hold over a custodian's mail)
 * touch rows in hash order, i.e. at random; with a large cache the upper
 * levels and most leaves stay in memory. Costs at most this much memory per
 * connection.
 */
const CACHE_KIB = 64 * 1024;

export function openDurableSqlite(file: string): Database.Database {
  const db = new Database(file);
  try {
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma(`cache_size = -${CACHE_KIB}`);
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}
