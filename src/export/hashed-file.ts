/**
 * Writing the per-item files of a package: hashes are taken as the bytes
 * pass, so nothing is read back. Durability is the checkpoint's business
 * (package-files.ts `syncAll`: one syncfs per checkpoint rather than an
 * fsync per file); `sync: true` fsyncs one file on its own handle.
 */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { Writable } from 'node:stream';

export interface WrittenFile {
  sha256: string;
  md5: string;
  size: number;
}

/** Writes a stream of chunks to `path`; returns the hashes of what was written. */
export async function writeHashed(src: AsyncIterable<Buffer | string> | Iterable<Buffer | string>, path: string, opts: { sync?: boolean } = {}): Promise<WrittenFile> {
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
    if (opts.sync) await fh.datasync();
  } finally {
    await fh.close();
  }
  return { sha256: sha.digest('hex'), md5: md5.digest('hex'), size };
}

/** Collects what a producer writes (a PDF of one message), for hashing and writing in one go. */
export class MemorySink extends Writable {
  private readonly chunks: Buffer[] = [];

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.chunks.push(chunk);
    cb();
  }

  bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
}
