/**
 * Parser for the investigator query language, and its inverse `describeQuery`.
 * The syntax is documented for users in `docs/search.md`; the AST in
 * `query-ast.ts`.
 *
 * Hand-written recursive descent over a lazy lexer, so the error reported is
 * always the leftmost one. Positions are 0-based offsets into the query
 * string as JavaScript counts them (UTF-16 code units), which is what a
 * browser text field uses for its selection.
 */
import { QuerySyntaxError } from '../src/errors.js';
import type { AddressField, DateRangeNode, QueryNode, SizeRangeNode, WordField } from './query-ast.js';
import { tokenizeText } from './text-fold.js';

/**
 * Longest accepted query, in characters. A query is typed or pasted by a
 * person; anything longer is a generated list that belongs in a saved search
 * or a batch job, and would only make the compiled index query slow.
 */
export const MAX_QUERY_LENGTH = 2000;

/** Deepest accepted nesting of parentheses. Bounds recursion here and in both compilers. */
export const MAX_DEPTH = 32;

/**
 * Most leaf clauses (words, phrases, fields) in one query. OpenSearch refuses
 * more than 1024 boolean clauses by default and each FTS5 clause costs a
 * posting-list scan; 100 keeps both fast.
 */
export const MAX_CLAUSES = 100;

/**
 * Largest proximity `~N`. Sloppy phrase matching costs grow with N in
 * OpenSearch, and beyond ~100 words "near" means "somewhere in the message".
 */
export const MAX_SLOP = 100;

/**
 * Fewest characters before a `*`. A one-letter prefix expands to a large part
 * of the term dictionary (OpenSearch caps that at `max_expansions`, FTS5 does
 * not), which is slow and would differ between the engines.
 */
export const MIN_PREFIX_LENGTH = 2;

/** Options for {@link parseQuery}. */
export interface ParseOptions {
  /**
   * When true, an empty or all-whitespace query parses to `{type: 'all'}`
   * (browsing everything in scope) instead of failing with "empty query".
   */
  allowEmpty?: boolean;
}

/** Canonical field names as typed before the colon (lower-case). */
type FieldName =
  | AddressField
  | 'domain'
  | 'subject'
  | 'body'
  | 'attachment'
  | 'has'
  | 'messageid'
  | 'date'
  | 'before'
  | 'after'
  | 'size';

const FIELD_NAMES: ReadonlySet<string> = new Set<FieldName>([
  'from',
  'to',
  'cc',
  'bcc',
  'participant',
  'domain',
  'subject',
  'body',
  'attachment',
  'has',
  'messageid',
  'date',
  'before',
  'after',
  'size',
]);

/** The field a leaf is read in: a named field, or free text. */
type Context = FieldName | 'any';

type Token =
  | { kind: 'lparen' | 'rparen' | 'and' | 'or' | 'not' | 'minus' | 'eof'; pos: number }
  | { kind: 'field'; pos: number; name: FieldName; end: number }
  | { kind: 'word'; pos: number; text: string }
  | { kind: 'quoted'; pos: number; text: string; slop?: number; tildePos?: number };

type ValueToken = Extract<Token, { kind: 'word' | 'quoted' }>;

/** Characters that end a bare word. */
function isWordBreak(c: string | undefined): boolean {
  return c === undefined || c === '(' || c === ')' || c === '"' || /\s/.test(c);
}

const FIELD_PREFIX_RE = /^([A-Za-z][A-Za-z0-9_-]*):/;

/** Lexes on demand, so that an error further right never hides one further left. */
class Lexer {
  private pos = 0;
  private peeked: Token | undefined;

  constructor(
    private readonly src: string,
    private readonly escapes = true,
  ) {}

  peek(): Token {
    this.peeked ??= this.lex();
    return this.peeked;
  }

  next(): Token {
    const t = this.peek();
    this.peeked = undefined;
    return t;
  }

  /**
   * Reads a field's value right after its colon: a group `(`, a quoted
   * string, or a bare word taken literally (no keywords, fields or `-`).
   * Returns undefined when the value is missing.
   */
  readValue(): ValueToken | { kind: 'lparen'; pos: number } | undefined {
    const { src } = this;
    const c = src[this.pos];
    if (c === undefined || c === ')' || /\s/.test(c)) return undefined;
    if (c === '(') return { kind: 'lparen', pos: this.pos++ };
    if (c === '"') return this.lexQuoted();
    const start = this.pos;
    while (!isWordBreak(src[this.pos])) this.pos++;
    return { kind: 'word', pos: start, text: src.slice(start, this.pos) };
  }

  private lex(): Token {
    const { src } = this;
    while (this.pos < src.length && /\s/.test(src[this.pos])) this.pos++;
    const start = this.pos;
    const c = src[start];
    if (c === undefined) return { kind: 'eof', pos: start };
    if (c === '(') return { kind: 'lparen', pos: this.pos++ };
    if (c === ')') return { kind: 'rparen', pos: this.pos++ };
    if (c === '"') return this.lexQuoted();
    if (c === '-') {
      // `-` negates only when glued to what follows; `a - b` is a typo, not `a -b`.
      const after = src[start + 1];
      if (after === undefined || /\s/.test(after)) throw new QuerySyntaxError("dangling operator '-': it must be followed directly by a term", start);
      this.pos++;
      return { kind: 'minus', pos: start };
    }
    while (!isWordBreak(src[this.pos])) this.pos++;
    const text = src.slice(start, this.pos);
    if (text === 'AND') return { kind: 'and', pos: start };
    if (text === 'OR') return { kind: 'or', pos: start };
    if (text === 'NOT') return { kind: 'not', pos: start };
    const m = FIELD_PREFIX_RE.exec(text);
    if (m) {
      const name = m[1].toLowerCase();
      if (!FIELD_NAMES.has(name)) throw new QuerySyntaxError(`unknown field '${m[1]}:' (put the text in quotes to search for it literally)`, start);
      // The value is read by readValue(), which does not interpret keywords or fields.
      this.pos = start + m[0].length;
      return { kind: 'field', pos: start, name: name as FieldName, end: this.pos };
    }
    return { kind: 'word', pos: start, text };
  }

  /**
   * A quoted string. Inside it `\"` is a quote and `\\` a backslash, so a
   * pasted subject or Message-ID that contains quotes can be searched for
   * (`subject:"re \"draft\" terms"`); any other backslash is itself.
   * Without `escapes` (see parseQuery) the first `"` ends it, as before
   * escapes existed.
   */
  private lexQuoted(): Extract<Token, { kind: 'quoted' }> {
    const { src } = this;
    const start = this.pos;
    let text = '';
    let i = start + 1;
    for (; i < src.length && src[i] !== '"'; i++) {
      if (src[i] === '\\' && (src[i + 1] === '"' || src[i + 1] === '\\')) i++;
      text += src[i];
    }
    if (!this.escapes) {
      i = src.indexOf('"', start + 1);
      text = src.slice(start + 1, i);
    }
    if (i < 0 || i >= src.length) throw new QuerySyntaxError('unterminated quote', start);
    const token: Extract<Token, { kind: 'quoted' }> = { kind: 'quoted', pos: start, text };
    this.pos = i + 1;
    if (src[this.pos] === '~') {
      const tildePos = this.pos;
      const numPos = tildePos + 1;
      let end = numPos;
      while (end < src.length && src[end] >= '0' && src[end] <= '9') end++;
      if (end === numPos || !isWordBreak(src[end])) {
        throw new QuerySyntaxError("bad proximity number: '~' must be followed by a whole number of words, e.g. ~5", numPos);
      }
      const digits = src.slice(numPos, end);
      const slop = digits.length > 6 ? Infinity : Number(digits);
      if (slop > MAX_SLOP) throw new QuerySyntaxError(`bad proximity number: ~${digits} is more than ${MAX_SLOP}`, numPos);
      token.slop = slop;
      token.tildePos = tildePos;
      this.pos = end;
    }
    return token;
  }
}

function isOperandStart(t: Token): boolean {
  return t.kind === 'lparen' || t.kind === 'field' || t.kind === 'word' || t.kind === 'quoted' || t.kind === 'not' || t.kind === 'minus';
}

function operatorName(t: Token): string {
  return t.kind === 'minus' ? '-' : t.kind.toUpperCase();
}

function dangling(t: Token, side: 'before' | 'after'): QuerySyntaxError {
  return new QuerySyntaxError(`dangling operator '${operatorName(t)}': it needs a term ${side} it`, t.pos);
}

/** Builds an `and`/`or`, flattening nested ones of the same kind and unwrapping a single child. */
function combine(type: 'and' | 'or', children: QueryNode[]): QueryNode {
  const flat: QueryNode[] = [];
  for (const c of children) {
    if (c.type === type) flat.push(...c.children);
    else flat.push(c);
  }
  return flat.length === 1 ? flat[0] : { type, children: flat };
}

function negate(node: QueryNode): QueryNode {
  return node.type === 'not' ? node.child : { type: 'not', child: node };
}

class Parser {
  private readonly lexer: Lexer;
  private depth = 0;
  private clauses = 0;

  constructor(src: string, escapes = true) {
    this.lexer = new Lexer(src, escapes);
  }

  parse(): QueryNode {
    const first = this.lexer.peek();
    if (first.kind === 'and' || first.kind === 'or') throw dangling(first, 'before');
    if (first.kind === 'rparen') throw unmatchedClose(first.pos);
    const node = this.parseOr('any');
    const rest = this.lexer.peek();
    // parseOr stops only at eof or at a ')' it has no '(' for.
    if (rest.kind === 'rparen') throw unmatchedClose(rest.pos);
    return node;
  }

  private parseOr(ctx: Context): QueryNode {
    const children = [this.parseAnd(ctx)];
    while (this.lexer.peek().kind === 'or') {
      const op = this.lexer.next();
      this.expectOperandAfter(op);
      children.push(this.parseAnd(ctx));
    }
    return combine('or', children);
  }

  private parseAnd(ctx: Context): QueryNode {
    const children = [this.parseUnary(ctx)];
    for (;;) {
      const t = this.lexer.peek();
      if (t.kind === 'and') {
        this.lexer.next();
        this.expectOperandAfter(t);
        children.push(this.parseUnary(ctx));
      } else if (isOperandStart(t)) {
        children.push(this.parseUnary(ctx)); // implicit AND
      } else {
        break;
      }
    }
    return combine('and', children);
  }

  private parseUnary(ctx: Context): QueryNode {
    let negations = 0;
    for (let t = this.lexer.peek(); t.kind === 'not' || t.kind === 'minus'; t = this.lexer.peek()) {
      this.lexer.next();
      this.expectOperandAfter(t);
      negations++;
    }
    const t = this.lexer.peek();
    if (t.kind === 'and' || t.kind === 'or') throw dangling(t, 'before');
    let node = this.parsePrimary(ctx);
    for (let i = 0; i < negations; i++) node = negate(node);
    return node;
  }

  private expectOperandAfter(op: Token): void {
    if (!isOperandStart(this.lexer.peek())) throw dangling(op, 'after');
  }

  private parsePrimary(ctx: Context): QueryNode {
    const t = this.lexer.next();
    switch (t.kind) {
      case 'lparen':
        return this.parseGroup(t.pos, ctx);
      case 'field': {
        if (ctx !== 'any') {
          throw new QuerySyntaxError(`field '${t.name}:' cannot be used inside ${ctx}:( … ); write it outside the parentheses`, t.pos);
        }
        const value = this.lexer.readValue();
        if (value === undefined) throw new QuerySyntaxError(`empty field value for '${t.name}:'`, t.end);
        if (value.kind === 'lparen') return this.parseGroup(value.pos, t.name);
        if (value.kind === 'quoted' && value.text.trim() === '') throw new QuerySyntaxError(`empty field value for '${t.name}:'`, t.end);
        return this.leaf(t.name, value);
      }
      case 'word':
      case 'quoted':
        return this.leaf(ctx, t);
      default:
        // Unreachable: callers check isOperandStart first.
        throw new QuerySyntaxError(`unexpected '${operatorName(t)}'`, t.pos);
    }
  }

  /** Parses the inside of a group whose `(` at `openPos` was just consumed. */
  private parseGroup(openPos: number, ctx: Context): QueryNode {
    if (++this.depth > MAX_DEPTH) throw new QuerySyntaxError(`parentheses nested deeper than ${MAX_DEPTH}`, openPos);
    const first = this.lexer.peek();
    if (first.kind === 'rparen') throw new QuerySyntaxError('empty parentheses', openPos);
    if (first.kind === 'and' || first.kind === 'or') throw dangling(first, 'before');
    const inner = this.parseOr(ctx);
    const close = this.lexer.next();
    if (close.kind !== 'rparen') throw new QuerySyntaxError("unbalanced parentheses: '(' is never closed", openPos);
    this.depth--;
    return inner;
  }

  private leaf(ctx: Context, v: ValueToken): QueryNode {
    if (++this.clauses > MAX_CLAUSES) throw new QuerySyntaxError(`more than ${MAX_CLAUSES} clauses`, v.pos);
    switch (ctx) {
      case 'any':
      case 'subject':
      case 'body':
      case 'attachment':
        return wordLeaf(ctx, v);
      case 'from':
      case 'to':
      case 'cc':
      case 'bcc':
      case 'participant':
        return addressLeaf(ctx, v);
      case 'domain':
        noProximity(v);
        return v.text.startsWith('@') ? domainLeaf('participant', v.text.slice(1), valuePos(v) + 1) : domainLeaf('participant', v.text, valuePos(v));
      case 'has':
        noProximity(v);
        if (v.text.trim().toLowerCase() !== 'attachment') {
          throw new QuerySyntaxError(`unknown value for 'has:' ('${v.text}'); only has:attachment exists`, valuePos(v));
        }
        return { type: 'hasAttachment' };
      case 'messageid':
        noProximity(v);
        return messageIdLeaf(v);
      case 'date':
      case 'before':
      case 'after':
        noProximity(v);
        return dateLeaf(ctx, v.text, valuePos(v));
      case 'size':
        noProximity(v);
        return sizeLeaf(v.text, valuePos(v));
    }
  }
}

function unmatchedClose(pos: number): QuerySyntaxError {
  return new QuerySyntaxError("unbalanced parentheses: ')' has no matching '('", pos);
}

/** Offset of the first character of the value itself (inside the quotes). */
function valuePos(v: ValueToken): number {
  return v.kind === 'quoted' ? v.pos + 1 : v.pos;
}

function noProximity(v: ValueToken): void {
  if (v.kind === 'quoted' && v.tildePos !== undefined) {
    throw new QuerySyntaxError('proximity ~N applies only to a phrase of words', v.tildePos);
  }
}

/** A word, phrase or `word*` in a text field, or in the words of an address field. */
function wordLeaf(field: WordField, v: ValueToken): QueryNode {
  if (v.kind === 'quoted') {
    const terms = tokenizeText(v.text);
    if (terms.length === 0) {
      if (v.text.trim() === '') throw new QuerySyntaxError('empty phrase', v.pos);
      throw new QuerySyntaxError(`nothing searchable in "${v.text}": it has no letters or digits`, v.pos);
    }
    // A one-word phrase is that word; its ~N has nothing to be near to.
    if (terms.length === 1) return { type: 'term', field, value: terms[0], prefix: false };
    return { type: 'phrase', field, terms, slop: v.slop ?? 0 };
  }
  const { text, pos } = v;
  const tilde = /~\d*$/.exec(text);
  if (tilde) throw new QuerySyntaxError('proximity ~N applies only to a quoted phrase, e.g. "budget approval"~5', pos + tilde.index);
  const star = text.indexOf('*');
  if (star === 0) throw new QuerySyntaxError("leading wildcard: '*' may only end a word (at least 2 characters before it)", pos);
  if (star > 0 && star !== text.length - 1) throw new QuerySyntaxError("'*' may only appear at the end of a word", pos + star);
  const prefix = star > 0;
  const stem = prefix ? text.slice(0, -1) : text;
  const terms = tokenizeText(stem);
  if (terms.length === 0) {
    throw new QuerySyntaxError(`nothing searchable in '${text}': it has no letters or digits`, pos);
  }
  if (prefix) {
    if (terms.length > 1) throw new QuerySyntaxError(`'*' can only end a single word, and '${stem}' is several words`, pos + star);
    if ([...terms[0]].length < MIN_PREFIX_LENGTH) {
      throw new QuerySyntaxError(`wildcard prefix too short: at least ${MIN_PREFIX_LENGTH} characters must come before '*'`, pos);
    }
    return { type: 'term', field, value: terms[0], prefix: true };
  }
  if (terms.length === 1) return { type: 'term', field, value: terms[0], prefix: false };
  // `e-mail` or `alice.smith`: the index splits it into words, so must we.
  return { type: 'phrase', field, terms, slop: 0 };
}

/**
 * An address field value: `@domain` → domain; anything with `@` and no space
 * → the whole address (exact, or a prefix with a trailing `*`); otherwise the
 * words of display names and addresses.
 */
function addressLeaf(field: AddressField, v: ValueToken): QueryNode {
  const pos = valuePos(v);
  let text = v.text.trim();
  if (text.startsWith('<') && text.endsWith('>') && text.length > 2) text = text.slice(1, -1).trim();
  if (text.startsWith('@')) {
    noProximity(v);
    return domainLeaf(field, text.slice(1), pos + v.text.indexOf('@') + 1);
  }
  if (!text.includes('@') || /\s/.test(text)) return wordLeaf(field, v);
  noProximity(v);
  let prefix = false;
  if (v.kind === 'word') {
    // In a quoted address `*` is an ordinary character (RFC 5322 allows it); bare, it is the wildcard.
    const star = text.indexOf('*');
    if (star === 0) throw new QuerySyntaxError("leading wildcard: '*' may only end an address (use from:@example.com for a whole domain)", pos);
    if (star > 0 && star !== text.length - 1) throw new QuerySyntaxError("'*' may only appear at the end of an address", pos + star);
    if (star > 0) {
      prefix = true;
      text = text.slice(0, -1);
    }
  }
  return { type: 'address', field, value: text.toLowerCase(), prefix };
}

const DOMAIN_RE = /^[\p{L}\p{N}_-]+(?:\.[\p{L}\p{N}_-]+)*$/u;

function domainLeaf(field: AddressField, raw: string, pos: number): QueryNode {
  const value = raw.trim().toLowerCase().replace(/\.$/, '');
  if (value === '') throw new QuerySyntaxError('empty field value: a domain is needed after @', pos);
  if (value.includes('*')) throw new QuerySyntaxError('wildcards are not supported in a domain (a domain already matches its subdomains)', pos + raw.indexOf('*'));
  if (!DOMAIN_RE.test(value)) throw new QuerySyntaxError(`bad domain '${raw}'`, pos);
  return { type: 'domain', field, value };
}

function messageIdLeaf(v: ValueToken): QueryNode {
  let text = v.text.trim();
  if (text.startsWith('<') && text.endsWith('>')) text = text.slice(1, -1).trim();
  if (text === '') throw new QuerySyntaxError("empty field value for 'messageid:'", valuePos(v));
  if (/\s/.test(text)) throw new QuerySyntaxError('bad message ID: it cannot contain spaces', valuePos(v));
  return { type: 'messageId', value: text };
}

// ---------------------------------------------------------------- dates

const DAY_MS = 86_400_000;

const DATE_RE = /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:[Tt](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3}))?)?([Zz]|[+-]\d{2}:?\d{2})?)?)?)?$/;

/** UTC epoch ms of a calendar time, valid for years 0–9999 (Date.UTC maps 0–99 to 1900–1999). */
function utc(year: number, month: number, day = 1, h = 0, mi = 0, s = 0, ms = 0): number {
  const d = new Date(0);
  d.setUTCFullYear(year, month - 1, day);
  d.setUTCHours(h, mi, s, ms);
  return d.getTime();
}

function daysInMonth(year: number, month: number): number {
  return new Date(utc(year, month + 1) - DAY_MS).getUTCDate();
}

/**
 * A date as the period it names, `[start, end)`: a year, month or day, or a
 * minute, second or millisecond for a timestamp. Timestamps without a zone
 * are UTC.
 */
function parseDatePeriod(s: string, pos: number): { start: number; end: number } {
  const m = DATE_RE.exec(s);
  const bad = (why: string): QuerySyntaxError => new QuerySyntaxError(`bad date '${s}': ${why}`, pos);
  if (!m) throw bad('use YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss[.sss]][Z|±hh:mm]');
  const [, ys, mos, ds, hs, mis, ss, mss, zone] = m;
  const year = Number(ys);
  if (mos === undefined) return { start: utc(year, 1), end: utc(year + 1, 1) };
  const month = Number(mos);
  if (month < 1 || month > 12) throw bad('month must be 01–12');
  if (ds === undefined) return { start: utc(year, month), end: utc(year, month + 1) };
  const day = Number(ds);
  if (day < 1 || day > daysInMonth(year, month)) throw bad(`day must be 01–${daysInMonth(year, month)} in ${ys}-${mos}`);
  if (hs === undefined) {
    const start = utc(year, month, day);
    return { start, end: start + DAY_MS };
  }
  const h = Number(hs);
  const mi = Number(mis);
  const sec = ss === undefined ? 0 : Number(ss);
  const ms = mss === undefined ? 0 : Number(mss.padEnd(3, '0'));
  if (h > 23) throw bad('hour must be 00–23');
  if (mi > 59) throw bad('minute must be 00–59');
  if (sec > 59) throw bad('second must be 00–59');
  let offsetMs = 0;
  if (zone !== undefined && zone.toUpperCase() !== 'Z') {
    const zm = /^([+-])(\d{2}):?(\d{2})$/.exec(zone);
    const zh = Number(zm?.[2]);
    const zmi = Number(zm?.[3]);
    if (!zm || zh > 23 || zmi > 59) throw bad('time zone offset must be ±hh:mm');
    offsetMs = (zm[1] === '+' ? 1 : -1) * (zh * 60 + zmi) * 60_000;
  }
  const start = utc(year, month, day, h, mi, sec, ms) - offsetMs;
  const period = mss !== undefined ? 1 : ss !== undefined ? 1000 : 60_000;
  return { start, end: start + period };
}

function dateLeaf(kind: 'date' | 'before' | 'after', text: string, pos: number): DateRangeNode {
  const range = text.indexOf('..');
  if (kind !== 'date') {
    if (range >= 0) throw new QuerySyntaxError(`bad date '${text}': ${kind}: takes one date, not a range (use date:A..B)`, pos);
    const { start } = parseDatePeriod(text, pos);
    return kind === 'before' ? { type: 'dateRange', lt: start } : { type: 'dateRange', gte: start };
  }
  if (range < 0) {
    const { start, end } = parseDatePeriod(text, pos);
    return { type: 'dateRange', gte: start, lt: end };
  }
  const left = text.slice(0, range);
  const right = text.slice(range + 2);
  if (left === '' && right === '') throw new QuerySyntaxError("bad date '..': a range needs at least one end", pos);
  const node: DateRangeNode = { type: 'dateRange' };
  if (left !== '') node.gte = parseDatePeriod(left, pos).start;
  if (right !== '') node.lt = parseDatePeriod(right, pos + range + 2).end;
  if (node.gte !== undefined && node.lt !== undefined && node.gte >= node.lt) {
    throw new QuerySyntaxError(`inverted date range '${text}': the start is after the end`, pos);
  }
  return node;
}

// ---------------------------------------------------------------- sizes

/** Binary units, as everywhere else in the archive: 1 KB = 1024 bytes. */
const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };
const SIZE_RE = /^(\d+(?:\.\d+)?)([KMGkmg]?[Bb])?$/;

/**
 * A size in bytes, possibly fractional (`1.5KB` = 1536, `0.1KB` = 102.4).
 * Exact: the unit multipliers are powers of two, so `number * unit` loses
 * nothing beyond the decimal parse itself.
 */
function parseSize(s: string, whole: string, pos: number): number {
  const m = SIZE_RE.exec(s);
  if (!m) throw new QuerySyntaxError(`bad size '${whole}': use a number with an optional unit B, KB, MB or GB, e.g. size:>1MB`, pos);
  const bytes = Number(m[1]) * SIZE_UNITS[(m[2] ?? '').toLowerCase()];
  if (!Number.isSafeInteger(Math.ceil(bytes))) throw new QuerySyntaxError(`bad size '${whole}': too large`, pos);
  return bytes;
}

function sizeLeaf(text: string, pos: number): SizeRangeNode {
  const node: SizeRangeNode = { type: 'sizeRange' };
  const op = /^(>=|<=|>|<)/.exec(text)?.[1];
  if (op !== undefined) {
    const n = parseSize(text.slice(op.length), text, pos);
    // Sizes are whole bytes: `>1.5KB` is `>= 1537`, `<0.1KB` is `<= 102`.
    if (op === '>') node.gte = Math.floor(n) + 1;
    else if (op === '>=') node.gte = Math.ceil(n);
    else if (op === '<') node.lte = Math.ceil(n) - 1;
    else node.lte = Math.floor(n);
  } else {
    const range = text.indexOf('..');
    if (range < 0) {
      const n = parseSize(text, text, pos);
      if (!Number.isInteger(n)) throw new QuerySyntaxError(`bad size '${text}': not a whole number of bytes`, pos);
      return { type: 'sizeRange', gte: n, lte: n };
    }
    const left = text.slice(0, range);
    const right = text.slice(range + 2);
    if (left === '' && right === '') throw new QuerySyntaxError("bad size '..': a range needs at least one end", pos);
    if (left !== '') node.gte = Math.ceil(parseSize(left, text, pos));
    if (right !== '') node.lte = Math.floor(parseSize(right, text, pos));
  }
  if (node.lte !== undefined && node.lte < 0) throw new QuerySyntaxError(`bad size '${text}': no message is smaller than 0 bytes`, pos);
  if (node.gte !== undefined && node.lte !== undefined && node.gte > node.lte) {
    throw new QuerySyntaxError(`inverted size range '${text}': the minimum is above the maximum`, pos);
  }
  return node;
}

// ---------------------------------------------------------------- API

/**
 * Parses an investigator query into a normalised AST.
 *
 * @param query The query as the user typed it.
 * @param options `allowEmpty` makes an empty query mean "everything".
 * @throws QuerySyntaxError with the 0-based position of the first problem.
 */
export function parseQuery(query: string, options: ParseOptions = {}): QueryNode {
  if (query.length > MAX_QUERY_LENGTH) {
    throw new QuerySyntaxError(`query is longer than ${String(MAX_QUERY_LENGTH).replace(/\B(?=(\d{3})+$)/g, ',')} characters`, MAX_QUERY_LENGTH);
  }
  if (query.trim() === '') {
    if (options.allowEmpty) return { type: 'all' };
    throw new QuerySyntaxError('empty query', 0);
  }
  try {
    return new Parser(query).parse();
  } catch (err) {
    // A query saved before `\"` was an escape (hold and policy queries are parsed again at every use) keeps its
    // meaning: one that is valid only as it was read then (`from:"x\" OR to:"y\"`) is read that way.
    if (!(err instanceof QuerySyntaxError) || !query.includes('\\"')) throw err;
    try {
      return new Parser(query, false).parse();
    } catch {
      throw err;
    }
  }
}

// ---------------------------------------------------------------- describe

function isoDay(t: number): string {
  return new Date(t).toISOString().slice(0, 10);
}

function isDayStart(t: number): boolean {
  return ((t % DAY_MS) + DAY_MS) % DAY_MS === 0;
}

/** A bound as the start of a period: a day when it falls on midnight, otherwise an exact millisecond. */
function fmtStart(t: number): string {
  return isDayStart(t) ? isoDay(t) : new Date(t).toISOString();
}

/** An exclusive end as the inclusive last period: the day before midnight, or the millisecond before. */
function fmtEnd(lt: number): string {
  return isDayStart(lt) ? isoDay(lt - DAY_MS) : new Date(lt - 1).toISOString();
}

function describeDate(n: DateRangeNode): string {
  const { gte, lt } = n;
  if (gte !== undefined && lt !== undefined) {
    const d = new Date(gte);
    const y = d.getUTCFullYear();
    const mo = d.getUTCMonth() + 1;
    if (isDayStart(gte)) {
      if (lt === gte + DAY_MS) return `date:${isoDay(gte)}`;
      if (d.getUTCDate() === 1 && lt === utc(y, mo + 1)) return `date:${isoDay(gte).slice(0, 7)}`;
      if (d.getUTCDate() === 1 && mo === 1 && lt === utc(y + 1, 1)) return `date:${isoDay(gte).slice(0, 4)}`;
    }
    return `date:${fmtStart(gte)}..${fmtEnd(lt)}`;
  }
  if (gte !== undefined) return `after:${fmtStart(gte)}`;
  if (lt !== undefined) {
    // `before:10000-01-01` would not parse; the inclusive form does.
    return new Date(lt).getUTCFullYear() <= 9999 ? `before:${fmtStart(lt)}` : `date:..${fmtEnd(lt)}`;
  }
  throw new TypeError('dateRange node without bounds');
}

function describeSize(n: SizeRangeNode): string {
  const { gte, lte } = n;
  if (gte !== undefined && lte !== undefined) return gte === lte ? `size:${gte}` : `size:${gte}..${lte}`;
  if (gte !== undefined) return `size:>=${gte}`;
  if (lte !== undefined) return `size:<=${lte}`;
  throw new TypeError('sizeRange node without bounds');
}

function fieldPrefix(field: WordField): string {
  return field === 'any' ? '' : `${field}:`;
}

/** Quotes a literal value that would not survive as a bare word. */
function literal(value: string, special: RegExp): string {
  return special.test(value) ? `"${value}"` : value;
}

function describeNode(node: QueryNode, parent: 'top' | 'and' | 'or' | 'not'): string {
  switch (node.type) {
    case 'and': {
      const s = node.children.map((c) => describeNode(c, 'and')).join(' ');
      return parent === 'not' ? `(${s})` : s;
    }
    case 'or': {
      const s = node.children.map((c) => describeNode(c, 'or')).join(' OR ');
      return parent === 'and' || parent === 'not' ? `(${s})` : s;
    }
    case 'not':
      return `-${describeNode(node.child, 'not')}`;
    case 'all':
      if (parent !== 'top') throw new TypeError("an 'all' node can only be the whole query");
      return '';
    case 'term':
      return `${fieldPrefix(node.field)}${node.value}${node.prefix ? '*' : ''}`;
    case 'phrase':
      return `${fieldPrefix(node.field)}"${node.terms.join(' ')}"${node.slop > 0 ? `~${node.slop}` : ''}`;
    case 'address':
      // A quoted address takes `*` literally, so an exact address containing `*` is quoted.
      return node.prefix ? `${node.field}:${node.value}*` : `${node.field}:${literal(node.value, /[\s()"*]/)}`;
    case 'domain':
      return node.field === 'participant' ? `domain:${node.value}` : `${node.field}:@${node.value}`;
    case 'hasAttachment':
      return 'has:attachment';
    case 'messageId':
      // Always bracketed, so a value that itself starts with `<` survives the one strip on parse.
      return `messageid:${literal(`<${node.value}>`, /[\s()"]/)}`;
    case 'dateRange':
      return describeDate(node);
    case 'sizeRange':
      return describeSize(node);
  }
}

/**
 * Renders an AST as canonical query text, for audit logs and saved searches.
 * For any query q, `parseQuery(describeQuery(parseQuery(q)))` deep-equals
 * `parseQuery(q)`. Field groups are expanded (`from:(a OR b)` →
 * `(from:a OR from:b)`), dates become days or exact UTC timestamps, sizes
 * become bytes.
 */
export function describeQuery(node: QueryNode): string {
  return describeNode(node, 'top');
}
