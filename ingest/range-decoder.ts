/**
 * Streams a byte range of a file, undoing a MIME content-transfer-encoding on
 * the way, in bounded memory. Used to lift the original message out of a
 * journal report without loading either into memory.
 */
import { createReadStream } from 'node:fs';
import { Transform, type Readable } from 'node:stream';
import type { ByteRange } from '../src/domain/types.js';
import type { TransferEncoding } from './journal-report.js';
import { decodeQuotedPrintable } from './mime/transfer-decoding.js';

export function decodedRangeStream(file: string, range: ByteRange, encoding: TransferEncoding): Readable {
  const raw = createReadStream(file, { start: range.start, end: Math.max(range.start, range.end) - 1, highWaterMark: 256 * 1024 });
  if (range.end <= range.start) {
    raw.destroy();
    return createEmpty();
  }
  if (encoding === 'base64') return pipeInto(raw, base64Decoder());
  if (encoding === 'quoted-printable') return pipeInto(raw, quotedPrintableDecoder());
  return raw;
}

function createEmpty(): Readable {
  const t = new Transform();
  t.end();
  return t;
}

function pipeInto(src: Readable, t: Transform): Readable {
  src.on('error', (e) => t.destroy(e));
  return src.pipe(t);
}

/** Streaming base64 decoder: ignores whitespace and junk, carries the remainder of each 4-character group over. */
export function base64Decoder(): Transform {
  let carry = '';
  return new Transform({
    transform(chunk: Buffer, _e, cb) {
      const s = carry + chunk.toString('latin1').replace(/[^A-Za-z0-9+/]/g, '');
      const usable = s.length - (s.length % 4);
      carry = s.slice(usable);
      cb(null, Buffer.from(s.slice(0, usable), 'base64'));
    },
    flush(cb) {
      cb(null, carry ? Buffer.from(carry, 'base64') : undefined);
    },
  });
}

/**
 * Streaming quoted-printable decoder (RFC 2045 6.7): `=XX` escapes, soft line
 * breaks `=\r\n`. Works per line; an unterminated line is carried, but never
 * more than 1 MiB of it, so a hostile line without breaks cannot grow memory.
 */
export function quotedPrintableDecoder(): Transform {
  let carry = Buffer.alloc(0);
  const MAX_CARRY = 1024 * 1024;
  return new Transform({
    transform(chunk: Buffer, _e, cb) {
      const buf = carry.length ? Buffer.concat([carry, chunk]) : chunk;
      let cut = buf.lastIndexOf(0x0a) + 1;
      if (cut === 0 && buf.length > MAX_CARRY) cut = safeCut(buf);
      carry = Buffer.from(buf.subarray(cut));
      cb(null, decodeQuotedPrintable(buf.subarray(0, cut)));
    },
    flush(cb) {
      cb(null, carry.length ? decodeQuotedPrintable(carry) : undefined);
    },
  });
}

/** A cut point that does not split an `=XX` escape. */
function safeCut(buf: Buffer): number {
  let cut = buf.length;
  for (let i = Math.max(0, buf.length - 2); i < buf.length; i++) if (buf[i] === 0x3d) cut = i;
  return cut;
}
