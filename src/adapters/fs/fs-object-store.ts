/**
 * The embedded object store: write-once files on the local filesystem.
 *
 * Layout under `<dataDir>/store/`:
 *   objects/ab/cd/<sha256>                 raw message bytes, mode 0444
 *   envelopes/ab/cd/<sha256>.<id>.json     one immutable record per delivery
 *   seals/<name>                           audit-trail seals, mode 0444, written once
 *   locks.sqlite                           lock state (legal hold, retain-until): one row
 *                                          per message, a batch of changes per transaction
 *                                          (fs-lock-table.ts)
 *   locks/ab/cd/<sha256>.<seq>.json        lock state as the store first kept it, one
 *                                          write-once file per change: still read (the
 *                                          highest seq of file and row is current), no
 *                                          longer written
 * and `<dataDir>/spool/` for files being written (never taken for a message).
 *
 * A write is: temp file → fsync → link(2) to the final name → fsync the
 * directory. link fails with EEXIST instead of replacing, which is what makes
 * the store write-once even against two writers of the same message.
 */
import { createReadStream, readdirSync, statSync } from 'node:fs';
import { access, constants, link, mkdir, open, readdir, readFile, rm, stat, statfs, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { spoolFileName, isOwnerAlive } from './spool-names.js';
import type { Envelope, Sha256 } from '../../domain/types.js';
import { AppError, NotFoundError, RetentionLockedError, StorageUnavailableError } from '../../errors.js';
import { SEAL_NAME, assertSealName, type DeleteResult, type GetMessageOptions, type LockBatchResult, type ObjectRetention, type ObjectStore, type PutResult, type SpoolFile, type StoreHealth, type StoredObjectInfo } from '../../ports/object-store.js';
import { DirSyncer, fsyncDir } from './dir-syncer.js';
import { FsLockTable, type FsLock, type LockRow, type LockWrite } from './fs-lock-table.js';
import { verifyingStream } from '../../integrity/verifying-stream.js';
import { assertSha256 } from '../../integrity/sha256.js';
import { groupEnvelopeIds } from '../shared/group-envelope-ids.js';

export class FsObjectStore implements ObjectStore {
  readonly driver = 'fs';
  private readonly objectsDir: string;
  private readonly envelopesDir: string;
  private readonly sealsDir: string;
  private readonly locksDir: string;
  private readonly spoolDir: string;
  private readonly clock: () => Date;
  private readonly dirs = new DirSyncer();
  /** Shard directories known to exist, so the hot path skips mkdir. */
  private readonly madeDirs = new Set<string>();
  private readonly locks: FsLockTable;
  /** Messages a deleteMessage call in this process has claimed (see there). */
  private readonly deleting = new Set<Sha256>();
  /**
   * Whether `locks/` holds lock files of the first layout; looked at once
   * (nothing writes them any more). When it holds none, a lock read is the
   * table's row alone: no directory listing per message.
   */
  private lockFiles: boolean | undefined;

  constructor(private readonly root: string, spoolDir: string, opts: { clock?: () => Date } = {}) {
    this.clock = opts.clock ?? (() => new Date());
    this.locksDir = path.join(root, 'locks');
    this.locks = new FsLockTable(path.join(root, 'locks.sqlite'));
    this.objectsDir = path.join(root, 'objects');
    this.envelopesDir = path.join(root, 'envelopes');
    this.sealsDir = path.join(root, 'seals');
    this.spoolDir = spoolDir;
  }

  /** Creates the layout. Safe to call on an existing store. */
  async init(): Promise<void> {
    await mkdir(this.objectsDir, { recursive: true });
    await mkdir(this.envelopesDir, { recursive: true });
    await mkdir(this.sealsDir, { recursive: true });
    await mkdir(this.locksDir, { recursive: true });
    await mkdir(this.spoolDir, { recursive: true });
  }

  private shard(base: string, sha256: Sha256): string {
    return path.join(base, sha256.slice(0, 2), sha256.slice(2, 4));
  }

  objectPath(sha256: Sha256): string {
    assertSha256(sha256);
    return path.join(this.shard(this.objectsDir, sha256), sha256);
  }

  private async ensureDir(dir: string): Promise<void> {
    if (this.madeDirs.has(dir)) return;
    const created = await mkdir(dir, { recursive: true });
    if (created) {
      // New directories must themselves be durable entries of their parents.
      await this.dirs.sync(path.dirname(dir));
      await this.dirs.sync(path.dirname(path.dirname(dir)));
    }
    this.madeDirs.add(dir);
  }

  async putMessage(spool: SpoolFile): Promise<PutResult> {
    assertSha256(spool.sha256);
    try {
      const dir = this.shard(this.objectsDir, spool.sha256);
      const final = path.join(dir, spool.sha256);
      const created = await this.commitFile(spool.path, dir, final);
      return { created };
    } catch (err) {
      await unlink(spool.path).catch(() => undefined);
      throw new StorageUnavailableError(`could not store message ${spool.sha256}: ${(err as Error).message}`, { cause: err });
    }
  }

  async putEnvelope(envelope: Envelope): Promise<void> {
    assertSha256(envelope.sha256);
    if (!/^[0-9A-Za-z-]+$/.test(envelope.id)) throw new Error(`bad envelope id ${envelope.id}`);
    const tmp = path.join(this.spoolDir, spoolFileName('env'));
    try {
      const fh = await open(tmp, 'wx', 0o444);
      try {
        await fh.writeFile(JSON.stringify(envelope));
      } finally {
        await fh.close();
      }
      const dir = this.shard(this.envelopesDir, envelope.sha256);
      const created = await this.commitFile(tmp, dir, path.join(dir, `${envelope.sha256}.${envelope.id}.json`));
      if (!created) throw new Error(`envelope ${envelope.id} already exists`);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw new StorageUnavailableError(`could not store envelope ${envelope.id}: ${(err as Error).message}`, { cause: err });
    }
  }

  async putSeal(name: string, bytes: Buffer): Promise<PutResult> {
    assertSealName(name);
    const tmp = path.join(this.spoolDir, spoolFileName('seal'));
    try {
      const fh = await open(tmp, 'wx', 0o444);
      try {
        await fh.writeFile(bytes);
      } finally {
        await fh.close();
      }
      return { created: await this.commitFile(tmp, this.sealsDir, path.join(this.sealsDir, name)) };
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw new StorageUnavailableError(`could not store seal ${name}: ${(err as Error).message}`, { cause: err });
    }
  }

  async getSeal(name: string): Promise<Buffer | undefined> {
    assertSealName(name);
    try {
      return await readFile(path.join(this.sealsDir, name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async *listSeals(): AsyncIterable<string> {
    const names = await readdir(this.sealsDir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [] as string[];
      throw err;
    });
    for (const n of names.sort()) if (SEAL_NAME.test(n)) yield n;
  }

  /**
   * fsync `tmp`, link it to `final` unless that exists, fsync the directory,
   * remove `tmp`. Returns false when `final` already existed.
   */
  private async commitFile(tmp: string, dir: string, final: string): Promise<boolean> {
    const fh = await open(tmp, 'r');
    try {
      await fh.chmod(0o444);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await this.ensureDir(dir);
    let created = true;
    try {
      await link(tmp, final);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      created = false;
    }
    await unlink(tmp);
    if (created) await this.dirs.sync(dir);
    return created;
  }

  /** `recentCopy` changes nothing here: the file is the store. */
  async getMessage(sha256: Sha256, opts: GetMessageOptions = {}): Promise<Readable> {
    const file = this.objectPath(sha256);
    try {
      await access(file, constants.R_OK);
    } catch {
      throw new NotFoundError(`message ${sha256} not found`);
    }
    const stream = createReadStream(file, { highWaterMark: 256 * 1024 });
    return opts.verify === false ? stream : verifyingStream(stream, sha256);
  }

  async statMessage(sha256: Sha256): Promise<StoredObjectInfo | undefined> {
    try {
      const st = await stat(this.objectPath(sha256));
      return { sha256, size: st.size };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  /** `known` is not used: a local read costs less than matching a known envelope against the stored bytes. */
  /** The file names of a message's envelopes (`<sha256>.<id>.json`), sorted. */
  private async envelopeFiles(sha256: Sha256): Promise<string[]> {
    let names: string[];
    try {
      names = await readdir(this.shard(this.envelopesDir, sha256));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    return names.filter((n) => n.startsWith(`${sha256}.`) && n.endsWith('.json')).sort();
  }

  async envelopeIds(sha256: Sha256): Promise<string[]> {
    assertSha256(sha256);
    return (await this.envelopeFiles(sha256)).map((n) => n.slice(sha256.length + 1, -'.json'.length));
  }

  async getEnvelopes(sha256: Sha256, _known?: Envelope[]): Promise<Envelope[]> {
    const dir = this.shard(this.envelopesDir, sha256);
    return Promise.all((await this.envelopeFiles(sha256)).map(async (n) => JSON.parse(await readFile(path.join(dir, n), 'utf8')) as Envelope));
  }

  async *listMessages(): AsyncIterable<StoredObjectInfo> {
    for await (const file of walkShards(this.objectsDir)) {
      const name = path.basename(file);
      if (!/^[0-9a-f]{64}$/.test(name)) continue;
      const st = await stat(file);
      yield { sha256: name, size: st.size };
    }
  }

  async *listEnvelopes(): AsyncIterable<Envelope> {
    for await (const file of walkShards(this.envelopesDir)) {
      if (!file.endsWith('.json')) continue;
      yield JSON.parse(await readFile(file, 'utf8')) as Envelope;
    }
  }

  listEnvelopeIds(): AsyncIterable<{ sha256: Sha256; ids: string[] }> {
    const envelopesDir = this.envelopesDir;
    return groupEnvelopeIds(
      (async function* () {
        for await (const file of walkShards(envelopesDir)) {
          const m = /^([0-9a-f]{64})\.([0-9A-Za-z-]+)\.json$/.exec(path.basename(file));
          if (m) yield { sha256: m[1], id: m[2] };
        }
      })(),
    );
  }

  // --- retention and legal holds: recorded here, enforced by deleteMessage ---

  private async hasLockFiles(): Promise<boolean> {
    this.lockFiles ??= await readdir(this.locksDir).then(
      (names) => names.length > 0,
      () => false,
    );
    return this.lockFiles;
  }

  /** Lock files of the first layout: the highest seq of a message and its state (seq 0: none). */
  private async readLockFile(sha256: Sha256): Promise<LockRow> {
    if (!(await this.hasLockFiles())) return NO_LOCK;
    const dir = this.shard(this.locksDir, sha256);
    const names = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [] as string[];
      throw err;
    });
    let seq = 0;
    for (const n of names) {
      const m = /^([0-9a-f]{64})\.(\d+)\.json$/.exec(n);
      if (m && m[1] === sha256) seq = Math.max(seq, Number(m[2]));
    }
    if (seq === 0) return NO_LOCK;
    return { seq, lock: JSON.parse(await readFile(path.join(dir, `${sha256}.${seq}.json`), 'utf8')) as FsLock };
  }

  /** The current lock state of a message: its row or its newest lock file, whichever is later; `rowSeq` is what a write must find. */
  private async currentLock(sha256: Sha256, row: LockRow | undefined): Promise<{ seq: number; rowSeq: number; lock: FsLock }> {
    return newerLock(row, await this.readLockFile(sha256));
  }

  private async readLock(sha256: Sha256): Promise<{ seq: number; rowSeq: number; lock: FsLock }> {
    try {
      return await this.currentLock(sha256, this.locks.get(sha256));
    } catch (err) {
      throw new StorageUnavailableError(`could not read the lock state of ${sha256}: ${(err as Error).message}`, { cause: err });
    }
  }

  /**
   * Which of these messages are stored. Synchronous on purpose (~3 µs a
   * message while the directory entries are cached; a batch of 1,000 holds
   * the event loop a few ms), against ~30 µs of CPU for each asynchronous
   * stat. A shard directory holding several of the batch is listed once
   * instead of stat'ing each: a bulk hold walks messages in id order, so a
   * batch of 1,000 out of 1,000,000 falls into ~65 shard directories of ~15
   * messages each (one listing replaces ~15 stats; the stats were 16% of a
   * hold's time). Scattered ids (an ingest batch) are stat'ed one by one.
   */
  private presentObjects(sha256s: Sha256[]): Set<Sha256> {
    const byDir = new Map<string, Sha256[]>();
    for (const sha of sha256s) {
      assertSha256(sha);
      const dir = this.shard(this.objectsDir, sha);
      const group = byDir.get(dir);
      if (group) group.push(sha);
      else byDir.set(dir, [sha]);
    }
    const present = new Set<Sha256>();
    for (const [dir, group] of byDir) {
      if (group.length >= LIST_SHARD_FROM) {
        let names: Set<string>;
        try {
          names = new Set(readdirSync(dir));
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
          throw err;
        }
        for (const sha of group) if (names.has(sha)) present.add(sha);
      } else {
        for (const sha of group) if (statSync(path.join(dir, sha), { throwIfNoEntry: false })) present.add(sha);
      }
    }
    return present;
  }

  /**
   * Read-modify-write of the lock state of many messages, as one transaction
   * of the lock table (one fsync for the batch). Each write is conditional on
   * the row it read, so of two concurrent writers (server and CLI) one loses,
   * re-reads and retries: no change is ever lost. `change` gives the next
   * state, or undefined when the current one already is as asked. Messages
   * absent from the store are reported, not changed.
   */
  private async changeLocks(items: { sha256: Sha256; change: (lock: FsLock) => FsLock | undefined }[]): Promise<LockBatchResult & { changed: number }> {
    const changes = new Map<Sha256, ((lock: FsLock) => FsLock | undefined)[]>();
    for (const { sha256, change } of items) {
      assertSha256(sha256);
      changes.set(sha256, [...(changes.get(sha256) ?? []), change]);
    }
    const missing: Sha256[] = [];
    let todo: Sha256[] = [];
    let changed = 0;
    try {
      const present = this.presentObjects([...changes.keys()]);
      // A message being deleted (claimed by deleteMessage) counts as gone.
      for (const sha of changes.keys()) (present.has(sha) && !this.deleting.has(sha) ? todo : missing).push(sha);
      for (let attempt = 0; todo.length; attempt++) {
        if (attempt >= 20) throw new StorageUnavailableError(`could not record the lock state of ${todo[0]}: too many concurrent writers`);
        const rows = this.locks.getMany(todo);
        const writes: LockWrite[] = [];
        const plan = (sha: Sha256, cur: { seq: number; rowSeq: number; lock: FsLock }) => {
          let next: FsLock | undefined;
          for (const change of changes.get(sha)!) next = change(next ?? cur.lock) ?? next;
          if (next) writes.push({ sha256: sha, prevSeq: cur.rowSeq, seq: cur.seq + 1, lock: next });
        };
        if (await this.hasLockFiles()) await mapLimit(todo, LOCK_IO_CONCURRENCY, async (sha) => plan(sha, await this.currentLock(sha, rows.get(sha))));
        else for (const sha of todo) plan(sha, newerLock(rows.get(sha), NO_LOCK));
        // Checked again right before the (synchronous) write: a deletion may have claimed a message meanwhile.
        for (const w of writes.filter((x) => this.deleting.has(x.sha256))) {
          missing.push(w.sha256);
          writes.splice(writes.indexOf(w), 1);
        }
        const lost = writes.length ? this.locks.putMany(writes) : new Set<string>();
        changed += writes.length - lost.size;
        todo = [...lost];
      }
    } catch (err) {
      if (err instanceof AppError) throw err;
      const which = items.length === 1 ? items[0].sha256 : `${changes.size} messages`;
      throw new StorageUnavailableError(`could not record the lock state of ${which}: ${(err as Error).message}`, { cause: err });
    }
    return { changed, missing };
  }

  async setLegalHold(sha256: Sha256, on: boolean): Promise<void> {
    const r = await this.changeLocks([{ sha256, change: holdChange(on) }]);
    if (r.missing.length) throw new NotFoundError(`message ${sha256} not found`);
  }

  async setLegalHolds(sha256s: Sha256[], on: boolean): Promise<LockBatchResult> {
    const { missing } = await this.changeLocks(sha256s.map((sha256) => ({ sha256, change: holdChange(on) })));
    return { missing };
  }

  async getLegalHold(sha256: Sha256): Promise<boolean> {
    assertSha256(sha256);
    if (!(await this.statMessage(sha256))) throw new NotFoundError(`message ${sha256} not found`);
    return (await this.readLock(sha256)).lock.legalHold;
  }

  async getRetention(sha256: Sha256): Promise<ObjectRetention | undefined> {
    assertSha256(sha256);
    if (!(await this.statMessage(sha256))) throw new NotFoundError(`message ${sha256} not found`);
    const { lock } = await this.readLock(sha256);
    return lock.retainUntil ? { mode: 'ARCHIVE', retainUntil: new Date(lock.retainUntil) } : undefined;
  }

  async extendRetention(sha256: Sha256, until: Date): Promise<boolean> {
    const r = await this.changeLocks([{ sha256, change: extendChange(until) }]);
    if (r.missing.length) throw new NotFoundError(`message ${sha256} not found`);
    return r.changed > 0;
  }

  async extendRetentions(items: { sha256: Sha256; until: Date }[]): Promise<LockBatchResult> {
    const { missing } = await this.changeLocks(items.map(({ sha256, until }) => ({ sha256, change: extendChange(until) })));
    return { missing };
  }

  async deleteMessage(sha256: Sha256): Promise<DeleteResult> {
    assertSha256(sha256);
    const refuse = (lock: FsLock): void => {
      if (lock.legalHold) throw new RetentionLockedError(`message ${sha256} is under a legal hold`);
      if (lock.retainUntil && Date.parse(lock.retainUntil) > this.clock().getTime()) {
        throw new RetentionLockedError(`message ${sha256} is retained until ${lock.retainUntil}`);
      }
    };
    refuse((await this.readLock(sha256)).lock);
    // Claimed, and checked again, in one synchronous step: a lock change in this process (changeLocks, also
    // synchronous) either lands before it and is seen here, or after it and finds the message gone.
    if (this.deleting.has(sha256)) throw new StorageUnavailableError(`message ${sha256} is being deleted by another call`);
    refuse(newerLock(this.locks.get(sha256), NO_LOCK).lock);
    this.deleting.add(sha256);
    try {
      return await this.deleteClaimed(sha256);
    } finally {
      this.deleting.delete(sha256);
    }
  }

  private async deleteClaimed(sha256: Sha256): Promise<DeleteResult> {
    let objects = 0;
    let deleted = false;
    try {
      await unlink(this.objectPath(sha256));
      deleted = true;
      objects++;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new StorageUnavailableError(`could not delete ${sha256}: ${(err as Error).message}`, { cause: err });
    }
    for (const base of [this.envelopesDir, this.locksDir]) {
      const dir = this.shard(base, sha256);
      const names = await readdir(dir).catch(() => [] as string[]);
      for (const n of names) {
        if (!n.startsWith(`${sha256}.`)) continue;
        await unlink(path.join(dir, n)).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOENT') throw err;
        });
        objects++;
      }
      if (names.length) await this.dirs.sync(dir);
    }
    if (deleted) await this.dirs.sync(this.shard(this.objectsDir, sha256));
    // The lock row last: until the message and its envelopes are gone, its lock state stays readable.
    try {
      if (this.locks.delete(sha256)) objects++;
    } catch (err) {
      throw new StorageUnavailableError(`could not remove the lock state of ${sha256}: ${(err as Error).message}`, { cause: err });
    }
    return { deleted, objects };
  }

  async health(): Promise<StoreHealth> {
    try {
      await access(this.objectsDir, constants.W_OK);
      await access(this.spoolDir, constants.W_OK);
      const probe = path.join(this.spoolDir, spoolFileName('health'));
      const fh = await open(probe, 'wx');
      await fh.close();
      await rm(probe);
      const fsInfo = await statfs(this.root);
      const free = fsInfo.bavail * fsInfo.bsize;
      return { ok: true, driver: this.driver, detail: `${this.root}; ${Math.round(free / 1024 / 1024)} MiB free` };
    } catch (err) {
      return { ok: false, driver: this.driver, detail: (err as Error).message };
    }
  }

  async close(): Promise<void> {
    this.locks.close();
  }

  /**
   * Removes spool debris left by crashed processes. Only spool files whose
   * owning process is gone: never a stored object, never another live
   * process's (an import running beside the server) file in flight.
   */
  static async cleanSpool(spoolDir: string): Promise<number> {
    let names: string[];
    try {
      names = await readdir(spoolDir);
    } catch {
      return 0;
    }
    let n = 0;
    for (const name of names) {
      if (name.endsWith('.tmp') && !isOwnerAlive(name)) {
        await unlink(path.join(spoolDir, name)).catch(() => undefined);
        n++;
      }
    }
    if (n) await fsyncDir(spoolDir).catch(() => undefined);
    return n;
  }
}

/** Lock files of the first layout read at once during a batch lock change (each is one small read). */
const LOCK_IO_CONCURRENCY = 16;
/** A shard directory is listed (rather than each message stat'ed) when at least this many of a batch fall into it (a listing costs about as much as 3 stats). */
const LIST_SHARD_FROM = 4;

/** The state of a message whose lock was never changed. */
const NO_LOCK: LockRow = { seq: 0, lock: { legalHold: false } };

/** Of a message's lock row and newest lock file, the later; `rowSeq` is what a write over it must find in the table. */
function newerLock(row: LockRow | undefined, file: LockRow): { seq: number; rowSeq: number; lock: FsLock } {
  const rowSeq = row?.seq ?? 0;
  if (!row || file.seq > rowSeq) return { seq: file.seq, rowSeq, lock: file.lock };
  return { seq: rowSeq, rowSeq, lock: row.lock };
}

function holdChange(on: boolean): (l: FsLock) => FsLock | undefined {
  return (l) => (l.legalHold === on ? undefined : { ...l, legalHold: on });
}

function extendChange(until: Date): (l: FsLock) => FsLock | undefined {
  if (!(until instanceof Date) || Number.isNaN(until.getTime())) throw new Error('extendRetention: until must be a valid Date');
  return (l) => (l.retainUntil && until.getTime() <= Date.parse(l.retainUntil) ? undefined : { ...l, retainUntil: until.toISOString() });
}

/** Runs `fn` over items with at most `limit` in flight. */
async function mapLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]);
    }),
  );
}

/** Yields every file two shard levels below `base`. */
async function* walkShards(base: string): AsyncIterable<string> {
  const level1 = await readdir(base).catch(() => [] as string[]);
  for (const a of level1.sort()) {
    const dirA = path.join(base, a);
    const level2 = await readdir(dirA).catch(() => [] as string[]);
    for (const b of level2.sort()) {
      const dirB = path.join(dirA, b);
      const files = await readdir(dirB).catch(() => [] as string[]);
      for (const f of files.sort()) yield path.join(dirB, f);
    }
  }
}
