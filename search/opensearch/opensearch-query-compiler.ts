/**
 * Compiles the query AST (search/query-ast.ts) to OpenSearch query DSL, with
 * the matching semantics of search/MATCHING.md, over the fields of
 * opensearch-mappings.ts. Pure: no client, no I/O, so it is unit-testable.
 *
 * Every word the AST holds is already folded by the parser; here it only goes
 * through `queryTokens()` (the same split into index tokens the documents got
 * from `analyzed()`), and every clause is a `term`, `prefix` or span query on
 * those tokens, or a `match_phrase` whose query string is the tokens joined by
 * single spaces (the fields' whitespace analyzer splits it back exactly), so
 * no engine-side folding or stemming ever applies.
 *
 * Known limit: a CJK word ending in a wildcard whose last token is not CJK
 * (`契約ab*`) becomes a `span_multi` prefix, which OpenSearch refuses when the
 * prefix matches more than 1,024 distinct words (too_many_clauses, surfaced as
 * a ValidationError "query too broad"); SQLite answers it. A plain `ab*` is a
 * `prefix` query and has no such limit.
 */
import type { AddressField, QueryNode, TextField, WordField } from '../query-ast.js';
import { isAddressField } from '../query-ast.js';
import { queryTokens } from '../index-analysis.js';
import type { Scope } from '../../src/ports/message-index.js';
import { ADDRESS_DOMAIN_FIELD, ADDRESS_EXACT_FIELD, ADDRESS_WORD_FIELD, TEXT_FIELD, cut } from './opensearch-mappings.js';

/** A query DSL clause (plain JSON). */
export type OsQuery = Record<string, unknown>;

export const MATCH_ALL: OsQuery = { match_all: {} };
export const MATCH_NONE: OsQuery = { match_none: {} };

/** Index fields searched for a word field; `any` is several, and a phrase must match within one of them. */
export function wordFields(field: WordField): string[] {
  if (isAddressField(field)) return [ADDRESS_WORD_FIELD[field]];
  const text: Record<TextField, string[]> = {
    any: [TEXT_FIELD.subject, TEXT_FIELD.body, TEXT_FIELD.attachment, TEXT_FIELD.attachmentText],
    subject: [TEXT_FIELD.subject],
    body: [TEXT_FIELD.body],
    attachment: [TEXT_FIELD.attachment],
  };
  return text[field];
}

/** One clause, or a `bool.should` of several (one field each). */
function anyOf(clauses: OsQuery[]): OsQuery {
  if (clauses.length === 0) return MATCH_NONE;
  if (clauses.length === 1) return clauses[0];
  return { bool: { should: clauses, minimum_should_match: 1 } };
}

/** Same cut as the index applies to over-long tokens and keyword values (see MAX_TOKEN_CHARS). */
const cutToken = (t: string): string => cut(t);

function spanTerm(field: string, token: string): OsQuery {
  return { span_term: { [field]: cutToken(token) } };
}

function spanPrefix(field: string, token: string): OsQuery {
  return { span_multi: { match: { prefix: { [field]: { value: cutToken(token) } } } } };
}

/** An exact, in-order sequence of tokens in one field (an exact phrase), optionally with the last token as a prefix. */
function exactSequence(field: string, tokens: string[], lastIsPrefix: boolean): OsQuery {
  if (tokens.length === 1) {
    return lastIsPrefix ? { prefix: { [field]: { value: cutToken(tokens[0]) } } } : { term: { [field]: { value: cutToken(tokens[0]) } } };
  }
  if (!lastIsPrefix) {
    // match_phrase on a whitespace-analysed field: the query string is split on the spaces we put in,
    // exactly into `tokens` (they hold no spaces), and PhraseQuery is much cheaper than spans.
    return { match_phrase: { [field]: { query: tokens.map(cutToken).join(' '), slop: 0 } } };
  }
  const clauses = tokens.map((t, i) => (i === tokens.length - 1 ? spanPrefix(field, t) : spanTerm(field, t)));
  return { span_near: { clauses, slop: 0, in_order: true } };
}

/** A span for one proximity operand: one token, or a CJK word as an exact in-order run of its characters. */
function spanOfTokens(field: string, tokens: string[]): OsQuery {
  if (tokens.length === 1) return spanTerm(field, tokens[0]);
  return { span_near: { clauses: tokens.map((t) => spanTerm(field, t)), slop: 0, in_order: true } };
}

function compileTerm(field: WordField, value: string, prefix: boolean): OsQuery {
  const tokens = queryTokens(value);
  if (tokens.length === 0) return MATCH_NONE;
  // Several tokens (CJK, `abc契約`): an exact phrase of them, the last one a prefix for `word*`.
  return anyOf(wordFields(field).map((f) => exactSequence(f, tokens, prefix)));
}

/**
 * Most proximity operands for which unequal-length operands (CJK words next
 * to other words) are compiled exactly, as one ordered span per order of the
 * operands: k! spans (120 for 5). Beyond, see {@link compilePhrase}.
 */
export const MAX_EXACT_PERMUTED_OPERANDS = 5;

function permutations<T>(items: T[]): T[][] {
  if (items.length <= 1) return [items];
  return items.flatMap((x, i) => permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [x, ...rest]));
}

/**
 * A phrase. Slop 0: the exact phrase of all tokens. Slop N > 0: SQLite FTS5
 * `NEAR(p1 … pk, N)` semantics (search/MATCHING.md): every operand occurs, in
 * any order, with at most N tokens between the end of the first and the start
 * of the last; precisely, occurrences with `max(start) - start_i - len_i ≤ N`
 * for every operand i (overlaps allowed). An operand is a word, which is one
 * token, or several for a CJK word (its characters, in order).
 *
 * Lucene's unordered `span_near` allows `max(end) - min(start) - Σ len ≤ slop`.
 * - Repeated operands are merged first: FTS5 lets both use one occurrence, so
 *   a repeat adds no constraint there (and `k` must count distinct operands).
 * - k = 2, any lengths: the two measures are equal, so `slop = N`.
 * - All operands of one length l (every plain word: l = 1): the first and
 *   last operand by start are also first and last by end, so the measures
 *   differ by `(k - 2)·l`: `slop = N - (k - 2)·l`, i.e. `N - k + 2` for words.
 *   A negative slop cannot be met (distinct operands of one length never share
 *   a start): match nothing.
 * - Otherwise (k ≥ 3, a CJK word among words of other lengths): one ordered
 *   `span_near` per order of the operands, each with `slop = N - Σ len` of its
 *   middle operands (the gaps an ordered span counts are exactly FTS5's tokens
 *   between, minus the middle operands). Exact for occurrences that do not
 *   overlap; FTS5 also accepts two distinct operands sharing tokens (`契約`
 *   and `約書` in `契約書`), which ordered spans cannot see. Above
 *   MAX_EXACT_PERMUTED_OPERANDS operands the permutations would explode, and
 *   one unordered span with the loosest slop (the two longest operands taken
 *   as first and last) is used: it may match a few more documents than FTS5,
 *   never fewer.
 */
function compilePhrase(field: WordField, terms: string[], slop: number): OsQuery {
  const operands = terms.map((t) => queryTokens(t)).filter((toks) => toks.length > 0);
  if (operands.length === 0) return MATCH_NONE;
  if (slop <= 0) {
    const tokens = operands.flat();
    return anyOf(wordFields(field).map((f) => exactSequence(f, tokens, false)));
  }
  const seen = new Set<string>();
  const distinct = operands.filter((toks) => {
    const key = toks.join(' ');
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  const k = distinct.length;
  if (k === 1) return anyOf(wordFields(field).map((f) => exactSequence(f, distinct[0], false)));
  const lengths = distinct.map((d) => d.length);
  const total = lengths.reduce((a, b) => a + b, 0);
  const unordered = (spanSlop: number): OsQuery =>
    spanSlop < 0
      ? MATCH_NONE
      : anyOf(wordFields(field).map((f) => ({ span_near: { clauses: distinct.map((toks) => spanOfTokens(f, toks)), slop: spanSlop, in_order: false } })));
  if (k === 2) return unordered(slop);
  if (lengths.every((l) => l === lengths[0])) return unordered(slop - (k - 2) * lengths[0]);
  if (k > MAX_EXACT_PERMUTED_OPERANDS) {
    const [l1, l2] = [...lengths].sort((a, b) => b - a);
    return unordered(slop - (total - l1 - l2));
  }
  const ordered: OsQuery[] = [];
  for (const f of wordFields(field)) {
    for (const order of permutations(distinct)) {
      const spanSlop = slop - (total - order[0].length - order[k - 1].length);
      if (spanSlop < 0) continue;
      ordered.push({ span_near: { clauses: order.map((toks) => spanOfTokens(f, toks)), slop: spanSlop, in_order: true } });
    }
  }
  return anyOf(ordered);
}

function compileAddress(field: AddressField, value: string, prefix: boolean): OsQuery {
  const f = ADDRESS_EXACT_FIELD[field];
  const v = cutToken(value.toLowerCase());
  return prefix ? { prefix: { [f]: { value: v } } } : { term: { [f]: { value: v } } };
}

/**
 * AST → query DSL. The result matches exactly the documents the AST
 * describes (scope is applied separately, as a filter: {@link scopeFilter}).
 */
export function compileQuery(node: QueryNode): OsQuery {
  switch (node.type) {
    case 'all':
      return MATCH_ALL;
    case 'and':
      return { bool: { must: node.children.map(compileQuery) } };
    case 'or':
      return { bool: { should: node.children.map(compileQuery), minimum_should_match: 1 } };
    case 'not':
      // A bool with only must_not matches everything else, also when nested inside an `or`.
      return { bool: { must: [MATCH_ALL], must_not: [compileQuery(node.child)] } };
    case 'term':
      return compileTerm(node.field, node.value, node.prefix);
    case 'phrase':
      return compilePhrase(node.field, node.terms, node.slop);
    case 'address':
      return compileAddress(node.field, node.value, node.prefix);
    case 'domain':
      return { term: { [ADDRESS_DOMAIN_FIELD[node.field]]: { value: cutToken(node.value.toLowerCase().replace(/\.+$/, '')) } } };
    case 'hasAttachment':
      return { term: { hasAttachments: { value: true } } };
    case 'messageId':
      return { term: { messageId: { value: cutToken(node.value) } } };
    case 'dateRange': {
      const range: Record<string, number> = {};
      if (node.gte !== undefined) range.gte = node.gte;
      if (node.lt !== undefined) range.lt = node.lt;
      return { range: { date: range } };
    }
    case 'sizeRange': {
      // Sizes are whole bytes; a fractional bound (size:>=0.1KB) compares like SQL does on an integer column.
      const range: Record<string, number> = {};
      if (node.gte !== undefined) range.gte = Math.ceil(node.gte);
      if (node.lte !== undefined) range.lte = Math.floor(node.lte);
      if (range.gte !== undefined && range.lte !== undefined && range.gte > range.lte) return MATCH_NONE;
      return { range: { size: range } };
    }
  }
}

/**
 * The scope as a filter (port `Scope`): any participant address in
 * `addresses`, or any participant domain (with parents) in `domains`.
 * `undefined` when unrestricted; match-nothing for an empty scope.
 */
export function scopeFilter(scope: Scope | null | undefined): OsQuery | undefined {
  if (scope === null || scope === undefined) return undefined;
  // Normalised like the SQLite adapter: trimmed, lower-cased, `@` and trailing dots dropped from domains, empties ignored.
  const addresses = [...new Set(scope.addresses.map((a) => a.trim().toLowerCase()).filter((a) => a !== ''))].map(cutToken);
  const domains = [...new Set(scope.domains.map((d) => d.trim().toLowerCase().replace(/^@/, '').replace(/\.+$/, '')).filter((d) => d !== ''))].map(cutToken);
  const should: OsQuery[] = [];
  if (addresses.length) should.push({ terms: { [ADDRESS_EXACT_FIELD.participant]: addresses } });
  if (domains.length) should.push({ terms: { [ADDRESS_DOMAIN_FIELD.participant]: domains } });
  if (should.length === 0) return MATCH_NONE;
  return { bool: { should, minimum_should_match: 1 } };
}

/** The query plus the scope filter: what every read (search, get, thread) runs. */
export function withScope(query: OsQuery, scope: Scope | null | undefined): OsQuery {
  const filter = scopeFilter(scope);
  if (!filter) return query;
  return { bool: { must: [query], filter: [filter] } };
}
