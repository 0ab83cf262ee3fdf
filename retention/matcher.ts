/**
 * Policy and hold matchers compile to the search language's AST, so the
 * index (both engines, search/MATCHING.md) selects the messages of a policy
 * or hold in bulk. `matchDocument` evaluates the same AST against one
 * indexed document in memory: at ingest (a new message meets the current
 * policies and holds) and in the disposition guards (re-check every active
 * hold). Address, domain, attachment, Message-ID, date and size nodes follow
 * MATCHING.md exactly; words and phrases match on the analysed tokens of
 * their field (a phrase: all its words in one field, adjacent for slop 0).
 */
import { DateTime } from 'luxon';
import { parseQuery, analyzed, queryTokens, type QueryNode } from '../search/index.js';

const analyze = (text: string): string[] => analyzed(text).split(' ').filter(Boolean);
import type { IndexedMessage, Participant } from '../src/domain/indexed-message.js';
import type { HoldInput, HoldScope, PolicyMatcher } from './types.js';

function addressOrDomain(field: 'from' | 'to' | 'cc' | 'bcc' | 'participant', entry: string): QueryNode {
  const v = entry.trim().toLowerCase();
  if (v.includes('@') && !v.startsWith('@')) return { type: 'address', field, value: v, prefix: false };
  return { type: 'domain', field, value: v.replace(/^@/, '').replace(/\.$/, '') };
}

function anyOf(nodes: QueryNode[]): QueryNode | undefined {
  if (nodes.length === 0) return undefined;
  return nodes.length === 1 ? nodes[0] : { type: 'or', children: nodes };
}

function allOf(nodes: QueryNode[]): QueryNode {
  const flat = nodes.flatMap((n) => (n.type === 'and' ? n.children : [n]));
  if (flat.length === 0) return { type: 'all' };
  return flat.length === 1 ? flat[0] : { type: 'and', children: flat };
}

function clean(list: string[] | undefined): string[] {
  return (list ?? []).map((s) => s.trim()).filter(Boolean);
}

/** A policy's matcher as a query AST (`all` for an empty matcher). Throws QuerySyntaxError for a bad query. */
export function policyQuery(m: PolicyMatcher): QueryNode {
  const parts: QueryNode[] = [];
  const senders = anyOf(clean(m.senders).map((e) => addressOrDomain('from', e)));
  if (senders) parts.push(senders);
  const rcpts = anyOf(clean(m.recipients).flatMap((e) => (['to', 'cc', 'bcc'] as const).map((f) => addressOrDomain(f, e))));
  if (rcpts) parts.push(rcpts);
  const env = anyOf(clean(m.envelopeRecipients).map((e) => addressOrDomain('participant', e)));
  if (env) parts.push(env);
  const cust = anyOf(clean(m.custodians).map((e) => addressOrDomain('participant', e)));
  if (cust) parts.push(cust);
  if (m.hasAttachment === true) parts.push({ type: 'hasAttachment' });
  if (m.hasAttachment === false) parts.push({ type: 'not', child: { type: 'hasAttachment' } });
  if (m.query && m.query.trim()) parts.push(parseQuery(m.query, { allowEmpty: true }));
  return allOf(parts.filter((p) => p.type !== 'all'));
}

/** A hold's coverage as a query AST: custodians' mail and/or the query, within the optional date range. */
export function holdQuery(h: Pick<HoldInput, 'custodians' | 'query' | 'dateFrom' | 'dateTo'>): QueryNode {
  const parts: QueryNode[] = [];
  const cust = anyOf(clean(h.custodians).map((e) => addressOrDomain('participant', e)));
  if (cust) parts.push(cust);
  if (h.query && h.query.trim()) parts.push(parseQuery(h.query));
  if (!parts.length) throw new Error('a hold needs custodians or a query');
  if (h.dateFrom || h.dateTo) {
    const range: { type: 'dateRange'; gte?: number; lt?: number } = { type: 'dateRange' };
    if (h.dateFrom) range.gte = DateTime.fromISO(h.dateFrom, { zone: 'utc' }).startOf('day').toMillis();
    if (h.dateTo) range.lt = DateTime.fromISO(h.dateTo, { zone: 'utc' }).startOf('day').plus({ days: 1 }).toMillis();
    parts.push(range);
  }
  return allOf(parts);
}

/**
 * Whether matching a query looks at a message's body or attachment text
 * (words or phrases in `body:` or in the default all-text field). A walk for
 * matchers that do not can leave the text out (ScanRequest.withoutText).
 */
export function queryUsesText(node: QueryNode): boolean {
  switch (node.type) {
    case 'and':
    case 'or':
      return node.children.some(queryUsesText);
    case 'not':
      return queryUsesText(node.child);
    case 'term':
    case 'phrase':
      return node.field === 'body' || node.field === 'any';
    default:
      return false;
  }
}

// ------------------------------------------------------------ in memory

type AddressField = 'from' | 'to' | 'cc' | 'bcc' | 'participant';

function people(doc: IndexedMessage, field: AddressField): Participant[] {
  const env = (kind?: string) => doc.envelopeRecipients.filter((r) => !kind || r.kind === kind).map((r) => ({ address: r.address }));
  switch (field) {
    case 'from':
      return doc.from;
    case 'to':
      return [...doc.to, ...env('to')];
    case 'cc':
      return [...doc.cc, ...env('cc')];
    case 'bcc':
      return [...doc.bcc, ...env('bcc')];
    case 'participant': {
      const extra: Participant[] = [];
      for (const r of doc.envelopeRecipients) {
        extra.push({ address: r.address });
        if (r.expandedFrom) extra.push({ address: r.expandedFrom });
        if (r.forwardedFrom) extra.push({ address: r.forwardedFrom });
      }
      for (const s of doc.envelopeSenders) extra.push({ address: s });
      return [...doc.from, ...doc.sender, ...doc.to, ...doc.cc, ...doc.bcc, ...doc.replyTo, ...extra];
    }
  }
}

function domainsOf(address: string): string[] {
  const at = address.lastIndexOf('@');
  if (at < 0) return [];
  const labels = address.slice(at + 1).toLowerCase().replace(/\.$/, '').split('.');
  const out: string[] = [];
  for (let i = 0; i <= labels.length - 2; i++) out.push(labels.slice(i).join('.'));
  if (labels.length === 1 && labels[0]) out.push(labels[0]);
  return out;
}

function textFields(doc: IndexedMessage, field: string): string[][] {
  switch (field) {
    case 'subject':
      return [analyze(doc.subject)];
    case 'body':
      return [analyze(doc.body)];
    case 'attachment':
      return [analyze(doc.attachments.map((a) => a.filename ?? '').join(' '))];
    case 'any':
      return [analyze(doc.subject), analyze(doc.body), analyze(doc.attachments.map((a) => a.filename ?? '').join(' ')), analyze(doc.attachmentText)];
    default:
      // An address field: each person's name and address, separately (a phrase never spans two people).
      return people(doc, field as AddressField).map((p) => analyze(`${p.name ?? ''} ${p.address}`));
  }
}

function phraseIn(tokens: string[], words: string[], slop: number): boolean {
  if (!words.length) return false;
  if (slop === 0) {
    outer: for (let i = 0; i + words.length <= tokens.length; i++) {
      for (let j = 0; j < words.length; j++) if (tokens[i + j] !== words[j]) continue outer;
      return true;
    }
    return false;
  }
  return words.every((w) => tokens.includes(w));
}

/** Whether one indexed document matches a query AST (see the module comment for the exactness of each node). */
export function matchDocument(node: QueryNode, doc: IndexedMessage): boolean {
  switch (node.type) {
    case 'all':
      return true;
    case 'and':
      return node.children.every((c) => matchDocument(c, doc));
    case 'or':
      return node.children.some((c) => matchDocument(c, doc));
    case 'not':
      return !matchDocument(node.child, doc);
    case 'address':
      return people(doc, node.field).some((p) => (node.prefix ? p.address.toLowerCase().startsWith(node.value) : p.address.toLowerCase() === node.value));
    case 'domain':
      return people(doc, node.field).some((p) => domainsOf(p.address).includes(node.value));
    case 'hasAttachment':
      return doc.hasAttachments;
    case 'messageId':
      return doc.messageId === node.value;
    case 'dateRange':
      return (node.gte === undefined || doc.date >= node.gte) && (node.lt === undefined || doc.date < node.lt);
    case 'sizeRange':
      return (node.gte === undefined || doc.size >= node.gte) && (node.lte === undefined || doc.size <= node.lte);
    case 'term': {
      const words = queryTokens(node.value);
      return textFields(doc, node.field).some((tokens) =>
        words.length > 1 ? phraseIn(tokens, words, 0) : node.prefix ? tokens.some((t) => t.startsWith(words[0] ?? node.value)) : tokens.includes(words[0] ?? node.value),
      );
    }
    case 'phrase': {
      const words = node.terms.flatMap((t) => queryTokens(t));
      return textFields(doc, node.field).some((tokens) => phraseIn(tokens, words, node.slop));
    }
  }
}

/** Whether a document is inside a scope (search/MATCHING.md: participants and their parent domains). null: everything. */
export function inScope(doc: IndexedMessage, scope: HoldScope | null): boolean {
  if (!scope) return true;
  const addrs = people(doc, 'participant').map((p) => p.address.toLowerCase());
  if (addrs.some((a) => scope.addresses.includes(a))) return true;
  return addrs.some((a) => domainsOf(a).some((d) => scope.domains.includes(d)));
}
