/**
 * Domain types shared by every part of the archive. They depend on nothing.
 */

/** Lower-case hex SHA-256 of a message's raw bytes: the message's identity and storage key. */
export type Sha256 = string;

/** How a recipient reached the message, as a journal report (or SMTP) told us. */
export type RecipientKind = 'to' | 'cc' | 'bcc' | 'recipient';

/** One recipient of one delivery, from a journal report or from SMTP RCPT TO. */
export interface EnvelopeRecipient {
  /** Lower-cased SMTP address. */
  address: string;
  /** Header field the recipient was on; `recipient` when the report or SMTP does not say. */
  kind: RecipientKind;
  /** The distribution list this recipient was expanded from (`, Expanded: <list>`). */
  expandedFrom?: string;
  /** The original recipient this copy was forwarded from (`, Forwarded: <addr>`). */
  forwardedFrom?: string;
}

/** Where an envelope came from. */
export type EnvelopeSource = 'smtp' | 'import' | 'api' | 'reindex';

/** Journal report fields as Exchange wrote them. */
export interface JournalInfo {
  format: 'exchange2007' | 'exchange2003';
  /** Message-ID of the report itself (the wrapper), not of the original. */
  reportMessageId?: string;
  sender?: string;
  onBehalfOf?: string;
  subject?: string;
  /** Message-ID of the original message, as the report states it. */
  messageId?: string;
  /** True when the report arrived inside a non-delivery report and was unwrapped from it. */
  viaNdr?: boolean;
}

/** The SMTP transaction that delivered a message or report. */
export interface SmtpTransaction {
  /** Client IP address. */
  peer: string;
  helo?: string;
  /** MAIL FROM; the empty string is the null reverse-path `<>`. */
  mailFrom: string;
  rcptTo: string[];
  authUser?: string;
  tls?: boolean;
}

/**
 * One delivery of one message: an immutable record written once next to the
 * message. A message journaled three times has three envelopes.
 */
export interface Envelope {
  /** Unique, sortable by time: `<yyyymmddThhmmssSSSZ>-<random hex>`. */
  id: string;
  /** The stored message this envelope delivers. */
  sha256: Sha256;
  source: EnvelopeSource;
  /** ISO-8601 UTC time the archive received the delivery. */
  receivedAt: string;
  /** Every recipient of this delivery (journal report recipients, or RCPT TO). */
  recipients: EnvelopeRecipient[];
  /** Present when the message came wrapped in a journal report. */
  journal?: JournalInfo;
  smtp?: SmtpTransaction;
  import?: { file: string; index?: number };
  /** Problems met while ingesting, e.g. `journal-malformed`; never a reason to reject. */
  flags: string[];
  /** Human-readable details for the flags. */
  notes?: string[];
}

/** A byte range within a file: start inclusive, end exclusive. */
export interface ByteRange {
  start: number;
  end: number;
}
