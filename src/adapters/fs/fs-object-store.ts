/**
 * The embedded object store: write-once files on the local filesystem.
 *
 * Layout under `<dataDir>/store/`:
 *   objects/ab/cd/<sha256>                 raw message bytes, mode 0444
 *   envelopes/ab/cd/<sha256>.<id>.json     one immutable record per delivery
 *   seals/<name>                           audit-trail seals, mode 0444, written once
 * and `<dataDir>/spool/` for files being written (never taken for a message).
 *
 * A write is: temp file → fsync → link(2) to the final name → fsync the
 * directory. link fails with EEXIST instead of replacing, which is what makes
 * the store write-once even against two writers of the same message.
 */
import { createReadStream } from 'node:fs';
import { access, constants, link, mkdir, open, readdir, readFile, rm, stat, statfs, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { spoolFileName, isOwnerAlive } from './spool-names.js';
import type { Envelope, Sha256 } from '../../domain/types.js';
import { NotFoundError, StorageUnavailableError } from '../../errors.js';
import { SEAL_NAME, assertSealName, type ObjectStore, type PutResult, type SpoolFile, type StoreHealth, type StoredObjectInfo } from '../../ports/object-store.js';
import { DirSyncer, fsyncDir } from './dir-syncer.js';
import { verifyingStream } from '../../integrity/verifying-stream.js';
import { assertSha256 } from '../../integrity/sha256.js';

export class FsObjectStore implements ObjectStore {
  readonly driver = 'fs';
  private readonly objectsDir: string;
  private readonly envelopesDir: string;
  private readonly sealsDir: string;
  private readonly spoolDir: string;
  private readonly dirs = new DirSyncer();
  /** Shard directories known to exist, so the hot path skips mkdir. */
  private readonly madeDirs = new Set<string>();

  constructor(private readonly root: string, spoolDir: string) {
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

  async getMessage(sha256: Sha256, opts: { verify?: boolean } = {}): Promise<Readable> {
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

  async getEnvelopes(sha256: Sha256): Promise<Envelope[]> {
    const dir = this.shard(this.envelopesDir, sha256);
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const mine = names.filter((n) => n.startsWith(`${sha256}.`) && n.endsWith('.json')).sort();
    return Promise.all(mine.map(async (n) => JSON.parse(await readFile(path.join(dir, n), 'utf8')) as Envelope));
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
    // Nothing held open between calls.
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
