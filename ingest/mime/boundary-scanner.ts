/**
 * Streaming scanner for the parts of one multipart body (RFC 2046 5.1.1).
 * It reads a region of a byte source in fixed-size chunks and yields each
 * part's byte span as soon as the delimiter that ends it is seen, so a
 * 150 MB message is walked in O(size) time with O(chunk) memory.
 */
import type { ByteSource } from './byte-source.js';

/**
 * Default read size in bytes, held once per scan. Measured on a 150 MB
 * message: 64 KiB reads scan at about 1.3 GB/s (per-read overhead dominates),
 * 256 KiB at about 2.4 GB/s; larger reads gain little and cost memory.
 */
export const DEFAULT_SCAN_CHUNK_BYTES = 256 * 1024;

/**
 * Longest run of transport padding (spaces, tabs) accepted after a delimiter,
 * in bytes. RFC 2046 allows padding; a longer run is not a delimiter. This
 * bounds the bytes carried between chunks.
 */
const MAX_TRANSPORT_PADDING = 256;

/** Longest boundary accepted, in characters. RFC 2046 says 70; senders exceed it a little. */
export const MAX_BOUNDARY_LENGTH = 200;

/** One body part's span, in absolute source offsets. */
export interface PartSpan {
  /** 0 for the first part after the preamble. */
  index: number;
  /** First byte of the part (its header block), just past the delimiter line. */
  start: number;
  /** End (exclusive): the line break before the next delimiter, or the region end. */
  end: number;
  /** What ended the part: a delimiter, the close delimiter, or the end of the region (truncated). */
  endedBy: 'delimiter' | 'close' | 'eof';
}

export interface ScanOptions {
  /** Read size in bytes (tests use tiny values to split delimiters across reads). */
  chunkBytes?: number;
}

const LF = 0x0a;
const CR = 0x0d;
const DASH = 0x2d;

/**
 * Yields the parts of the multipart body in `[bodyStart, end)` delimited by
 * `boundary` (the parameter value, without the leading dashes). The preamble
 * and epilogue are skipped. A delimiter is `--boundary` at the start of a line,
 * optionally `--` (close), optional padding, then a line break or the region
 * end; anything else on the line means it is not a delimiter (so an inner
 * boundary that merely starts with the outer one is not confused with it).
 * Without a close delimiter the last part runs to `end`.
 */
export async function* scanMultipartParts(
  src: ByteSource,
  bodyStart: number,
  end: number,
  boundary: string,
  opts: ScanOptions = {},
): AsyncGenerator<PartSpan, void, undefined> {
  const regionEnd = Math.min(end, src.size);
  if (boundary.length === 0 || boundary.length > MAX_BOUNDARY_LENGTH || bodyStart > regionEnd) return;
  const chunk = Math.max(1, Math.floor(opts.chunkBytes ?? DEFAULT_SCAN_CHUNK_BYTES));
  const needle = Buffer.from(`\n--${boundary}`, 'latin1');
  // Bytes that may have to be kept from one window to the next: a delimiter
  // found at the very end of a window still needs its tail to be classified.
  const maxCarry = needle.length + 2 + MAX_TRANSPORT_PADDING + 2;
  const win = Buffer.allocUnsafe(maxCarry + chunk + 1);

  // The body starts right after a line break, so a delimiter may open it.
  // A virtual LF in front makes that case look like every other one.
  win[0] = LF;
  let winLen = 1;
  let winStart = bodyStart - 1; // absolute offset of win[0]
  let readPos = bodyStart; // next absolute offset to read
  let prevByte = -1; // byte before win[0], for the CR of a CRLF delimiter
  let searchFrom = 0;
  let partStart: number | undefined; // undefined while in the preamble
  let index = 0;

  const fill = async (): Promise<void> => {
    const n = Math.min(chunk, regionEnd - readPos);
    if (n <= 0) return;
    await src.readInto(win, winLen, n, readPos);
    winLen += n;
    readPos += n;
  };
  /** Drops window bytes before `keep`, remembering the last dropped byte. */
  const shift = (keep: number): void => {
    if (keep <= 0) return;
    prevByte = win[keep - 1];
    win.copy(win, 0, keep, winLen);
    winLen -= keep;
    winStart += keep;
    searchFrom -= keep;
  };

  await fill();
  for (;;) {
    const eof = readPos >= regionEnd;
    const at = win.subarray(0, winLen).indexOf(needle, searchFrom);
    if (at < 0) {
      if (eof) break;
      // Positions below winLen - needle.length + 1 have been ruled out.
      searchFrom = Math.max(searchFrom, winLen - needle.length + 1);
      shift(searchFrom);
      await fill();
      continue;
    }
    const tail = classifyTail(win, at + needle.length, winLen, eof);
    if (tail === 'more') {
      // Keep the candidate (and the byte before it) and read on.
      searchFrom = at;
      shift(at);
      await fill();
      continue;
    }
    if (tail === 'no') {
      searchFrom = at + 1;
      continue;
    }
    const lfAbs = winStart + at;
    const before = at > 0 ? win[at - 1] : prevByte;
    if (partStart !== undefined) {
      // The line break before the delimiter belongs to the delimiter (RFC 2046).
      const partEnd = Math.max(partStart, before === CR ? lfAbs - 1 : lfAbs);
      yield { index: index++, start: partStart, end: partEnd, endedBy: tail.close ? 'close' : 'delimiter' };
    }
    if (tail.close) return;
    partStart = winStart + tail.lineEnd;
    // The delimiter line's own LF may begin the next delimiter (an empty part).
    searchFrom = tail.lineEnd > at + needle.length && win[tail.lineEnd - 1] === LF ? tail.lineEnd - 1 : tail.lineEnd;
  }
  if (partStart !== undefined) yield { index, start: Math.min(partStart, regionEnd), end: regionEnd, endedBy: 'eof' };
}

type Tail = 'no' | 'more' | { close: boolean; lineEnd: number };

/**
 * Classifies the bytes after a `\n--boundary` match at `pos`: returns where
 * the delimiter line ends (window index past its LF), 'no' if it is not a
 * delimiter, or 'more' if the window ends before that can be decided.
 */
function classifyTail(win: Buffer, pos: number, winLen: number, eof: boolean): Tail {
  let p = pos;
  let close = false;
  if (p + 1 < winLen && win[p] === DASH && win[p + 1] === DASH) {
    close = true;
    p += 2;
  } else if (p + 1 >= winLen && win[p] === DASH && !eof) {
    return 'more';
  }
  const padStart = p;
  while (p < winLen && (win[p] === 0x20 || win[p] === 0x09)) {
    if (p - padStart > MAX_TRANSPORT_PADDING) return 'no';
    p++;
  }
  if (p >= winLen) return eof ? { close, lineEnd: winLen } : 'more';
  if (win[p] === LF) return { close, lineEnd: p + 1 };
  if (win[p] === CR) {
    if (p + 1 >= winLen) return eof ? { close, lineEnd: winLen } : 'more';
    if (win[p + 1] === LF) return { close, lineEnd: p + 2 };
  }
  return 'no';
}
