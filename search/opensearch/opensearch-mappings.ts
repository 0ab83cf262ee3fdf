/**
 * The OpenSearch message index, as code: index settings, the mapping, its
 * version, and the function that turns an {@link IndexedMessage} into the
 * document OpenSearch stores. `OpenSearchMessageIndex.init()` creates or
 * updates the live index from these at start and logs what it changed.
 *
 * The matching rules are those of search/MATCHING.md. Text is analysed in
 * OUR code (`analyzed()` from search/index-analysis.ts), identically for
 * SQLite and OpenSearch, so OpenSearch only splits the analysed strings on
 * spaces: a `whitespace` tokenizer with no token filters. Nothing in the
 * engine folds, stems or drops words.
 *
 * Bump {@link MAPPING_VERSION} whenever the mapping, the settings or
 * {@link toIndexDocument} change. A purely additive mapping change (new
 * fields) is applied to the live index in place by `init()` (the new fields
 * stay empty on old documents until `archive reindex`); anything else needs
 * `archive reindex`, which builds a fresh index with the new mapping beside
 * the live one and swaps the alias.
 */
import type { IndexedMessage, Participant } from '../../src/domain/indexed-message.js';
import type { AddressField } from '../query-ast.js';
import { analyzed } from '../index-analysis.js';
import { indexedReceivedAt } from '../ingest-histogram.js';

/**
 * Version of the mapping, settings and document shape below. Stored in the
 * index's `_meta.mappingVersion` and in the index name (`…-messages-v<N>-…`).
 * 2: `receivedAt` (additive: a v1 index gets the field in place; its older
 * documents lack it, and count as `undated` in ingest statistics, until
 * `archive reindex`).
 */
export const MAPPING_VERSION = 2;

/** Name of the custom analyzer used by every analysed field. */
export const WHITESPACE_ANALYZER = 'archive_ws';

/**
 * Longest token, in UTF-16 code units, that the index keeps whole. Longer
 * analysed tokens (a base64 blob in a body is one long letter/digit run) are
 * cut to this length in {@link toIndexDocument}, and keyword values too.
 *
 * Why: Lucene refuses a term over 32,766 UTF-8 bytes and rejects the whole
 * document ("immense term"); 8,000 UTF-16 units are at most 24,000 bytes.
 * Why it changes no result: a query is at most 2,000 characters
 * (MAX_QUERY_LENGTH), so a query word can never equal a token longer than
 * that, and a prefix of at most 2,000 characters matches the cut token iff
 * it matches the whole one. The tokenizer's own limit is set above this so it
 * never splits a token into two positions (which would differ from SQLite).
 */
export const MAX_TOKEN_CHARS = 8000;

/**
 * Positions left between two people of an address word field (`from_w`
 * etc.), which is indexed as one value per person. Exact phrases can never
 * span two people with any gap > 0; proximity (`"a b"~N`, N ≤ MAX_SLOP = 100,
 * span slop ≤ N) cannot either, because the gap exceeds the largest slop.
 */
export const PERSON_POSITION_GAP = 1000;

/** The five address fields in their document field names. */
export const ADDRESS_WORD_FIELD: Record<AddressField, string> = {
  from: 'from_w',
  to: 'to_w',
  cc: 'cc_w',
  bcc: 'bcc_w',
  participant: 'participant_w',
};
export const ADDRESS_EXACT_FIELD: Record<AddressField, string> = {
  from: 'from_a',
  to: 'to_a',
  cc: 'cc_a',
  bcc: 'bcc_a',
  participant: 'participant_a',
};
export const ADDRESS_DOMAIN_FIELD: Record<AddressField, string> = {
  from: 'from_d',
  to: 'to_d',
  cc: 'cc_d',
  bcc: 'bcc_d',
  participant: 'participant_d',
};
/** Exact domains (no parents) of To/Cc/Bcc and envelope recipients: the `domains` facet. */
export const FACET_DOMAIN_FIELD = 'facet_domain';

/** Analysed text fields (whitespace-tokenised, pre-analysed strings). */
export const TEXT_FIELD = {
  subject: 'subject_t',
  body: 'body_t',
  attachment: 'attname_t',
  attachmentText: 'atttext_t',
} as const;

/** The document OpenSearch stores for one message. */
export interface OpenSearchMessageDoc {
  id: string;
  messageId?: string;
  threadId: string;
  /** Epoch ms (UTC). */
  date: number;
  /** Epoch ms (UTC) of the earliest envelope, for ingest statistics; absent when the message has none a Date can hold. */
  receivedAt?: number;
  /** UTC year of `date` (a number, so the facet's tie-break orders years as numbers, as SQLite does). */
  year: number;
  size: number;
  hasAttachments: boolean;
  /** Epoch ms when this document was written; lets a rebuild catch up with writes made while it ran. */
  indexedAt: number;
  subject_t: string;
  body_t: string;
  attname_t: string;
  atttext_t: string;
  from_w: string[];
  to_w: string[];
  cc_w: string[];
  bcc_w: string[];
  participant_w: string[];
  from_a: string[];
  to_a: string[];
  cc_a: string[];
  bcc_a: string[];
  participant_a: string[];
  from_d: string[];
  to_d: string[];
  cc_d: string[];
  bcc_d: string[];
  participant_d: string[];
  facet_domain: string[];
  /** The message as the port gives and takes it; stored in `_source`, never indexed. */
  msg: IndexedMessage;
}

const keyword = { type: 'keyword' } as const;
const analysedText = { type: 'text', analyzer: WHITESPACE_ANALYZER } as const;
const personWords = { type: 'text', analyzer: WHITESPACE_ANALYZER, position_increment_gap: PERSON_POSITION_GAP } as const;

/**
 * Index settings. Only the static ones that matter for results; the rest are
 * OpenSearch defaults.
 */
export const INDEX_SETTINGS = {
  /**
   * One primary shard. Why: a `terms` aggregation is exact only on a single
   * shard (with several, each shard sends its local top `shard_size` and the
   * merged counts can be low or miss a value), and the facet counts must be
   * exact and identical to SQLite's. Also scores are then computed over the
   * whole index. Cost: one shard holds the whole archive; a Lucene shard is
   * comfortable up to roughly 50 GB or 200 M documents, which is far beyond
   * the index size of a typical archive (the raw mail is in object storage).
   * Scale reads with replicas, not shards.
   */
  number_of_shards: 1,
  /**
   * One replica when the cluster has a second node (durability and read
   * throughput), none on a single node (so a one-node cluster is green).
   */
  auto_expand_replicas: '0-1',
  analysis: {
    tokenizer: {
      archive_ws_tokenizer: {
        type: 'whitespace',
        // Above MAX_TOKEN_CHARS, so the tokenizer never splits a token we send (see there).
        max_token_length: 16384,
      },
    },
    analyzer: {
      [WHITESPACE_ANALYZER]: { type: 'custom', tokenizer: 'archive_ws_tokenizer', filter: [] as string[] },
    },
  },
};

/** Mapping properties; every field the code writes or queries. */
export const MAPPING_PROPERTIES: Record<string, Record<string, unknown>> = {
  id: keyword,
  messageId: keyword,
  threadId: keyword,
  date: { type: 'long' },
  // A number, not a keyword: the facet breaks count ties by value, and must order 999 < 10000 as SQLite does.
  year: { type: 'integer' },
  size: { type: 'long' },
  // A date (epoch ms), not a long: ingest statistics bucket it with date_histogram by calendar hour, day and month.
  receivedAt: { type: 'date', format: 'epoch_millis' },
  hasAttachments: { type: 'boolean' },
  indexedAt: { type: 'long' },
  subject_t: analysedText,
  body_t: analysedText,
  attname_t: analysedText,
  atttext_t: analysedText,
  from_w: personWords,
  to_w: personWords,
  cc_w: personWords,
  bcc_w: personWords,
  participant_w: personWords,
  from_a: keyword,
  to_a: keyword,
  cc_a: keyword,
  bcc_a: keyword,
  participant_a: keyword,
  from_d: keyword,
  to_d: keyword,
  cc_d: keyword,
  bcc_d: keyword,
  participant_d: keyword,
  facet_domain: keyword,
  // The original message: returned in hits, never indexed or parsed by OpenSearch.
  msg: { type: 'object', enabled: false },
};

/**
 * Analysed copies are left out of `_source`: they are as large as the body
 * and attachment text again, and are always derived from `msg` (the index is
 * rebuilt from the object store, never with `_reindex`).
 */
export const SOURCE_EXCLUDES = ['subject_t', 'body_t', 'attname_t', 'atttext_t', 'from_w', 'to_w', 'cc_w', 'bcc_w', 'participant_w'];

/** The full mapping of a new index. */
export function indexMappings(): Record<string, unknown> {
  return {
    dynamic: 'strict',
    _meta: { mappingVersion: MAPPING_VERSION, owner: 'mail-archive' },
    _source: { excludes: SOURCE_EXCLUDES },
    properties: MAPPING_PROPERTIES,
  };
}

/** Settings + mappings of a new concrete index: a fresh copy, the caller may change it. */
export function indexBody(): { settings: { index: Record<string, unknown> }; mappings: Record<string, unknown> } {
  return structuredClone({ settings: { index: INDEX_SETTINGS }, mappings: indexMappings() });
}

// ---------------------------------------------------------------- mapping diff

export interface MappingDiff {
  /** Fields in the code's mapping that the index lacks: can be added with put_mapping. */
  added: string[];
  /** Fields whose definition differs: only `archive reindex` can change them. */
  changed: string[];
}

/**
 * Compares an index's live properties (from GET _mapping) with the desired
 * ones. Only the keys the code sets are compared (OpenSearch adds none for
 * these types, but this keeps the comparison robust). Fields the index has
 * and the code does not are ignored (a newer app version may have added them).
 */
export function diffMappings(current: Record<string, unknown> | undefined, desired: Record<string, Record<string, unknown>> = MAPPING_PROPERTIES): MappingDiff {
  const diff: MappingDiff = { added: [], changed: [] };
  const cur = current ?? {};
  for (const [name, want] of Object.entries(desired)) {
    const have = cur[name] as Record<string, unknown> | undefined;
    if (have === undefined) {
      diff.added.push(name);
      continue;
    }
    for (const [key, value] of Object.entries(want)) {
      // An object field's `type: object` is implicit in what OpenSearch returns.
      const got = key === 'type' && value === 'object' && have.type === undefined ? 'object' : have[key];
      if (JSON.stringify(got) !== JSON.stringify(value)) {
        diff.changed.push(name);
        break;
      }
    }
  }
  return diff;
}

// ---------------------------------------------------------------- documents

/** Cuts a string to at most `max` UTF-16 units without splitting a surrogate pair (see MAX_TOKEN_CHARS). */
export function cut(s: string, max = MAX_TOKEN_CHARS): string {
  if (s.length <= max) return s;
  let end = max;
  const c = s.charCodeAt(end - 1);
  if (c >= 0xd800 && c <= 0xdbff) end--; // a high surrogate whose pair would be cut off
  return s.slice(0, end);
}

const LONG_TOKEN_RE = new RegExp(`[^ ]{${MAX_TOKEN_CHARS + 1},}`);

/** `analyzed(text)` with over-long tokens cut to MAX_TOKEN_CHARS (positions unchanged). */
function analysedForIndex(text: string): string {
  const a = analyzed(text);
  if (!LONG_TOKEN_RE.test(a)) return a;
  return a
    .split(' ')
    .map((t) => cut(t))
    .join(' ');
}

/**
 * The domains an address counts for in `domain:` queries and in scope: its
 * own domain and every parent down to two labels (`mail.x.com` → `mail.x.com`,
 * `x.com`). A one-label domain (`localhost`) is itself. None for an address
 * without `@` or with nothing after it.
 */
export function domainsWithParents(address: string): string[] {
  const d = exactDomain(address);
  if (!d) return [];
  const labels = d.split('.');
  if (labels.length < 2) return [d];
  const out: string[] = [];
  for (let i = 0; labels.length - i >= 2; i++) out.push(labels.slice(i).join('.'));
  return out;
}

/** The domain part of an address (after the last `@`), lower-cased, without trailing dots; undefined when none. */
export function exactDomain(address: string): string | undefined {
  const at = address.lastIndexOf('@');
  if (at < 0) return undefined;
  const d = address
    .slice(at + 1)
    .toLowerCase()
    .replace(/\.+$/, '');
  return d === '' ? undefined : d;
}

/** An address as the index keeps it: trimmed and lower-cased (`''` when there is none). */
export function normaliseAddress(address: string | undefined): string {
  return (address ?? '').trim().toLowerCase();
}

/** A person as the word fields see them: display name and address. */
interface Person {
  name?: string;
  address: string;
}

function personWordsOf(people: Person[]): string[] {
  const out: string[] = [];
  for (const p of people) {
    const words = analysedForIndex(`${p.name ?? ''} ${p.address}`);
    if (words !== '') out.push(words);
  }
  return out;
}

function uniq(values: Iterable<string>): string[] {
  return [...new Set(values)];
}

function addressesOf(people: Person[]): string[] {
  return uniq(people.map((p) => p.address).filter((a) => a !== '')).map((a) => cut(a));
}

function domainsOf(addresses: string[]): string[] {
  return uniq(addresses.flatMap(domainsWithParents)).map((d) => cut(d));
}

/** A UTC year as the facet shows it: 4 digits at least (`0999`, `2024`, `-0044`). */
export function yearString(y: number): string {
  return y < 0 ? `-${String(-y).padStart(4, '0')}` : String(y).padStart(4, '0');
}

/** The people of each address field, per search/MATCHING.md. */
export function peopleByField(m: IndexedMessage): Record<AddressField, Person[]> {
  const env = (kind: string): Person[] => m.envelopeRecipients.filter((r) => r.kind === kind).map((r) => ({ address: normaliseAddress(r.address) }));
  const asPeople = (ps: Participant[]): Person[] => ps.map((p) => ({ name: p.name, address: normaliseAddress(p.address) }));
  const participant: Person[] = [
    ...asPeople(m.from),
    ...asPeople(m.sender),
    ...asPeople(m.to),
    ...asPeople(m.cc),
    ...asPeople(m.bcc),
    ...asPeople(m.replyTo),
  ];
  for (const r of m.envelopeRecipients) {
    participant.push({ address: normaliseAddress(r.address) });
    if (r.expandedFrom) participant.push({ address: normaliseAddress(r.expandedFrom) });
    if (r.forwardedFrom) participant.push({ address: normaliseAddress(r.forwardedFrom) });
  }
  for (const s of m.envelopeSenders) participant.push({ address: normaliseAddress(s) });
  return {
    from: asPeople(m.from),
    to: [...asPeople(m.to), ...env('to')],
    cc: [...asPeople(m.cc), ...env('cc')],
    bcc: [...asPeople(m.bcc), ...env('bcc')],
    participant,
  };
}

/** The document stored for a message. Pure: same message, same document (bar `indexedAt`). */
export function toIndexDocument(m: IndexedMessage, indexedAt: number): OpenSearchMessageDoc {
  const people = peopleByField(m);
  const a = {
    from: addressesOf(people.from),
    to: addressesOf(people.to),
    cc: addressesOf(people.cc),
    bcc: addressesOf(people.bcc),
    participant: addressesOf(people.participant),
  };
  const facetAddresses = [...m.to, ...m.cc, ...m.bcc, ...m.envelopeRecipients].map((p) => normaliseAddress(p.address));
  const filenames = m.attachments.map((x) => x.filename ?? '').filter((f) => f !== '');
  const doc: OpenSearchMessageDoc = {
    id: m.id,
    threadId: cut(m.threadId),
    // Whole milliseconds and bytes, as SQLite's INTEGER columns keep them (sort and search-after agree).
    date: Math.trunc(m.date),
    year: new Date(m.date).getUTCFullYear(),
    size: Number.isFinite(m.size) ? Math.trunc(m.size) : 0,
    hasAttachments: m.hasAttachments,
    indexedAt,
    subject_t: analysedForIndex(m.subject),
    body_t: analysedForIndex(m.body),
    attname_t: analysedForIndex(filenames.join(' ')),
    atttext_t: analysedForIndex(m.attachmentText),
    from_w: personWordsOf(people.from),
    to_w: personWordsOf(people.to),
    cc_w: personWordsOf(people.cc),
    bcc_w: personWordsOf(people.bcc),
    participant_w: personWordsOf(people.participant),
    from_a: a.from,
    to_a: a.to,
    cc_a: a.cc,
    bcc_a: a.bcc,
    participant_a: a.participant,
    from_d: domainsOf(a.from),
    to_d: domainsOf(a.to),
    cc_d: domainsOf(a.cc),
    bcc_d: domainsOf(a.bcc),
    participant_d: domainsOf(a.participant),
    facet_domain: uniq(facetAddresses.map(exactDomain).filter((d): d is string => d !== undefined)).map((d) => cut(d)),
    msg: m,
  };
  if (m.messageId !== undefined) doc.messageId = cut(m.messageId);
  const receivedAt = indexedReceivedAt(m);
  if (receivedAt !== undefined) doc.receivedAt = receivedAt;
  return doc;
}
