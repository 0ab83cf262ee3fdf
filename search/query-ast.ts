/**
 * The investigator query language's abstract syntax tree.
 *
 * The parser (`query-parser.ts`) produces it and two compilers turn it into
 * SQLite FTS5 + SQL and into OpenSearch DSL. Results must be identical on both
 * engines, so every value here is already normalised and means one thing:
 *
 * - words are folded with `foldText` (lower case, no diacritics, NFKC-like);
 * - addresses and domains are lower-cased;
 * - dates are UTC epoch milliseconds, as a half-open range `[gte, lt)`;
 * - sizes are whole bytes, as a closed range `[gte, lte]`;
 * - field names are canonical, aliases and case already resolved.
 *
 * Nodes are plain JSON (no classes, no `undefined` values), so an AST can be
 * logged, stored with a saved search and compared with `toEqual`. Optional
 * properties are absent rather than `undefined`.
 */

/**
 * Where a word or phrase is looked for.
 * - `any`: subject, body and attachment file names (free text).
 * - `subject`: the Subject header.
 * - `body`: the message body text.
 * - `attachment`: attachment file names.
 */
export type TextField = 'any' | 'subject' | 'body' | 'attachment';

/**
 * Addressing fields.
 * - `from`, `to`, `cc`, `bcc`: the header of that name, plus (for `to`, `cc`,
 *   `bcc`) the envelope recipients a journal report lists under that kind.
 * - `participant`: all of the above plus envelope recipients of unknown kind.
 */
export type AddressField = 'from' | 'to' | 'cc' | 'bcc' | 'participant';

/**
 * Fields a `term` or `phrase` can target. For an address field the words are
 * those of each participant's display name and address (`"Alice Smith"
 * <a.smith@example.com>` has the words `alice smith a smith example com`);
 * a phrase matches within one participant, never across two.
 */
export type WordField = TextField | AddressField;

/** Every node of a query. */
export type QueryNode =
  | AndNode
  | OrNode
  | NotNode
  | AllNode
  | TermNode
  | PhraseNode
  | AddressNode
  | DomainNode
  | HasAttachmentNode
  | MessageIdNode
  | DateRangeNode
  | SizeRangeNode;

/** All children match. At least two children; never directly contains another `and`. */
export interface AndNode {
  type: 'and';
  children: QueryNode[];
}

/** At least one child matches. At least two children; never directly contains another `or`. */
export interface OrNode {
  type: 'or';
  children: QueryNode[];
}

/** The child does not match. Never directly contains another `not`. May be the whole query ("everything except"). */
export interface NotNode {
  type: 'not';
  child: QueryNode;
}

/** Every message (within the caller's scope). Only ever the whole query, from `parseQuery('', {allowEmpty: true})`. */
export interface AllNode {
  type: 'all';
}

/**
 * One folded word (letters, digits and combining marks only, see
 * `tokenizeText`). `prefix` is true for `word*`: any word starting with
 * `value` (at least 2 characters). A value containing CJK characters
 * (`hasCjk`) is matched as a substring of the field's text instead.
 */
export interface TermNode {
  type: 'term';
  field: WordField;
  value: string;
  prefix: boolean;
}

/**
 * Two or more folded words in a sequence. `slop` 0 is the exact phrase. With
 * `slop` N the words may be up to N position moves away from the exact phrase
 * (OpenSearch `match_phrase` slop): for word i found at position p_i,
 * `max(p_i - i) - min(p_i - i) <= slop`.
 */
export interface PhraseNode {
  type: 'phrase';
  field: WordField;
  terms: string[];
  slop: number;
}

/**
 * A whole e-mail address, lower-cased, without angle brackets. Always contains
 * `@`. `prefix` false: the participant's address equals `value`. `prefix`
 * true: it starts with `value`.
 */
export interface AddressNode {
  type: 'address';
  field: AddressField;
  value: string;
  prefix: boolean;
}

/**
 * A participant in `field` has an address at domain `value` (lower-case, no
 * `@`, no trailing dot) or at any subdomain of it: `example.com` matches
 * `a@example.com` and `b@mail.example.com`, not `c@badexample.com`.
 * `domain:x` is `field: 'participant'`; `from:@x` is `field: 'from'`.
 */
export interface DomainNode {
  type: 'domain';
  field: AddressField;
  value: string;
}

/** The message has at least one attachment. */
export interface HasAttachmentNode {
  type: 'hasAttachment';
}

/** The Message-ID equals `value` exactly (case-sensitive), angle brackets stripped. */
export interface MessageIdNode {
  type: 'messageId';
  value: string;
}

/**
 * The message date (UTC epoch ms) is in `[gte, lt)`. At least one bound is
 * present, and `gte < lt` when both are.
 */
export interface DateRangeNode {
  type: 'dateRange';
  gte?: number;
  lt?: number;
}

/**
 * The raw message size in bytes is in `[gte, lte]`. At least one bound is
 * present, and `gte <= lte` when both are.
 */
export interface SizeRangeNode {
  type: 'sizeRange';
  gte?: number;
  lte?: number;
}

/** The text fields, in canonical order. */
export const TEXT_FIELDS: readonly TextField[] = ['any', 'subject', 'body', 'attachment'];

/** The address fields, in canonical order. */
export const ADDRESS_FIELDS: readonly AddressField[] = ['from', 'to', 'cc', 'bcc', 'participant'];

/** True for the five address fields. */
export function isAddressField(field: string): field is AddressField {
  return (ADDRESS_FIELDS as readonly string[]).includes(field);
}
