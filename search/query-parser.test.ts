import { describe, expect, it } from 'vitest';
import { QuerySyntaxError } from '../src/errors.js';
import type { AddressField, QueryNode, WordField } from './query-ast.js';
import { MAX_CLAUSES, MAX_DEPTH, MAX_QUERY_LENGTH, describeQuery, parseQuery } from './query-parser.js';
import { foldText, hasCjk, tokenizeText } from './text-fold.js';

// ---------------------------------------------------------------- builders

const term = (value: string, field: WordField = 'any', prefix = false): QueryNode => ({ type: 'term', field, value, prefix });
const pre = (value: string, field: WordField = 'any'): QueryNode => term(value, field, true);
const phrase = (terms: string[], field: WordField = 'any', slop = 0): QueryNode => ({ type: 'phrase', field, terms, slop });
const addr = (field: AddressField, value: string, prefix = false): QueryNode => ({ type: 'address', field, value, prefix });
const dom = (value: string, field: AddressField = 'participant'): QueryNode => ({ type: 'domain', field, value });
const and = (...children: QueryNode[]): QueryNode => ({ type: 'and', children });
const or = (...children: QueryNode[]): QueryNode => ({ type: 'or', children });
const not = (child: QueryNode): QueryNode => ({ type: 'not', child });
const ms = (iso: string): number => {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) throw new Error(`bad test date ${iso}`);
  return t;
};
const dates = (gte?: string, lt?: string): QueryNode => ({
  type: 'dateRange',
  ...(gte === undefined ? {} : { gte: ms(gte) }),
  ...(lt === undefined ? {} : { lt: ms(lt) }),
});
const sizes = (gte?: number, lte?: number): QueryNode => ({
  type: 'sizeRange',
  ...(gte === undefined ? {} : { gte }),
  ...(lte === undefined ? {} : { lte }),
});

/** Parses q and checks the error's reason (substring) and position. */
function expectError(q: string, reason: string, position: number): void {
  let caught: unknown;
  try {
    parseQuery(q);
  } catch (e) {
    caught = e;
  }
  expect(caught, `expected ${JSON.stringify(q)} to fail`).toBeInstanceOf(QuerySyntaxError);
  const err = caught as QuerySyntaxError;
  expect(err.details?.reason).toContain(reason);
  expect(err.position, `position for ${JSON.stringify(q)} (${err.message})`).toBe(position);
  expect(err.code).toBe('query_syntax');
  expect(err.status).toBe(400);
}

// ---------------------------------------------------------------- text folding

describe('foldText / tokenizeText', () => {
  it('folds case and diacritics', () => {
    expect(foldText('Müller')).toBe('muller');
    expect(foldText('CAFÉ crème Ñandú')).toBe('cafe creme nandu');
    expect(foldText('İstanbul')).toBe('istanbul');
    expect(foldText('Ελληνικά')).toBe('ελληνικα');
  });

  it('folds compatibility forms and letters without a decomposition', () => {
    expect(foldText('ＡＢＣ ﬁle ①')).toBe('abc file 1');
    expect(foldText('Straße Søren Łódź Æsir')).toBe('strasse soren lodz aesir');
    // Final sigma would otherwise fold differently alone and inside a sentence.
    expect(foldText('ΟΔΟΣ')).toBe(foldText('οδοσ'));
  });

  it('keeps CJK and Hangul intact, including voiced kana', () => {
    expect(foldText('東京タワー ガス 한국어 契約書')).toBe('東京タワー ガス 한국어 契約書');
    // Half-width katakana becomes the full-width composed form.
    expect(foldText('ｶﾞｽ')).toBe('ガス');
    expect(hasCjk('契約')).toBe(true);
    expect(hasCjk('한국어')).toBe(true);
    expect(hasCjk('muller')).toBe(false);
  });

  it('is idempotent on every code point', () => {
    for (let c = 0; c < 0x30000; c++) {
      if (c >= 0xd800 && c < 0xe000) continue;
      const once = foldText(String.fromCodePoint(c));
      if (foldText(once) !== once) throw new Error(`foldText not idempotent at U+${c.toString(16)}`);
    }
  });

  it('splits on everything but letters, digits and marks', () => {
    expect(tokenizeText("Alice.Smith@Example.COM don't e-mail foo_bar 3.14")).toEqual([
      'alice', 'smith', 'example', 'com', 'don', 't', 'e', 'mail', 'foo', 'bar', '3', '14',
    ]);
    expect(tokenizeText('東京、大阪。')).toEqual(['東京', '大阪']);
    expect(tokenizeText('!!! 😀')).toEqual([]);
  });
});

// ---------------------------------------------------------------- free text and booleans

describe('free text and boolean structure', () => {
  it('parses a single word, folded', () => {
    expect(parseQuery('Contract')).toEqual(term('contract'));
    expect(parseQuery('  Müller  ')).toEqual(term('muller'));
  });

  it('parses a quoted phrase', () => {
    expect(parseQuery('"Budget Approval"')).toEqual(phrase(['budget', 'approval']));
    expect(parseQuery('"budget, approval!"')).toEqual(phrase(['budget', 'approval']));
  });

  it('reads \\" as a quote and \\\\ as a backslash inside quotes', () => {
    expect(parseQuery('subject:"say \\"hi\\" now"')).toEqual(phrase(['say', 'hi', 'now'], 'subject'));
    expect(parseQuery('messageid:"<a\\"b@x>"')).toEqual({ type: 'messageId', value: 'a"b@x' });
    expect(parseQuery('"ends \\\\" next')).toEqual(and(term('ends'), term('next')));
    expect(parseQuery('"C:\\temp"')).toEqual(phrase(['c', 'temp']));
    // Read as before escapes existed when escapes would leave it unterminated (saved hold and policy queries).
    expect(parseQuery('"abc\\"')).toEqual(term('abc'));
    expect(parseQuery('from:"x\\" OR to:"y\\"')).toEqual(or(term('x', 'from'), term('y', 'to')));
    expect(() => parseQuery('"abc')).toThrow(/unterminated quote/);
  });

  it('treats a one-word phrase as the word', () => {
    expect(parseQuery('"Budget"')).toEqual(term('budget'));
    expect(parseQuery('"Budget"~5')).toEqual(term('budget'));
  });

  it('turns a word with punctuation inside into a phrase of its parts', () => {
    expect(parseQuery('e-mail')).toEqual(phrase(['e', 'mail']));
    expect(parseQuery('alice@example.com')).toEqual(phrase(['alice', 'example', 'com']));
    expect(parseQuery('10:30')).toEqual(phrase(['10', '30']));
  });

  it('uses implicit AND between terms', () => {
    expect(parseQuery('a b c')).toEqual(and(term('a'), term('b'), term('c')));
    expect(parseQuery('a AND b')).toEqual(and(term('a'), term('b')));
    expect(parseQuery('a AND b c')).toEqual(and(term('a'), term('b'), term('c')));
  });

  it('parses OR', () => {
    expect(parseQuery('a OR b OR c')).toEqual(or(term('a'), term('b'), term('c')));
  });

  it('binds AND (explicit or implicit) tighter than OR', () => {
    expect(parseQuery('a b OR c')).toEqual(or(and(term('a'), term('b')), term('c')));
    expect(parseQuery('a OR b c')).toEqual(or(term('a'), and(term('b'), term('c'))));
    expect(parseQuery('a OR b AND c OR d')).toEqual(or(term('a'), and(term('b'), term('c')), term('d')));
  });

  it('binds NOT tighter than AND', () => {
    expect(parseQuery('NOT a b')).toEqual(and(not(term('a')), term('b')));
    expect(parseQuery('a NOT b')).toEqual(and(term('a'), not(term('b'))));
    expect(parseQuery('a AND NOT b OR c')).toEqual(or(and(term('a'), not(term('b'))), term('c')));
  });

  it('treats -x as NOT x', () => {
    expect(parseQuery('a -b')).toEqual(and(term('a'), not(term('b'))));
    expect(parseQuery('-"a b"')).toEqual(not(phrase(['a', 'b'])));
    expect(parseQuery('-(a OR b)')).toEqual(not(or(term('a'), term('b'))));
    expect(parseQuery('-from:alice@example.com')).toEqual(not(addr('from', 'alice@example.com')));
  });

  it('allows a query of exclusions only', () => {
    expect(parseQuery('NOT a')).toEqual(not(term('a')));
    expect(parseQuery('-a -b')).toEqual(and(not(term('a')), not(term('b'))));
  });

  it('cancels double negation', () => {
    expect(parseQuery('NOT NOT a')).toEqual(term('a'));
    expect(parseQuery('--a')).toEqual(term('a'));
    expect(parseQuery('NOT -a')).toEqual(term('a'));
    expect(parseQuery('NOT NOT NOT a')).toEqual(not(term('a')));
  });

  it('parses nested parentheses and flattens same-operator groups', () => {
    expect(parseQuery('(a OR b) c')).toEqual(and(or(term('a'), term('b')), term('c')));
    expect(parseQuery('((a))')).toEqual(term('a'));
    expect(parseQuery('(a b) (c d)')).toEqual(and(term('a'), term('b'), term('c'), term('d')));
    expect(parseQuery('(a OR (b OR c)) OR d')).toEqual(or(term('a'), term('b'), term('c'), term('d')));
    expect(parseQuery('a (b OR (c -(d OR e)))')).toEqual(
      and(term('a'), or(term('b'), and(term('c'), not(or(term('d'), term('e')))))),
    );
    expect(parseQuery('(a)b')).toEqual(and(term('a'), term('b')));
    expect(parseQuery('a AND(b)')).toEqual(and(term('a'), term('b')));
  });

  it('treats lower-case and/or/not and words containing keywords as plain words', () => {
    expect(parseQuery('cats and dogs')).toEqual(and(term('cats'), term('and'), term('dogs')));
    expect(parseQuery('a or b')).toEqual(and(term('a'), term('or'), term('b')));
    expect(parseQuery('not a')).toEqual(and(term('not'), term('a')));
    expect(parseQuery('ANDROID ORACLE NOTE')).toEqual(and(term('android'), term('oracle'), term('note')));
    expect(parseQuery('"AND"')).toEqual(term('and'));
    expect(parseQuery('subject:AND')).toEqual(term('and', 'subject'));
  });

  it('keeps CJK words intact and folds diacritics in every text value', () => {
    expect(parseQuery('契約書 東京タワー')).toEqual(and(term('契約書'), term('東京タワー')));
    expect(parseQuery('"東京 大阪"')).toEqual(phrase(['東京', '大阪']));
    expect(parseQuery('subject:Größe')).toEqual(term('grosse', 'subject'));
    expect(parseQuery('契約*')).toEqual(pre('契約'));
  });

  it('parses proximity', () => {
    expect(parseQuery('"budget approval"~5')).toEqual(phrase(['budget', 'approval'], 'any', 5));
    expect(parseQuery('"budget approval"~0')).toEqual(phrase(['budget', 'approval']));
    expect(parseQuery('"a b c"~100')).toEqual(phrase(['a', 'b', 'c'], 'any', 100));
    expect(parseQuery('"a b"~2 c')).toEqual(and(phrase(['a', 'b'], 'any', 2), term('c')));
    expect(parseQuery('("a b"~2)')).toEqual(phrase(['a', 'b'], 'any', 2));
  });

  it('parses prefix wildcards', () => {
    expect(parseQuery('contract*')).toEqual(pre('contract'));
    expect(parseQuery('Ab*')).toEqual(pre('ab'));
    expect(parseQuery('Über*')).toEqual(pre('uber'));
    expect(parseQuery('contract* has:attachment')).toEqual(and(pre('contract'), { type: 'hasAttachment' }));
  });
});

// ---------------------------------------------------------------- fields

describe('text fields', () => {
  it.each(['subject', 'body', 'attachment'] as const)('%s: word, phrase, proximity, wildcard, group', (f) => {
    expect(parseQuery(`${f}:Quarterly`)).toEqual(term('quarterly', f));
    expect(parseQuery(`${f}:"Quarterly Results"`)).toEqual(phrase(['quarterly', 'results'], f));
    expect(parseQuery(`${f}:"quarterly results"~3`)).toEqual(phrase(['quarterly', 'results'], f, 3));
    expect(parseQuery(`${f}:contract*`)).toEqual(pre('contract', f));
    expect(parseQuery(`${f}:(a OR "b c")`)).toEqual(or(term('a', f), phrase(['b', 'c'], f)));
  });

  it('reads field names case-insensitively', () => {
    expect(parseQuery('Subject:x')).toEqual(term('x', 'subject'));
    expect(parseQuery('FROM:Alice@Example.com')).toEqual(addr('from', 'alice@example.com'));
  });

  it('takes the rest of a bare value literally', () => {
    expect(parseQuery('subject:re:meeting')).toEqual(phrase(['re', 'meeting'], 'subject'));
    expect(parseQuery('attachment:invoice_2024.pdf')).toEqual(phrase(['invoice', '2024', 'pdf'], 'attachment'));
    expect(parseQuery('subject:NOT')).toEqual(term('not', 'subject'));
  });

  it('applies a field group to every leaf inside it, with operators', () => {
    expect(parseQuery('subject:(a (b OR c) -d)')).toEqual(
      and(term('a', 'subject'), or(term('b', 'subject'), term('c', 'subject')), not(term('d', 'subject'))),
    );
  });

  it('parses the documented examples', () => {
    expect(parseQuery('size:>1MB attachment:invoice*')).toEqual(and(sizes(1048577), pre('invoice', 'attachment')));
    expect(parseQuery('participant:alice@example.com date:2023-01-01..2023-12-31 -from:newsletter@example.com')).toEqual(
      and(
        addr('participant', 'alice@example.com'),
        dates('2023-01-01T00:00:00Z', '2024-01-01T00:00:00Z'),
        not(addr('from', 'newsletter@example.com')),
      ),
    );
  });
});

describe('address fields', () => {
  it.each(['from', 'to', 'cc', 'bcc', 'participant'] as const)('%s: every value form', (f) => {
    expect(parseQuery(`${f}:Alice@Example.COM`)).toEqual(addr(f, 'alice@example.com'));
    expect(parseQuery(`${f}:<alice@example.com>`)).toEqual(addr(f, 'alice@example.com'));
    expect(parseQuery(`${f}:"alice@example.com"`)).toEqual(addr(f, 'alice@example.com'));
    expect(parseQuery(`${f}:alice@ex*`)).toEqual(addr(f, 'alice@ex', true));
    expect(parseQuery(`${f}:Alice`)).toEqual(term('alice', f));
    expect(parseQuery(`${f}:ali*`)).toEqual(pre('ali', f));
    expect(parseQuery(`${f}:"Alice Smith"`)).toEqual(phrase(['alice', 'smith'], f));
    expect(parseQuery(`${f}:"Alice Smith"~1`)).toEqual(phrase(['alice', 'smith'], f, 1));
    expect(parseQuery(`${f}:alice.smith`)).toEqual(phrase(['alice', 'smith'], f));
    expect(parseQuery(`${f}:José`)).toEqual(term('jose', f));
    expect(parseQuery(`${f}:@Example.com`)).toEqual(dom('example.com', f));
  });

  it('takes * literally inside a quoted address', () => {
    expect(parseQuery('from:"a*b@example.com"')).toEqual(addr('from', 'a*b@example.com'));
  });

  it('parses address groups', () => {
    expect(parseQuery('from:(alice OR bob)')).toEqual(or(term('alice', 'from'), term('bob', 'from')));
    expect(parseQuery('to:(alice@x.com OR bob@y.com) -cc:carol@z.com')).toEqual(
      and(or(addr('to', 'alice@x.com'), addr('to', 'bob@y.com')), not(addr('cc', 'carol@z.com'))),
    );
  });

  it('parses domain:', () => {
    expect(parseQuery('domain:Example.COM')).toEqual(dom('example.com'));
    expect(parseQuery('domain:@example.com')).toEqual(dom('example.com'));
    expect(parseQuery('domain:example.com.')).toEqual(dom('example.com'));
    expect(parseQuery('domain:mail.example.co.uk')).toEqual(dom('mail.example.co.uk'));
    expect(parseQuery('domain:bücher.de')).toEqual(dom('bücher.de'));
    expect(parseQuery('domain:(a.com OR b.com)')).toEqual(or(dom('a.com'), dom('b.com')));
  });
});

describe('has: and messageid:', () => {
  it('parses has:attachment', () => {
    expect(parseQuery('has:attachment')).toEqual({ type: 'hasAttachment' });
    expect(parseQuery('has:Attachment')).toEqual({ type: 'hasAttachment' });
    expect(parseQuery('-has:attachment')).toEqual(not({ type: 'hasAttachment' }));
  });

  it('parses messageid: exactly, brackets stripped, case kept', () => {
    expect(parseQuery('messageid:<ABC.123$x@Mail.Example.com>')).toEqual({ type: 'messageId', value: 'ABC.123$x@Mail.Example.com' });
    expect(parseQuery('messageid:abc@example.com')).toEqual({ type: 'messageId', value: 'abc@example.com' });
    expect(parseQuery('messageid:"<abc@example.com>"')).toEqual({ type: 'messageId', value: 'abc@example.com' });
    // `*` is a legal Message-ID character, not a wildcard here.
    expect(parseQuery('messageid:a*b@x')).toEqual({ type: 'messageId', value: 'a*b@x' });
    expect(parseQuery('MessageID:<a@b>')).toEqual({ type: 'messageId', value: 'a@b' });
  });
});

// ---------------------------------------------------------------- dates

describe('dates', () => {
  it('a day covers 00:00:00.000Z to the next midnight, exclusive', () => {
    expect(parseQuery('date:2024-01-05')).toEqual({ type: 'dateRange', gte: 1704412800000, lt: 1704499200000 });
  });

  it('handles the leap day', () => {
    expect(parseQuery('date:2024-02-29')).toEqual({ type: 'dateRange', gte: 1709164800000, lt: 1709251200000 });
    expect(parseQuery('date:2024-02')).toEqual(dates('2024-02-01T00:00:00Z', '2024-03-01T00:00:00Z'));
    expect(parseQuery('date:2024-02-28..2024-02-29')).toEqual(dates('2024-02-28T00:00:00Z', '2024-03-01T00:00:00Z'));
    expect(parseQuery('date:2000-02-29')).toEqual(dates('2000-02-29T00:00:00Z', '2000-03-01T00:00:00Z'));
  });

  it('handles a year boundary', () => {
    expect(parseQuery('date:2023-12-31')).toEqual({ type: 'dateRange', gte: 1703980800000, lt: 1704067200000 });
    expect(parseQuery('date:2023-12-31..2024-01-01')).toEqual(dates('2023-12-31T00:00:00Z', '2024-01-02T00:00:00Z'));
    expect(parseQuery('date:2023-12')).toEqual(dates('2023-12-01T00:00:00Z', '2024-01-01T00:00:00Z'));
  });

  it('a month and a year cover the whole period', () => {
    expect(parseQuery('date:2024-01')).toEqual(dates('2024-01-01T00:00:00Z', '2024-02-01T00:00:00Z'));
    expect(parseQuery('date:2024')).toEqual({ type: 'dateRange', gte: 1704067200000, lt: 1735689600000 });
  });

  it('A..B includes all of B', () => {
    expect(parseQuery('date:2024-01-01..2024-03-31')).toEqual({ type: 'dateRange', gte: 1704067200000, lt: 1711929600000 });
    expect(parseQuery('date:2024-01..2024-03')).toEqual(dates('2024-01-01T00:00:00Z', '2024-04-01T00:00:00Z'));
    expect(parseQuery('date:2023..2024')).toEqual(dates('2023-01-01T00:00:00Z', '2025-01-01T00:00:00Z'));
    expect(parseQuery('date:2024-01-05..2024-01-05')).toEqual(dates('2024-01-05T00:00:00Z', '2024-01-06T00:00:00Z'));
  });

  it('open ranges', () => {
    expect(parseQuery('date:2024-01-01..')).toEqual(dates('2024-01-01T00:00:00Z'));
    expect(parseQuery('date:..2024-03-31')).toEqual(dates(undefined, '2024-04-01T00:00:00Z'));
  });

  it('after:D is on or after D; before:D is strictly before D', () => {
    expect(parseQuery('after:2024-01-05')).toEqual({ type: 'dateRange', gte: 1704412800000 });
    expect(parseQuery('before:2024-01-05')).toEqual({ type: 'dateRange', lt: 1704412800000 });
    expect(parseQuery('after:2024-01')).toEqual(dates('2024-01-01T00:00:00Z'));
    expect(parseQuery('before:2024')).toEqual(dates(undefined, '2024-01-01T00:00:00Z'));
    expect(parseQuery('after:2024-01-01 before:2024-02-01')).toEqual(
      and(dates('2024-01-01T00:00:00Z'), dates(undefined, '2024-02-01T00:00:00Z')),
    );
  });

  it('timestamps are a period of their precision, UTC unless an offset is given', () => {
    expect(parseQuery('date:2024-01-05T10:00:00Z')).toEqual(dates('2024-01-05T10:00:00.000Z', '2024-01-05T10:00:01.000Z'));
    expect(parseQuery('date:2024-01-05T10:00Z')).toEqual(dates('2024-01-05T10:00:00.000Z', '2024-01-05T10:01:00.000Z'));
    expect(parseQuery('date:2024-01-05T10:00:00.250Z')).toEqual(dates('2024-01-05T10:00:00.250Z', '2024-01-05T10:00:00.251Z'));
    expect(parseQuery('date:2024-01-05T10:00:00.5Z')).toEqual(dates('2024-01-05T10:00:00.500Z', '2024-01-05T10:00:00.501Z'));
    expect(parseQuery('date:2024-01-05T10:00:00')).toEqual(dates('2024-01-05T10:00:00.000Z', '2024-01-05T10:00:01.000Z'));
    expect(parseQuery('after:2024-01-05T10:00:00+01:00')).toEqual(dates('2024-01-05T09:00:00Z'));
    expect(parseQuery('before:2024-01-01T00:30:00-0100')).toEqual(dates(undefined, '2024-01-01T01:30:00Z'));
    expect(parseQuery('date:2024-01-05T10:00:00Z..2024-01-05T12:00:00Z')).toEqual(
      dates('2024-01-05T10:00:00Z', '2024-01-05T12:00:01Z'),
    );
    expect(parseQuery('date:2024-01-05..2024-01-05T12:00Z')).toEqual(dates('2024-01-05T00:00:00Z', '2024-01-05T12:01:00Z'));
  });

  it('handles the ends of the calendar', () => {
    // Date.UTC would read year 99 as 1999.
    expect(parseQuery('date:0099')).toEqual(dates('0099-01-01T00:00:00Z', '0100-01-01T00:00:00Z'));
    expect(parseQuery('date:9999-12-31')).toEqual(dates('9999-12-31T00:00:00Z', '+010000-01-01T00:00:00Z'));
  });

  it('accepts dates in a group and in quotes', () => {
    expect(parseQuery('date:(2023 OR 2024-02)')).toEqual(
      or(dates('2023-01-01T00:00:00Z', '2024-01-01T00:00:00Z'), dates('2024-02-01T00:00:00Z', '2024-03-01T00:00:00Z')),
    );
    expect(parseQuery('date:"2024-01-05"')).toEqual(dates('2024-01-05T00:00:00Z', '2024-01-06T00:00:00Z'));
  });
});

// ---------------------------------------------------------------- sizes

describe('sizes', () => {
  it('comparisons, in bytes', () => {
    expect(parseQuery('size:>1000')).toEqual(sizes(1001));
    expect(parseQuery('size:>=1000')).toEqual(sizes(1000));
    expect(parseQuery('size:<1000')).toEqual(sizes(undefined, 999));
    expect(parseQuery('size:<=1000')).toEqual(sizes(undefined, 1000));
    expect(parseQuery('size:1000')).toEqual(sizes(1000, 1000));
  });

  it('binary units, case-insensitive', () => {
    expect(parseQuery('size:>1MB')).toEqual(sizes(1_048_577));
    expect(parseQuery('size:<10KB')).toEqual(sizes(undefined, 10_239));
    expect(parseQuery('size:>=2GB')).toEqual(sizes(2_147_483_648));
    expect(parseQuery('size:<=512B')).toEqual(sizes(undefined, 512));
    expect(parseQuery('size:>=1kb')).toEqual(sizes(1024));
    expect(parseQuery('size:>=1Mb')).toEqual(sizes(1_048_576));
  });

  it('fractions round to whole bytes in the direction of the comparison', () => {
    expect(parseQuery('size:>1.5KB')).toEqual(sizes(1537));
    expect(parseQuery('size:>=0.1KB')).toEqual(sizes(103));
    expect(parseQuery('size:<0.1KB')).toEqual(sizes(undefined, 102));
    expect(parseQuery('size:<=0.1KB')).toEqual(sizes(undefined, 102));
    expect(parseQuery('size:1.5KB')).toEqual(sizes(1536, 1536));
  });

  it('ranges are inclusive at both ends, and may be open', () => {
    expect(parseQuery('size:1000..2000')).toEqual(sizes(1000, 2000));
    expect(parseQuery('size:1KB..2KB')).toEqual(sizes(1024, 2048));
    expect(parseQuery('size:1KB..')).toEqual(sizes(1024));
    expect(parseQuery('size:..2KB')).toEqual(sizes(undefined, 2048));
    expect(parseQuery('size:5..5')).toEqual(sizes(5, 5));
  });
});

// ---------------------------------------------------------------- empty query

describe('empty query', () => {
  it('is an error by default', () => {
    expectError('', 'empty query', 0);
    expectError('   \t\n', 'empty query', 0);
  });

  it('is match-all with allowEmpty', () => {
    expect(parseQuery('', { allowEmpty: true })).toEqual({ type: 'all' });
    expect(parseQuery('  \u3000 ', { allowEmpty: true })).toEqual({ type: 'all' });
    expect(parseQuery('a', { allowEmpty: true })).toEqual(term('a'));
    expect(describeQuery({ type: 'all' })).toBe('');
  });
});

// ---------------------------------------------------------------- errors

describe('errors carry the reason and the 0-based position', () => {
  it('unbalanced parentheses', () => {
    expectError('(a', "'(' is never closed", 0);
    expectError('a (b OR (c)', "'(' is never closed", 2);
    expectError('a)', "')' has no matching '('", 1);
    expectError(')a', "')' has no matching '('", 0);
    expectError('(a)) b', "')' has no matching '('", 3);
    expectError('from:(alice', "'(' is never closed", 5);
    expectError('a ()', 'empty parentheses', 2);
    expectError('subject:()', 'empty parentheses', 8);
  });

  it('unterminated quote', () => {
    expectError('"budget approval', 'unterminated quote', 0);
    expectError('a subject:"x', 'unterminated quote', 10);
    expectError('a "b" "c', 'unterminated quote', 6);
  });

  it('unknown field', () => {
    expectError('foo:bar', "unknown field 'foo:'", 0);
    expectError('a re:meeting', "unknown field 're:'", 2);
    expectError('http://example.com', "unknown field 'http:'", 0);
    expectError('-xyz:1', "unknown field 'xyz:'", 1);
  });

  it('empty field value', () => {
    expectError('from:', "empty field value for 'from:'", 5);
    expectError('subject: x', "empty field value for 'subject:'", 8);
    expectError('(to:)', "empty field value for 'to:'", 4);
    expectError('body:""', "empty field value for 'body:'", 5);
    expectError('from:@', 'empty field value', 6);
    expectError('messageid:<>', "empty field value for 'messageid:'", 10);
  });

  it('bad date', () => {
    expectError('date:2024-13', "bad date '2024-13': month", 5);
    expectError('date:2023-02-29', "bad date '2023-02-29': day must be 01–28", 5);
    expectError('date:2024-02-30', 'day must be 01–29', 5);
    expectError('a date:2024-1-5', "bad date '2024-1-5'", 7);
    expectError('date:yesterday', "bad date 'yesterday'", 5);
    expectError('date:2024-01-05T24:00Z', 'hour must be 00–23', 5);
    expectError('date:2024-01-05T10:60Z', 'minute must be 00–59', 5);
    expectError('date:2024-01-05T10:00:60Z', 'second must be 00–59', 5);
    expectError('date:2024-01-05T10:00+25:00', 'time zone offset', 5);
    expectError('date:2024-01-01..2024-02-31', "bad date '2024-02-31'", 17);
    expectError('date:..', 'a range needs at least one end', 5);
    expectError('before:2024-01..2024-02', 'before: takes one date', 7);
    expectError('after:2024*', "bad date '2024*'", 6);
    expectError('date:"2024-01-01 "', "bad date '2024-01-01 '", 6);
  });

  it('inverted date range', () => {
    expectError('date:2024-03-31..2024-01-01', 'inverted date range', 5);
    expectError('x date:2024-01-02..2024-01-01', 'inverted date range', 7);
    expectError('date:2025..2024', 'inverted date range', 5);
  });

  it('bad size', () => {
    expectError('size:big', "bad size 'big'", 5);
    expectError('size:>', "bad size '>'", 5);
    expectError('size:>1TB', "bad size '>1TB'", 5);
    expectError('size:-5', "bad size '-5'", 5);
    expectError('size:1.1KB', 'not a whole number of bytes', 5);
    expectError('size:<0', 'smaller than 0 bytes', 5);
    expectError('size:2000..1000', 'inverted size range', 5);
    expectError('size:..', 'a range needs at least one end', 5);
    expectError('size:>99999999999999999GB', 'too large', 5);
    expectError('size:1KB..x', "bad size '1KB..x'", 5);
  });

  it('dangling operators', () => {
    expectError('a AND', "dangling operator 'AND'", 2);
    expectError('a OR', "dangling operator 'OR'", 2);
    expectError('OR b', "dangling operator 'OR'", 0);
    expectError('AND b', "dangling operator 'AND'", 0);
    expectError('NOT', "dangling operator 'NOT'", 0);
    expectError('a NOT', "dangling operator 'NOT'", 2);
    expectError('a AND OR b', "dangling operator 'AND'", 2);
    expectError('(a AND) b', "dangling operator 'AND'", 3);
    expectError('(OR a)', "dangling operator 'OR'", 1);
    expectError('a (NOT)', "dangling operator 'NOT'", 3);
    expectError('a - b', "dangling operator '-'", 2);
    expectError('a -', "dangling operator '-'", 2);
    expectError('(a -)', "dangling operator '-'", 3);
    expectError('a NOT OR b', "dangling operator 'NOT'", 2);
  });

  it('leading wildcard', () => {
    expectError('*foo', 'leading wildcard', 0);
    expectError('a subject:*foo', 'leading wildcard', 10);
    expectError('from:*@example.com', 'leading wildcard', 5);
    expectError('*', 'leading wildcard', 0);
  });

  it('wildcard in the wrong place', () => {
    expectError('con*tract', "'*' may only appear at the end of a word", 3);
    expectError('foo**', "'*' may only appear at the end of a word", 3);
    expectError('e-ma*', "'*' can only end a single word", 4);
    expectError('from:al*ce@x.com', "'*' may only appear at the end of an address", 7);
    expectError('domain:exa*', 'wildcards are not supported in a domain', 10);
  });

  it('wildcard prefix too short', () => {
    expectError('c*', 'wildcard prefix too short', 0);
    expectError('a body:é*', 'wildcard prefix too short', 7);
    expectError('from:a*', 'wildcard prefix too short', 5);
    expectError('契*', 'wildcard prefix too short', 0);
  });

  it('proximity on a non-phrase', () => {
    expectError('budget~5', 'applies only to a quoted phrase', 6);
    expectError('a subject:budget~', 'applies only to a quoted phrase', 16);
    expectError('from:"a@b.com"~2', 'applies only to a phrase of words', 14);
    expectError('date:"2024"~2', 'applies only to a phrase of words', 11);
    expectError('messageid:"a@b"~1', 'applies only to a phrase of words', 15);
  });

  it('bad proximity number', () => {
    expectError('"a b"~', 'bad proximity number', 6);
    expectError('"a b"~x', 'bad proximity number', 6);
    expectError('"a b"~5x', 'bad proximity number', 6);
    expectError('"a b"~-1', 'bad proximity number', 6);
    expectError('"a b"~1.5', 'bad proximity number', 6);
    expectError('"a b"~101', 'more than 100', 6);
    expectError('"a b"~99999999999', 'more than 100', 6);
  });

  it('other bad values', () => {
    expectError('has:pdf', "unknown value for 'has:'", 4);
    expectError('domain:a..b', "bad domain 'a..b'", 7);
    expectError('domain:@a..b', "bad domain 'a..b'", 8);
    expectError('to:"@a b"', "bad domain", 5);
        expectError('messageid:"a b@c"', 'cannot contain spaces', 11);
    expectError('!!!', 'nothing searchable', 0);
    expectError('a ""', 'empty phrase', 2);
    expectError('a "!?"', 'nothing searchable', 2);
    expectError('from:(alice OR to:bob)', "field 'to:' cannot be used inside from:", 15);
  });

  it('query longer than 2,000 characters', () => {
    expect(() => parseQuery('a'.repeat(MAX_QUERY_LENGTH))).not.toThrow();
    expectError('a '.repeat(1001), 'longer than 2,000 characters', 2000);
  });

  it('nesting deeper than 32', () => {
    const ok = '('.repeat(MAX_DEPTH) + 'a' + ')'.repeat(MAX_DEPTH);
    expect(parseQuery(ok)).toEqual(term('a'));
    expectError('('.repeat(MAX_DEPTH + 1) + 'a' + ')'.repeat(MAX_DEPTH + 1), 'nested deeper than 32', MAX_DEPTH);
    // A field group counts as a level.
    expectError('('.repeat(MAX_DEPTH) + 'from:(a)' + ')'.repeat(MAX_DEPTH), 'nested deeper than 32', MAX_DEPTH + 5);
  });

  it('more than 100 clauses', () => {
    const words = (n: number): string => Array.from({ length: n }, (_, i) => `w${i}`).join(' ');
    expect(() => parseQuery(words(MAX_CLAUSES))).not.toThrow();
    const q = words(MAX_CLAUSES + 1);
    expectError(q, 'more than 100 clauses', q.lastIndexOf(' ') + 1);
    // Leaves inside a field group count too.
    const group = `from:(${Array.from({ length: MAX_CLAUSES + 1 }, (_, i) => `u${i}`).join(' OR ')})`;
    expectError(group, 'more than 100 clauses', group.lastIndexOf(' ') + 1);
  });

  it('reports the leftmost problem', () => {
    expectError('a AND ) "x', "dangling operator 'AND'", 2);
    expectError('foo:1 "unterminated', "unknown field 'foo:'", 0);
  });

  it('puts the position in the message too', () => {
    expect(() => parseQuery('a AND')).toThrow("dangling operator 'AND': it needs a term after it at position 2");
  });
});

// ---------------------------------------------------------------- describe and round trip

describe('describeQuery', () => {
  it('renders canonical text', () => {
    const cases: [string, string][] = [
      ['a b OR c', 'a b OR c'],
      ['a (b OR c)', 'a (b OR c)'],
      ['NOT (a b)', '-(a b)'],
      ['-(a OR b)', '-(a OR b)'],
      ['Müller', 'muller'],
      ['"Budget  Approval"~5', '"budget approval"~5'],
      ['from:(Alice OR bob@X.com)', 'from:alice OR from:bob@x.com'],
      ['from:(Alice OR bob@X.com) x', '(from:alice OR from:bob@x.com) x'],
      ['from:@example.com domain:x.org', 'from:@example.com domain:x.org'],
      ['messageid:abc@x', 'messageid:<abc@x>'],
      ['date:2024-01-05', 'date:2024-01-05'],
      ['date:2024-02', 'date:2024-02'],
      ['date:2024', 'date:2024'],
      ['date:2024-01..2024-03', 'date:2024-01-01..2024-03-31'],
      ['date:2024-01-01..', 'after:2024-01-01'],
      ['date:..2024-03-31', 'before:2024-04-01'],
      ['date:2024-01-05T10:00Z', 'date:2024-01-05T10:00:00.000Z..2024-01-05T10:00:59.999Z'],
      ['before:2024-01-05T10:00:00+01:00', 'before:2024-01-05T09:00:00.000Z'],
      ['date:..9999', 'date:..9999-12-31'],
      ['size:>1MB', 'size:>=1048577'],
      ['size:<1KB', 'size:<=1023'],
      ['size:1KB..2KB', 'size:1024..2048'],
      ['size:10', 'size:10'],
      ['has:attachment', 'has:attachment'],
      ['from:"a*b@x.com"', 'from:"a*b@x.com"'],
      ['to:al*', 'to:al*'],
      ['cc:al@x*', 'cc:al@x*'],
    ];
    for (const [q, expected] of cases) expect(describeQuery(parseQuery(q)), q).toBe(expected);
  });

  it('refuses an all node inside another node', () => {
    expect(() => describeQuery(and({ type: 'all' }, term('a')))).toThrow(TypeError);
  });
});

const ROUND_TRIP = [
  'contract',
  'Contract* has:attachment',
  '"budget approval"~5',
  '"Budget Approval"',
  'a b OR c d',
  'a OR b AND c OR d',
  'NOT a b',
  'a -b -"c d" -(e OR f)',
  '(a OR (b (c OR -d))) e',
  '--a',
  'NOT NOT NOT a',
  'participant:alice@example.com date:2023-01-01..2023-12-31 -from:newsletter@example.com',
  'size:>1MB attachment:invoice*',
  'from:(alice OR bob) to:"Carol Jones" cc:carol* bcc:<X@Y.com> participant:x@y*',
  'from:@example.com domain:Example.ORG.',
  'subject:"quarterly results"~3 body:(refund -"gift card") attachment:report.pdf',
  'messageid:<AbC@Mail.Example.com> OR messageid:"<x(y)@z>"',
  'date:2024-02-29 OR date:2024-02 OR date:2024',
  'date:2023-12-31..2024-01-01',
  'date:2024-01-05T10:00:00Z..2024-01-05T12:00Z',
  'date:..9999 after:0000 before:0001',
  'after:2024-01-05T10:00:00.250+05:30 before:2025',
  'date:2024-01-01.. date:..2024-03-31',
  'size:>1.5KB size:<=0.1KB size:1000..2000 size:1KB.. size:..2GB size:7',
  'Müller Straße 東京タワー 契約* ｶﾞｽ',
  'e-mail alice@example.com 10:30',
  'cats and dogs or not',
  'from:"a*b@x.com" -to:"a (b)@c"',
];

/** A small seeded PRNG (mulberry32) so failures reproduce. */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const LEAVES = [
  'alpha', 'Bêta', 'gam*', '"delta epsilon"', '"zeta eta"~3', 'subject:theta', 'body:"iota kappa"',
  'attachment:lambda*', 'from:mu@example.com', 'to:Nu', 'cc:"Xi Omicron"', 'bcc:pi@ex*', 'participant:rho',
  'domain:sigma.org', 'from:@tau.net', 'has:attachment', 'messageid:<upsilon@phi>', 'date:2024-02-29',
  'date:2023-12..2024-01', 'after:2024-06-01', 'before:2024-06-01T12:00Z', 'size:>1MB', 'size:1KB..2KB',
  '東京', 'e-mail', 'from:(chi OR psi)',
];

function randomQuery(next: () => number, depth: number): string {
  const pick = <T>(xs: T[]): T => xs[Math.floor(next() * xs.length)];
  const r = next();
  if (depth > 3 || r < 0.4) return pick(LEAVES);
  const n = 2 + Math.floor(next() * 3);
  const parts = Array.from({ length: n }, () => randomQuery(next, depth + 1));
  if (r < 0.55) return `-${parts[0].startsWith('-') ? `(${parts[0]})` : parts[0]}`;
  if (r < 0.65) return `NOT ${parts[0]}`;
  const op = pick([' ', ' AND ', ' OR ']);
  const body = parts.join(op);
  return next() < 0.5 ? `(${body})` : body;
}

describe('round trip: parse(describe(parse(q))) equals parse(q)', () => {
  it.each(ROUND_TRIP)('%s', (q) => {
    const ast = parseQuery(q);
    const text = describeQuery(ast);
    expect(parseQuery(text), text).toEqual(ast);
    // Canonical text is a fixed point.
    expect(describeQuery(parseQuery(text))).toBe(text);
    // And the AST is plain JSON.
    expect(JSON.parse(JSON.stringify(ast))).toEqual(ast);
  });

  it('holds for 500 random queries', () => {
    const next = rng(20240229);
    let checked = 0;
    for (let i = 0; i < 500; i++) {
      const q = randomQuery(next, 0);
      let ast: QueryNode;
      try {
        ast = parseQuery(q);
      } catch (e) {
        // Random queries may exceed the clause or depth limits; nothing else may fail.
        expect((e as Error).message, q).toMatch(/more than 100 clauses|nested deeper/);
        continue;
      }
      const text = describeQuery(ast);
      expect(parseQuery(text), `${q}\n→ ${text}`).toEqual(ast);
      checked++;
    }
    expect(checked).toBeGreaterThan(400);
  });
});
