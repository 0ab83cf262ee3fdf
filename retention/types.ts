/**
 * Retention domain: policies (named, versioned), cases and legal holds,
 * per-message retention state, disposition records. Plain JSON records kept
 * in the catalog (src/ports/catalog-store.ts), one collection each.
 */
import type { DateTime } from 'luxon';
import type { Sha256 } from '../src/domain/types.js';

/** Now, injected: tests move through years in milliseconds (ARCHITECTURE: time is injected). */
export type Clock = () => DateTime;

/** Catalog collections of the retention engine. */
export const COLLECTIONS = {
  policies: 'retention_policies',
  policyVersions: 'retention_policy_versions',
  messages: 'retention_messages',
  cases: 'retention_cases',
  holds: 'retention_holds',
  dispositions: 'retention_dispositions',
  leases: 'retention_leases',
} as const;

/**
 * What a policy matches. Each list is an OR of its entries; the criteria
 * given are ANDed. An entry with `@` in it is an address, without (or with a
 * leading `@`) a domain, which covers its subdomains. An empty matcher
 * matches every message (the default policy's).
 */
export interface PolicyMatcher {
  /** From addresses or domains. */
  senders?: string[];
  /** To, Cc or Bcc addresses or domains (header or envelope of that kind). */
  recipients?: string[];
  /**
   * Envelope recipients (journal report / RCPT TO, incl. Bcc and expanded
   * lists). The index has no envelope-only field, so this matches as a
   * participant (any header or envelope party): never narrower.
   */
  envelopeRecipients?: string[];
  /** Custodians: all their mail, sent or received, Bcc and expanded lists included (`participant:`). */
  custodians?: string[];
  hasAttachment?: boolean;
  /** Any query of the search language (docs/search.md). */
  query?: string;
}

export type PeriodUnit = 'days' | 'months' | 'years' | 'forever';

export interface RetentionPeriod {
  unit: PeriodUnit;
  /** Whole units (ignored for `forever`). */
  count: number;
  /** What the period counts from: the Date header (`sent`) or the archive's receive time. */
  from: 'sent' | 'received';
}

/** What happens at the end: deleted by the disposition engine, or queued for a person's review. */
export type EndAction = 'delete' | 'review';

export interface PolicyInput {
  name: string;
  description?: string;
  matcher: PolicyMatcher;
  period: RetentionPeriod;
  action: EndAction;
}

/** The current version of a policy (`retention_policies/<id>`). */
export interface Policy extends PolicyInput {
  id: string;
  version: number;
  isDefault: boolean;
  createdAt: string;
  createdBy: string;
  updatedAt: string;
  updatedBy: string;
}

/** Every version ever saved, immutable (`retention_policy_versions/<id>@<version>`). */
export type PolicyVersion = Policy;

/** The date meaning "forever": later than any real date, and sorts last as a string. */
export const FOREVER = '9999-12-31T23:59:59.999Z';

export type MessageState = 'active' | 'awaiting_approval' | 'approved' | 'disposing' | 'disposed';

/** Retention state of one message (`retention_messages/<sha256>`). */
export interface MessageRetention {
  sha256: Sha256;
  messageId?: string;
  /** Epoch ms of the Date header and of the first receipt. */
  date: number;
  receivedAt: number;
  size: number;
  /** The governing policy: the one giving the longest retention. */
  policyId: string;
  policyVersion: number;
  /** ISO-8601 UTC; only ever moved later. FOREVER for a forever policy. */
  retainUntil: string;
  /** What the governing policy alone gives now; earlier than retainUntil when an applied date was kept. */
  policyRetainUntil: string;
  /** True when retainUntil is later than what the current policies give (an applied date is never shortened). */
  keptLonger: boolean;
  action: EndAction;
  /** Holds that cover the message. */
  holdIds: string[];
  /** holdIds is not empty (a scalar the catalog can filter on). */
  held: boolean;
  state: MessageState;
  /** Who proposed the disposition (four-eyes and review), and who approved. */
  proposedBy?: string;
  approvals?: string[];
  /** Set when marked `disposing`: the id of its disposition record (resumable, idempotent). */
  dispositionId?: string;
  updatedAt: string;
}

export interface CaseInput {
  name: string;
  matterNumber: string;
  description?: string;
  custodians: string[];
}

export interface Case extends CaseInput {
  id: string;
  status: 'open' | 'closed';
  createdAt: string;
  createdBy: string;
}

/** Which mail a scoped officer may reach (the same shape as the search port's Scope). */
export interface HoldScope {
  addresses: string[];
  domains: string[];
}

export interface HoldInput {
  caseId: string;
  name: string;
  /** All mail of these people (participant: sent, received, Bcc, expanded lists). */
  custodians?: string[];
  /** A query in the search language; with custodians, both must match. */
  query?: string;
  /** Inclusive UTC dates (YYYY-MM-DD) of the message date. */
  dateFrom?: string;
  dateTo?: string;
}

export interface Hold extends HoldInput {
  id: string;
  status: 'active' | 'released';
  /** The creator's scope: a hold never reaches mail its creator cannot see. null = unrestricted. */
  scope: HoldScope | null;
  createdAt: string;
  createdBy: string;
  /** Messages covered when last applied (a count for reports). */
  messageCount: number;
  releasedAt?: string;
  releasedBy?: string;
  releaseReason?: string;
  /**
   * Released, but not every message it covered is released yet: a legal-hold
   * flag could not be cleared (storage down) or the release was interrupted.
   * Those messages' records keep naming this hold (and stay held) until the
   * disposition job's retry finishes them (at each run and at start-up).
   */
  clearsPending?: boolean;
  /** Why the last attempt left messages pending. */
  lastClearError?: string;
  /**
   * Placed, but not yet applied to every archived message it covers (records
   * marked, legal-hold flags set): the walk failed (storage or index down)
   * or was interrupted. The disposition job resumes it, at each run and at
   * start-up. The hold protects its messages meanwhile: the disposition
   * guard re-checks every active hold against each message.
   */
  applyPending?: boolean;
  /** Why the last application did not finish. */
  lastApplyError?: string;
}

/** Immutable proof of one deletion (`retention_dispositions/<id>`), created once, never updated. */
export interface DispositionRecord {
  id: string;
  sha256: Sha256;
  messageId?: string;
  /** ISO-8601 of the message's date. */
  date: string;
  size: number;
  policyId: string;
  policyName: string;
  policyVersion: number;
  retainUntil: string;
  /** ISO-8601 UTC time of the deletion. */
  disposedAt: string;
  /** Who approved: the people (four-eyes, review) or `policy:<id>@<version>` for automatic deletion. */
  approver: string;
  runBy: string;
}
