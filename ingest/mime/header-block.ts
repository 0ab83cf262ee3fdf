/**
 * Header blocks (RFC 5322 section 2.2 and RFC 2045): finding where one ends in
 * a byte source without reading past a bound, unfolding its fields, and
 * reading Content-Type parameters. Bytes are handled as latin1 so that every
 * byte maps to one character and offsets stay exact.
 */
import { readBytes, type ByteSource } from './byte-source.js';

/** Where a header block ends inside a buffer. */
export interface HeaderEnd {
  /** Length of the header block: bytes before the empty line (the last field's line break included). */
  headerLength: number;
  /** Index of the first body byte, just past the empty line. */
  bodyOffset: number;
}

/**
 * Finds the first empty line in `buf`, accepting CRLF, bare LF and a mix of
 * them. `from` lets a caller that grows `buf` resume without rescanning.
 */
export function findHeaderEnd(buf: Buffer, from = 0): HeaderEnd | undefined {
  // A block may be empty: the very first line is already the empty line.
  if (from === 0) {
    if (buf[0] === 0x0a) return { headerLength: 0, bodyOffset: 1 };
    if (buf[0] === 0x0d && buf[1] === 0x0a) return { headerLength: 0, bodyOffset: 2 };
  }
  const start = Math.max(0, from);
  const lf = buf.indexOf('\n\n', start, 'latin1');
  const crlf = buf.indexOf('\n\r\n', start, 'latin1');
  if (lf < 0 && crlf < 0) return undefined;
  if (crlf < 0 || (lf >= 0 && lf < crlf)) return { headerLength: lf + 1, bodyOffset: lf + 2 };
  return { headerLength: crlf + 1, bodyOffset: crlf + 3 };
}

/** A header block read from a source. */
export interface HeaderBlock {
  /** The header bytes (possibly cut at the bound when `bodyStart` is undefined). */
  header: Buffer;
  /** Absolute offset of the first body byte; undefined when no empty line was found. */
  bodyStart?: number;
  /** Why no empty line was found: the bound was hit, or the region ended first. */
  incomplete?: 'bound' | 'eof';
}

/** First read of a header block, in bytes: most header blocks fit, so one read usually suffices. */
const FIRST_HEADER_READ = 16 * 1024;

/**
 * Reads the header block starting at `start`, looking no further than
 * `min(end, start + maxBytes)`. Reads grow geometrically from 16 KiB, so a
 * small part costs one small read and a hostile one at most about 2x the bound.
 */
export async function readHeaderBlock(src: ByteSource, start: number, end: number, maxBytes: number): Promise<HeaderBlock> {
  const limit = Math.max(start, Math.min(end, src.size, start + maxBytes));
  let want = Math.min(FIRST_HEADER_READ, limit - start);
  let buf = await readBytes(src, start, want);
  let searched = 0;
  for (;;) {
    const found = findHeaderEnd(buf, searched);
    if (found) return { header: buf.subarray(0, found.headerLength), bodyStart: start + found.bodyOffset };
    if (start + buf.length >= limit) {
      const hitBound = limit < Math.min(end, src.size);
      return { header: buf, incomplete: hitBound ? 'bound' : 'eof' };
    }
    // Resume a few bytes back so an empty line split across reads is still seen.
    searched = Math.max(0, buf.length - 3);
    want = Math.min(buf.length * 2, limit - start);
    const more = await readBytes(src, start + buf.length, want - buf.length);
    buf = Buffer.concat([buf, more]);
  }
}

/** One unfolded header field. */
export interface HeaderField {
  /** Field name, lower-cased. */
  name: string;
  /** Unfolded value with the line breaks removed and outer whitespace trimmed. */
  value: string;
}

/**
 * Splits a header block into unfolded fields. Lines without a colon (an mbox
 * `From ` line, junk) are skipped rather than failing the block. Linear time.
 */
export function parseHeaderFields(block: Buffer): HeaderField[] {
  const text = block.toString('latin1');
  const fields: HeaderField[] = [];
  let current: { name: string; parts: string[] } | undefined;
  const flush = (): void => {
    if (current) fields.push({ name: current.name, value: current.parts.join('').trim() });
    current = undefined;
  };
  let pos = 0;
  while (pos < text.length) {
    let nl = text.indexOf('\n', pos);
    if (nl < 0) nl = text.length;
    let line = text.slice(pos, nl);
    if (line.endsWith('\r')) line = line.slice(0, -1);
    pos = nl + 1;
    if (line === '') break;
    if (line[0] === ' ' || line[0] === '\t') {
      // Folded continuation (RFC 5322 2.2.3): unfolding removes only the line break.
      if (current) current.parts.push(line);
      continue;
    }
    flush();
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    // Obsolete syntax allows whitespace before the colon (RFC 5322 4.5).
    const name = line.slice(0, colon).trimEnd().toLowerCase();
    if (!/^[\x21-\x39\x3b-\x7e]+$/.test(name)) continue;
    current = { name, parts: [line.slice(colon + 1)] };
  }
  flush();
  return fields;
}

/** The first value of field `name` (lower-case), or undefined. */
export function headerValue(fields: readonly HeaderField[], name: string): string | undefined {
  for (const f of fields) if (f.name === name) return f.value;
  return undefined;
}

/** A parsed Content-Type. */
export interface ContentType {
  /** `type/subtype`, lower-cased; `text/plain` when the field is absent (RFC 2045 5.2). */
  mediaType: string;
  /** Parameters by lower-cased name; RFC 2231 continuations joined. */
  params: Map<string, string>;
}

/**
 * Parses a Content-Type value: quoted and unquoted parameters, backslash
 * escapes, and RFC 2231 continuations (`boundary*0=`, `boundary*1=`).
 * Malformed input yields what could be read, never an exception.
 */
export function parseContentType(value: string | undefined): ContentType {
  const params = new Map<string, string>();
  if (value === undefined) return { mediaType: 'text/plain', params };
  const semi = indexOutsideQuotes(value, ';', 0);
  const mediaType = (semi < 0 ? value : value.slice(0, semi)).replace(/\([^()]*\)/g, '').trim().toLowerCase() || 'text/plain';
  const pieces = new Map<string, { index: number; value: string; extended: boolean }[]>();
  let pos = semi < 0 ? value.length : semi + 1;
  while (pos < value.length) {
    const eq = value.indexOf('=', pos);
    if (eq < 0) break;
    const rawName = value.slice(pos, eq).replace(/^[\s;]+/, '').trim().toLowerCase();
    pos = eq + 1;
    while (pos < value.length && (value[pos] === ' ' || value[pos] === '\t')) pos++;
    let v: string;
    if (value[pos] === '"') {
      let out = '';
      pos++;
      while (pos < value.length && value[pos] !== '"') {
        if (value[pos] === '\\' && pos + 1 < value.length) pos++;
        out += value[pos];
        pos++;
      }
      pos++;
      v = out;
      const next = value.indexOf(';', pos);
      pos = next < 0 ? value.length : next + 1;
    } else {
      const next = value.indexOf(';', pos);
      v = (next < 0 ? value.slice(pos) : value.slice(pos, next)).trim();
      pos = next < 0 ? value.length : next + 1;
    }
    const m = /^([^*]+)(?:\*(\d+))?(\*)?$/.exec(rawName);
    if (!m) continue;
    const list = pieces.get(m[1]) ?? [];
    list.push({ index: m[2] === undefined ? -1 : Number(m[2]), value: v, extended: m[3] === '*' });
    pieces.set(m[1], list);
  }
  for (const [name, list] of pieces) {
    const plain = list.find((p) => p.index === -1);
    if (plain && !plain.extended) {
      params.set(name, plain.value);
      continue;
    }
    const ordered = plain ? [plain] : list.filter((p) => p.index >= 0).sort((a, b) => a.index - b.index);
    const joined = ordered
      .map((p, i) => {
        if (!p.extended) return p.value;
        // RFC 2231: the first extended piece starts with charset'language'.
        const body = i === 0 ? p.value.replace(/^[^']*'[^']*'/, '') : p.value;
        return percentDecodeLatin1(body);
      })
      .join('');
    params.set(name, joined);
  }
  return { mediaType, params };
}

function indexOutsideQuotes(s: string, ch: string, from: number): number {
  let quoted = false;
  for (let i = from; i < s.length; i++) {
    const c = s[i];
    if (c === '\\' && quoted) i++;
    else if (c === '"') quoted = !quoted;
    else if (c === ch && !quoted) return i;
  }
  return -1;
}

function percentDecodeLatin1(s: string): string {
  return s.replace(/%([0-9A-Fa-f]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));
}
