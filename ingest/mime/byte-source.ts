/**
 * Random-access byte sources for the streaming MIME scanners: a spooled file
 * read with positional reads (never loaded whole), or a buffer already in
 * memory (a bounded report body, or a test).
 */
import { open, type FileHandle } from 'node:fs/promises';

/** Positional, read-only access to a fixed number of bytes. */
export interface ByteSource {
  /** Total size in bytes, fixed when the source was opened. */
  readonly size: number;
  /**
   * Copies `length` bytes starting at absolute offset `position` into
   * `target` at `offset`. The range must lie inside `[0, size)`; a source
   * that cannot deliver all of it throws (that is an I/O error, not bad mail).
   */
  readInto(target: Buffer, offset: number, length: number, position: number): Promise<void>;
}

/**
 * Errors raised by a source's I/O (not by parsing what it returned). Callers
 * that must "never throw for bad input, only for I/O" rethrow exactly these.
 */
const ioErrors = new WeakSet<object>();

/** True if `err` came from a byte source's I/O rather than from parsing. */
export function isByteSourceIoError(err: unknown): boolean {
  return typeof err === 'object' && err !== null && ioErrors.has(err);
}

function markIo(err: unknown): unknown {
  if (typeof err === 'object' && err !== null) ioErrors.add(err);
  return err;
}

/** Reads `length` bytes at `position` into a fresh buffer. */
export async function readBytes(src: ByteSource, position: number, length: number): Promise<Buffer> {
  const len = Math.max(0, Math.min(length, src.size - position));
  const buf = Buffer.allocUnsafe(len);
  if (len > 0) await src.readInto(buf, 0, len, position);
  return buf;
}

/** A source over a buffer held in memory. */
export class BufferByteSource implements ByteSource {
  readonly size: number;
  constructor(private readonly buf: Buffer) {
    this.size = buf.length;
  }

  async readInto(target: Buffer, offset: number, length: number, position: number): Promise<void> {
    if (position < 0 || position + length > this.size) throw markIo(new RangeError(`read of ${length} bytes at ${position} past end (${this.size})`));
    this.buf.copy(target, offset, position, position + length);
  }
}

/** A source over an open file; `close()` it when done. */
export class FileByteSource implements ByteSource {
  private constructor(
    private readonly fh: FileHandle,
    readonly size: number,
  ) {}

  /** Opens `path` read-only and takes its size once: a file that changes under us is an I/O error. */
  static async open(path: string): Promise<FileByteSource> {
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (err) {
      throw markIo(err);
    }
    try {
      const st = await fh.stat();
      return new FileByteSource(fh, st.size);
    } catch (err) {
      await fh.close().catch(() => undefined);
      throw markIo(err);
    }
  }

  async readInto(target: Buffer, offset: number, length: number, position: number): Promise<void> {
    let done = 0;
    try {
      // A positional read may return fewer bytes than asked; loop until filled.
      while (done < length) {
        const { bytesRead } = await this.fh.read(target, offset + done, length - done, position + done);
        if (bytesRead === 0) throw new Error(`file shrank while being read: wanted ${length} bytes at ${position}, got ${done}`);
        done += bytesRead;
      }
    } catch (err) {
      throw markIo(err);
    }
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}
