/**
 * A streaming ZIP writer for export packages: one pass, entries written as
 * they come, the central directory at the end, ZIP64 where sizes or offsets
 * pass 4 GB. Written here because general-purpose writers rescan their entry
 * list for every entry (quadratic: 25 s of CPU for 100,000 EML files).
 *
 * Small entries (given whole) carry their sizes and CRC in the local header
 * and are stored or deflated; big entries (given as streams) are deflated
 * with a data descriptor (general-purpose flag bit 3) in ZIP64 form, which
 * every reader that uses the central directory handles. Names are UTF-8
 * (flag bit 11). Memory: the central directory (about 100 bytes per entry).
 */
import { crc32, deflateRawSync, createDeflateRaw } from 'node:zlib';
import { PassThrough, type Readable } from 'node:stream';

interface CentralEntry {
  name: Buffer;
  crc: number;
  compressedSize: number;
  size: number;
  offset: number;
  method: number;
  flags: number;
  zip64: boolean;
}

const FLAG_UTF8 = 0x0800;
const FLAG_DESCRIPTOR = 0x0008;
const U32_MAX = 0xffffffff;

function dosTime(d: Date): { time: number; date: number } {
  const year = Math.max(1980, d.getUTCFullYear());
  return {
    time: (d.getUTCHours() << 11) | (d.getUTCMinutes() << 5) | Math.floor(d.getUTCSeconds() / 2),
    date: ((year - 1980) << 9) | ((d.getUTCMonth() + 1) << 5) | d.getUTCDate(),
  };
}

function zip64Extra(fields: number[]): Buffer {
  const b = Buffer.alloc(4 + 8 * fields.length);
  b.writeUInt16LE(0x0001, 0);
  b.writeUInt16LE(8 * fields.length, 2);
  fields.forEach((v, i) => b.writeBigUInt64LE(BigInt(v), 4 + 8 * i));
  return b;
}

export class ZipWriter {
  /** The ZIP bytes; pipe it somewhere. */
  readonly output = new PassThrough({ highWaterMark: 1024 * 1024 });
  private offset = 0;
  private readonly entries: CentralEntry[] = [];
  private readonly dos: { time: number; date: number };

  constructor(mtime: Date) {
    this.dos = dosTime(mtime);
  }

  /** Waits for the consumer when the output is full (backpressure). */
  private async write(b: Buffer): Promise<void> {
    this.offset += b.length;
    if (!this.output.write(b)) await new Promise<void>((resolve, reject) => {
      const done = () => {
        this.output.off('error', fail);
        resolve();
      };
      const fail = (e: Error) => {
        this.output.off('drain', done);
        reject(e);
      };
      this.output.once('drain', done);
      this.output.once('error', fail);
    });
  }

  private localHeader(name: Buffer, method: number, flags: number, crc: number, compressedSize: number, size: number, extra: Buffer): Buffer {
    const h = Buffer.alloc(30);
    h.writeUInt32LE(0x04034b50, 0);
    h.writeUInt16LE(extra.length ? 45 : 20, 4);
    h.writeUInt16LE(flags, 6);
    h.writeUInt16LE(method, 8);
    h.writeUInt16LE(this.dos.time, 10);
    h.writeUInt16LE(this.dos.date, 12);
    h.writeUInt32LE(crc >>> 0, 14);
    h.writeUInt32LE(compressedSize, 18);
    h.writeUInt32LE(size, 22);
    h.writeUInt16LE(name.length, 26);
    h.writeUInt16LE(extra.length, 28);
    return Buffer.concat([h, name, extra]);
  }

  /** An entry given whole (a small file). */
  async addBuffer(nameStr: string, data: Buffer, deflate: boolean): Promise<void> {
    const name = Buffer.from(nameStr, 'utf8');
    const crc = crc32(data);
    const body = deflate ? deflateRawSync(data) : data;
    const method = deflate ? 8 : 0;
    const offset = this.offset;
    // Whole entries are below 4 GB; only the offset may need ZIP64 (in the central directory).
    await this.write(this.localHeader(name, method, FLAG_UTF8, crc, body.length, data.length, Buffer.alloc(0)));
    await this.write(body);
    this.entries.push({ name, crc, compressedSize: body.length, size: data.length, offset, method, flags: FLAG_UTF8, zip64: offset >= U32_MAX });
  }

  /** An entry given as a stream (a big file): deflated, sizes and CRC in a ZIP64 data descriptor. */
  async addStream(nameStr: string, src: Readable): Promise<void> {
    const name = Buffer.from(nameStr, 'utf8');
    const offset = this.offset;
    const flags = FLAG_UTF8 | FLAG_DESCRIPTOR;
    await this.write(this.localHeader(name, 8, flags, 0, U32_MAX, U32_MAX, zip64Extra([0, 0])));
    let crc = 0;
    let size = 0;
    let compressedSize = 0;
    const deflater = createDeflateRaw();
    src.on('error', (e) => deflater.destroy(e));
    src.on('data', (c: Buffer) => {
      crc = crc32(c, crc);
      size += c.length;
    });
    src.pipe(deflater);
    for await (const c of deflater) {
      compressedSize += (c as Buffer).length;
      await this.write(c as Buffer);
    }
    const d = Buffer.alloc(24);
    d.writeUInt32LE(0x08074b50, 0);
    d.writeUInt32LE(crc >>> 0, 4);
    d.writeBigUInt64LE(BigInt(compressedSize), 8);
    d.writeBigUInt64LE(BigInt(size), 16);
    await this.write(d);
    this.entries.push({ name, crc, compressedSize, size, offset, method: 8, flags, zip64: true });
  }

  /** Writes the central directory and ends the output. */
  async end(): Promise<void> {
    const cdStart = this.offset;
    for (const e of this.entries) {
      const big = e.zip64 || e.size >= U32_MAX || e.compressedSize >= U32_MAX || e.offset >= U32_MAX;
      const extra = big ? zip64Extra([e.size, e.compressedSize, e.offset]) : Buffer.alloc(0);
      const h = Buffer.alloc(46);
      h.writeUInt32LE(0x02014b50, 0);
      h.writeUInt16LE((3 << 8) | 45, 4); // made by Unix, spec 4.5
      h.writeUInt16LE(big ? 45 : 20, 6);
      h.writeUInt16LE(e.flags, 8);
      h.writeUInt16LE(e.method, 10);
      h.writeUInt16LE(this.dos.time, 12);
      h.writeUInt16LE(this.dos.date, 14);
      h.writeUInt32LE(e.crc >>> 0, 16);
      h.writeUInt32LE(big ? U32_MAX : e.compressedSize, 20);
      h.writeUInt32LE(big ? U32_MAX : e.size, 24);
      h.writeUInt16LE(e.name.length, 28);
      h.writeUInt16LE(extra.length, 30);
      h.writeUInt16LE(0, 32); // comment
      h.writeUInt16LE(0, 34); // disk
      h.writeUInt16LE(0, 36); // internal attributes
      h.writeUInt32LE((0o100644 << 16) >>> 0, 38); // regular file, rw-r--r--
      h.writeUInt32LE(big ? U32_MAX : e.offset, 42);
      await this.write(Buffer.concat([h, e.name, extra]));
    }
    const cdSize = this.offset - cdStart;
    const n = this.entries.length;
    if (n >= 0xffff || cdStart >= U32_MAX || cdSize >= U32_MAX) {
      const eocd64Offset = this.offset;
      const r = Buffer.alloc(56);
      r.writeUInt32LE(0x06064b50, 0);
      r.writeBigUInt64LE(44n, 4);
      r.writeUInt16LE(45, 12);
      r.writeUInt16LE(45, 14);
      r.writeBigUInt64LE(BigInt(n), 24);
      r.writeBigUInt64LE(BigInt(n), 32);
      r.writeBigUInt64LE(BigInt(cdSize), 40);
      r.writeBigUInt64LE(BigInt(cdStart), 48);
      const loc = Buffer.alloc(20);
      loc.writeUInt32LE(0x07064b50, 0);
      loc.writeBigUInt64LE(BigInt(eocd64Offset), 8);
      loc.writeUInt32LE(1, 16);
      await this.write(Buffer.concat([r, loc]));
    }
    const eocd = Buffer.alloc(22);
    eocd.writeUInt32LE(0x06054b50, 0);
    eocd.writeUInt16LE(Math.min(n, 0xffff), 8);
    eocd.writeUInt16LE(Math.min(n, 0xffff), 10);
    eocd.writeUInt32LE(Math.min(cdSize, U32_MAX), 12);
    eocd.writeUInt32LE(Math.min(cdStart, U32_MAX), 16);
    await this.write(eocd);
    this.output.end();
  }
}
