/**
 * The data of the auditors' reports (rendering, signing and CSV are in
 * src/reports): the retention report, the disposition certificate's item
 * list and digest, and the legal hold report of a case. Reads the catalog
 * only; walks the message records once per report (streamed by `scan`).
 */
import { createHash } from 'node:crypto';
import { DateTime } from 'luxon';
import type { CatalogStore } from '../src/ports/catalog-store.js';
import { NotFoundError } from '../src/errors.js';
import { COLLECTIONS, FOREVER, type Case, type Clock, type DispositionRecord, type Hold, type MessageRetention, type Policy, type PolicyVersion } from './types.js';

export interface Period {
  /** ISO-8601 UTC, inclusive. */
  from: string;
  /** ISO-8601 UTC, inclusive. */
  to: string;
}

export interface RetentionReportData {
  generatedAt: string;
  period: Period;
  policies: { policy: Policy; versions: PolicyVersion[]; messages: number; bytes: number }[];
  totals: { messages: number; bytes: number; held: number; forever: number; awaitingApproval: number };
  /** Next 12 months, by month of retain-until (YYYY-MM), active and not held. */
  upcoming: { month: string; messages: number; bytes: number }[];
  holds: { hold: Hold; caseName: string; messages: number }[];
  dispositions: { count: number; bytes: number; perPolicyVersion: PolicyVersionCount[] };
  /** Messages keeping a later retain-until than their current policy gives (never shortened). */
  keptLonger: { sha256: string; policyId: string; policyVersion: number; retainUntil: string; policyRetainUntil: string }[];
  /** How the store enforces retention and holds (its driver and lock settings), when the archive was given it. */
  immutability?: string;
  /** Filled in by the caller (src/integrity/fixity-check.ts), when run. */
  fixity?: { checked: number; ok: number; problems: number; bytes: number; startedAt: string; finishedAt: string };
}

export interface PolicyVersionCount {
  policyId: string;
  policyName: string;
  policyVersion: number;
  count: number;
  bytes: number;
}

export interface CertificateData {
  generatedAt: string;
  period: Period;
  count: number;
  perPolicyVersion: PolicyVersionCount[];
  /** SHA-256 (hex) over `certificateLines(items)`: check it against the disposition records. */
  digest: string;
  items: DispositionRecord[];
}

export interface HoldReportData {
  generatedAt: string;
  kase: Case;
  holds: { hold: Hold; messages: { sha256: string; messageId?: string; date: string; size: number; holdIds: string[] }[] }[];
}

/** Most kept-longer messages listed in a report (the total is always given). */
const MAX_LISTED = 1000;

/** One line per disposed item, sorted by record id: what the certificate's digest covers. */
export function certificateLines(items: DispositionRecord[]): string {
  return [...items]
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    .map((d) => [d.sha256, d.messageId ?? '', d.date, d.policyId, d.policyVersion, d.retainUntil, d.disposedAt, d.approver].join('\t') + '\n')
    .join('');
}

export function certificateDigest(items: DispositionRecord[]): string {
  return createHash('sha256').update(certificateLines(items)).digest('hex');
}

export class RetentionReports {
  constructor(
    private readonly catalog: CatalogStore,
    private readonly clock: Clock,
    /** One line for the report: how the store enforces retain-until and legal holds. */
    private readonly immutability?: string,
  ) {}

  private now(): string {
    return this.clock().toUTC().toJSDate().toISOString();
  }

  private async all<T>(collection: string): Promise<T[]> {
    const out: T[] = [];
    for await (const r of this.catalog.scan<T>(collection)) out.push(r.data);
    return out;
  }

  async dispositions(period: Period): Promise<DispositionRecord[]> {
    const out: DispositionRecord[] = [];
    for await (const r of this.catalog.scan<DispositionRecord>(COLLECTIONS.dispositions)) {
      if (r.data.disposedAt >= period.from && r.data.disposedAt <= period.to) out.push(r.data);
    }
    return out.sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  async retention(period: Period): Promise<RetentionReportData> {
    const policies = await this.all<Policy>(COLLECTIONS.policies);
    const versions = await this.all<PolicyVersion>(COLLECTIONS.policyVersions);
    const holds = await this.all<Hold>(COLLECTIONS.holds);
    const cases = new Map((await this.all<Case>(COLLECTIONS.cases)).map((c) => [c.id, c]));
    const per = new Map<string, { messages: number; bytes: number }>();
    const holdCounts = new Map<string, number>();
    const now = DateTime.fromISO(this.now(), { zone: 'utc' });
    const months = Array.from({ length: 12 }, (_, i) => now.plus({ months: i }).toFormat('yyyy-MM'));
    const upcoming = new Map(months.map((m) => [m, { month: m, messages: 0, bytes: 0 }]));
    const totals = { messages: 0, bytes: 0, held: 0, forever: 0, awaitingApproval: 0 };
    const keptLonger: RetentionReportData['keptLonger'] = [];
    for await (const { data: m } of this.catalog.scan<MessageRetention>(COLLECTIONS.messages)) {
      if (m.state === 'disposed') continue;
      totals.messages++;
      totals.bytes += m.size;
      const p = per.get(m.policyId) ?? { messages: 0, bytes: 0 };
      p.messages++;
      p.bytes += m.size;
      per.set(m.policyId, p);
      if (m.held) totals.held++;
      for (const h of m.holdIds) holdCounts.set(h, (holdCounts.get(h) ?? 0) + 1);
      if (m.retainUntil === FOREVER) totals.forever++;
      if (m.state === 'awaiting_approval') totals.awaitingApproval++;
      if (!m.held && m.retainUntil !== FOREVER) {
        const u = upcoming.get(m.retainUntil.slice(0, 7));
        if (u) {
          u.messages++;
          u.bytes += m.size;
        }
      }
      if (m.keptLonger && keptLonger.length < MAX_LISTED) {
        keptLonger.push({ sha256: m.sha256, policyId: m.policyId, policyVersion: m.policyVersion, retainUntil: m.retainUntil, policyRetainUntil: m.policyRetainUntil });
      }
    }
    const disposed = await this.dispositions(period);
    return {
      generatedAt: this.now(),
      period,
      ...(this.immutability ? { immutability: this.immutability } : {}),
      policies: policies
        .sort((a, b) => (a.isDefault ? 1 : b.isDefault ? -1 : a.name.localeCompare(b.name)))
        .map((policy) => ({
          policy,
          versions: versions.filter((v) => v.id === policy.id).sort((a, b) => a.version - b.version),
          ...(per.get(policy.id) ?? { messages: 0, bytes: 0 }),
        })),
      totals,
      upcoming: [...upcoming.values()],
      holds: holds.map((hold) => ({ hold, caseName: cases.get(hold.caseId)?.name ?? hold.caseId, messages: holdCounts.get(hold.id) ?? 0 })),
      dispositions: { count: disposed.length, bytes: disposed.reduce((n, d) => n + d.size, 0), perPolicyVersion: countPerVersion(disposed) },
      keptLonger,
    };
  }

  async certificate(period: Period): Promise<CertificateData> {
    const items = await this.dispositions(period);
    return { generatedAt: this.now(), period, count: items.length, perPolicyVersion: countPerVersion(items), digest: certificateDigest(items), items };
  }

  async holdReport(caseId: string): Promise<HoldReportData> {
    const kr = await this.catalog.get<Case>(COLLECTIONS.cases, caseId);
    if (!kr) throw new NotFoundError(`no case ${caseId}`);
    const holds = (await this.all<Hold>(COLLECTIONS.holds)).filter((h) => h.caseId === caseId);
    const byHold = new Map(holds.map((h) => [h.id, [] as HoldReportData['holds'][number]['messages']]));
    for await (const { data: m } of this.catalog.scan<MessageRetention>(COLLECTIONS.messages)) {
      for (const h of m.holdIds) byHold.get(h)?.push({ sha256: m.sha256, messageId: m.messageId, date: new Date(m.date).toISOString(), size: m.size, holdIds: m.holdIds });
    }
    return { generatedAt: this.now(), kase: kr.data, holds: holds.map((hold) => ({ hold, messages: (byHold.get(hold.id) ?? []).sort((a, b) => a.date.localeCompare(b.date)) })) };
  }
}

function countPerVersion(items: DispositionRecord[]): PolicyVersionCount[] {
  const m = new Map<string, PolicyVersionCount>();
  for (const d of items) {
    const k = `${d.policyId}@${d.policyVersion}`;
    const c = m.get(k) ?? { policyId: d.policyId, policyName: d.policyName, policyVersion: d.policyVersion, count: 0, bytes: 0 };
    c.count++;
    c.bytes += d.size;
    m.set(k, c);
  }
  return [...m.values()].sort((a, b) => a.policyId.localeCompare(b.policyId) || a.policyVersion - b.policyVersion);
}
