/**
 * The fixed item list of an export: resolved once, at the start, from the
 * source (a query inside the requester's scope), de-duplicated, in date
 * order (date, then id), and written to the package's work directory as
 * NDJSON. Everything after works from this file, so a resumed export
 * produces exactly the same items in the same order, whatever was archived
 * or re-indexed meanwhile. Each line keeps the metadata the load files
 * need, so producing an item needs no second index look-up unless its text
 * is rendered.
 */
import { createHash } from 'node:crypto';
import type { IndexedAttachment, IndexedMessage, Participant } from '../domain/indexed-message.js';
import type { MessageIndex, Scope } from '../ports/message-index.js';
import { parseQuery } from '../../search/index.js';
import type { QueryNode } from '../../search/index.js';
import { AppendFile } from './append-file.js';
import type { ExportRequest, ExportSource } from './export-request.js';

export interface ExportItem {
  /** Position in the list, from 0. */
  n: number;
  /** SHA-256 of the archived message. */
  id: string;
  custodian: string;
  /** Every requested custodian the message involves. */
  custodians: string[];
  date: number;
  size: number;
  messageId?: string;
  from: Participant[];
  to: Participant[];
  cc: Participant[];
  /** Bcc header, plus Bcc recipients that only a journal report revealed. */
  bcc: Participant[];
  subject: string;
  attachments: IndexedAttachment[];
  parseError?: string;
}

export interface DuplicateEntry {
  id: string;
  custodian: string;
  /** The item produced in its place. */
  duplicateOf: number;
}

export interface ItemListResult {
  /** Messages the source matched inside scope. */
  matched: number;
  items: number;
  duplicates: number;
}

/** Hits per index page while listing. Each hit carries its body text (bounded by the indexer), so this bounds memory. */
const PAGE_SIZE = 200;

/** Resolves a case id to the query of its held set (the OR of its active holds); throws when there is none. */
export type CaseResolver = (caseId: string) => Promise<QueryNode>;

/** The source as an index query. */
async function resolveSource(source: ExportSource, resolveCase?: CaseResolver): Promise<QueryNode> {
  switch (source.kind) {
    case 'query':
      return parseQuery(source.q, { allowEmpty: true });
    case 'case':
      if (!resolveCase) throw new Error('case exports need the retention module');
      return resolveCase(source.caseId);
  }
}

function participantsOf(doc: IndexedMessage): Set<string> {
  const s = new Set<string>();
  for (const list of [doc.from, doc.sender, doc.to, doc.cc, doc.bcc, doc.replyTo]) for (const p of list) if (p.address) s.add(p.address);
  for (const r of doc.envelopeRecipients) {
    s.add(r.address);
    if (r.expandedFrom) s.add(r.expandedFrom);
  }
  for (const a of doc.envelopeSenders) s.add(a);
  return s;
}

/**
 * The identity of a message for de-duplication: the same message journaled
 * by two servers has different bytes (Received headers) but the same
 * Message-ID, participants, subject, date, body and attachments. Without a
 * Message-ID only identical bytes count as the same (they are stored once
 * anyway): a false duplicate would drop evidence from a production.
 * 16 bytes, base64: about 70 bytes of memory per item in the seen-set.
 */
function dedupKey(doc: IndexedMessage): string {
  if (!doc.messageId) return doc.id;
  const addrs = (l: Participant[]) => l.map((p) => p.address).sort();
  const h = createHash('sha256');
  h.update(JSON.stringify([doc.messageId, doc.date, addrs(doc.from), addrs(doc.to), addrs(doc.cc), doc.subject, doc.attachments.map((a) => a.sha256)]));
  h.update(doc.body);
  return h.digest().subarray(0, 16).toString('base64');
}

export function itemFields(doc: IndexedMessage): Omit<ExportItem, 'n' | 'custodian' | 'custodians'> {
  const bcc = [...doc.bcc];
  const seen = new Set(bcc.map((p) => p.address));
  for (const r of doc.envelopeRecipients) {
    if (r.kind === 'bcc' && !seen.has(r.address)) {
      bcc.push({ address: r.address });
      seen.add(r.address);
    }
  }
  return {
    id: doc.id,
    date: doc.date,
    size: doc.size,
    ...(doc.messageId ? { messageId: doc.messageId } : {}),
    from: doc.from,
    to: doc.to,
    cc: doc.cc,
    bcc,
    subject: doc.subject,
    attachments: doc.attachments,
    ...(doc.parseError ? { parseError: doc.parseError } : {}),
  };
}

export async function buildItemList(opts: {
  index: MessageIndex;
  scope: Scope | null;
  request: ExportRequest;
  itemsPath: string;
  duplicatesPath: string;
  onProgress?: (matched: number) => void;
  resolveCase?: CaseResolver;
}): Promise<ItemListResult> {
  const { request } = opts;
  const query = await resolveSource(request.source, opts.resolveCase);
  const items = await AppendFile.open(opts.itemsPath, 0);
  const dups = await AppendFile.open(opts.duplicatesPath, 0);
  // key (or custodian + key) → item number. Grows with the production: about 100 bytes per item.
  const seen = new Map<string, number>();
  let matched = 0;
  let n = 0;
  let duplicates = 0;
  let cursor: string | undefined;
  try {
    do {
      const page = await opts.index.search({ query, scope: opts.scope, sort: 'date', order: 'asc', size: PAGE_SIZE, cursor });
      for (const doc of page.hits) {
        matched++;
        const involved = participantsOf(doc);
        const custodians = request.custodians.length ? request.custodians.filter((c) => involved.has(c)) : [doc.from[0]?.address || doc.sender[0]?.address || doc.envelopeSenders[0] || ''].filter(Boolean);
        const key = request.dedup === 'none' ? undefined : dedupKey(doc);
        const copies = request.dedup === 'custodian' ? (custodians.length ? custodians : ['']) : [custodians[0] ?? ''];
        for (const custodian of copies) {
          if (key !== undefined) {
            const k = request.dedup === 'custodian' ? `${custodian}\u0000${key}` : key;
            const first = seen.get(k);
            if (first !== undefined) {
              duplicates++;
              await dups.write(JSON.stringify({ id: doc.id, custodian, duplicateOf: first } satisfies DuplicateEntry) + '\n');
              continue;
            }
            seen.set(k, n);
          }
          const item: ExportItem = { n, custodian, custodians, ...itemFields(doc) };
          await items.write(JSON.stringify(item) + '\n');
          n++;
        }
      }
      opts.onProgress?.(matched);
      cursor = page.nextCursor;
    } while (cursor);
    await items.sync();
    await dups.sync();
  } finally {
    await items.close();
    await dups.close();
  }
  return { matched, items: n, duplicates };
}
