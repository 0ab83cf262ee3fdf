/**
 * Builds the index document of a message from its parse and all of its
 * envelopes. Pure: the same inputs always give the same document, which is
 * what makes `archive reindex` reproduce the index exactly.
 */
import type { Envelope, EnvelopeRecipient } from '../src/domain/types.js';
import type { IndexedMessage } from '../src/domain/indexed-message.js';
import type { ParsedMessage } from './message-parser.js';

function recipientKey(r: EnvelopeRecipient): string {
  return `${r.address}\u0000${r.kind}\u0000${r.expandedFrom ?? ''}\u0000${r.forwardedFrom ?? ''}`;
}

export function buildIndexedMessage(id: string, size: number, parsed: ParsedMessage, envelopes: Envelope[]): IndexedMessage {
  const sorted = [...envelopes].sort((a, b) => a.receivedAt.localeCompare(b.receivedAt) || a.id.localeCompare(b.id));
  const receivedAt = sorted.length ? Date.parse(sorted[0]!.receivedAt) : 0;

  const seen = new Set<string>();
  const envelopeRecipients: EnvelopeRecipient[] = [];
  const senders = new Set<string>();
  for (const env of sorted) {
    for (const r of env.recipients) {
      const k = recipientKey(r);
      if (!seen.has(k)) {
        seen.add(k);
        envelopeRecipients.push(r);
      }
    }
    for (const s of [env.journal?.sender, env.journal?.onBehalfOf, env.smtp?.mailFrom]) if (s) senders.add(s.toLowerCase());
  }

  const messageId = parsed.messageId;
  const threadId = parsed.references[0] ?? parsed.inReplyTo ?? messageId ?? id;
  const doc: IndexedMessage = {
    id,
    date: parsed.date ?? receivedAt,
    receivedAt,
    from: parsed.from,
    sender: parsed.sender,
    to: parsed.to,
    cc: parsed.cc,
    bcc: parsed.bcc,
    replyTo: parsed.replyTo,
    envelopeRecipients,
    envelopeSenders: [...senders].sort(),
    subject: parsed.subject,
    body: parsed.body,
    attachments: parsed.attachments,
    attachmentText: parsed.attachmentText,
    references: parsed.references,
    threadId,
    size,
    hasAttachments: parsed.attachments.some((a) => !!a.filename || !/^(text\/|message\/)/.test(a.contentType)),
    envelopeIds: sorted.map((e) => e.id),
  };
  if (messageId) doc.messageId = messageId;
  if (parsed.inReplyTo) doc.inReplyTo = parsed.inReplyTo;
  if (parsed.parseError) doc.parseError = parsed.parseError;
  return doc;
}
