/**
 * File helpers of export packages: atomic small JSON files, batched fsync,
 * hashing a file as a stream, and walking a package in a stable order.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** The package's work directory: item list, checkpoint, journals. Removed when the package is complete. */
export const WORK_DIR = '.export';
export const MANIFEST = 'manifest.json';
export const SIGNATURE = 'manifest.sig';

/** fsyncs running at once when a checkpoint makes many small files durable (libuv thread pool bound). */
const SYNC_CONCURRENCY = 16;

export async function readJson<T>(file: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Writes, fsyncs and renames into place, then fsyncs the directory: the file is either old or new, whole. */
export async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  const tmp = `${file}.tmp`;
  await writeFile(tmp, JSON.stringify(value));
  await syncFile(tmp);
  await rename(tmp, file);
  await syncFile(path.dirname(file));
}

export async function syncFile(p: string): Promise<void> {
  const fh = await open(p, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** fsyncs files and then their directories, a few at a time. */
export async function syncPaths(files: string[]): Promise<void> {
  const dirs = [...new Set(files.map((f) => path.dirname(f)))];
  for (const list of [files, dirs]) {
    let i = 0;
    const worker = async () => {
      while (i < list.length) await syncFile(list[i++]!);
    };
    await Promise.all(Array.from({ length: Math.min(SYNC_CONCURRENCY, list.length) }, worker));
  }
}

let syncfsWorks: boolean | undefined;

/**
 * Makes `files` (and the directory entries of their renames) durable. On
 * Linux one syncfs(2) of the filesystem that holds `dir` (coreutils
 * `sync -f`, a few ms) replaces an fsync per file: with one small file per
 * message, per-file fsyncs cost more than the whole rest of an EML export.
 * It flushes everything dirty on that filesystem, which is bounded by the
 * checkpoint interval. Where `sync -f` is missing or fails, every file and
 * directory is fsync'd instead.
 */
export async function syncAll(dir: string, files: string[], dirs: string[]): Promise<void> {
  if (!files.length && !dirs.length) return;
  if (syncfsWorks !== false && process.platform === 'linux') {
    const ok = await new Promise<boolean>((resolve) => execFile('sync', ['-f', dir], (err) => resolve(!err)));
    if (ok) {
      syncfsWorks = true;
      return;
    }
    syncfsWorks = false;
  }
  await syncPaths(files);
  await syncPaths(dirs);
}

export async function hashFile(file: string): Promise<{ sha256: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const c of createReadStream(file, { highWaterMark: 1024 * 1024 })) {
    h.update(c as Buffer);
    size += (c as Buffer).length;
  }
  return { sha256: h.digest('hex'), size };
}

export interface WalkedFile {
  /** Package-relative, forward slashes. */
  rel: string;
  abs: string;
  /** 0 when the walk was asked not to stat. */
  size: number;
}

/** Every file under `root` in byte order of their relative paths, one directory listing at a time. */
export async function* walkFiles(root: string, skip: (rel: string) => boolean = () => false, rel = '', withSize = true): AsyncGenerator<WalkedFile> {
  const entries = await readdir(path.join(root, rel), { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (skip(r)) continue;
    if (e.isDirectory()) yield* walkFiles(root, skip, r, withSize);
    else if (e.isFile()) {
      const abs = path.join(root, r);
      yield { rel: r, abs, size: withSize ? (await stat(abs)).size : 0 };
    }
  }
}
