/**
 * mboxrd: each message starts with a `From ` line; inside a message every
 * line that matches /^>*From / gets one more `>` (reversible, unlike mboxo);
 * a message ends with an empty line. The escaper is a streaming transform
 * that never holds a line: it counts leading `>` instead of buffering them,
 * so a hostile line of a million `>` costs no memory.
 */
import { Transform, type TransformCallback } from 'node:stream';

const FROM = Buffer.from('From ');
const GT = 0x3e;
const LF = 0x0a;

/** The separator line for one message: `From <sender> <asctime UTC>`. */
export function mboxFromLine(sender: string, date: number): string {
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  const addr = sender.replace(/[\s\x00-\x1f\x7f]+/g, '') || 'MAILER-DAEMON';
  const d = new Date(Number.isFinite(date) ? date : 0);
  const day = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'][d.getUTCDay()];
  const mon = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'][d.getUTCMonth()];
  const p = (n: number) => String(n).padStart(2, '0');
  return `From ${addr} ${day} ${mon} ${String(d.getUTCDate()).padStart(2, ' ')} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} ${d.getUTCFullYear()}\n`;
}

export class MboxrdEscaper extends Transform {
  /** At the start of a line, and how far into `>*From ` it has matched. */
  private atLineStart = true;
  private gts = 0;
  private fromMatched = 0;
  private lastByte = LF;

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    const out: Buffer[] = [];
    let runStart = 0;
    for (let i = 0; i < chunk.length; i++) {
      if (!this.atLineStart) {
        if (chunk[i] === LF) this.atLineStart = true;
        continue;
      }
      // At a line start: hold back `>`s and the `From ` prefix until it is decided.
      const c = chunk[i]!;
      if (this.fromMatched === 0 && c === GT) {
        if (i >= runStart) out.push(chunk.subarray(runStart, i));
        runStart = i + 1;
        this.gts++;
        continue;
      }
      if (c === FROM[this.fromMatched]) {
        if (this.fromMatched === 0 && i >= runStart) out.push(chunk.subarray(runStart, i));
        runStart = i + 1;
        this.fromMatched++;
        if (this.fromMatched === FROM.length) {
          out.push(Buffer.alloc(this.gts + 1, GT), FROM);
          this.resetLine(false);
        }
        continue;
      }
      // Not a From line: give back what was held, unchanged.
      if (runStart <= i) out.push(chunk.subarray(runStart, i));
      out.push(...this.held());
      runStart = i;
      this.resetLine(c !== LF ? false : true);
    }
    if (runStart < chunk.length) out.push(chunk.subarray(runStart));
    if (chunk.length) this.lastByte = chunk[chunk.length - 1]!;
    done(null, Buffer.concat(out));
  }

  override _flush(done: TransformCallback): void {
    const tail = this.held();
    // A message that does not end with a line break gets one, then the empty separator line.
    const needsLf = this.lastByte !== LF || tail.length > 0;
    done(null, Buffer.concat([...tail, Buffer.from(needsLf ? '\n\n' : '\n')]));
  }

  private held(): Buffer[] {
    const parts: Buffer[] = [];
    if (this.gts) parts.push(Buffer.alloc(this.gts, GT));
    if (this.fromMatched) parts.push(FROM.subarray(0, this.fromMatched));
    return parts;
  }

  private resetLine(atLineStart: boolean): void {
    this.gts = 0;
    this.fromMatched = 0;
    this.atLineStart = atLineStart;
  }
}

/** Reverses the escaping of one message's lines (tests and tools). */
export function unescapeMboxrd(body: string): string {
  return body.replace(/^>(>*From )/gm, '$1');
}
