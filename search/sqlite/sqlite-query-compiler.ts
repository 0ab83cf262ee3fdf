/**
 * Compiles the query AST (search/query-ast.ts) into SQL for the SQLite index
 * (search/sqlite/sqlite-message-index.ts). The matching semantics are those
 * of search/MATCHING.md; the OpenSearch compiler implements the same ones.
 *
 * The output is one FTS5 MATCH expression over the text table (when the query
 * has text words that every hit must contain: it drives the query), plus a SQL
 * condition over the messages row `m`. Every value reaches SQLite as a bound
 * parameter; the only text spliced into SQL is table and column names from
 * {@link TableNames} and fixed operators. Values inside an FTS5 expression are
 * always double-quoted strings with `"` doubled, so no FTS5 operator (NEAR,
 * OR, `*`, `:`, `^`, parentheses) can come from a value.
 */
import type { AddressField, PhraseNode, QueryNode, TermNode, TextField, WordField } from '../query-ast.js';
import { isAddressField } from '../query-ast.js';
import { queryTokens } from '../index-analysis.js';
import type { Scope } from '../../src/ports/message-index.js';

/**
 * Role flags of a person of a message: which address fields the person
 * counts for. Every person counts for `participant`. They are bits of the
 * person's key (see {@link personKey}), so people rows filter by role
 * without reading anything else.
 */
export const PERSON = {
  /** From header. */
  from: 1,
  /** To header, or an envelope recipient reported as To. */
  to: 2,
  /** Cc header, or an envelope recipient reported as Cc. */
  cc: 4,
  /** Bcc header, or an envelope recipient reported as Bcc. */
  bcc: 8,
  /**
   * A recipient: To/Cc/Bcc header or any envelope recipient. Their domains
   * are the `domains` facet (see the facet dictionary in the adapter).
   */
  recipient: 16,
} as const;

/**
 * A person's key (`people.pid`) is
 * `mid · 2^24 + flags · 2^16 + n`: the people of message `mid` are one range
 * of keys (no index on the message needed), the message of a person is
 * `pid >> 24` and its roles are `(pid >> 16) & 0xff`. Up to 65,536 people per
 * message (far above real recipient lists); keys stay below 2^53 (exact in
 * JavaScript) up to 2^29 messages.
 */
export const PEOPLE_SHIFT = 24;
export const PEOPLE_SPAN = 2 ** PEOPLE_SHIFT;
export const ROLE_SHIFT = 16;
export const MAX_PEOPLE = 2 ** ROLE_SHIFT;

/** The key of person `n` of message `mid` with role `flags`. */
export function personKey(mid: number, flags: number, n: number): number {
  return mid * PEOPLE_SPAN + (flags & 0xff) * MAX_PEOPLE + n;
}

/**
 * An address or a reversed domain as ONE token of the `ascii` FTS5
 * tokenizer, which splits on ASCII characters other than letters and digits
 * and keeps every other character: each such ASCII character becomes a
 * private-use character (U+E000 + its code), so `alice@example.com` is one
 * token, unequal to any other address, and the words of display names (plain
 * letters and digits) can never equal it.
 */
export function exactToken(s: string): string {
  let out = '';
  for (const ch of s) {
    const c = ch.charCodeAt(0);
    const keep = c > 0x7f || (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x7a);
    out += keep ? ch : String.fromCharCode(0xe000 + c);
  }
  return out;
}

/** Names of one generation of the index tables (the live one, or one being rebuilt). */
export interface TableNames {
  messages: string;
  docs: string;
  people: string;
  idents: string;
  textFts: string;
  identFts: string;
  facetValues: string;
}

/** A SQL fragment and its positional parameters, in order. */
export interface SqlFragment {
  sql: string;
  params: unknown[];
}

/** The compiled form of a whole query. */
export interface CompiledQuery {
  /** FTS5 expression on `names.textFts` that every hit matches; absent when the query has none to drive it. */
  match?: string;
  /** Condition over the messages row aliased `m` (`1` when there is none). */
  where: SqlFragment;
  /** True when the query restricts nothing (`all`): callers may take faster paths. */
  matchesAll: boolean;
}

/** FTS5 columns of the text table, by text field. `any` is every column (subject_t, body_t, attname_t, atttext_t), which needs no filter. */
const COLUMN_OF: Record<Exclude<TextField, 'any'>, string> = {
  subject: 'subject_t',
  body: 'body_t',
  attachment: 'attname_t',
};
const FLAG_OF: Record<Exclude<AddressField, 'participant'>, number> = {
  from: PERSON.from,
  to: PERSON.to,
  cc: PERSON.cc,
  bcc: PERSON.bcc,
};

/** A token as an FTS5 string: always quoted, `"` doubled. Tokens are letters and digits, but values are never trusted. */
export function ftsString(token: string): string {
  return `"${token.replace(/"/g, '""')}"`;
}

/** Several tokens as one FTS5 phrase (a quoted string the tokenizer splits on spaces). */
function ftsPhrase(tokens: readonly string[]): string {
  return ftsString(tokens.join(' '));
}

/**
 * The FTS5 expression for a word, a phrase or a proximity search, with no
 * column filter; undefined when nothing searchable is left (matches nothing).
 *
 * - A word is `"tok"`; a word that analyses to several tokens (CJK, `abc契約`)
 *   is the exact phrase of them, so CJK matches by substring.
 * - `prefix`: the last token is a prefix (`"tok" *`, `"契 約" *`).
 * - A phrase with slop 0 is the phrase of all the words' tokens.
 * - A phrase with slop N > 0 is `NEAR(w1 w2 …, N)`: every word (each a phrase
 *   of its own tokens) occurs, in any order, with at most N tokens between the
 *   end of the first and the start of the last (search/MATCHING.md).
 */
export function ftsExpression(node: TermNode | PhraseNode): string | undefined {
  if (node.type === 'term') {
    const tokens = queryTokens(node.value);
    if (tokens.length === 0) return undefined;
    return node.prefix ? `${ftsPhrase(tokens)} *` : ftsPhrase(tokens);
  }
  const words = node.terms.map((t) => queryTokens(t)).filter((t) => t.length > 0);
  if (words.length === 0) return undefined;
  if (node.slop === 0 || words.length === 1) return ftsPhrase(words.flat());
  // NEAR's distance is a plain integer in the expression text; the parser bounds it, we re-check.
  const slop = Math.max(0, Math.min(Math.floor(node.slop), 1_000_000));
  return `NEAR(${words.map(ftsPhrase).join(' ')}, ${slop})`;
}

/** Reverses a domain's labels, with a trailing dot: `mail.example.com` → `com.example.mail.`. */
export function reverseDomain(domain: string): string {
  return domain === '' ? '' : `${domain.split('.').reverse().join('.')}.`;
}

/**
 * A conjunction: an FTS5 expression on the text table (when present) AND every
 * SQL condition. No FTS and no SQL means "every message".
 */
interface Part {
  fts?: string;
  sql: SqlFragment[];
}

const TRUE: Part = { sql: [] };
const FALSE: Part = { sql: [{ sql: '0', params: [] }] };

function isTrue(p: Part): boolean {
  return p.fts === undefined && p.sql.length === 0;
}

function isPureFts(p: Part): p is Part & { fts: string } {
  return p.fts !== undefined && p.sql.length === 0;
}

function paren(expr: string): string {
  return `(${expr})`;
}

/** Compiles queries against one generation of tables. */
export class SqliteQueryCompiler {
  constructor(private readonly t: TableNames) {}

  compile(node: QueryNode): CompiledQuery {
    const part = this.node(node);
    return { match: part.fts, where: joinAnd(part.sql), matchesAll: isTrue(part) };
  }

  /**
   * The scope condition over `m`, or undefined when unrestricted. An empty
   * scope is `0` (sees nothing). A message is in scope when one of its people
   * (any role) has one of the addresses, or an address at one of the domains
   * or their subdomains. The scope's identities are found once per statement
   * (ident_fts postings); each candidate message is then checked over its own
   * `people` key range, so the cost follows the match set, not the scope.
   */
  scope(scope: Scope | null | undefined): SqlFragment | undefined {
    if (!scope) return undefined;
    const expr = scopeExpression(scope);
    if (expr === undefined) return { sql: '0', params: [] };
    const { people, identFts } = this.t;
    return {
      sql: `EXISTS (SELECT 1 FROM ${people} s WHERE s.pid BETWEEN m.mid * ${PEOPLE_SPAN} AND m.mid * ${PEOPLE_SPAN} + ${PEOPLE_SPAN - 1} AND s.iid IN (SELECT rowid FROM ${identFts} WHERE ${identFts} MATCH ?))`,
      params: [expr],
    };
  }

  /**
   * The in-scope message ids as a set-producing subquery (`SELECT mid …`), for
   * queries that restrict nothing but the scope, or that match too much to
   * check message by message: the scope's identities, then their people rows.
   */
  scopeSet(scope: Scope): SqlFragment {
    const expr = scopeExpression(scope);
    if (expr === undefined) return { sql: 'SELECT NULL AS mid WHERE 0', params: [] };
    const { people, identFts } = this.t;
    return {
      sql: `SELECT DISTINCT pid >> ${PEOPLE_SHIFT} AS mid FROM ${people} WHERE iid IN (SELECT rowid FROM ${identFts} WHERE ${identFts} MATCH ?)`,
      params: [expr],
    };
  }

  private node(node: QueryNode): Part {
    switch (node.type) {
      case 'all':
        return TRUE;
      case 'and':
        return this.and(node.children);
      case 'or':
        return this.or(node.children);
      case 'not':
        return this.negate(this.node(node.child));
      case 'term':
      case 'phrase':
        return this.words(node);
      case 'address':
        return this.address(node.field, node.value, node.prefix);
      case 'domain':
        return this.domain(node.field, node.value);
      case 'hasAttachment':
        return { sql: [{ sql: 'm.has_att = 1', params: [] }] };
      case 'messageId':
        return { sql: [{ sql: 'm.message_id = ?', params: [node.value] }] };
      case 'dateRange': {
        const sql: SqlFragment[] = [];
        if (node.gte !== undefined) sql.push({ sql: 'm.date >= ?', params: [node.gte] });
        if (node.lt !== undefined) sql.push({ sql: 'm.date < ?', params: [node.lt] });
        return { sql };
      }
      case 'sizeRange': {
        const sql: SqlFragment[] = [];
        if (node.gte !== undefined) sql.push({ sql: 'm.size >= ?', params: [node.gte] });
        if (node.lte !== undefined) sql.push({ sql: 'm.size <= ?', params: [node.lte] });
        return { sql };
      }
      default: {
        const unknown: never = node;
        throw new Error(`unknown query node ${JSON.stringify(unknown)}`);
      }
    }
  }

  /**
   * AND: the text words of all children become one FTS5 expression (so FTS5
   * intersects the posting lists), negated pure-text children become its
   * `NOT`, everything else stays SQL.
   */
  private and(children: QueryNode[]): Part {
    const pos: string[] = [];
    const neg: string[] = [];
    const sql: SqlFragment[] = [];
    for (const child of children) {
      let p: Part;
      if (child.type === 'not') {
        const inner = this.node(child.child);
        if (isPureFts(inner)) {
          neg.push(inner.fts);
          continue;
        }
        p = this.negate(inner);
      } else {
        p = this.node(child);
      }
      if (p.fts !== undefined) pos.push(p.fts);
      sql.push(...p.sql);
    }
    if (pos.length === 0) {
      // FTS5's NOT is binary; with nothing to subtract from, each negation is SQL.
      for (const n of neg) sql.push(this.notInText(n));
      return { sql };
    }
    let fts = pos.length === 1 ? pos[0] : pos.map(paren).join(' AND ');
    if (neg.length > 0) fts = `${paren(fts)} NOT ${paren(neg.map(paren).join(' OR '))}`;
    return { fts, sql };
  }

  private or(children: QueryNode[]): Part {
    const parts = children.map((c) => this.node(c));
    if (parts.some(isTrue)) return TRUE;
    if (parts.every(isPureFts)) return { fts: parts.map((p) => paren(p.fts as string)).join(' OR '), sql: [] };
    const frags = parts.map((p) => this.toSql(p));
    return { sql: [{ sql: paren(frags.map((f) => paren(f.sql)).join(' OR ')), params: frags.flatMap((f) => f.params) }] };
  }

  private negate(p: Part): Part {
    if (isTrue(p)) return FALSE;
    if (isPureFts(p)) return { sql: [this.notInText(p.fts)] };
    const f = this.toSql(p);
    return { sql: [{ sql: `NOT (${f.sql})`, params: f.params }] };
  }

  private notInText(fts: string): SqlFragment {
    return { sql: `m.mid NOT IN (SELECT rowid FROM ${this.t.textFts} WHERE ${this.t.textFts} MATCH ?)`, params: [fts] };
  }

  /** A part as one SQL condition over `m`. */
  private toSql(p: Part): SqlFragment {
    const all = [...p.sql];
    if (p.fts !== undefined) all.unshift({ sql: `m.mid IN (SELECT rowid FROM ${this.t.textFts} WHERE ${this.t.textFts} MATCH ?)`, params: [p.fts] });
    return joinAnd(all);
  }

  /** A word or phrase: in a text column, or in the words of one person (an address field). */
  private words(node: TermNode | PhraseNode): Part {
    const expr = ftsExpression(node);
    if (expr === undefined) return FALSE;
    const field: WordField = node.field;
    if (!isAddressField(field)) {
      return { fts: field === 'any' ? expr : `{${COLUMN_OF[field]}} : ${paren(expr)}`, sql: [] };
    }
    // One ident_fts row per person, so a phrase or NEAR never spans two people.
    return this.people(field, `{words} : ${paren(expr)}`);
  }

  /** A whole address (exact, or a prefix of it) in one address field: one token of the `addr` column. */
  private address(field: AddressField, value: string, prefix: boolean): Part {
    const token = ftsString(exactToken(value.toLowerCase()));
    return this.people(field, `{addr} : ${prefix ? `${token} *` : token}`);
  }

  /** An address at `value` or one of its subdomains, in one address field: a prefix of the `dom` token. */
  private domain(field: AddressField, value: string): Part {
    return this.people(field, `{dom} : ${domainTokenExpr(value.toLowerCase().replace(/\.+$/, ''))}`);
  }

  /** Messages with a person whose identity matches `expr` in ident_fts, in the role of `field`. */
  private people(field: AddressField, expr: string): Part {
    const { people, identFts } = this.t;
    const role = field === 'participant' ? '' : ` AND ((p.pid >> ${ROLE_SHIFT}) & ${FLAG_OF[field]}) != 0`;
    return {
      sql: [
        {
          sql: `m.mid IN (SELECT p.pid >> ${PEOPLE_SHIFT} FROM ${people} p WHERE p.iid IN (SELECT rowid FROM ${identFts} WHERE ${identFts} MATCH ?)${role})`,
          params: [expr],
        },
      ],
    };
  }
}

/**
 * The `dom` token expression for a domain and its subdomains: the reversed
 * domain with its trailing dot as a token prefix (`com.example.` matches
 * `com.example.` and `com.example.mail.`, not `com.badexample.`). A one-label
 * value (`com`, `localhost`) matches only that exact domain: parent domains
 * count down to two labels, never to a bare TLD (MATCHING.md).
 */
function domainTokenExpr(domain: string): string {
  const token = ftsString(exactToken(reverseDomain(domain)));
  return domain.includes('.') ? `${token} *` : token;
}

/** The ident_fts expression of a scope's addresses and domains; undefined for an empty scope. */
function scopeExpression(scope: Scope): string | undefined {
  const { addresses, domains } = normaliseScope(scope);
  const terms = [...addresses.map((a) => `{addr} : ${ftsString(exactToken(a))}`), ...domains.map((d) => `{dom} : ${domainTokenExpr(d)}`)];
  return terms.length === 0 ? undefined : terms.join(' OR ');
}

function normaliseScope(scope: Scope): { addresses: string[]; domains: string[] } {
  const addresses = [...new Set(scope.addresses.map((a) => a.trim().toLowerCase()).filter((a) => a !== ''))];
  const domains = [...new Set(scope.domains.map((d) => d.trim().toLowerCase().replace(/^@/, '').replace(/\.+$/, '')).filter((d) => d !== ''))];
  return { addresses, domains };
}

function joinAnd(frags: SqlFragment[]): SqlFragment {
  if (frags.length === 0) return { sql: '1', params: [] };
  if (frags.length === 1) return frags[0];
  return { sql: frags.map((f) => paren(f.sql)).join(' AND '), params: frags.flatMap((f) => f.params) };
}
