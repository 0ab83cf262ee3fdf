import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ByteRange, EnvelopeRecipient } from '../src/domain/types.js';
import {
  isJournalReportHeader,
  parseJournalReportBody,
  unwrapJournalReport,
  unwrapJournalReportSource,
  type JournalReportFields,
  type JournalUnwrap,
} from '../ingest/journal-report.js';
import { scanMultipartParts, type PartSpan } from '../ingest/mime/boundary-scanner.js';
import { BufferByteSource, type ByteSource } from '../ingest/mime/byte-source.js';
import { decodeBase64 } from '../ingest/mime/transfer-decoding.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/journal/', import.meta.url));
const fixture = (name: string): string => join(FIXTURES, name);
const load = (name: string): Promise<Buffer> => readFile(fixture(name));

async function readRange(path: string, r: ByteRange): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(r.end - r.start);
    await fh.read(buf, 0, buf.length, r.start);
    return buf;
  } finally {
    await fh.close();
  }
}

/** Unwraps a fixture file and checks that the original range holds exactly the kept copy of the original. */
async function expectReport(name: string, originalName: string, decode?: (b: Buffer) => Buffer): Promise<Extract<JournalUnwrap, { kind: 'report' }>> {
  const r = await unwrapJournalReport(fixture(name));
  if (r.kind !== 'report') throw new Error(`expected a report, got ${JSON.stringify(r)}`);
  const inFile = await readRange(fixture(name), r.original);
  const original = await load(originalName);
  expect((decode ?? ((b: Buffer) => b))(inFile).equals(original)).toBe(true);
  if (!decode) {
    const whole = await load(name);
    expect(r.original.start).toBe(whole.indexOf(original));
    expect(r.original.end).toBe(r.original.start + original.length);
  }
  return r;
}

const rcpt = (address: string, kind: EnvelopeRecipient['kind'], extra: Partial<EnvelopeRecipient> = {}): EnvelopeRecipient => ({ address, kind, ...extra });

const FIELDS_2007: JournalReportFields = {
  sender: 'alice@contoso.com',
  onBehalfOf: 'ceo@contoso.com',
  subject: 'Quarterly numbers',
  messageId: '<orig-2007@contoso.com>',
  recipients: [
    rcpt('bob@contoso.com', 'to'),
    rcpt('carol@contoso.com', 'cc', { expandedFrom: 'sales@contoso.com' }),
    rcpt('dan@contoso.com', 'cc', { expandedFrom: 'sales@contoso.com' }),
    rcpt('eve@contoso.com', 'bcc'),
    rcpt('frank@fabrikam.com', 'recipient', { forwardedFrom: 'bob@contoso.com' }),
    rcpt('grace@contoso.com', 'to', { forwardedFrom: 'dan@contoso.com' }),
  ],
};

const ALL_FIXTURES = [
  'exchange2003-misspelled.eml',
  'exchange2003.eml',
  'exchange2007-bare-lf.eml',
  'exchange2007-base64.eml',
  'exchange2007-binary.eml',
  'exchange2007-html.eml',
  'exchange2007-plain.eml',
  'exchange2007-quoted-printable.eml',
  'exchange2007-truncated.eml',
  'journaled-not-report.eml',
  'malformed-garbled.eml',
  'malformed-no-attachment.eml',
  'ndr-wrapped-report.eml',
];

describe('isJournalReportHeader', () => {
  const h = (s: string): Buffer => Buffer.from(s.replace(/\n/g, '\r\n'), 'latin1');
  it.each([
    ['From: a@b\nX-MS-Journal-Report:\n', 'exchange2007'],
    ['x-ms-journal-report:   \nFrom: a@b\n', 'exchange2007'],
    ['X-MS-Journal-Report:\n \nSubject: folded empty\n', 'exchange2007'],
    ['X-MS-Journal-Report :\n', 'exchange2007'],
    ['Content-Identifier: ExJournalReport\n', 'exchange2003'],
    ['content-identifer:   exjournalreport  \n', 'exchange2003'],
    ['Content-Identifier: ExJournalReport\nX-MS-Journal-Report:\n', 'exchange2007'],
  ])('recognises %j', (block, format) => {
    expect(isJournalReportHeader(h(block))).toBe(format);
  });
  it.each([
    ['From: a@b\nX-MS-Exchange-Organization-Processed-By-Journaling: Journal Agent\n'],
    ['X-MS-Journal-Report: yes\n'],
    ['Subject: hi\n X-MS-Journal-Report:\n'], // a folded continuation, not a field
    ['Content-Identifier: Something else\n'],
    ['X-MS-Journal-Reporting:\n'],
    [''],
  ])('rejects %j', (block) => {
    expect(isJournalReportHeader(h(block))).toBe(false);
  });
  it('works on bare-LF blocks and ignores anything after the empty line', () => {
    expect(isJournalReportHeader(Buffer.from('From: a@b\nX-MS-Journal-Report:\n'))).toBe('exchange2007');
    expect(isJournalReportHeader(Buffer.from('From: a@b\r\n\r\nX-MS-Journal-Report:\r\n'))).toBe(false);
  });
});

describe('parseJournalReportBody', () => {
  it('parses an Exchange 2007 report with every field and annotation', () => {
    const text = [
      'Sender: alice@contoso.com',
      'On-Behalf-Of: CEO@Contoso.com',
      'Subject: Quarterly numbers',
      'Message-Id: <orig-2007@contoso.com>',
      'To: bob@contoso.com',
      'cc: Carol@Contoso.com, Expanded: Sales@Contoso.com',
      'Cc: dan@contoso.com, Expanded: sales@contoso.com',
      'BCC: eve@contoso.com',
      'Recipient: frank@fabrikam.com, Forwarded: bob@contoso.com',
      'To: grace@contoso.com, Forwarded: dan@contoso.com',
      '',
    ].join('\r\n');
    expect(parseJournalReportBody(text)).toStrictEqual({ format: 'exchange2007', fields: FIELDS_2007, problems: [] });
  });

  it('parses an Exchange 2003 Recipients: list (smtp: prefixes, bare and bracketed addresses)', () => {
    const text = 'Sender: "A" <smtp:A@x.com>\nSubject: s\nMessage-ID: <m@x>\nRecipients: "B, Jr" <SMTP:b@x.com>,\n  c@x.com,\n<d@y.com>,\n';
    expect(parseJournalReportBody(text)).toStrictEqual({
      format: 'exchange2003',
      fields: {
        sender: 'a@x.com',
        subject: 's',
        messageId: '<m@x>',
        recipients: [rcpt('b@x.com', 'recipient'), rcpt('c@x.com', 'recipient'), rcpt('d@y.com', 'recipient')],
      },
      problems: [],
    });
  });

  it('reports no Sender and no recipients as problems', () => {
    const r = parseJournalReportBody('Hello there\nThis is not a report\n');
    expect(r.fields).toStrictEqual({ recipients: [] });
    expect(r.problems).toEqual(['no recipients', 'unrecognised line: "Hello there"', 'unrecognised line: "This is not a report"', 'no Sender line', 'no Message-Id line']);
  });

  it('flags a recipient it cannot parse instead of dropping it silently', () => {
    const r = parseJournalReportBody('Sender: a@x.com\nMessage-Id: <m>\nTo: not an address\nT0: b@x.com\nTo: c@x.com\n');
    expect(r.fields.recipients).toStrictEqual([rcpt('c@x.com', 'to')]);
    expect(r.problems).toEqual(['unparseable recipient "not an address"', 'unrecognised line mentioning an address: "T0: b@x.com"']);
  });

  it('accepts a null sender and annotations on their own line', () => {
    const r = parseJournalReportBody('Sender: <>\nSubject:\nMessage-Id: <m>\nTo: a@x.com\nExpanded: dl@x.com\n');
    expect(r.fields).toStrictEqual({ subject: '', messageId: '<m>', recipients: [rcpt('a@x.com', 'to', { expandedFrom: 'dl@x.com' })] });
    expect(r.problems).toEqual(['empty Sender']);
  });

  it('caps the problem list for garbage input', () => {
    const r = parseJournalReportBody('junk line\n'.repeat(10_000));
    expect(r.problems.length).toBeLessThanOrEqual(22);
    expect(r.problems).toContain('no recipients');
  });
});

describe('unwrapJournalReport on fixtures', () => {
  it('Exchange 2007+ report, plain text, Expanded and Forwarded', async () => {
    const r = await expectReport('exchange2007-plain.eml', 'exchange2007-plain.original.eml');
    expect(r).toStrictEqual({
      kind: 'report',
      format: 'exchange2007',
      reportMessageId: '<report-2007@contoso.com>',
      viaNdr: false,
      fields: FIELDS_2007,
      original: { start: r.original.start, end: r.original.end, transferEncoding: '7bit' },
    });
  });

  it('Exchange 2003 report (Content-Identifier, Recipients: list)', async () => {
    const r = await expectReport('exchange2003.eml', 'exchange2003.original.eml');
    expect(r).toStrictEqual({
      kind: 'report',
      format: 'exchange2003',
      reportMessageId: '<report-2003@contoso.com>',
      viaNdr: false,
      fields: {
        sender: 'alice@contoso.com',
        subject: 'Budget 2004',
        messageId: '<orig-2003@contoso.com>',
        recipients: [
          rcpt('bob@contoso.com', 'recipient'),
          rcpt('carol@contoso.com', 'recipient'),
          rcpt('dave@contoso.com', 'recipient'),
          rcpt('erin@fabrikam.com', 'recipient'),
        ],
      },
      original: { ...r.original, transferEncoding: '7bit' },
    });
  });

  it('Exchange 2003 report with the Content-Identifer misspelling', async () => {
    const r = await expectReport('exchange2003-misspelled.eml', 'exchange2003-misspelled.original.eml');
    expect(r.format).toBe('exchange2003');
    expect(r.reportMessageId).toBe('<report-2003b@contoso.com>');
    expect(r.fields).toStrictEqual({
      sender: 'sam@contoso.com',
      subject: 'Misspelled marker',
      messageId: '<orig-2003b@contoso.com>',
      recipients: [rcpt('tom@contoso.com', 'recipient'), rcpt('uma@contoso.com', 'recipient')],
    });
  });

  it('quoted-printable report text (UTF-8 subject, soft line break inside a recipient line)', async () => {
    const r = await expectReport('exchange2007-quoted-printable.eml', 'exchange2007-quoted-printable.original.eml');
    expect(r.original.transferEncoding).toBe('8bit');
    expect(r.fields).toStrictEqual({
      sender: 'ken@contoso.com',
      subject: 'Café € report',
      messageId: '<orig-qp@contoso.com>',
      recipients: [
        rcpt('lena@contoso.com', 'to', { expandedFrom: 'all-staff-with-a-very-long-distribution-list-name@contoso.com' }),
        rcpt('mike@contoso.com', 'cc'),
      ],
    });
  });

  it('base64 report text and a base64-encoded original (reported as such)', async () => {
    const r = await expectReport('exchange2007-base64.eml', 'exchange2007-base64.original.eml', decodeBase64);
    expect(r.original.transferEncoding).toBe('base64');
    expect(r.reportMessageId).toBe('<report-b64@contoso.com>');
    expect(r.fields).toStrictEqual({
      sender: 'nina@contoso.com',
      subject: 'Base64 all the way',
      messageId: '<orig-b64@contoso.com>',
      recipients: [rcpt('oscar@contoso.com', 'to'), rcpt('pat@contoso.com', 'recipient')],
    });
    // The encoded range itself is exactly the base64 text, nothing before or after.
    const encoded = (await readRange(fixture('exchange2007-base64.eml'), r.original)).toString('latin1');
    expect(encoded).toMatch(/^[A-Za-z0-9+/=\r\n]+$/);
    expect(encoded.endsWith('\r\n')).toBe(true);
  });

  it('HTML report text (tags, <br>, entities, comments and styles ignored)', async () => {
    const r = await expectReport('exchange2007-html.eml', 'exchange2007-html.original.eml');
    expect(r.fields).toStrictEqual({
      sender: 'henry@contoso.com',
      subject: 'Fish & chips',
      messageId: '<orig-html@contoso.com>',
      recipients: [rcpt('ivy@contoso.com', 'to'), rcpt('jack@contoso.com', 'bcc', { forwardedFrom: 'ivy@contoso.com' })],
    });
  });

  it('binary original with every byte value, bare CR/LF and boundary near-misses', async () => {
    const r = await expectReport('exchange2007-binary.eml', 'exchange2007-binary.original.eml');
    expect(r.original.transferEncoding).toBe('binary');
    expect(r.fields.recipients).toStrictEqual([rcpt('rosa@contoso.com', 'to')]);
  });

  it('bare-LF report with an unquoted boundary', async () => {
    const r = await expectReport('exchange2007-bare-lf.eml', 'exchange2007-bare-lf.original.eml');
    expect(r.fields).toStrictEqual(FIELDS_2007);
    expect(r.reportMessageId).toBe('<report-2007@contoso.com>');
  });

  it('truncated report: no final boundary, the original runs to the end of the file', async () => {
    const r = await expectReport('exchange2007-truncated.eml', 'exchange2007-truncated.original.eml');
    const size = (await load('exchange2007-truncated.eml')).length;
    expect(r.original.end).toBe(size);
    expect(r.fields).toStrictEqual(FIELDS_2007);
  });

  it('a report inside a non-delivery report is unwrapped with absolute offsets', async () => {
    const r = await unwrapJournalReport(fixture('ndr-wrapped-report.eml'));
    if (r.kind !== 'report') throw new Error(JSON.stringify(r));
    expect(r.viaNdr).toBe(true);
    expect(r.reportMessageId).toBe('<report-2007@contoso.com>');
    expect(r.fields).toStrictEqual(FIELDS_2007);
    const bytes = await readRange(fixture('ndr-wrapped-report.eml'), r.original);
    expect(bytes.equals(await load('exchange2007-plain.original.eml'))).toBe(true);
  });

  it('malformed: a report with no attachment', async () => {
    expect(await unwrapJournalReport(fixture('malformed-no-attachment.eml'))).toStrictEqual({
      kind: 'malformed',
      format: 'exchange2007',
      reportMessageId: '<report-noatt@contoso.com>',
      reason: 'no message/rfc822 part: the original message is not attached',
      fields: { sender: 'vera@contoso.com', subject: 'Lost original', messageId: '<orig-noatt@contoso.com>', recipients: [rcpt('walt@contoso.com', 'to')] },
    });
  });

  it('malformed: garbled report text', async () => {
    const r = await unwrapJournalReport(fixture('malformed-garbled.eml'));
    expect(r.kind).toBe('malformed');
    if (r.kind !== 'malformed') return;
    expect(r.format).toBe('exchange2007');
    expect(r.reportMessageId).toBe('<report-garbled@contoso.com>');
    expect(r.reason).toMatch(/^report text contains binary data \(NUL bytes\); /);
    expect(r.reason).toContain('no recipients');
    expect(r.fields?.recipients).toStrictEqual([]);
  });

  it('ordinary journaled mail with Processed-By-Journaling is not a report', async () => {
    expect(await unwrapJournalReport(fixture('journaled-not-report.eml'))).toStrictEqual({ kind: 'not-report' });
  });

  it('gives the same answer whatever the read size (delimiters straddling reads)', async () => {
    for (const name of ALL_FIXTURES) {
      const expected = await unwrapJournalReport(fixture(name));
      const buf = await load(name);
      for (const chunkBytes of [1, 2, 3, 5, 7, 13, 64, 4096]) {
        expect(await unwrapJournalReportSource(new BufferByteSource(buf), { chunkBytes }), `${name} @${chunkBytes}`).toStrictEqual(expected);
      }
    }
  });
});

describe('unwrapJournalReport edge cases', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'journal-report-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const unwrapBuffer = (b: Buffer, opts = {}): Promise<JournalUnwrap> => unwrapJournalReportSource(new BufferByteSource(b), opts);

  it('malformed when the file ends right after the original part headers', async () => {
    const full = await load('exchange2007-plain.eml');
    const cut = full.subarray(0, full.indexOf('Content-Transfer-Encoding: 7bit\r\n\r\nReceived:') + 'Content-Transfer-Encoding: 7bit\r\n\r\n'.length);
    const r = await unwrapBuffer(cut);
    expect(r).toMatchObject({ kind: 'malformed', format: 'exchange2007', reason: 'attached original message is empty', fields: FIELDS_2007 });
    // Cut inside the part headers: still empty, still malformed.
    expect(await unwrapBuffer(cut.subarray(0, cut.length - 10))).toMatchObject({ kind: 'malformed', reason: 'attached original message is empty' });
  });

  it('an NDR carrying only text/rfc822-headers of a report is not enough', async () => {
    const report = await load('exchange2007-plain.eml');
    const headers = report.subarray(0, report.indexOf('\r\n\r\n') + 4);
    const ndr = Buffer.concat([
      Buffer.from('Content-Type: multipart/report; boundary=x\r\n\r\n--x\r\nContent-Type: text/rfc822-headers\r\n\r\n'),
      headers,
      Buffer.from('\r\n--x--\r\n'),
    ]);
    expect(await unwrapBuffer(ndr)).toStrictEqual({ kind: 'not-report' });
  });

  it('unwraps an NDR inside an NDR, within maxDepth only', async () => {
    const ndr = await load('ndr-wrapped-report.eml');
    const outer = Buffer.concat([
      Buffer.from('Message-ID: <ndr-2@x>\r\nContent-Type: multipart/report; boundary="outer"\r\n\r\npreamble\r\n--outer\r\nContent-Type: message/rfc822\r\n\r\n'),
      ndr,
      Buffer.from('\r\n--outer--\r\nepilogue\r\n'),
    ]);
    const r = await unwrapBuffer(outer);
    if (r.kind !== 'report') throw new Error(JSON.stringify(r));
    expect(r.viaNdr).toBe(true);
    expect(r.reportMessageId).toBe('<report-2007@contoso.com>');
    expect(outer.subarray(r.original.start, r.original.end).equals(await load('exchange2007-plain.original.eml'))).toBe(true);
    expect(await unwrapBuffer(outer, { maxDepth: 1 })).toStrictEqual({ kind: 'not-report' });
    expect(await unwrapBuffer(ndr, { maxDepth: 0 })).toStrictEqual({ kind: 'not-report' });
  });

  it('header block without an end within the bound: not-report, unless it carries a marker', async () => {
    const long = Buffer.from(`Subject: x\r\nX-Long: ${'a'.repeat(5000)}\r\n\r\nbody`);
    expect(await unwrapBuffer(long, { maxHeaderBytes: 1024 })).toStrictEqual({ kind: 'not-report' });
    const marked = Buffer.concat([Buffer.from('X-MS-Journal-Report:\r\nMessage-ID: <r@x>\r\n'), long]);
    expect(await unwrapBuffer(marked, { maxHeaderBytes: 1024 })).toStrictEqual({
      kind: 'malformed',
      format: 'exchange2007',
      reportMessageId: '<r@x>',
      reason: 'report header block is longer than 1024 bytes',
    });
    expect(await unwrapBuffer(Buffer.from('X-MS-Journal-Report:\r\nSubject: headers only'))).toMatchObject({ kind: 'malformed', reason: 'report ends inside its header block: no body' });
  });

  it('a report text longer than maxReportBodyBytes is malformed but keeps what it read', async () => {
    const r = await unwrapJournalReport(fixture('exchange2007-plain.eml'), { maxReportBodyBytes: 120 });
    expect(r.kind).toBe('malformed');
    if (r.kind !== 'malformed') return;
    expect(r.reason).toMatch(/^report text is longer than 120 bytes/);
    expect(r.fields?.sender).toBe('alice@contoso.com');
  });

  it('a report that is not multipart is malformed, with its fields', async () => {
    const b = Buffer.from('X-MS-Journal-Report:\r\nContent-Type: text/plain\r\n\r\nSender: a@x.com\r\nTo: b@x.com\r\n');
    expect(await unwrapBuffer(b)).toStrictEqual({
      kind: 'malformed',
      format: 'exchange2007',
      reason: 'report is "text/plain", not multipart: no original message attached',
      fields: { sender: 'a@x.com', recipients: [rcpt('b@x.com', 'to')] },
    });
  });

  it('report text in multipart/alternative: the plain alternative is used', async () => {
    const b = Buffer.from(
      [
        'X-MS-Journal-Report:',
        'Content-Type: multipart/mixed; boundary=m',
        '',
        '--m',
        'Content-Type: multipart/alternative; boundary=a',
        '',
        '--a',
        'Content-Type: text/html',
        '',
        'Sender: wrong@x.com<br>To: wrong@x.com',
        '--a',
        'Content-Type: text/plain',
        '',
        'Sender: right@x.com',
        'To: right@x.com',
        '--a--',
        '--m',
        'Content-Type: message/rfc822',
        '',
        'Subject: o',
        '',
        'body',
        '--m--',
        '',
      ].join('\r\n'),
    );
    const r = await unwrapBuffer(b);
    expect(r).toMatchObject({ kind: 'report', fields: { sender: 'right@x.com', recipients: [rcpt('right@x.com', 'to')] } });
    if (r.kind === 'report') expect(b.subarray(r.original.start, r.original.end).toString()).toBe('Subject: o\r\n\r\nbody');
  });

  it('an encoded report inside an NDR is reported malformed rather than missed', async () => {
    const report = await load('exchange2007-plain.eml');
    const b64 = report.toString('base64').replace(/.{76}/g, '$&\r\n');
    const ndr = Buffer.from(`Content-Type: multipart/report; boundary=n\r\n\r\n--n\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n${b64}\r\n--n--\r\n`);
    expect(await unwrapBuffer(ndr)).toMatchObject({ kind: 'malformed', format: 'exchange2007', reportMessageId: '<report-2007@contoso.com>' });
  });

  it('ordinary mail costs only the header block read', async () => {
    const body = Buffer.alloc(5 * 1024 * 1024, 'x');
    const mail = Buffer.concat([Buffer.from('From: a@b\r\nContent-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\n\r\n'), body]);
    let bytesRead = 0;
    const inner = new BufferByteSource(mail);
    const counting: ByteSource = {
      size: inner.size,
      readInto: (t, o, l, p) => {
        bytesRead += l;
        return inner.readInto(t, o, l, p);
      },
    };
    expect(await unwrapJournalReportSource(counting)).toStrictEqual({ kind: 'not-report' });
    expect(bytesRead).toBeLessThanOrEqual(16 * 1024);
  });

  it('throws for I/O errors only', async () => {
    await expect(unwrapJournalReport(join(dir, 'missing.eml'))).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(unwrapJournalReport(dir)).rejects.toMatchObject({ code: 'EISDIR' });
    const empty = join(dir, 'empty.eml');
    await writeFile(empty, '');
    expect(await unwrapJournalReport(empty)).toStrictEqual({ kind: 'not-report' });
  });
});

describe('scanMultipartParts', () => {
  /** Reference: split into lines and test each against the RFC 2046 delimiter grammar. */
  function naiveParts(buf: Buffer, bodyStart: number, boundary: string): PartSpan[] {
    const parts: PartSpan[] = [];
    const delim = new RegExp(`^--${boundary.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(--)?[ \\t]*\\r?$`);
    let start: number | undefined;
    let pos = bodyStart;
    while (pos <= buf.length) {
      const nl = buf.indexOf(0x0a, pos);
      const lineEnd = nl < 0 ? buf.length : nl;
      const line = buf.toString('latin1', pos, lineEnd);
      const m = delim.exec(line);
      if (m) {
        if (start !== undefined) {
          // The line break before the delimiter belongs to it.
          let end = pos;
          if (pos > bodyStart && buf[pos - 1] === 0x0a) end = buf[pos - 2] === 0x0d ? pos - 2 : pos - 1;
          parts.push({ index: parts.length, start, end: Math.max(start, end), endedBy: m[1] ? 'close' : 'delimiter' });
        }
        if (m[1]) return parts;
        start = nl < 0 ? buf.length : nl + 1;
      }
      if (nl < 0) break;
      pos = nl + 1;
    }
    if (start !== undefined) parts.push({ index: parts.length, start, end: buf.length, endedBy: 'eof' });
    return parts;
  }

  function rng(seed: number): () => number {
    let s = seed >>> 0;
    return () => {
      s = (s + 0x6d2b79f5) >>> 0;
      let t = s;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  it('matches a line-by-line reference on random near-miss input, for any read size', async () => {
    const rand = rng(42);
    const boundary = 'b=_1';
    const atoms = ['\r\n', '\n', '\r', '--', '--b=_1', '--b=_1--', '--b=_1x', ' ', '\t', 'x', 'b=_1', '\r\n--b=_1\r\n', '\n--b=_1--  \n', '\r\n--b=_1 \t\r\n'];
    for (let round = 0; round < 400; round++) {
      const pieces: string[] = ['H: v\r\n\r\n'];
      const n = Math.floor(rand() * 40);
      for (let i = 0; i < n; i++) pieces.push(atoms[Math.floor(rand() * atoms.length)]);
      const buf = Buffer.from(pieces.join(''), 'latin1');
      const bodyStart = 'H: v\r\n\r\n'.length;
      const expected = naiveParts(buf, bodyStart, boundary);
      for (const chunkBytes of [1, 2, 3, 4, 9, 65536]) {
        const got: PartSpan[] = [];
        for await (const p of scanMultipartParts(new BufferByteSource(buf), bodyStart, buf.length, boundary, { chunkBytes })) got.push(p);
        expect(got, `${JSON.stringify(buf.toString('latin1'))} @${chunkBytes}`).toStrictEqual(expected);
      }
    }
  });
});

describe('large and hostile input', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'journal-report-big-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('finds the exact range of a ~20 MB original with bounded memory', async () => {
    const path = join(dir, 'big-report.eml');
    const boundary = '_000_big_report_';
    const head = Buffer.from(
      [
        'Message-ID: <big@x>',
        'X-MS-Journal-Report:',
        `Content-Type: multipart/mixed; boundary="${boundary}"`,
        '',
        `--${boundary}`,
        'Content-Type: text/plain',
        '',
        'Sender: big@x.com',
        'Message-Id: <big-orig@x>',
        'To: r@x.com',
        `--${boundary}`,
        'Content-Type: message/rfc822',
        'Content-Transfer-Encoding: 8bit',
        '',
        '',
      ].join('\r\n'),
    );
    const fh = await open(path, 'w');
    const hash = createHash('sha256');
    let originalSize = 0;
    await fh.write(head);
    const origHead = Buffer.from('From: big@x.com\r\nSubject: big\r\n\r\n');
    await fh.write(origHead);
    hash.update(origHead);
    originalSize += origHead.length;
    // 1 MiB blocks of lines, including lines that only look like the delimiter.
    const line = Buffer.from(`abcdefghijklmnopqrstuvwxyz0123456789 --${boundary}x \u00e9\r\n--${boundary}-\r\n`, 'latin1');
    const block = Buffer.alloc(1024 * 1024);
    for (let o = 0; o < block.length; o += line.length) line.copy(block, o);
    for (let i = 0; i < 20; i++) {
      await fh.write(block);
      hash.update(block);
      originalSize += block.length;
    }
    await fh.write(Buffer.from(`\r\n--${boundary}--\r\n`));
    await fh.close();

    const rssBefore = process.memoryUsage().rss;
    let rssPeak = rssBefore;
    const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, process.memoryUsage().rss)), 2);
    const t0 = Date.now();
    const r = await unwrapJournalReport(path);
    const elapsed = Date.now() - t0;
    clearInterval(sampler);
    rssPeak = Math.max(rssPeak, process.memoryUsage().rss);

    if (r.kind !== 'report') throw new Error(JSON.stringify(r));
    expect(r.original.start).toBe(head.length);
    expect(r.original.end - r.original.start).toBe(originalSize);
    expect(r.fields).toStrictEqual({ sender: 'big@x.com', messageId: '<big-orig@x>', recipients: [rcpt('r@x.com', 'to')] });
    const rangeHash = createHash('sha256');
    for await (const c of createReadStream(path, { start: r.original.start, end: r.original.end - 1 })) rangeHash.update(c as Buffer);
    expect(rangeHash.digest('hex')).toBe(hash.digest('hex'));
    // The file is ~20 MB; the scan holds one read buffer of a few hundred KiB.
    expect(rssPeak - rssBefore).toBeLessThan(originalSize / 4);
    expect(elapsed).toBeLessThan(10_000);
  });

  it('pathological report text stays linear', async () => {
    const mk = (text: string, type = 'text/plain'): Buffer =>
      Buffer.from(`X-MS-Journal-Report:\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: ${type}\r\n\r\n${text}\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: x\r\n\r\nx\r\n--b--\r\n`, 'latin1');
    const big = 4 * 1024 * 1024;
    const cases: Buffer[] = [
      mk(`To: <${','.repeat(big)}x>`),
      mk(`To: ${'"'.repeat(big)}`),
      mk(`Recipients: ${'a@b.c,'.repeat(big / 6)}`),
      mk('<'.repeat(big), 'text/html'),
      mk(`${'<!--'.repeat(big / 4)}`, 'text/html'),
      mk(`${'&#x1;'.repeat(big / 5)}<script>`, 'text/html'),
      mk(`To: ${' '.repeat(big)}a@b.c${' '.repeat(big)}`),
      mk(`${'Sender'.repeat(big / 6)}`),
      mk(`T${'-'.repeat(big)}`),
    ];
    for (const c of cases) {
      const t0 = Date.now();
      const r = await unwrapJournalReportSource(new BufferByteSource(c));
      expect(['report', 'malformed']).toContain(r.kind);
      expect(Date.now() - t0).toBeLessThan(3_000);
    }
    // A hostile header block and a hostile Content-Type.
    const hostile = [
      Buffer.from(`X-MS-Journal-Report:\r\nContent-Type: multipart/mixed; ${'a=b;'.repeat(100_000)} boundary=b\r\n\r\n--b\r\n`),
      Buffer.from(`${'X: y\r\n '.repeat(150_000)}\r\n\r\n`),
      Buffer.from(`Content-Type: multipart/report; boundary=b\r\n\r\n${'--b\r\n'.repeat(200_000)}`),
      Buffer.from(`Content-Type: multipart/report; boundary=b\r\n\r\n${'--b\r\nContent-Type: message/rfc822\r\n\r\nContent-Type: multipart/report; boundary=b\r\n\r\n'.repeat(20_000)}`),
    ];
    for (const c of hostile) {
      const t0 = Date.now();
      await unwrapJournalReportSource(new BufferByteSource(c));
      expect(Date.now() - t0).toBeLessThan(3_000);
    }
  });

  it('random garbage and truncations never throw and return quickly', async () => {
    let seed = 1234567;
    const rand = (): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed / 4294967296;
    };
    const check = async (b: Buffer, chunkBytes?: number): Promise<void> => {
      const t0 = Date.now();
      const r = await unwrapJournalReportSource(new BufferByteSource(b), { chunkBytes });
      expect(Date.now() - t0).toBeLessThan(1_000);
      expect(['not-report', 'report', 'malformed']).toContain(r.kind);
      if (r.kind === 'report') {
        expect(r.original.start).toBeGreaterThanOrEqual(0);
        expect(r.original.end).toBeGreaterThan(r.original.start);
        expect(r.original.end).toBeLessThanOrEqual(b.length);
      }
    };
    const started = Date.now();
    for (const name of ALL_FIXTURES) {
      const buf = await load(name);
      // Every truncation of the report (and of the NDR) ...
      for (let n = 0; n <= buf.length; n += name.startsWith('exchange2007-binary') ? 97 : 1) await check(buf.subarray(0, n), n % 5 === 0 ? 3 : undefined);
      // ... random byte flips, deletions and line-break noise ...
      for (let i = 0; i < 150; i++) {
        const m = Buffer.from(buf);
        const edits = 1 + Math.floor(rand() * 8);
        for (let e = 0; e < edits; e++) m[Math.floor(rand() * m.length)] = [0x0a, 0x0d, 0x2d, 0x3a, 0x00, 0x3c, Math.floor(rand() * 256)][Math.floor(rand() * 7)];
        const a = Math.floor(rand() * m.length);
        await check(Buffer.concat([m.subarray(0, a), m.subarray(a + Math.floor(rand() * 50))]), i % 3 === 0 ? 2 : undefined);
      }
    }
    // ... and pure garbage, with and without a report marker in front.
    for (let i = 0; i < 300; i++) {
      const g = Buffer.alloc(Math.floor(rand() * 4000));
      for (let j = 0; j < g.length; j++) g[j] = Math.floor(rand() * 256);
      await check(g);
      await check(Buffer.concat([Buffer.from(i % 2 ? 'X-MS-Journal-Report:\r\nContent-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\n' : 'Content-Type: multipart/report; boundary=z\r\n\r\n--z\r\nContent-Type: message/rfc822\r\n\r\nX-MS-Journal-Report:\n'), g]));
    }
    // The same through real files, so the file source's reads are exercised too.
    for (const name of ALL_FIXTURES.slice(0, 4)) {
      const buf = await load(name);
      const p = join(dir, `cut-${name}`);
      await writeFile(p, buf.subarray(0, Math.floor(buf.length * 0.7)));
      await expect(unwrapJournalReport(p)).resolves.toBeDefined();
    }
    expect(Date.now() - started).toBeLessThan(45_000);
  });
});
