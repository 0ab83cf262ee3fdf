/**
 * Streaming MBOX splitter (mboxo and mboxrd). An MBOX file is hostile input of
 * any size, so the file is never buffered: each message streams out in pieces
 * of about one source chunk, and the splitter holds at most a few bytes of
 * carry plus one From_ line (capped), however long a message or a line is.
 *
 * Format rules applied (see `readMbox` for the contract):
 * - A message starts at a line beginning with `From ` at the start of the file
 *   or right after an LF. That From_ line is not part of the message.
 * - Exactly one line break (LF or CRLF) before the next From_ line is dropped:
 *   it is the empty line MBOX writers append after each message.
 * - At the end of the file the final line break is dropped only when it ends an
 *   empty line (`…\n\n` becomes `…\n`). Writers that append a blank line after
 *   every message (mutt, Thunderbird, procmail, Postfix) and writers that only
 *   put one between messages (Python's `mailbox`, the SpamAssassin corpus, one
 *   message per file) both round-trip, at the cost of one stray LF on a last
 *   message that had no final line break of its own in a file of the first kind.
 * - A line matching `^>+From ` loses one `>`. That is the mboxrd rule. mboxo
 *   only escaped `From ` to `>From ` (and never unescaped), so a `>From ` that
 *   was in the original mboxo message cannot be told apart from an escaped
 *   `From `; unescaping is right for every mboxrd file and for the common mboxo
 *   case, so both formats get the mboxrd rule.
 */
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { AppError } from '../src/errors.js';

/** Where one message sits in its MBOX. */
export interface MboxMessageMeta {
  /** 0-based position of the message in the file. */
  index: number;
  /** Byte offset of the message's `From ` line from the start of the source (a BOM counts). */
  offset: number;
  /** The From_ line without its line break, decoded as UTF-8. */
  fromLine: string;
}

/** One message of an MBOX: its metadata and its raw bytes as a stream. */
export interface MboxMessage extends MboxMessageMeta {
  /**
   * The message's raw bytes, unescaped, without the From_ line and without
   * the separating empty line. Valid only until the iterator advances: read
   * it to the end (or do not read it at all) before asking for the next message.
   */
  stream: Readable;
}

/** Options of readMbox. */
export interface MboxReadOptions {
  /**
   * Bytes per read when `source` is a path. Each message stream is fed one
   * chunk per read, so this (plus at most 7 held-back bytes) is also the
   * largest piece a consumer sees.
   * Default 64 KiB: bigger costs memory per open MBOX, smaller costs calls.
   */
  highWaterMark?: number;
}

/** The input is not an MBOX: it does not start with a From_ line, or a From_ line is impossibly long. */
export class MboxFormatError extends AppError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('mbox_invalid', 400, message, details);
  }
}

/**
 * Longest From_ line accepted, in bytes (without its line break). Real ones
 * are under 200 bytes. A longer one is rejected with MboxFormatError rather
 * than cut: it is held in memory while read, and a file with CR-only line
 * breaks would otherwise pass as one huge From_ line and an empty message,
 * silently dropping everything in it.
 */
export const MAX_FROM_LINE_BYTES = 4096;

/** Default read size for path sources, in bytes (the fs default). */
const DEFAULT_HIGH_WATER_MARK = 64 * 1024;

/** Bytes `isMboxFile` reads; one From_ line and the next line fit easily. */
const SNIFF_BYTES = 4096;

const LF = 0x0a;
const CR = 0x0d;
const SP = 0x20;
const TAB = 0x09;
const GT = 0x3e;
const F = 0x46;
const FROM_ = Buffer.from('From ', 'latin1');
const BOM = Buffer.from([0xef, 0xbb, 0xbf]);
const EMPTY = Buffer.alloc(0);

/**
 * Splits an MBOX into messages, streaming.
 *
 * Contract: the consumer must read message N's `stream` to its end, or leave
 * it unread, before asking for message N+1. Asking for the next message (the
 * next `for await` turn, or `next()`) while message N is unfinished skips the
 * rest of it: the stream is destroyed (a reader still attached sees
 * ERR_STREAM_PREMATURE_CLOSE, never a silently short message) and its bytes are
 * scanned and dropped without being buffered. Streams of different messages
 * cannot be read concurrently; they share one source.
 *
 * The source is consumed. Leaving the loop early (break, throw) destroys it
 * and the current message stream. A BOM and blank lines before the first
 * From_ line are skipped; an empty (or blank) source yields no messages; any
 * other first line rejects with MboxFormatError. Read errors of the source
 * reject the iterator or, mid-message, destroy the message stream with them.
 *
 * @param source A file path, or a stream of bytes (Buffers or Uint8Arrays; no `setEncoding`).
 */
export async function* readMbox(source: string | Readable, options: MboxReadOptions = {}): AsyncGenerator<MboxMessage, void, undefined> {
  const input =
    typeof source === 'string' ? createReadStream(source, { highWaterMark: options.highWaterMark ?? DEFAULT_HIGH_WATER_MARK }) : source;
  const reader = new MboxStreamReader(input);
  try {
    for (;;) {
      const meta = await reader.nextMessage();
      if (!meta) return;
      yield { ...meta, stream: reader.openBody() };
    }
  } finally {
    reader.close();
    input.destroy();
  }
}

/**
 * True when the file starts (after an optional BOM and blank lines) with a
 * From_ line that carries a sender and a time of day, like
 * `From jane@example.com Mon Jan  1 10:00:00 2024` or Thunderbird's
 * `From - Mon Jan  1 10:00:00 2024`, and the next line, if any, looks like a
 * header field. Prose that happens to start with "From " is rejected by the
 * second check. Rejects when the file cannot be read.
 */
export async function isMboxFile(path: string): Promise<boolean> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(SNIFF_BYTES);
    const { bytesRead } = await fh.read(buf, 0, SNIFF_BYTES, 0);
    return looksLikeMbox(buf.subarray(0, bytesRead), bytesRead < SNIFF_BYTES);
  } finally {
    await fh.close();
  }
}

/** See isMboxFile. `whole` says the sample is the entire file. */
function looksLikeMbox(sample: Buffer, whole: boolean): boolean {
  let p = sample.subarray(0, 3).equals(BOM) ? 3 : 0;
  while (p < sample.length && isBlank(sample[p])) p++;
  if (!startsWithFrom(sample, p)) return false;
  const lf = sample.indexOf(LF, p);
  if (lf < 0 && !whole) return false; // a From_ line longer than the sample is not one
  const fromLine = sample.toString('latin1', p, lf < 0 ? sample.length : lf);
  if (!/^From \S+[ \t]+\S.*\d{1,2}:\d{2}/.test(fromLine)) return false;
  if (lf < 0) return true;
  const rest = sample.toString('latin1', lf + 1, Math.min(sample.length, lf + 1 + 200));
  // The message's first line: a header field, or an empty message (blank, or the next From_ line).
  return rest === '' || /^(?:[!-9;-~]+:|From |\r?\n)/.test(rest);
}

function isBlank(b: number): boolean {
  return b === LF || b === CR || b === SP || b === TAB;
}

function startsWithFrom(buf: Buffer, p: number): boolean {
  return p + 5 <= buf.length && buf[p] === F && buf[p + 1] === 0x72 && buf[p + 2] === 0x6f && buf[p + 3] === 0x6d && buf[p + 4] === SP;
}

/** True when buf[p, end) is a proper, non-empty prefix of `From `. */
function isFromPrefix(buf: Buffer, p: number, end: number): boolean {
  if (end - p >= 5 || end <= p) return false;
  for (let k = 0; p + k < end; k++) if (buf[p + k] !== FROM_[k]) return false;
  return true;
}

type Sink = (bytes: Buffer) => void;

/** What `MboxSplitter.run` stopped at. */
type Step =
  /** All input so far is consumed or held; feed more (or end()). */
  | 'need-input'
  /** A From_ line was read; `takeMeta()` returns it and body bytes follow. */
  | 'header'
  /** The current message ended (at the next From_ line, or at end of input). */
  | 'message-end'
  /** No more messages. */
  | 'eof';

/**
 * The synchronous splitting state machine. It works on `buf` (a source chunk,
 * prefixed by at most a few held bytes of the previous one) from `pos`, and
 * hands out body bytes as views of `buf` so nothing is copied on the hot path.
 *
 * Bytes are held back (left at `pos`) only where the next chunk decides what
 * they are: a line break that is dropped if a From_ line follows, a trailing
 * CR that may be half of a CRLF, and the start of a line that may become
 * `From ` or `>…>From `. A run of `>` is never held: all but its last `>` are
 * emitted, because a `>+From ` line and a plain `>` line share every byte but
 * one. So at most 7 bytes are ever held (CRLF + `>` + `From`).
 */
class MboxSplitter {
  private buf: Buffer = EMPTY;
  private pos = 0;
  /** Source offset of buf[0]. */
  private base = 0;
  private ended = false;
  private phase: 'preamble' | 'from-line' | 'body' | 'eof' = 'preamble';
  private bomChecked = false;
  /** In the preamble: the skipped blanks so far end a line (or there were none). */
  private preambleAtLineStart = true;
  /**
   * In the body: buf[pos] is the first byte of a line. When buf[pos] is a held
   * line break, that means the line it ends is empty.
   */
  private lineStart = true;
  private fromParts: Buffer[] = [];
  private fromBytes = 0;
  private fromOffset = 0;
  private nextIndex = 0;
  private meta: MboxMessageMeta | null = null;

  feed(chunk: Buffer): void {
    this.base += this.pos;
    this.buf = this.pos < this.buf.length ? Buffer.concat([this.buf.subarray(this.pos), chunk]) : chunk;
    this.pos = 0;
  }

  end(): void {
    this.ended = true;
  }

  takeMeta(): MboxMessageMeta {
    const meta = this.meta!;
    this.meta = null;
    return meta;
  }

  /** Advances as far as the input allows, passing body bytes to `sink`. */
  run(sink: Sink): Step {
    for (;;) {
      switch (this.phase) {
        case 'preamble':
          if (!this.skipPreamble()) return this.ended ? 'eof' : 'need-input';
          break;
        case 'from-line':
          return this.readFromLine();
        case 'body':
          return this.readBody(sink);
        case 'eof':
          return 'eof';
      }
    }
  }

  /**
   * Skips a BOM and blank lines and checks that a From_ line follows. Returns
   * true when it does (phase is then 'from-line'), false when more input is
   * needed or the input is blank; throws MboxFormatError otherwise.
   */
  private skipPreamble(): boolean {
    const buf = this.buf;
    const n = buf.length;
    if (!this.bomChecked) {
      const avail = n - this.pos;
      if (avail < 3 && !this.ended && buf.subarray(this.pos).equals(BOM.subarray(0, avail))) return false;
      if (avail >= 3 && buf[this.pos] === BOM[0] && buf[this.pos + 1] === BOM[1] && buf[this.pos + 2] === BOM[2]) this.pos += 3;
      this.bomChecked = true;
    }
    while (this.pos < n && isBlank(buf[this.pos])) {
      this.preambleAtLineStart = buf[this.pos] === LF;
      this.pos++;
    }
    if (this.pos === n) {
      if (this.ended) this.phase = 'eof';
      return false;
    }
    if (!this.ended && isFromPrefix(buf, this.pos, n)) return false;
    if (!this.preambleAtLineStart || !startsWithFrom(buf, this.pos)) {
      const excerpt = buf.toString('latin1', this.pos, Math.min(n, this.pos + 40));
      throw new MboxFormatError(`Not an MBOX file: expected a "From " line at byte ${this.base + this.pos}, found ${JSON.stringify(excerpt)}`, {
        offset: this.base + this.pos,
      });
    }
    this.startFromLine(this.pos);
    return true;
  }

  private startFromLine(at: number): void {
    this.phase = 'from-line';
    this.fromOffset = this.base + at;
    this.fromParts = [];
    this.fromBytes = 0;
  }

  private readFromLine(): Step {
    const buf = this.buf;
    const lf = buf.indexOf(LF, this.pos);
    const end = lf < 0 ? buf.length : lf;
    if (this.fromBytes + (end - this.pos) > MAX_FROM_LINE_BYTES) {
      throw new MboxFormatError(
        `MBOX From_ line at byte ${this.fromOffset} is longer than ${MAX_FROM_LINE_BYTES} bytes: not an MBOX, or one with CR-only line breaks`,
        { offset: this.fromOffset },
      );
    }
    let fromLine: string;
    if (lf >= 0 && this.fromBytes === 0) {
      fromLine = buf.toString('utf8', this.pos, end); // the usual case: whole line in one chunk
    } else {
      if (end > this.pos) {
        // Copied: a view would pin the whole source chunk while more chunks arrive.
        this.fromParts.push(Buffer.from(buf.subarray(this.pos, end)));
        this.fromBytes += end - this.pos;
      }
      if (lf < 0 && !this.ended) {
        this.pos = buf.length;
        return 'need-input';
      }
      fromLine = Buffer.concat(this.fromParts).toString('utf8');
      this.fromParts = [];
    }
    this.pos = lf < 0 ? buf.length : lf + 1;
    if (fromLine.endsWith('\r')) fromLine = fromLine.slice(0, -1);
    this.meta = { index: this.nextIndex++, offset: this.fromOffset, fromLine };
    this.phase = 'body';
    this.lineStart = true;
    return 'header';
  }

  /**
   * The hot path. Jumps from line break to line break with indexOf and looks
   * only at the first bytes of each line; runs of ordinary bytes go to `sink`
   * as views of `buf`.
   */
  private readBody(sink: Sink): Step {
    const buf = this.buf;
    const n = buf.length;
    const eof = this.ended;
    const runStart = this.pos;
    let emitStart = runStart;
    const emit = (to: number): void => {
      if (to > emitStart) sink(buf.subarray(emitStart, to));
    };
    /** Start of the line being scanned, or -1 when it began before runStart. */
    let lineBegin = this.lineStart ? runStart : -1;
    /** A line start still to be classified, or -1. */
    let check = lineBegin;
    /** The line break right before `check` (index of its CR or LF), or -1 at message start. */
    let eolStart = -1;
    /** That line break ends an empty line. */
    let eolEndsEmptyLine = false;
    let scanFrom = runStart;

    for (;;) {
      if (check >= 0) {
        const s = check;
        check = -1;
        const c = s < n ? buf[s] : -1;
        if (s === n || (c === F && !startsWithFrom(buf, s) && isFromPrefix(buf, s, n))) {
          if (!eof) {
            // Undecided line start: hold it, with the line break before it.
            const cut = eolStart >= 0 ? eolStart : s;
            emit(cut);
            this.pos = cut;
            this.lineStart = eolStart >= 0 ? eolEndsEmptyLine : true;
            return 'need-input';
          }
          if (s === n) {
            emit(eolStart >= 0 && eolEndsEmptyLine ? eolStart : n);
            this.pos = n;
            this.phase = 'eof';
            return 'message-end';
          }
          // An unfinished `From` at the very end is just text.
        } else if (c === F) {
          if (startsWithFrom(buf, s)) {
            emit(eolStart >= 0 ? eolStart : s);
            this.startFromLine(s);
            this.pos = s;
            return 'message-end';
          }
        } else if (c === GT) {
          let j = s + 1;
          while (j < n && buf[j] === GT) j++;
          if (startsWithFrom(buf, j)) {
            emit(s);
            emitStart = s + 1; // drop one `>`
            scanFrom = j + 5;
          } else if (!eof && (j === n || isFromPrefix(buf, j, n))) {
            // Keep only the last `>` and what follows; see the class comment.
            emit(j - 1);
            this.pos = j - 1;
            this.lineStart = true;
            return 'need-input';
          } else {
            scanFrom = j;
          }
        }
      }
      const lf = buf.indexOf(LF, scanFrom);
      if (lf < 0) break;
      eolStart = lf > runStart && buf[lf - 1] === CR ? lf - 1 : lf;
      eolEndsEmptyLine = eolStart === lineBegin;
      lineBegin = check = scanFrom = lf + 1;
    }

    // The rest of buf is inside one line.
    if (eof) {
      emit(n);
      this.pos = n;
      this.phase = 'eof';
      return 'message-end';
    }
    if (n > emitStart && buf[n - 1] === CR) {
      // Maybe the first half of a CRLF that comes before a From_ line.
      emit(n - 1);
      this.pos = n - 1;
      this.lineStart = n - 1 === lineBegin;
    } else {
      emit(n);
      this.pos = n;
      this.lineStart = false;
    }
    return 'need-input';
  }
}

/**
 * Drives an MboxSplitter from a byte stream: the generator pulls headers, the
 * current message's Readable pulls body bytes. Both go through one queue, so
 * the splitter is never entered twice at once.
 */
class MboxStreamReader {
  private readonly splitter = new MboxSplitter();
  private readonly chunks: AsyncIterator<unknown>;
  private queue: Promise<unknown> = Promise.resolve();
  private body: Readable | null = null;
  /** The current message's bytes have not all been handed to `body` yet. */
  private bodyOpen = false;
  private failure: unknown = null;

  constructor(input: Readable) {
    this.chunks = input[Symbol.asyncIterator]();
  }

  /** Finishes (or skips) the current message and reads the next From_ line. */
  nextMessage(): Promise<MboxMessageMeta | null> {
    this.abandonBody();
    return this.serial(async () => {
      if (this.failure) throw this.failure;
      const drop: Sink = () => undefined;
      for (;;) {
        const step = this.splitter.run(drop);
        if (step === 'header') return this.splitter.takeMeta();
        if (step === 'eof') return null;
        if (step === 'need-input') await this.pull();
      }
    });
  }

  /** The stream of the message whose header nextMessage() just returned. */
  openBody(): Readable {
    const body: Readable = new Readable({
      read: () => {
        this.serial(() => this.pump(body)).catch((err: unknown) => {
          this.failure ??= err;
          body.destroy(err as Error);
        });
      },
    });
    this.body = body;
    this.bodyOpen = true;
    return body;
  }

  close(): void {
    this.abandonBody();
  }

  private abandonBody(): void {
    if (this.bodyOpen && this.body && !this.body.destroyed) this.body.destroy();
    this.body = null;
    this.bodyOpen = false;
  }

  /** Feeds `body` at least one piece (or its end), reading as many chunks as that takes. */
  private async pump(body: Readable): Promise<void> {
    let pushed = false;
    const push: Sink = (bytes) => {
      pushed = true;
      body.push(bytes);
    };
    for (;;) {
      // Skipped meanwhile (nextMessage() drains the rest), or a read that was
      // queued behind the one that finished the message.
      if (body !== this.body || body.destroyed || !this.bodyOpen) return;
      const step = this.splitter.run(push);
      if (step === 'message-end') {
        this.bodyOpen = false;
        body.push(null);
        return;
      }
      if (step !== 'need-input') throw new Error(`mbox-reader: unexpected ${step} inside a message`);
      if (pushed) return;
      await this.pull();
    }
  }

  private async pull(): Promise<void> {
    const r = await this.chunks.next();
    if (r.done) {
      this.splitter.end();
      return;
    }
    const chunk = r.value;
    if (Buffer.isBuffer(chunk)) this.splitter.feed(chunk);
    else if (chunk instanceof Uint8Array) this.splitter.feed(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    else throw new TypeError('MBOX source must yield Buffers or Uint8Arrays (a stream without setEncoding)');
  }

  private serial<T>(task: () => Promise<T>): Promise<T> {
    const run = this.queue.then(task);
    this.queue = run.catch(() => undefined);
    return run;
  }
}
