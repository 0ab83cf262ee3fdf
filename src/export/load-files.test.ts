import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { datRecord, parseDat, DAT_BOM } from './concordance-dat.js';
import { csvCell } from './metadata-csv.js';
import { MboxrdEscaper, unescapeMboxrd } from './mboxrd-escaper.js';
import { xmlAttr } from './edrm-xml.js';

async function escape(input: Buffer, chunk: number): Promise<string> {
  const parts: Buffer[] = [];
  for (let i = 0; i < input.length; i += chunk) parts.push(input.subarray(i, i + chunk));
  const out: Buffer[] = [];
  for await (const c of Readable.from(parts).pipe(new MboxrdEscaper())) out.push(c as Buffer);
  return Buffer.concat(out).toString('latin1');
}

describe('mboxrd escaping', () => {
  const msg = 'Subject: x\r\n\r\nFrom the start\r\n>From once\r\n>>From twice\r\nFro\r\n>x\r\n\r\nFrom';
  const expected = 'Subject: x\r\n\r\n>From the start\r\n>>From once\r\n>>>From twice\r\nFro\r\n>x\r\n\r\nFrom\n\n'; // "From" without its space is no separator

  it('quotes every >*From line, whatever the chunking', async () => {
    for (const size of [1, 2, 3, 5, 7, 64, 4096]) expect(await escape(Buffer.from(msg, 'latin1'), size)).toBe(expected);
    expect(unescapeMboxrd(expected.slice(0, -2))).toBe(msg);
  });

  it('ends a message with exactly one empty line', async () => {
    expect(await escape(Buffer.from('a\n'), 1)).toBe('a\n\n');
    expect(await escape(Buffer.from('a'), 1)).toBe('a\n\n');
  });

  it('holds no line in memory: a million > cost nothing', async () => {
    const out = await escape(Buffer.from(`${'>'.repeat(1_000_000)}From x\n`), 65536);
    expect(out.length).toBe(1_000_000 + 1 + 'From x\n\n'.length);
  });
});

describe('Concordance DAT', () => {
  it('round-trips hostile values without breaking the record', () => {
    const hostile = ['þ quoted þ', 'sep\u0014here', 'line1\r\nline2\nline3\rline4', '=cmd|', '', 'NUL\u0000', 'þþ'];
    const text = DAT_BOM + datRecord(['A', 'B', 'C', 'D', 'E', 'F', 'G']) + datRecord(hostile);
    const rows = parseDat(text);
    expect(rows).toHaveLength(2);
    expect(rows[1]).toEqual(['þ quoted þ', 'sep here', 'line1\nline2\nline3\nline4', '=cmd|', '', 'NUL ', 'þþ']);
  });

  it('refuses what it did not write', () => {
    expect(() => parseDat('þaþ\u0014b\r\n')).toThrow(/offset/);
  });
});

describe('metadata CSV', () => {
  it('neutralises formula prefixes and quotes every cell', () => {
    for (const v of ['=1+1', '+1', '-1', '@SUM(A1)', '\tx', '\rx', '＝1']) expect(csvCell(v)).toBe(`"'${v}"`);
    expect(csvCell('say "hi"')).toBe('"say ""hi"""');
    expect(csvCell('a,b\nc')).toBe('"a,b\nc"');
  });
});

describe('EDRM XML attributes', () => {
  it('escapes markup and drops what XML 1.0 cannot carry', () => {
    expect(xmlAttr('<a href="x">&\u0014\n')).toBe('&lt;a href=&quot;x&quot;&gt;&amp;\ufffd&#10;');
  });
});
