/**
 * Exchange envelope journal reports: recognising one, reading its report
 * text (sender, recipients with Bcc and distribution-list expansion), and
 * locating the attached original message as a byte range of the spooled file,
 * so the pipeline can store the original without loading either into memory.
 *
 * Report layout (Exchange 2007+ and Exchange Online; Exchange 2003 differs
 * only in the marker and in listing recipients after one `Recipients:` line):
 *
 * ```
 * X-MS-Journal-Report:                       (or Content-Identifier: ExJournalReport)
 * Content-Type: multipart/mixed; boundary=B
 *
 * --B
 * Content-Type: text/plain                   (the report text: Sender:, Subject:, To: ...)
 * --B
 * Content-Type: message/rfc822               (the original, byte for byte)
 * --B--
 * ```
 *
 * A report can also arrive inside a non-delivery report (an admin resending
 * from the alternate journaling mailbox); it is unwrapped from there too.
 *
 * Everything here is attacker-controlled input: every read is bounded, every
 * scan is linear, and bad input yields `not-report` or `malformed`, never an
 * exception. Only I/O errors on the file are thrown.
 */
import type { ByteRange, EnvelopeRecipient, RecipientKind } from '../src/domain/types.js';
import { BufferByteSource, FileByteSource, isByteSourceIoError, readBytes, type ByteSource } from './mime/byte-source.js';
import { scanMultipartParts, type PartSpan } from './mime/boundary-scanner.js';
import { headerValue, parseContentType, parseHeaderFields, readHeaderBlock, type HeaderBlock, type HeaderField } from './mime/header-block.js';
import { decodeCharset, decodeTransfer } from './mime/transfer-decoding.js';

export type TransferEncoding = '7bit' | '8bit' | 'binary' | 'base64' | 'quoted-printable';

export interface JournalReportFields {
  sender?: string;
  onBehalfOf?: string;
  subject?: string;
  messageId?: string;
  recipients: EnvelopeRecipient[];
}

export type JournalUnwrap =
  | { kind: 'not-report' }
  | {
      kind: 'report';
      format: 'exchange2007' | 'exchange2003';
      reportMessageId?: string;
      viaNdr: boolean;
      fields: JournalReportFields;
      /** byte range of the ORIGINAL message's encoded body inside the file (i.e. the message/rfc822 part body, after its part headers and blank line, up to but excluding the CRLF before the next boundary line) */
      original: ByteRange & { transferEncoding: TransferEncoding };
    }
  | { kind: 'malformed'; format: 'exchange2007' | 'exchange2003'; reportMessageId?: string; reason: string; fields?: JournalReportFields };

type ReportFormat = 'exchange2007' | 'exchange2003';

export interface UnwrapJournalReportOptions {
  /**
   * Largest header block read, in bytes (default 1 MiB), for the message and
   * for each MIME part. A block with no end within it is not a report unless
   * it already showed a marker. Costs at most about twice this in memory.
   */
  maxHeaderBytes?: number;
  /**
   * Largest report text part loaded, in bytes (default 16 MiB). Reports for
   * huge distribution lists run to megabytes; the decoded text costs up to
   * about 4x this in memory. A longer part makes the report malformed.
   */
  maxReportBodyBytes?: number;
  /** How many non-delivery reports deep a report is looked for (default 3). Each level may rescan its part once. */
  maxDepth?: number;
}

const DEFAULT_MAX_HEADER_BYTES = 1024 * 1024;
const DEFAULT_MAX_REPORT_BODY_BYTES = 16 * 1024 * 1024;
const DEFAULT_MAX_DEPTH = 3;
/** Most problems kept per report; a garbage body could otherwise produce one per line. */
const MAX_PROBLEMS = 20;
/** Longest accepted address, in characters (RFC 5321 paths are at most 256; leave slack). */
const MAX_ADDRESS_LENGTH = 320;

const NOT_REPORT: JournalUnwrap = Object.freeze({ kind: 'not-report' }) as JournalUnwrap;

// ---------------------------------------------------------------------------
// Recognising a report
// ---------------------------------------------------------------------------

/** Cheap pre-filter so ordinary mail skips the field parse; names are matched at line starts only. */
const MARKER_HINT = /^(?:x-ms-journal-report|content-identif(?:i)?er)[ \t]*:/im;

/**
 * Detects a journal report from a raw header block (the bytes before the
 * first empty line). Exchange 2007+ writes `X-MS-Journal-Report` with an empty
 * value; Exchange 2003 writes `Content-Identifier: ExJournalReport`, and
 * Exchange itself sometimes misspells it `Content-Identifer`.
 * `X-MS-Exchange-Organization-Processed-By-Journaling` marks ordinary
 * journaled mail, not a report, and is ignored.
 *
 * @param headerBlock - header bytes; anything after an empty line is ignored
 * @returns the report format, or false for any other message
 */
export function isJournalReportHeader(headerBlock: Buffer): false | ReportFormat {
  if (!MARKER_HINT.test(headerBlock.toString('latin1'))) return false;
  return markerOf(parseHeaderFields(headerBlock));
}

function markerOf(fields: readonly HeaderField[]): false | ReportFormat {
  let found: false | ReportFormat = false;
  for (const f of fields) {
    // Exchange 2007+ always writes the header empty; a valued one is not Exchange's.
    if (f.name === 'x-ms-journal-report' && f.value === '') return 'exchange2007';
    if ((f.name === 'content-identifier' || f.name === 'content-identifer') && f.value.toLowerCase() === 'exjournalreport') found = 'exchange2003';
  }
  return found;
}

// ---------------------------------------------------------------------------
// The report text
// ---------------------------------------------------------------------------

/** Keeps the first few problems and counts the rest, so hostile input cannot grow the list. */
class ProblemList {
  readonly items: string[] = [];
  private dropped = 0;
  add(p: string): void {
    if (this.items.length < MAX_PROBLEMS) this.items.push(p);
    else this.dropped++;
  }
  get size(): number {
    return this.items.length + this.dropped;
  }
  list(): string[] {
    return this.dropped ? [...this.items, `${this.dropped} more problem(s)`] : [...this.items];
  }
}

interface ParsedReportText {
  format: ReportFormat;
  fields: JournalReportFields;
  /** Problems that make the report untrustworthy (a recipient could be lost): the report is malformed. */
  fatal: string[];
  /** Problems worth noting that lose nothing. */
  minor: string[];
}

/**
 * Parses the text of a report body (already decoded to a string): one field
 * per line, names matched case-insensitively. Exchange 2007+:
 * `Sender:`, `On-Behalf-Of:`, `Subject:`, `Message-Id:`, then one `To:`,
 * `Cc:`, `Bcc:` or `Recipient:` line per recipient, each optionally followed
 * by `, Expanded: <list>` or `, Forwarded: <original recipient>`.
 * Exchange 2003: `Recipients:` followed by `"Name" <smtp:addr>,` entries, one
 * per line. Addresses are lower-cased; `smtp:` prefixes and display names are
 * dropped. Linear in the text length; never throws.
 *
 * @returns the format the text is written in, the fields, and every problem
 *   met (the first ones are those that make the report unusable)
 */
export function parseJournalReportBody(text: string): { format: ReportFormat; fields: JournalReportFields; problems: string[] } {
  const p = parseReportText(text);
  return { format: p.format, fields: p.fields, problems: [...p.fatal, ...p.minor] };
}

const FIELD_LINE = /^([A-Za-z][A-Za-z-]*)[ \t]*:[ \t]*([\s\S]*)$/;
const KIND_PREFIX = /^(to|cc|bcc|recipient)[ \t]*:[ \t]*([\s\S]*)$/i;
const ANNOTATION = /^(expanded|forwarded)[ \t]*:[ \t]*([\s\S]*)$/i;

function parseReportText(text: string): ParsedReportText {
  const fatal = new ProblemList();
  const minor = new ProblemList();
  const fields: JournalReportFields = { recipients: [] };
  const seen = new Set<string>();
  let inRecipientList = false; // after an Exchange 2003 `Recipients:` line
  let sawRecipientList = false;
  let last: EnvelopeRecipient | undefined; // target of a following Expanded/Forwarded

  // A text report never holds NUL; binary junk does.
  if (text.includes('\u0000')) fatal.add('report text contains binary data (NUL bytes)');

  const addEntries = (value: string, kind: RecipientKind): void => {
    for (const raw of splitAddressList(value)) {
      const entry = raw.trim();
      if (entry === '') continue;
      const ann = ANNOTATION.exec(entry);
      if (ann) {
        annotate(ann[1].toLowerCase() as 'expanded' | 'forwarded', ann[2]);
        continue;
      }
      let k = kind;
      let addrText = entry;
      const kp = KIND_PREFIX.exec(entry);
      if (kp) {
        k = kp[1].toLowerCase() as RecipientKind;
        addrText = kp[2];
      }
      const address = normaliseAddress(addrText);
      if (address === undefined) {
        // Dropping it would silently lose a recipient from the evidence.
        fatal.add(`unparseable recipient ${quote(entry)}`);
        last = undefined;
        continue;
      }
      last = { address, kind: k };
      fields.recipients.push(last);
    }
  };

  const annotate = (what: 'expanded' | 'forwarded', rawValue: string): void => {
    const value = rawValue.trim();
    if (!last) {
      minor.add(`${what === 'expanded' ? 'Expanded' : 'Forwarded'} annotation without a recipient: ${quote(value)}`);
      return;
    }
    if (value === '') {
      minor.add(`empty ${what === 'expanded' ? 'Expanded' : 'Forwarded'} annotation for ${last.address}`);
      return;
    }
    const addr = normaliseAddress(value);
    if (addr === undefined) minor.add(`${what === 'expanded' ? 'Expanded' : 'Forwarded'} value is not an address: ${quote(value)}`);
    const key = what === 'expanded' ? 'expandedFrom' : 'forwardedFrom';
    if (last[key] !== undefined) {
      // Nested lists can repeat the annotation; the first names the nearest list.
      minor.add(`repeated ${what === 'expanded' ? 'Expanded' : 'Forwarded'} annotation for ${last.address}`);
      return;
    }
    last[key] = addr ?? value;
  };

  const single = (name: string, label: string, apply: () => void): void => {
    if (seen.has(name)) {
      minor.add(`repeated ${label} line ignored`);
      return;
    }
    seen.add(name);
    apply();
  };

  forEachLine(text, (rawLine) => {
    const line = rawLine.trim();
    if (line === '') return;
    const m = FIELD_LINE.exec(line);
    const name = m ? m[1].toLowerCase() : undefined;
    const value = m ? m[2].trim() : '';
    switch (name) {
      case 'sender':
      case 'on-behalf-of': {
        const label = name === 'sender' ? 'Sender' : 'On-Behalf-Of';
        single(name, label, () => {
          if (value === '' || value === '<>') {
            minor.add(`empty ${label}`);
            return;
          }
          const addr = normaliseAddress(value);
          if (addr === undefined) fatal.add(`unparseable ${label} ${quote(value)}`);
          else if (name === 'sender') fields.sender = addr;
          else fields.onBehalfOf = addr;
        });
        inRecipientList = false;
        return;
      }
      case 'subject':
        // The subject is free text; it is kept exactly as the report states it.
        single(name, 'Subject', () => (fields.subject = value));
        inRecipientList = false;
        return;
      case 'message-id':
        single(name, 'Message-Id', () => {
          if (value === '') minor.add('empty Message-Id');
          else fields.messageId = value;
        });
        inRecipientList = false;
        return;
      case 'to':
      case 'cc':
      case 'bcc':
      case 'recipient':
        inRecipientList = false;
        last = undefined;
        addEntries(value, name);
        return;
      case 'recipients':
        inRecipientList = true;
        sawRecipientList = true;
        last = undefined;
        addEntries(value, 'recipient');
        return;
      case 'expanded':
      case 'forwarded':
        // Tolerated on a line of its own: it belongs to the recipient just above.
        annotate(name, value);
        return;
      default:
        if (inRecipientList) {
          addEntries(line, 'recipient');
        } else if (line.includes('@')) {
          // Could be a recipient in a form we do not know: losing it is not acceptable.
          fatal.add(`unrecognised line mentioning an address: ${quote(line)}`);
        } else {
          minor.add(`unrecognised line: ${quote(line)}`);
        }
    }
  });

  if (!seen.has('sender')) minor.add('no Sender line');
  if (!seen.has('message-id')) minor.add('no Message-Id line');
  if (fields.recipients.length === 0) fatal.add('no recipients');
  return { format: sawRecipientList ? 'exchange2003' : 'exchange2007', fields, fatal: fatal.list(), minor: minor.list() };
}

/** Calls `fn` for each line (CRLF, LF or CR), without building an array of all lines. */
function forEachLine(text: string, fn: (line: string) => void): void {
  let pos = 0;
  while (pos <= text.length) {
    let i = pos;
    while (i < text.length && text.charCodeAt(i) !== 10 && text.charCodeAt(i) !== 13) i++;
    fn(text.slice(pos, i));
    if (i >= text.length) return;
    pos = text.charCodeAt(i) === 13 && text.charCodeAt(i + 1) === 10 ? i + 2 : i + 1;
  }
}

/** Splits on commas outside double quotes and angle brackets (display names may contain commas). */
function splitAddressList(s: string): string[] {
  const out: string[] = [];
  let quoted = false;
  let angle = false;
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '\\' && quoted) i++;
    else if (c === '"') quoted = !quoted;
    else if (!quoted && c === '<') angle = true;
    else if (!quoted && c === '>') angle = false;
    else if (c === ',' && !quoted && !angle) {
      out.push(s.slice(start, i));
      start = i + 1;
    }
  }
  out.push(s.slice(start));
  return out;
}

const ATOM_PART = '[^\\s@<>()\\[\\]\\\\,;:"\\u0000-\\u001f\\u007f\\ufffd]+';
const ADDRESS = new RegExp(`^(?:${ATOM_PART}|"(?:[^"\\\\\\r\\n]|\\\\.)+")@(?:${ATOM_PART}|\\[[^\\]\\s\\\\]+\\])$`);

/**
 * Reduces `"Name" <smtp:addr>`, `<addr>`, `smtp:addr` or a bare `addr` to a
 * lower-cased address, or undefined if what remains is not an address.
 */
function normaliseAddress(raw: string): string | undefined {
  let s = raw.trim();
  const lt = s.lastIndexOf('<');
  if (lt >= 0) {
    const gt = s.indexOf('>', lt);
    s = gt > lt ? s.slice(lt + 1, gt) : s.slice(lt + 1);
  }
  // Trailing list punctuation, trimmed by hand: a regex like /[,;]+$/ is quadratic on long runs.
  let e = s.length;
  while (e > 0 && (s[e - 1] === ',' || s[e - 1] === ';' || /\s/.test(s[e - 1]))) e--;
  s = s.slice(0, e).trim();
  if (/^smtp:/i.test(s)) s = s.slice(5).trim();
  if (s === '' || s.length > MAX_ADDRESS_LENGTH || !ADDRESS.test(s)) return undefined;
  return s.toLowerCase();
}

/** Quotes a fragment for a problem message: escaped, and cut so junk cannot bloat the message. */
function quote(s: string): string {
  return JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}…` : s);
}

// ---------------------------------------------------------------------------
// HTML report text
// ---------------------------------------------------------------------------

/** Elements that start a new line when rendered. */
const BLOCK_TAGS = new Set(['br', 'p', 'div', 'tr', 'li', 'ul', 'ol', 'table', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'hr', 'pre', 'blockquote', 'dt', 'dd']);

/**
 * Renders report HTML as plain lines: tags dropped, `<br>` and block
 * elements become line breaks, source line breaks are plain whitespace
 * (except in `<pre>`), script and style content and comments vanish, and
 * entities are decoded. Every search moves forward, so this is linear even
 * for unterminated tags and comments.
 */
function htmlToText(html: string): string {
  const out: string[] = [];
  let pre = false;
  let pos = 0;
  const text = (s: string): void => {
    if (s) out.push(pre ? s : s.replace(/[\r\n\t ]+/g, ' '));
  };
  while (pos < html.length) {
    const lt = html.indexOf('<', pos);
    if (lt < 0) {
      text(html.slice(pos));
      break;
    }
    text(html.slice(pos, lt));
    if (html.startsWith('<!--', lt)) {
      const end = html.indexOf('-->', lt + 4);
      if (end < 0) break;
      pos = end + 3;
      continue;
    }
    const gt = html.indexOf('>', lt + 1);
    if (gt < 0) break; // an unterminated tag: nothing after it can be trusted as text
    const m = /^\s*(\/?)\s*([a-zA-Z][a-zA-Z0-9]*)/.exec(html.slice(lt + 1, Math.min(gt, lt + 64)));
    pos = gt + 1;
    if (!m) continue;
    const closing = m[1] === '/';
    const name = m[2].toLowerCase();
    if (!closing && (name === 'script' || name === 'style')) {
      const re = name === 'script' ? /<\/script\s*>/gi : /<\/style\s*>/gi;
      re.lastIndex = pos;
      const close = re.exec(html);
      if (!close) break;
      pos = close.index + close[0].length;
      continue;
    }
    if (name === 'pre') pre = !closing;
    if (BLOCK_TAGS.has(name)) out.push('\n');
    else if (name === 'td' || name === 'th') out.push(' ');
  }
  return decodeEntities(out.join(''));
}

const NAMED_ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: ' ', '#39': "'" };

function decodeEntities(s: string): string {
  return s.replace(/&(#[xX][0-9a-fA-F]{1,6}|#[0-9]{1,7}|[a-zA-Z][a-zA-Z0-9]{1,31});/g, (whole, body: string) => {
    if (body[0] === '#') {
      const cp = body[1] === 'x' || body[1] === 'X' ? parseInt(body.slice(2), 16) : parseInt(body.slice(1), 10);
      return cp > 0 && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff) ? String.fromCodePoint(cp) : '\ufffd';
    }
    return NAMED_ENTITIES[body.toLowerCase()] ?? whole;
  });
}

// ---------------------------------------------------------------------------
// Unwrapping a spooled message
// ---------------------------------------------------------------------------

/**
 * Scans a spooled message file and decides whether it is an Exchange journal
 * report, and if so where its original message lies. Reads only the header
 * block of ordinary mail; for a report or a non-delivery report it walks the
 * file once per nesting level in 256 KiB reads and loads nothing but the
 * report text (bounded). Offsets in the result are absolute file offsets.
 *
 * @param path - the spooled message file
 * @param opts - bounds; see {@link UnwrapJournalReportOptions}
 * @throws only for I/O errors on the file; bad input yields `not-report` or `malformed`
 */
export async function unwrapJournalReport(path: string, opts?: UnwrapJournalReportOptions): Promise<JournalUnwrap> {
  const src = await FileByteSource.open(path);
  try {
    return await unwrapJournalReportSource(src, opts);
  } finally {
    await src.close();
  }
}

/**
 * {@link unwrapJournalReport} over any byte source (a file, or a buffer in
 * tests). `chunkBytes` sets the scan read size (tests shrink it so delimiters
 * straddle reads).
 */
export async function unwrapJournalReportSource(
  src: ByteSource,
  opts: UnwrapJournalReportOptions & { chunkBytes?: number } = {},
): Promise<JournalUnwrap> {
  const ctx: Ctx = {
    src,
    maxHeaderBytes: positive(opts.maxHeaderBytes, DEFAULT_MAX_HEADER_BYTES),
    maxReportBodyBytes: positive(opts.maxReportBodyBytes, DEFAULT_MAX_REPORT_BODY_BYTES),
    maxDepth: Math.max(0, Math.floor(opts.maxDepth ?? DEFAULT_MAX_DEPTH)),
    chunkBytes: opts.chunkBytes,
    marker: undefined,
  };
  try {
    return await examineMessage(ctx, 0, src.size, 0);
  } catch (err) {
    if (isByteSourceIoError(err)) throw err;
    // A parser bug must not reject mail: a report is then archived as received.
    if (ctx.marker) return { kind: 'malformed', format: ctx.marker, reason: `internal error while unwrapping: ${(err as Error)?.message ?? String(err)}` };
    return NOT_REPORT;
  }
}

interface Ctx {
  src: ByteSource;
  maxHeaderBytes: number;
  maxReportBodyBytes: number;
  maxDepth: number;
  chunkBytes: number | undefined;
  /** The last report marker seen, for the error fallback. */
  marker: ReportFormat | undefined;
}

function positive(v: number | undefined, dflt: number): number {
  return v !== undefined && Number.isFinite(v) && v > 0 ? Math.floor(v) : dflt;
}

function isMessagePart(mediaType: string): boolean {
  // message/global is message/rfc822 for SMTPUTF8 mail (RFC 6532).
  return mediaType === 'message/rfc822' || mediaType === 'message/global';
}

/** The Content-Transfer-Encoding token, lower-cased, without comments; `7bit` when absent (RFC 2045 6.1). */
function transferEncodingOf(fields: readonly HeaderField[]): string {
  const v = headerValue(fields, 'content-transfer-encoding') ?? '';
  return v.split(/[\s(;]/, 1)[0].toLowerCase() || '7bit';
}

const KNOWN_ENCODINGS: ReadonlySet<string> = new Set<TransferEncoding>(['7bit', '8bit', 'binary', 'base64', 'quoted-printable']);

/** Examines the message in `[start, end)`: a report, an NDR that may hold one, or anything else. */
async function examineMessage(ctx: Ctx, start: number, end: number, depth: number): Promise<JournalUnwrap> {
  const hb = await readHeaderBlock(ctx.src, start, end, ctx.maxHeaderBytes);
  const fields = parseHeaderFields(hb.header);
  const marker = markerOf(fields);
  if (marker) {
    ctx.marker = marker;
    return unwrapReport(ctx, hb, fields, marker, end, depth > 0);
  }
  if (hb.bodyStart === undefined || depth >= ctx.maxDepth) return NOT_REPORT;
  const ct = parseContentType(headerValue(fields, 'content-type'));
  // The fast path: only a non-delivery report is looked into at the top.
  // Inside one, a resent or forwarded wrapper may also be multipart/mixed.
  const container = ct.mediaType === 'multipart/report' || (depth > 0 && ct.mediaType === 'multipart/mixed');
  const boundary = ct.params.get('boundary');
  if (!container || !boundary) return NOT_REPORT;

  for await (const part of scanMultipartParts(ctx.src, hb.bodyStart, end, boundary, { chunkBytes: ctx.chunkBytes })) {
    const ph = await readHeaderBlock(ctx.src, part.start, part.end, ctx.maxHeaderBytes);
    if (ph.bodyStart === undefined) continue;
    const pf = parseHeaderFields(ph.header);
    // text/rfc822-headers holds only the headers: no original to unwrap.
    if (!isMessagePart(parseContentType(headerValue(pf, 'content-type')).mediaType)) continue;
    const cte = transferEncodingOf(pf);
    if (cte === 'base64' || cte === 'quoted-printable') {
      const inner = await encodedInnerReport(ctx, ph.bodyStart, part.end, cte);
      if (inner) return inner;
      continue;
    }
    const inner = await examineMessage(ctx, ph.bodyStart, part.end, depth + 1);
    if (inner.kind !== 'not-report') return inner;
  }
  return NOT_REPORT;
}

/**
 * An NDR's attached message should not be encoded (RFC 2046 5.2.1), but if it
 * is and it is a report, its original has no byte range in the file: report
 * it as malformed so it is archived as received rather than missed.
 */
async function encodedInnerReport(ctx: Ctx, start: number, end: number, cte: string): Promise<JournalUnwrap | undefined> {
  // Encoded text is at most 3x (quoted-printable) the decoded header bound.
  const raw = await readBytes(ctx.src, start, Math.min(end - start, ctx.maxHeaderBytes * 3));
  const decoded = decodeTransfer(raw, cte);
  const hb = await readHeaderBlock(new BufferByteSource(decoded), 0, decoded.length, ctx.maxHeaderBytes);
  const fields = parseHeaderFields(hb.header);
  const marker = markerOf(fields);
  if (!marker) return undefined;
  ctx.marker = marker;
  const id = headerValue(fields, 'message-id');
  return {
    kind: 'malformed',
    format: marker,
    ...(id ? { reportMessageId: id } : {}),
    reason: `journal report inside a non-delivery report is ${cte}-encoded; its original cannot be addressed in the file`,
  };
}

/** Unwraps the report whose header block is `hb`, inside `[.., end)`. */
async function unwrapReport(ctx: Ctx, hb: HeaderBlock, fields: HeaderField[], format: ReportFormat, end: number, viaNdr: boolean): Promise<JournalUnwrap> {
  const reportMessageId = headerValue(fields, 'message-id') || undefined;
  const base = { format, ...(reportMessageId ? { reportMessageId } : {}) };
  const malformed = (reason: string, parsed?: JournalReportFields): JournalUnwrap => ({
    kind: 'malformed',
    ...base,
    reason,
    ...(parsed ? { fields: parsed } : {}),
  });

  if (hb.bodyStart === undefined) {
    return malformed(
      hb.incomplete === 'bound' ? `report header block is longer than ${ctx.maxHeaderBytes} bytes` : 'report ends inside its header block: no body',
    );
  }
  const ct = parseContentType(headerValue(fields, 'content-type'));
  if (!ct.mediaType.startsWith('multipart/')) {
    // Read what the text says anyway, so the malformed report stays findable.
    const text = await readReportText(ctx, hb.header, { index: 0, start: hb.bodyStart, end, endedBy: 'eof' }, hb.bodyStart);
    const parsed = text.text !== undefined ? parseReportText(text.text) : undefined;
    return malformed(`report is ${quote(ct.mediaType)}, not multipart: no original message attached`, parsed?.fields);
  }
  const boundary = ct.params.get('boundary');
  if (!boundary) return malformed('multipart report without a boundary parameter');

  const reasons: string[] = [];
  let text: ReportText | undefined;
  let original: (ByteRange & { encoding: string }) | undefined;
  let sawParts = false;
  for await (const part of scanMultipartParts(ctx.src, hb.bodyStart, end, boundary, { chunkBytes: ctx.chunkBytes })) {
    sawParts = true;
    const ph = await readHeaderBlock(ctx.src, part.start, part.end, ctx.maxHeaderBytes);
    if (part.index === 0) {
      text = ph.bodyStart === undefined ? { fatal: ['report text part ends inside its headers'] } : await readReportText(ctx, ph.header, part, ph.bodyStart);
      continue;
    }
    const pf = parseHeaderFields(ph.header);
    if (!isMessagePart(parseContentType(headerValue(pf, 'content-type')).mediaType)) continue;
    const encoding = transferEncodingOf(pf);
    // A part cut off inside its own headers has an empty body.
    const bodyStart = ph.bodyStart ?? part.end;
    original = { start: bodyStart, end: part.end, encoding };
    break;
  }

  if (!sawParts) reasons.push(`no MIME parts found: boundary ${quote(boundary)} never occurs`);
  else if (!text) reasons.push('no report text part');
  else reasons.push(...text.fatal);
  const parsed = text?.text !== undefined ? parseReportText(text.text) : undefined;
  if (parsed) reasons.push(...parsed.fatal);
  if (!original) {
    if (sawParts) reasons.push('no message/rfc822 part: the original message is not attached');
  } else if (await isBlank(ctx.src, original)) {
    reasons.push('attached original message is empty');
  } else if (!KNOWN_ENCODINGS.has(original.encoding)) {
    reasons.push(`original message has unsupported Content-Transfer-Encoding ${quote(original.encoding)}`);
  }
  if (reasons.length || !parsed || !original) return malformed(reasons.join('; ') || 'report could not be read', parsed?.fields);
  return {
    kind: 'report',
    ...base,
    viaNdr,
    fields: parsed.fields,
    original: { start: original.start, end: original.end, transferEncoding: original.encoding as TransferEncoding },
  };
}

/** True if the range is empty or only whitespace (a truncated part after its headers). */
async function isBlank(src: ByteSource, r: ByteRange): Promise<boolean> {
  if (r.end <= r.start) return true;
  if (r.end - r.start > 64) return false;
  return /^[\s]*$/.test((await readBytes(src, r.start, r.end - r.start)).toString('latin1'));
}

interface ReportText {
  text?: string;
  /** Problems that make the report malformed (cut text, wrong type). */
  fatal: string[];
}

/**
 * Loads and decodes the report text part: at most `maxReportBodyBytes` of
 * it, undoing its transfer encoding and charset, rendering HTML as lines,
 * and choosing the plain (else HTML) alternative of multipart/alternative.
 */
async function readReportText(ctx: Ctx, header: Buffer, part: PartSpan, bodyStart: number, nested = false): Promise<ReportText> {
  const pf = parseHeaderFields(header);
  const ct = parseContentType(headerValue(pf, 'content-type'));
  const fatal: string[] = [];
  const length = part.end - bodyStart;
  if (length > ctx.maxReportBodyBytes) fatal.push(`report text is longer than ${ctx.maxReportBodyBytes} bytes; recipients beyond that were not read`);
  const raw = await readBytes(ctx.src, bodyStart, Math.min(length, ctx.maxReportBodyBytes));

  if (ct.mediaType === 'multipart/alternative' && !nested) {
    const boundary = ct.params.get('boundary');
    if (!boundary) return { fatal: [...fatal, 'report text is multipart/alternative without a boundary'] };
    const inner: Ctx = { ...ctx, src: new BufferByteSource(raw) };
    let html: { header: Buffer; part: PartSpan; bodyStart: number } | undefined;
    for await (const p of scanMultipartParts(inner.src, 0, raw.length, boundary, { chunkBytes: ctx.chunkBytes })) {
      const ph = await readHeaderBlock(inner.src, p.start, p.end, ctx.maxHeaderBytes);
      if (ph.bodyStart === undefined) continue;
      const t = parseContentType(headerValue(parseHeaderFields(ph.header), 'content-type')).mediaType;
      if (t === 'text/plain') {
        const r = await readReportText(inner, ph.header, p, ph.bodyStart, true);
        return { text: r.text, fatal: [...fatal, ...r.fatal] };
      }
      if (t === 'text/html' && !html) html = { header: ph.header, part: p, bodyStart: ph.bodyStart };
    }
    if (!html) return { fatal: [...fatal, 'report text is multipart/alternative with no text/plain or text/html part'] };
    const r = await readReportText(inner, html.header, html.part, html.bodyStart, true);
    return { text: r.text, fatal: [...fatal, ...r.fatal] };
  }
  if (ct.mediaType !== 'text/plain' && ct.mediaType !== 'text/html') {
    return { fatal: [...fatal, `first part is ${quote(ct.mediaType)}, not the report text (text/plain or text/html)`] };
  }
  const decoded = decodeCharset(decodeTransfer(raw, transferEncodingOf(pf)), ct.params.get('charset'));
  return { text: ct.mediaType === 'text/html' ? htmlToText(decoded) : decoded, fatal };
}
