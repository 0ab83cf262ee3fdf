/**
 * Per-item files of a package, written so that they are on stable storage
 * when written: data fsync'd (fdatasync) on the handle that wrote it, before
 * it is closed, while other items are still in flight (the export keeps
 * several items going, so these syncs overlap on the thread pool). The
 * checkpoint then only syncs the directories of the renames. Hashes are
 * taken as the bytes pass, so nothing is read back.
 */
import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { Writable } from 'node:stream';

export interface WrittenFile {
  sha256: string;
  md5: string;
  size: number;
}

/** Writes an async stream of chunks to `path`, durably; returns the hashes of what was written. */
export async function writeDurably(src: AsyncIterable<Buffer | string> | Iterable<Buffer | string>, path: string): Promise<WrittenFile> {
  const sha = createHash('sha256');
  const md5 = createHash('md5');
  let size = 0;
  const fh = await open(path, 'w');
  try {
    for await (const chunk of src) {
      const c = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      sha.update(c);
      md5.update(c);
      size += c.length;
      let off = 0;
      while (off < c.length) off += (await fh.write(c, off, c.length - off)).bytesWritten;
    }
    await fh.datasync();
  } finally {
    await fh.close();
  }
  return { sha256: sha.digest('hex'), md5: md5.digest('hex'), size };
}

/** A Writable for producers that pipe (pdfkit): same durability, hashes in `result()` after 'finish'. */
export class DurableFileSink extends Writable {
  private fh?: FileHandle;
  private readonly sha = createHash('sha256');
  private size = 0;
  private position = 0;

  constructor(private readonly path: string) {
    super();
  }

  override _construct(cb: (err?: Error | null) => void): void {
    open(this.path, 'w').then(
      (fh) => {
        this.fh = fh;
        cb();
      },
      (err: Error) => cb(err),
    );
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.sha.update(chunk);
    this.size += chunk.length;
    const pos = this.position;
    this.position += chunk.length;
    this.fh!.write(chunk, 0, chunk.length, pos).then(
      () => cb(),
      (err: Error) => cb(err),
    );
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.fh!.datasync()
      .then(() => this.fh!.close())
      .then(
        () => cb(),
        (err: Error) => cb(err),
      );
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (this.fh && !this.writableFinished) {
      this.fh.close().then(
        () => cb(err),
        () => cb(err),
      );
    } else cb(err);
  }

  result(): { sha256: string; size: number } {
    return { sha256: this.sha.digest('hex'), size: this.size };
  }
}
