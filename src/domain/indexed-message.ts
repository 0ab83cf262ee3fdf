/**
 * What the index knows about one archived message: derived from the raw
 * bytes and the envelopes alone, so it can always be rebuilt (promise 4).
 */
import type { EnvelopeRecipient, Sha256 } from './types.js';

/** One person on an addressing header. */
export interface Participant {
  /** Lower-cased SMTP address; may be empty when a header held only a name or garbage. */
  address: string;
  /** Display name as written (decoded), if any. */
  name?: string;
}

export interface IndexedAttachment {
  /** File name as the sender gave it (decoded); absent for unnamed parts. */
  filename?: string;
  contentType: string;
  /** Decoded size in bytes. */
  size: number;
  /** SHA-256 of the decoded attachment content. */
  sha256: Sha256;
}

export interface IndexedMessage {
  /** SHA-256 of the raw bytes: the message's identity. */
  id: Sha256;
  /** Message-ID header without angle brackets, case kept. */
  messageId?: string;
  /** Epoch ms (UTC): the Date header, or the earliest envelope's receive time when it is missing or unreadable. */
  date: number;
  /** Epoch ms (UTC) of the earliest envelope. */
  receivedAt: number;
  from: Participant[];
  sender: Participant[];
  to: Participant[];
  cc: Participant[];
  bcc: Participant[];
  replyTo: Participant[];
  /** Every envelope recipient over all of the message's envelopes, de-duplicated: Bcc and expanded-list members included. */
  envelopeRecipients: EnvelopeRecipient[];
  /** Envelope senders: journal report `Sender:`/`On-Behalf-Of:` and SMTP MAIL FROM (non-null), lower-cased, de-duplicated. */
  envelopeSenders: string[];
  subject: string;
  /** Body text (HTML converted to text when there is no plain part), bounded to MAX_INDEXED_TEXT characters. */
  body: string;
  attachments: IndexedAttachment[];
  /** Text of text-like attachments (text/*, HTML, nested message/rfc822), bounded. */
  attachmentText: string;
  /** In-Reply-To and References message ids, without angle brackets. */
  inReplyTo?: string;
  references: string[];
  /** The thread: the root Message-ID of References (or In-Reply-To, or the own Message-ID, or the id). */
  threadId: string;
  /** Raw size in bytes. */
  size: number;
  hasAttachments: boolean;
  /** Set when the MIME could not be parsed; the other fields hold what could be read. */
  parseError?: string;
  /** Ids of the message's envelopes. */
  envelopeIds: string[];
}

/**
 * Whether a stored document was built from more of a message's envelopes than
 * `doc`: its envelope ids are a strict superset of `doc`'s. Envelopes are only
 * ever added (until disposal removes the message and its document together),
 * so that document is the newer one, and `doc`, from a job that listed the
 * envelopes earlier (a second delivery of the same message indexed on
 * another node meanwhile), must not replace it: the index would lose the
 * later delivery's recipients (a Bcc custodian, for a hold).
 */
export function supersedes(storedEnvelopeIds: readonly string[] | undefined, doc: Pick<IndexedMessage, 'envelopeIds'>): boolean {
  if (!storedEnvelopeIds || storedEnvelopeIds.length <= doc.envelopeIds.length) return false;
  const stored = new Set(storedEnvelopeIds);
  return doc.envelopeIds.every((id) => stored.has(id));
}

/** Bound on the body text and on the attachment text kept per message, in characters. */
export const MAX_INDEXED_TEXT = 1_000_000;

/** A document with its body and attachment text blanked, as a `withoutText` scan yields it (changes and returns `doc`). */
export function withoutText(doc: IndexedMessage): IndexedMessage {
  doc.body = '';
  doc.attachmentText = '';
  return doc;
}
