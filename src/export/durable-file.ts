/**
 * Per-item files of a package. Written ahead of the in-order commit
 * (natives), they are fsync'd (fdatasync) on the handle that wrote them
 * before it is closed, while other items are still in flight, so these
 * syncs overlap on the thread pool. Written on the in-order path (PDFs,
 * text), they are left to the next checkpoint, which syncs them all at once
 * in parallel: a sync per file there would serialise the export on disk
 * latency. Hashes are taken as the bytes pass, so nothing is read back.
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
export async function writeDurably(src: AsyncIterable<Buffer | string> | Iterable<Buffer | string>, path: string, opts: { sync?: boolean } = {}): Promise<WrittenFile> {
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
    if (opts.sync !== false) await fh.datasync();
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

  /** `sync: false` leaves the fsync to the caller (the next checkpoint), for files written on the in-order path. */
  constructor(
    private readonly path: string,
    private readonly opts: { sync?: boolean } = {},
  ) {
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
    (this.opts.sync === false ? Promise.resolve() : this.fh!.datasync())
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
