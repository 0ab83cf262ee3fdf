/**
 * Turns the SpamAssassin corpus into a realistic large archive for search
 * benchmarks: thousands of senders over hundreds of domains, To/Cc/Bcc,
 * distribution lists expanded in journal envelopes, dates spread over ten
 * years, and reply threads. Deterministic (seeded), and streamed in batches,
 * so a million documents never sit in memory at once.
 */
import { Readable } from 'node:stream';
import { createHash } from 'node:crypto';
import type { IndexedMessage, Participant } from '../src/domain/indexed-message.js';
import type { EnvelopeRecipient } from '../src/domain/types.js';
import { parseMessage, DEFAULT_PARSE_LIMITS } from '../ingest/message-parser.js';
import { loadSpamAssassin } from './bench-util.js';
import { prng as rng } from './prng.js';

export { prng as rng } from './prng.js';

export interface ArchiveShape {
  domains: string[];
  people: string[];
  lists: { address: string; members: string[] }[];
  texts: { subject: string; body: string }[];
}

const FIRST = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi', 'ivan', 'judy', 'mallory', 'niaj', 'olivia', 'peggy', 'rupert', 'sybil', 'trent', 'victor', 'walter', 'zoe'];
const LAST = ['smith', 'jones', 'muller', 'garcia', 'chen', 'kumar', 'novak', 'rossi', 'kim', 'silva', 'dubois', 'nagy', 'berg', 'costa', 'ward'];

export async function buildShape(seed = 42, corpusLimit = 3000): Promise<ArchiveShape> {
  const r = rng(seed);
  const pick = <T>(a: T[]) => a[Math.floor(r() * a.length)]!;
  const domains = Array.from({ length: 300 }, (_, i) => (i % 10 === 0 ? `mail.region${i}.example.com` : `company${i}.example.${i % 3 ? 'com' : 'org'}`));
  const people = Array.from({ length: 5000 }, (_, i) => `${pick(FIRST)}.${pick(LAST)}${i}@${domains[i % 60]!}`);
  const lists = Array.from({ length: 60 }, (_, i) => ({ address: `list${i}@${domains[i]!}`, members: Array.from({ length: 5 + Math.floor(r() * 40) }, () => pick(people)) }));
  const texts: { subject: string; body: string }[] = [];
  for (const raw of await loadSpamAssassin(corpusLimit)) {
    const p = await parseMessage(Readable.from([raw]), DEFAULT_PARSE_LIMITS);
    texts.push({ subject: p.subject, body: p.body.slice(0, 8000) });
  }
  return { domains, people, lists, texts };
}

const TEN_YEARS_START = Date.UTC(2015, 0, 1);
const TEN_YEARS_MS = Date.UTC(2025, 0, 1) - TEN_YEARS_START;

/** Yields `count` documents in batches of `batch`. */
export async function* generateDocs(shape: ArchiveShape, count: number, batch = 1000, seed = 7): AsyncGenerator<IndexedMessage[]> {
  const r = rng(seed);
  const pick = <T>(a: T[]) => a[Math.floor(r() * a.length)]!;
  const person = (a: string): Participant => ({ address: a, name: a.split('@')[0]!.replace(/[.\d]+/g, ' ').trim() });
  const recentIds: string[] = [];
  let out: IndexedMessage[] = [];
  for (let i = 0; i < count; i++) {
    const text = pick(shape.texts);
    const from = pick(shape.people);
    const to = Array.from({ length: 1 + Math.floor(r() * 3) }, () => pick(shape.people));
    const cc = r() < 0.3 ? Array.from({ length: 1 + Math.floor(r() * 2) }, () => pick(shape.people)) : [];
    const bcc = r() < 0.1 ? [pick(shape.people)] : [];
    const env: EnvelopeRecipient[] = [...to.map((a) => ({ address: a, kind: 'to' as const })), ...cc.map((a) => ({ address: a, kind: 'cc' as const })), ...bcc.map((a) => ({ address: a, kind: 'bcc' as const }))];
    const toHeader = [...to];
    if (r() < 0.15) {
      const list = pick(shape.lists);
      toHeader.push(list.address);
      for (const m of list.members) env.push({ address: m, kind: 'to', expandedFrom: list.address });
    }
    const id = createHash('sha256').update(`msg-${seed}-${i}`).digest('hex');
    const messageId = `${id.slice(0, 24)}@${from.split('@')[1]}`;
    const reply = recentIds.length > 0 && r() < 0.3;
    const parent = reply ? pick(recentIds) : undefined;
    const date = TEN_YEARS_START + Math.floor(r() * TEN_YEARS_MS);
    const hasAtt = r() < 0.2;
    const doc: IndexedMessage = {
      id,
      messageId,
      date,
      receivedAt: date + 1000,
      from: [person(from)],
      sender: [],
      to: toHeader.map(person),
      cc: cc.map(person),
      bcc: [],
      replyTo: [],
      envelopeRecipients: env,
      envelopeSenders: [from],
      subject: reply ? `Re: ${text.subject}` : text.subject,
      body: text.body,
      attachments: hasAtt ? [{ filename: `${pick(['contract', 'invoice', 'report', 'minutes', 'budget'])}-${i % 1000}.pdf`, contentType: 'application/pdf', size: Math.floor(r() * 3_000_000), sha256: createHash('sha256').update(`att-${i}`).digest('hex') }] : [],
      attachmentText: '',
      references: parent ? [parent] : [],
      threadId: parent ?? messageId,
      size: text.body.length + 800 + (hasAtt ? Math.floor(r() * 3_000_000) : 0),
      hasAttachments: hasAtt,
      envelopeIds: [`e${i}`],
    };
    if (parent) doc.inReplyTo = parent;
    if (recentIds.length < 5000) recentIds.push(messageId);
    else recentIds[i % 5000] = messageId;
    out.push(doc);
    if (out.length >= batch) {
      yield out;
      out = [];
    }
  }
  if (out.length) yield out;
}
