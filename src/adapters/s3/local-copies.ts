/**
 * Local copies of messages the S3 store has just created, so that the index
 * job, which reads each new message a moment after ingest, reads it from
 * local disk instead of with a GET (one S3 request per message saved).
 *
 * A copy is the ingest's spool file itself, renamed into `dir` under the
 * message's SHA-256 instead of being deleted after the upload: no extra
 * write. Processes that share the data directory (`archive serve` and
 * `archive worker` on one host) share the copies; a process on another host
 * simply misses and reads S3. The copies are a cache, never the truth:
 *
 * - a read hashes the whole copy and uses it only when it matches its name
 *   (a copy torn by a crash, or altered, is deleted and S3 is read);
 * - only copies younger than `ttlMs` are used, and only of objects this
 *   store created (not duplicates it found): such an object carries a fresh
 *   Object Lock of at least a day, so it cannot have been deleted
 *   (disposed of) while its copy is used;
 * - losing them (a restart, another node) only costs the GET they save.
 *
 * Disk: at most `maxBytes` per process (oldest removed first), each copy at
 * most `maxMessageBytes` (a read holds one copy in memory to hash it), and
 * none older than `ttlMs`: copies a process left behind (crash, another
 * process's) are removed by every process's sweep, every `ttlMs`.
 */
import { createHash } from 'node:crypto';
import { mkdir, open, readdir, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Sha256 } from '../../domain/types.js';
import { isSha256 } from '../../integrity/sha256.js';

export interface LocalCopiesOptions {
  /** On the same filesystem as the spool directory (copies arrive by rename). */
  dir: string;
  /** How long a copy may be used, in ms. Default 2 minutes: an index job normally reads its message within seconds. */
  ttlMs?: number;
  /** Bytes of copies this process keeps. Default 256 MiB of disk. */
  maxBytes?: number;
  /** Largest message kept. Default 4 MiB (the parse pool reads messages up to that size whole anyway). */
  maxMessageBytes?: number;
  log: Logger;
}

export class LocalCopies {
  readonly dir: string;
  private readonly ttlMs: number;
  private readonly maxBytes: number;
  private readonly maxMessageBytes: number;
  private readonly log: Logger;
  /** This process's copies, oldest first, for the byte budget. */
  private readonly kept: { sha256: Sha256; size: number; at: number }[] = [];
  private keptBytes = 0;
  private sweeper: NodeJS.Timeout | undefined;
  private ready = false;

  constructor(opts: LocalCopiesOptions) {
    this.dir = opts.dir;
    this.ttlMs = opts.ttlMs ?? 2 * 60_000;
    this.maxBytes = opts.maxBytes ?? 256 * 1024 * 1024;
    this.maxMessageBytes = opts.maxMessageBytes ?? 4 * 1024 * 1024;
    this.log = opts.log;
  }

  /** Creates the directory and removes expired copies; then sweeps every ttlMs. Failure only disables the copies. */
  async init(): Promise<void> {
    try {
      await mkdir(this.dir, { recursive: true });
      this.ready = true;
    } catch (err) {
      this.log.warn({ err, dir: this.dir }, 'no local copies of new messages (the index job reads them from S3)');
      return;
    }
    await this.sweep();
    this.sweeper = setInterval(() => void this.sweep(), this.ttlMs);
    this.sweeper.unref();
  }

  /**
   * Takes the spool file of a message the store has just created, in place
   * of deleting it. False when it was not taken (too large, disabled, rename
   * failed): the caller then deletes the file.
   */
  async keep(spoolPath: string, sha256: Sha256, size: number): Promise<boolean> {
    if (!this.ready || size > this.maxMessageBytes || size > this.maxBytes) return false;
    try {
      await rename(spoolPath, this.pathOf(sha256));
    } catch {
      return false;
    }
    const now = Date.now();
    this.kept.push({ sha256, size, at: now });
    this.keptBytes += size;
    // Expired ones are no longer counted (the sweep deletes them); over budget, the oldest go now.
    while (this.kept.length && (this.keptBytes > this.maxBytes || this.kept[0]!.at < now - this.ttlMs)) {
      const old = this.kept.shift()!;
      this.keptBytes -= old.size;
      if (old.at >= now - this.ttlMs) await unlink(this.pathOf(old.sha256)).catch(() => undefined);
    }
    return true;
  }

  /** The bytes of a message when a fresh copy is here and hashes to its name; undefined otherwise. */
  async read(sha256: Sha256): Promise<Buffer | undefined> {
    if (!this.ready) return undefined;
    const file = this.pathOf(sha256);
    let bytes: Buffer;
    try {
      const fh = await open(file, 'r');
      try {
        const st = await fh.stat();
        if (Date.now() - st.mtimeMs > this.ttlMs || st.size > this.maxMessageBytes) return undefined;
        bytes = await fh.readFile();
      } finally {
        await fh.close();
      }
    } catch {
      return undefined; // absent (the usual miss) or unreadable: S3 has it
    }
    if (createHash('sha256').update(bytes).digest('hex') !== sha256) {
      this.log.warn({ sha256, file }, 'local copy does not match its hash; deleted, reading S3');
      await unlink(file).catch(() => undefined);
      return undefined;
    }
    return bytes;
  }

  /** Drops the copy of a message (its deletion). */
  async drop(sha256: Sha256): Promise<void> {
    if (this.ready) await unlink(this.pathOf(sha256)).catch(() => undefined);
  }

  close(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
  }

  /** Removes every copy older than ttlMs (any process's). */
  private async sweep(): Promise<void> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return;
    }
    const cutoff = Date.now() - this.ttlMs;
    for (const name of names) {
      if (!isSha256(name)) continue;
      const file = path.join(this.dir, name);
      try {
        if ((await stat(file)).mtimeMs < cutoff) await unlink(file);
      } catch {
        // Gone meanwhile (another process swept it): nothing to do.
      }
    }
  }

  private pathOf(sha256: Sha256): string {
    return path.join(this.dir, sha256);
  }
}
