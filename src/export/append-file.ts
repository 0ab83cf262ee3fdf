/**
 * An append-only output file that a checkpoint can pin: `offset` is the
 * logical length (written plus buffered); after a crash the file is opened
 * at the checkpointed offset and truncated there, so whatever was written
 * after the last checkpoint is dropped and written again, never twice.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';

/** Small writes are gathered up to this many bytes before one write call. Cost: this much memory per open output. */
const BUFFER_BYTES = 256 * 1024;

export class AppendFile {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private written: number;

  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    offset: number,
  ) {
    this.written = offset;
  }

  /** Opens (creating it) and truncates to `offset`: 0 for a new output, the checkpointed length on resume. */
  static async open(file: string, offset: number): Promise<AppendFile> {
    await mkdir(path.dirname(file), { recursive: true });
    const fh = await open(file, 'a+').then(async (h) => {
      await h.close();
      return open(file, 'r+');
    });
    const { size } = await fh.stat();
    if (size < offset) {
      await fh.close();
      throw new Error(`${file} is ${size} bytes, shorter than its checkpoint (${offset}): the package was damaged`);
    }
    await fh.truncate(offset);
    return new AppendFile(file, fh, offset);
  }

  get offset(): number {
    return this.written + this.pendingBytes;
  }

  async write(data: Buffer | string): Promise<void> {
    const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    if (!buf.length) return;
    this.pending.push(buf);
    this.pendingBytes += buf.length;
    if (this.pendingBytes >= BUFFER_BYTES) await this.flush();
  }

  async flush(): Promise<void> {
    if (!this.pendingBytes) return;
    const buf = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    let off = 0;
    while (off < buf.length) {
      const { bytesWritten } = await this.fh.write(buf, off, buf.length - off, this.written);
      off += bytesWritten;
      this.written += bytesWritten;
    }
  }

  /** Flushes and fsyncs: after this, `offset` bytes are on stable storage. */
  async sync(): Promise<void> {
    await this.flush();
    await this.fh.sync();
  }

  async close(): Promise<void> {
    await this.flush();
    await this.fh.close();
  }
}
