/**
 * Spooling: an incoming message stream goes to a local file while it is
 * hashed, so nothing holds a large message in memory and the store receives a
 * file whose SHA-256 is already known.
 */
import { createHash } from 'node:crypto';
import { open, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { MessageTooLargeError } from '../src/errors.js';
import type { SpoolFile } from '../src/ports/object-store.js';
import { spoolFileName } from '../src/adapters/fs/spool-names.js';

/**
 * Bytes kept in memory before the spool file is opened. Most mail is smaller,
 * so it is written with one write call; larger mail streams through the file.
 * Cost: up to this much memory per concurrent delivery.
 */
const MEMORY_PREFIX_BYTES = 256 * 1024;

/** Bytes kept of the message start for cheap header sniffing (journal markers). */
export const HEAD_BYTES = 64 * 1024;

export interface SpooledMessage extends SpoolFile {
  /** The first HEAD_BYTES bytes (or all, if shorter), for header sniffing. */
  head: Buffer;
}

/**
 * Writes `source` to a new file in `spoolDir`, hashing as it goes.
 * Over `maxBytes`, it stops writing, drains the source (so an SMTP client gets
 * its answer instead of a reset), deletes the file and throws
 * MessageTooLargeError.
 */
export async function spoolStream(source: Readable, spoolDir: string, maxBytes: number): Promise<SpooledMessage> {
  const file = path.join(spoolDir, spoolFileName('msg'));
  const hash = createHash('sha256');
  let size = 0;
  let tooLarge = false;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let head: Buffer | undefined;
  const headParts: Buffer[] = [];
  let headBytes = 0;
  let fh: FileHandle | undefined;
  try {
    for await (const raw of source) {
      const chunk: Buffer = typeof raw === 'string' ? Buffer.from(raw, 'latin1') : raw;
      if (tooLarge) continue;
      size += chunk.length;
      if (size > maxBytes) {
        tooLarge = true;
        pending = [];
        continue;
      }
      hash.update(chunk);
      if (headBytes < HEAD_BYTES) {
        headParts.push(chunk);
        headBytes += chunk.length;
      }
      pending.push(chunk);
      pendingBytes += chunk.length;
      if (pendingBytes >= MEMORY_PREFIX_BYTES) {
        fh ??= await open(file, 'wx', 0o444);
        await writeAll(fh, pending);
        pending = [];
        pendingBytes = 0;
      }
    }
    if (tooLarge) throw new MessageTooLargeError(maxBytes);
    fh ??= await open(file, 'wx', 0o444);
    if (pending.length) await writeAll(fh, pending);
    await fh.close();
    fh = undefined;
    head = Buffer.concat(headParts);
    return { path: file, sha256: hash.digest('hex'), size, head: head.subarray(0, HEAD_BYTES) };
  } catch (err) {
    if (fh) await fh.close().catch(() => undefined);
    await unlink(file).catch(() => undefined);
    throw err;
  }
}

async function writeAll(fh: FileHandle, chunks: Buffer[]): Promise<void> {
  const buf = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
  let off = 0;
  while (off < buf.length) {
    const { bytesWritten } = await fh.write(buf, off, buf.length - off);
    off += bytesWritten;
  }
}
