/**
 * The retention engine's service: policies (named, versioned, simulated
 * before saving), cases and legal holds, and the application of both to
 * messages, at ingest and in bulk. Talks only to ports: the catalog (all
 * state), the index (which messages a matcher selects), the object store
 * (Object Lock retention and legal holds) and the audit trail.
 *
 * Two rules hold everywhere here (promise 5):
 * - an applied retain-until is never shortened: a new date is
 *   `max(applied, computed)`, in the catalog and in the store;
 * - holds beat every policy: a held message is flagged in the catalog and on
 *   the stored object, and the flag is cleared only when no hold covers it.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { DateTime } from 'luxon';
import type { Logger } from 'pino';
import { MAX_BATCH, type CatalogRecord, type CatalogStore, type CatalogWrite } from '../src/ports/catalog-store.js';
import type { MessageIndex } from '../src/ports/message-index.js';
import { SCAN_PAGE_SIZE } from '../src/ports/message-index.js';
import type { ObjectStore } from '../src/ports/object-store.js';
import type { IndexedMessage } from '../src/domain/indexed-message.js';
import type { AuditEvent } from '../src/audit/audit-trail.js';
import { CatalogConflictError, NotFoundError, ValidationError } from '../src/errors.js';
import type { QueryNode } from '../search/index.js';
import { computeRetainUntil, later } from './retain-until.js';
import { CatalogLease } from './lease.js';
import { holdQuery, inScope, matchDocument, policyQuery, queryUsesText } from './matcher.js';
import {
  COLLECTIONS,
  FOREVER,
  type Case,
  type CaseInput,
  type Clock,
  type Hold,
  type HoldInput,
  type HoldScope,
  type MessageRetention,
  type Policy,
  type PolicyInput,
  type PolicyVersion,
} from './types.js';

/** Who acts: a user's e-mail (or `cli:<user>`, `scheduler`), where from, and their scope. */
export interface RetentionActor {
  user: string;
  clientAddress?: string | null;
  /** Officers act within their scope; null = unrestricted. */
  scope?: HoldScope | null;
}

/** Where hold, policy and disposition actions are recorded (the audit trail). */
export interface AuditSink {
  record(event: AuditEvent): Promise<unknown>;
}

export interface RetentionServiceOptions {
  catalog: CatalogStore;
  index: MessageIndex;
  store: ObjectStore;
  audit: AuditSink;
  clock: Clock;
  log: Logger;
}

/** Object Lock dates stop this far ahead for a `forever` policy (S3 needs a date; it is extended whenever a policy asks for more). */
const FOREVER_LOCK_YEARS = 100;
/** Store calls (legal hold, retention) in flight at once during a bulk application; each is one small request or fsync. */
const STORE_CONCURRENCY = 16;
/**
 * Messages per batch when applying policies and holds: one catalog `getMany`,
 * one `setLegalHolds`/`extendRetentions` and one catalog `writeMany` each
 * (SQLite and the fs store: one fsync each per batch). A page of an index
 * scan (ids ascending, so the batch's records share pages), at most the
 * catalog's MAX_BATCH; a batch's records are held in memory (~1 KB each).
 */
const APPLY_BATCH = Math.min(SCAN_PAGE_SIZE, MAX_BATCH);
/** Rounds of re-reading and re-writing the items of a batch that lost an optimistic race to another writer, before giving up. */
const MAX_WRITE_ROUNDS = 7;

export const DEFAULT_POLICY_ID = 'default';

/** Outcome counts of a policy change, before it is saved. */
export interface SimulationResult {
  /** Messages the old or new matcher selects. */
  examined: number;
  /** Governed by this policy after the change. */
  governed: number;
  unchanged: number;
  /** retain-until moves later. */
  extended: number;
  /** The change would give an earlier date: the applied one is kept (never shortened). */
  keptLonger: number;
  /** Would be past retain-until now (and not held). */
  expiredNow: number;
  held: number;
  forever: number;
}

/** What releasing a hold did to the messages it covered. */
export interface ReleaseResult {
  /** No other hold covers them: the legal-hold flag is cleared. */
  released: number;
  /** Another active hold still covers them: the flag stays. */
  stillHeld: number;
  /** Not done yet (the flag could not be cleared): still held, retried by the disposition job. */
  pending: number;
}

/**
 * Failed message releases in a row after which a release stops trying the
 * rest (the storage is most likely down) and leaves them pending for the
 * retry. Cost: at most this many slow failing store calls per attempt.
 */
const MAX_CLEAR_FAILURES = 32;

/**
 * How long a hold's application lease lasts without renewal (renewed at
 * each page of the walk): a crashed walker delays the resumption this long.
 */
const APPLY_LEASE_MS = 5 * 60_000;

interface Evaluation {
  policy: Policy;
  until: string;
}

/** One message of a batch to apply: its document, its governing policy, and the holds to add to it. */
interface Planned {
  doc: IndexedMessage;
  ev: Evaluation;
  covering: string[];
}

export class RetentionService {
  constructor(private readonly o: RetentionServiceOptions) {}

  private now(): DateTime {
    return this.o.clock().toUTC();
  }

  private async audit(actor: RetentionActor, action: string, target: string | null, details: Record<string, unknown> = {}): Promise<void> {
    await this.o.audit.record({ action, outcome: 'success', user: actor.user, clientAddress: actor.clientAddress ?? null, target, details });
  }

  /** Creates the default policy (kept forever, review at the end) when there is none. Idempotent. */
  async init(): Promise<void> {
    if (await this.o.catalog.get(COLLECTIONS.policies, DEFAULT_POLICY_ID)) return;
    const now = this.now().toISO()!;
    const p: Policy = {
      id: DEFAULT_POLICY_ID,
      name: 'Default',
      description: 'Applies when no other policy matches. Kept forever until an administrator sets a period.',
      matcher: {},
      period: { unit: 'forever', count: 0, from: 'received' },
      action: 'review',
      version: 1,
      isDefault: true,
      createdAt: now,
      createdBy: 'system',
      updatedAt: now,
      updatedBy: 'system',
    };
    try {
      await this.o.catalog.create(COLLECTIONS.policies, p.id, p);
      await this.o.catalog.create(COLLECTIONS.policyVersions, `${p.id}@1`, p);
    } catch (err) {
      if (!(err instanceof CatalogConflictError)) throw err;
    }
  }

  // ------------------------------------------------------------ policies

  async listPolicies(): Promise<Policy[]> {
    return (await this.listAll<Policy>(COLLECTIONS.policies)).map((r) => r.data);
  }

  async getPolicy(id: string): Promise<Policy> {
    const r = await this.o.catalog.get<Policy>(COLLECTIONS.policies, id);
    if (!r) throw new NotFoundError(`no policy ${id}`);
    return r.data;
  }

  async policyVersions(id: string): Promise<PolicyVersion[]> {
    const all = await this.listAll<PolicyVersion>(COLLECTIONS.policyVersions, { id });
    return all.map((r) => r.data).sort((a, b) => a.version - b.version);
  }

  private validatePolicy(input: PolicyInput): void {
    if (!input.name.trim()) throw new ValidationError('a policy needs a name');
    if (input.period.unit !== 'forever' && (!Number.isInteger(input.period.count) || input.period.count < 1)) {
      throw new ValidationError('period.count must be a whole number >= 1');
    }
    policyQuery(input.matcher); // throws QuerySyntaxError on a bad query
  }

  async createPolicy(input: PolicyInput, actor: RetentionActor): Promise<Policy> {
    this.validatePolicy(input);
    const now = this.now().toISO()!;
    const p: Policy = { ...input, id: `pol-${randomUUID().slice(0, 8)}`, version: 1, isDefault: false, createdAt: now, createdBy: actor.user, updatedAt: now, updatedBy: actor.user };
    await this.o.catalog.create(COLLECTIONS.policies, p.id, p);
    await this.o.catalog.create(COLLECTIONS.policyVersions, `${p.id}@1`, p);
    await this.audit(actor, 'retention.policy.create', p.id, { name: p.name, period: p.period, action: p.action });
    await this.recompute(policyQuery(p.matcher));
    return p;
  }

  /**
   * Saves a new version of a policy and recomputes retain-until for every
   * message the old or new matcher selects. Never shortens an applied date.
   */
  async updatePolicy(id: string, input: PolicyInput, actor: RetentionActor, expectedVersion?: number): Promise<Policy> {
    this.validatePolicy(input);
    const cur = await this.o.catalog.get<Policy>(COLLECTIONS.policies, id);
    if (!cur) throw new NotFoundError(`no policy ${id}`);
    if (expectedVersion !== undefined && cur.data.version !== expectedVersion) {
      throw new CatalogConflictError(`policy ${id} is at version ${cur.data.version}, not ${expectedVersion}`);
    }
    const matcher = cur.data.isDefault ? {} : input.matcher;
    const next: Policy = { ...cur.data, ...input, matcher, version: cur.data.version + 1, updatedAt: this.now().toISO()!, updatedBy: actor.user };
    await this.o.catalog.create(COLLECTIONS.policyVersions, `${id}@${next.version}`, next);
    await this.o.catalog.update(COLLECTIONS.policies, id, next, cur.version);
    await this.audit(actor, 'retention.policy.update', id, { version: next.version, period: next.period, action: next.action });
    await this.recompute(orOf(policyQuery(cur.data.matcher), policyQuery(next.matcher)));
    return next;
  }

  /** Deletes a policy that governs no message. The default policy cannot be deleted. */
  async deletePolicy(id: string, actor: RetentionActor): Promise<void> {
    const cur = await this.o.catalog.get<Policy>(COLLECTIONS.policies, id);
    if (!cur) throw new NotFoundError(`no policy ${id}`);
    if (cur.data.isDefault) throw new ValidationError('the default policy cannot be deleted');
    const governed = await this.o.catalog.list(COLLECTIONS.messages, { where: { policyId: id }, limit: 1 });
    if (governed.records.length) throw new CatalogConflictError(`policy ${id} governs messages and cannot be deleted`);
    await this.o.catalog.delete(COLLECTIONS.policies, id, cur.version);
    await this.audit(actor, 'retention.policy.delete', id, { name: cur.data.name });
  }

  /** What saving `input` (as a new policy, or a new version of `id`) would do, in counts per outcome. Writes nothing. */
  async simulate(input: PolicyInput, id?: string): Promise<SimulationResult> {
    this.validatePolicy(input);
    const policies = await this.listPolicies();
    const now = this.now().toISO()!;
    const old = id ? policies.find((p) => p.id === id) : undefined;
    if (id && !old) throw new NotFoundError(`no policy ${id}`);
    const draft: Policy = { ...(old ?? { id: '(new)', version: 0, isDefault: false, createdAt: now, createdBy: '', updatedAt: now, updatedBy: '' }), ...input, version: (old?.version ?? 0) + 1 };
    if (old?.isDefault) draft.matcher = {};
    const next = [...policies.filter((p) => p.id !== draft.id), draft];
    const holds = await this.activeHolds();
    const q = old ? orOf(policyQuery(old.matcher), policyQuery(draft.matcher)) : policyQuery(draft.matcher);
    const r: SimulationResult = { examined: 0, governed: 0, unchanged: 0, extended: 0, keptLonger: 0, expiredNow: 0, held: 0, forever: 0 };
    for await (const docs of this.walk(q, null, !needsText(next, holds))) {
      const existing = await this.records(docs.map((d) => d.id));
      for (const doc of docs) {
        r.examined++;
        const ev = evaluate(doc, next);
        const cur = existing.get(doc.id)?.data;
        const until = cur ? later(cur.retainUntil, ev.until) : ev.until;
        if (ev.policy.id === draft.id) r.governed++;
        if (!cur || until === cur.retainUntil) r.unchanged++;
        else r.extended++;
        if (cur && ev.until < cur.retainUntil) r.keptLonger++;
        const held = (cur?.held ?? false) || holds.some((h) => holdCovers(h, doc));
        if (held) r.held++;
        else if (until <= now) r.expiredNow++;
        if (until === FOREVER) r.forever++;
      }
    }
    return r;
  }

  /** Re-applies policies and holds to every message a query selects (after a policy change). */
  private async recompute(q: QueryNode): Promise<number> {
    let n = 0;
    for await (const docs of readAhead(this.walk(q, null))) n += (await this.applyToDocuments(docs)).length;
    return n;
  }

  // ------------------------------------------------------------ messages

  /**
   * Applies the current policies and active holds to indexed documents: the
   * ingest hook (after a batch is indexed) and the bulk path. Creates or
   * updates each message's retention record, never shortening retain-until,
   * and mirrors the result onto the stored object (retention extended; legal
   * hold set when a hold covers it). Idempotent. Returns the records.
   */
  async applyToDocuments(docs: IndexedMessage[]): Promise<MessageRetention[]> {
    if (!docs.length) return [];
    // Both reads at once: on OpenSearch each is a refresh and a search, paid once per index batch.
    const [policies, holds] = await Promise.all([this.listPolicies(), this.activeHolds()]);
    const done = new Map<string, MessageRetention>();
    const used = new Set<string>();
    try {
      for (const batch of batches(uniqueById(docs), APPLY_BATCH)) {
        const planned = batch.map((doc) => ({ doc, ev: evaluate(doc, policies), covering: holds.filter((h) => holdCovers(h, doc)).map((h) => h.id) }));
        for (const p of planned) for (const id of p.covering) used.add(id);
        for (const [id, r] of await this.upsertRecords(planned)) done.set(id, r);
      }
    } finally {
      // Also when a later batch failed: the batches written before it may name a hold released meanwhile.
      if (used.size) {
        await this.releaseLateHolds([...used]).catch((err: unknown) =>
          this.o.log.warn({ err: (err as Error).message }, 'could not read again the holds just applied to new messages; one released meanwhile may still hold them (release it again to free them)'),
        );
      }
    }
    return docs.map((d) => done.get(d.id)!);
  }

  /**
   * Holds this writer just added to records, read again by id: one released
   * since the writer read the active holds may have had its release pass go
   * by before these records were written, which would leave them held by a
   * released hold for good. Its release is finished again here. (A release
   * saves the hold released before its pass, so either this read sees it
   * released, or that pass starts after these records were written.)
   */
  private async releaseLateHolds(ids: string[]): Promise<void> {
    const now = await this.o.catalog.getMany<Hold>(COLLECTIONS.holds, ids);
    for (const r of now.values()) {
      if (r.data.status !== 'released') continue;
      this.o.log.info({ holdId: r.id }, 'a hold was released while it was applied to new messages; finishing its release over them');
      await this.finishReleaseOf(r.data);
    }
  }

  /**
   * Creates or updates the retention records of a batch of messages (ids
   * unique, at most MAX_BATCH): one catalog read, the object store's locks
   * for the whole batch, then one catalog write. The object first, the
   * catalog after: the catalog never claims a lock the object lacks. Items
   * that lost an optimistic race are re-read and redone (their object side
   * too: it is idempotent); the others are not written again. A message
   * absent from the store gets no record and, once the rest of the batch is
   * written, fails the call with NotFoundError (as a single write would),
   * except one whose record is (now) `disposing` or `disposed`: the
   * disposition job deleted it (its guards passed before this change).
   * Returns each message's record, written or already up to date.
   */
  private async upsertRecords(planned: Planned[]): Promise<Map<string, MessageRetention>> {
    const out = new Map<string, MessageRetention>();
    const missing = new Set<string>();
    /** Disposing messages already deleted from the store: nothing to write. */
    const gone = new Set<string>();
    let todo = planned;
    let current = await this.o.catalog.getMany<MessageRetention>(COLLECTIONS.messages, todo.map((p) => p.doc.id));
    for (let round = 1; todo.length; round++) {
      const updatedAt = this.now().toISO()!;
      let foreverLock: Date | undefined;
      const lockDate = (until: string) => (until === FOREVER ? (foreverLock ??= this.lockDate(until)) : new Date(until));
      const writes: CatalogWrite<MessageRetention>[] = [];
      const hold: string[] = [];
      const extend: { sha256: string; until: Date }[] = [];
      for (const p of todo) {
        const cur = current.get(p.doc.id);
        const step = nextRecord(p, cur?.data, updatedAt);
        if (!step.write) {
          out.set(p.doc.id, step.record);
          continue;
        }
        if (step.setHold) hold.push(p.doc.id);
        if (step.extend) extend.push({ sha256: p.doc.id, until: lockDate(step.record.retainUntil) });
        writes.push({ id: p.doc.id, data: step.record, expectedVersion: cur ? cur.version : 'create' });
      }
      if (hold.length) for (const id of (await this.o.store.setLegalHolds(hold, true)).missing) missing.add(id);
      if (extend.length) for (const id of (await this.o.store.extendRetentions(extend)).missing) missing.add(id);
      if (missing.size) {
        // Disposed of meanwhile (the job marked and deleted it after this batch was read): gone, not an error.
        const fresh = await this.o.catalog.getMany<MessageRetention>(COLLECTIONS.messages, [...missing]);
        for (const id of [...missing]) {
          const rec = fresh.get(id) ?? current.get(id);
          if (rec?.data.state !== 'disposing' && rec?.data.state !== 'disposed') continue;
          missing.delete(id);
          gone.add(id);
          out.set(id, rec.data);
        }
      }
      const ready = writes.filter((w) => !missing.has(w.id) && !gone.has(w.id));
      const outcomes = ready.length ? await this.o.catalog.writeMany(COLLECTIONS.messages, ready) : [];
      const retry = new Set<string>();
      outcomes.forEach((o, k) => {
        if (o.ok) out.set(o.id, ready[k].data);
        else retry.add(o.id);
      });
      if (!retry.size) break;
      if (round >= MAX_WRITE_ROUNDS) throw new CatalogConflictError(`retention records of ${retry.size} messages kept changing under this writer (e.g. ${[...retry][0]}); retry`);
      todo = todo.filter((p) => retry.has(p.doc.id));
      current = await this.o.catalog.getMany<MessageRetention>(COLLECTIONS.messages, [...retry]);
    }
    if (missing.size) throw new NotFoundError(`message ${[...missing][0]} not found${missing.size > 1 ? ` (and ${missing.size - 1} more of this batch)` : ''}`);
    return out;
  }

  /** The Object Lock date for a retain-until (forever: a century ahead, extended later as needed). */
  private lockDate(until: string): Date {
    if (until !== FOREVER) return new Date(until);
    return this.now().plus({ years: FOREVER_LOCK_YEARS }).toJSDate();
  }

  async getMessageRetention(sha256: string): Promise<MessageRetention | undefined> {
    return (await this.o.catalog.get<MessageRetention>(COLLECTIONS.messages, sha256))?.data;
  }

  private async records(ids: string[]): Promise<Map<string, CatalogRecord<MessageRetention>>> {
    const m = new Map<string, CatalogRecord<MessageRetention>>();
    for (const batch of batches([...new Set(ids)], MAX_BATCH)) {
      for (const [id, r] of await this.o.catalog.getMany<MessageRetention>(COLLECTIONS.messages, batch)) m.set(id, r);
    }
    return m;
  }

  // ------------------------------------------------------------ cases and holds

  async createCase(input: CaseInput, actor: RetentionActor): Promise<Case> {
    if (!input.name.trim() || !input.matterNumber.trim()) throw new ValidationError('a case needs a name and a matter number');
    const c: Case = { ...input, custodians: input.custodians.map((s) => s.trim().toLowerCase()).filter(Boolean), id: `case-${randomUUID().slice(0, 8)}`, status: 'open', createdAt: this.now().toISO()!, createdBy: actor.user };
    await this.o.catalog.create(COLLECTIONS.cases, c.id, c);
    await this.audit(actor, 'retention.case.create', c.id, { name: c.name, matterNumber: c.matterNumber });
    return c;
  }

  async listCases(): Promise<Case[]> {
    return (await this.listAll<Case>(COLLECTIONS.cases)).map((r) => r.data);
  }

  async getCase(id: string): Promise<Case> {
    const r = await this.o.catalog.get<Case>(COLLECTIONS.cases, id);
    if (!r) throw new NotFoundError(`no case ${id}`);
    return r.data;
  }

  async listHolds(caseId?: string): Promise<Hold[]> {
    return (await this.listAll<Hold>(COLLECTIONS.holds, caseId ? { caseId } : undefined)).map((r) => r.data);
  }

  async getHold(id: string): Promise<Hold> {
    const r = await this.o.catalog.get<Hold>(COLLECTIONS.holds, id);
    if (!r) throw new NotFoundError(`no hold ${id}`);
    return r.data;
  }

  async activeHolds(): Promise<Hold[]> {
    return (await this.listAll<Hold>(COLLECTIONS.holds, { status: 'active' })).map((r) => r.data);
  }

  /**
   * Places a hold: recorded first (so every message indexed from now on meets
   * it at ingest), then applied to every archived message it covers, within
   * the creator's scope. Returns the hold with its message count; when the
   * application could not finish (storage or index down), the hold is still
   * placed and in force, and comes back `applyPending` with the reason: the
   * disposition job resumes it.
   */
  async createHold(input: HoldInput, actor: RetentionActor, opts: { waitMs?: number } = {}): Promise<Hold> {
    const kase = await this.getCase(input.caseId);
    const custodians = input.custodians ?? (input.query ? [] : kase.custodians);
    holdQuery({ ...input, custodians }); // validates the query before anything is saved
    const h: Hold = {
      ...input,
      custodians,
      id: `hold-${randomUUID().slice(0, 8)}`,
      status: 'active',
      scope: actor.scope ?? null,
      createdAt: this.now().toISO()!,
      createdBy: actor.user,
      messageCount: 0,
      applyPending: true,
    };
    await this.o.catalog.create(COLLECTIONS.holds, h.id, h);
    await this.audit(actor, 'retention.hold.create', h.id, { caseId: h.caseId, custodians: h.custodians, query: h.query, dateFrom: h.dateFrom, dateTo: h.dateTo });
    const applying = this.track(
      (async (): Promise<Hold> => {
        try {
          // Shutting down: placed and in force, its application left to the disposition job (at the next start).
          if (this.closing) return h;
          return (await this.resumeApply(h.id)) ?? (await this.getHold(h.id));
        } catch (err) {
          // Saved and audited: the hold is in force, and the disposition job resumes its application. Never answer as if it were not placed.
          const lastApplyError = (err as Error).message || String(err);
          this.o.log.error({ holdId: h.id, err: lastApplyError }, 'a new hold could not be applied; it is placed, and the disposition job resumes it');
          return { ...h, lastApplyError };
        }
      })(),
    );
    if (opts.waitMs === undefined) return applying;
    let timer: NodeJS.Timeout | undefined;
    const waited = opts.waitMs <= 0 ? undefined : await Promise.race([applying, new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), opts.waitMs)))]);
    clearTimeout(timer);
    // Still applying: answered now, with its progress so far; the walk goes on in the background.
    return waited ?? (await this.getHold(h.id).catch(() => h));
  }

  /** Hold applications under way in this process, in the background of a request that stopped waiting (see close). */
  private readonly applying = new Set<Promise<unknown>>();
  private closing = false;

  private track<T>(p: Promise<T>): Promise<T> {
    this.applying.add(p);
    void p.finally(() => this.applying.delete(p)).catch(() => undefined);
    return p;
  }

  /** Interrupts the hold applications under way here between pages (they stay pending, resumed by the disposition job) and waits for them. */
  async close(): Promise<void> {
    this.closing = true;
    while (this.applying.size) await Promise.allSettled([...this.applying]);
  }

  /**
   * Finishes the application of holds left `applyPending` (a walk that
   * failed or was interrupted). Idempotent; run by the disposition job at
   * each run and at start-up. A hold another walk is applying is left to it.
   */
  async retryApplies(stopping?: () => boolean): Promise<{ holds: number; applied: number; pending: number }> {
    const pending = (await this.activeHolds()).filter((h) => h.applyPending);
    const total = { holds: pending.length, applied: 0, pending: 0 };
    for (const h of pending) {
      let done: Hold | undefined;
      try {
        done = stopping?.() ? undefined : await this.resumeApply(h.id, stopping);
      } catch (err) {
        this.o.log.warn({ holdId: h.id, err: (err as Error).message }, 'could not resume the application of a hold; the next run retries');
      }
      if (done && !done.applyPending) total.applied++;
      else total.pending++;
    }
    return total;
  }

  /**
   * Applies a pending hold to every archived message it covers, under a
   * lease of its own (one walk per hold across nodes; a crashed walker's
   * lease expires). Success saves the count and clears `applyPending`; a
   * failure is logged and saved as `lastApplyError` for the retry. A hold
   * released while it is applied stops the walk, and its release is
   * finished again (records this walk marked after the release went over
   * them are released too). `stopping` (the node shuts down) interrupts the
   * walk between pages; the hold stays pending. Returns the hold as saved,
   * or undefined when another walk holds the lease.
   */
  private async resumeApply(id: string, stopping?: () => boolean): Promise<Hold | undefined> {
    const lease = this.applyLease(id);
    if (!(await lease.acquire())) return undefined;
    try {
      const h = await this.getHold(id);
      if (!h.applyPending) return h;
      if (h.status === 'released') return await this.endReleasedApply(id);
      let count: number | undefined;
      let error: string | undefined;
      try {
        if (this.closing || stopping?.()) throw new Error('interrupted: the node was stopping');
        await this.applyToDisposing(h);
        count = await this.applyHold(h, holdQuery(h), async (applied) => {
          await lease.renew();
          if (this.closing || stopping?.()) {
            error = 'interrupted: the node was stopping';
            return false;
          }
          // Progress (messages applied so far), and whether the hold is still active.
          return (await this.updateHold(id, (d) => (d.status === 'active' ? { ...d, messageCount: Math.max(d.messageCount, applied) } : d))).status === 'active';
        });
      } catch (err) {
        error = (err as Error).message || String(err);
        this.o.log.error({ holdId: id, err: error }, 'a hold could not be applied to every archived message; it protects them meanwhile, and the disposition job resumes it');
      }
      if ((await this.getHold(id)).status === 'released') return await this.endReleasedApply(id);
      const saved = await this.updateHold(id, (d) => (d.status === 'released' ? d : error === undefined ? { ...withoutApply(d), messageCount: count! } : { ...d, lastApplyError: error }));
      // Released since that read: its release finished here, while this walk still holds the lease.
      return saved.status === 'released' ? await this.endReleasedApply(id) : saved;
    } finally {
      await lease.release().catch(() => undefined);
    }
  }

  /**
   * Before the full walk, the few records a disposition run has marked
   * `disposing` right now: a hold saved during a run reaches them first (the
   * object's legal hold first), so that a deletion that has not yet checked
   * the object is refused. The run itself re-reads the holds before each
   * batch of deletions; this covers a hold saved after that read.
   */
  private async applyToDisposing(h: Hold): Promise<void> {
    const page = await this.o.catalog.list<MessageRetention>(COLLECTIONS.messages, { where: { state: 'disposing' }, limit: MAX_BATCH });
    if (!page.records.length) return;
    const docs: IndexedMessage[] = [];
    await eachLimit(page.records, STORE_CONCURRENCY, async (r) => {
      const doc = await this.o.index.get(r.id);
      if (doc && holdCovers(h, doc)) docs.push(doc);
    });
    if (!docs.length) return;
    const policies = await this.listPolicies();
    try {
      await this.upsertRecords(docs.map((doc) => ({ doc, ev: evaluate(doc, policies), covering: [h.id] })));
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err; // deleted meanwhile: the walk meets the rest
    }
  }

  /** The lease of one hold's application: one walker per hold across nodes (a crashed walker's lease expires). */
  private applyLease(id: string): CatalogLease {
    return new CatalogLease(this.o.catalog, `hold-apply:${id}`, `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`, APPLY_LEASE_MS);
  }

  /**
   * A hold released while (or before) it was applied, its walk over (the
   * caller holds its application lease): `applyPending` goes, then the
   * release is finished again, over the records the walk marked after the
   * release went by. A release keeps `clearsPending` set while
   * `applyPending` is, so a crash between the two leaves the release retry
   * to finish it.
   */
  private async endReleasedApply(id: string): Promise<Hold> {
    await this.updateHold(id, withoutApply);
    await this.finishRelease(id);
    return this.getHold(id);
  }

  /**
   * Applies one hold to every indexed message it covers. Returns how many it
   * covers. `between` runs before each page after the first, with the
   * messages applied so far; false stops the walk.
   */
  async applyHold(h: Hold, q: QueryNode = holdQuery(h), between?: (applied: number) => Promise<boolean>): Promise<number> {
    let n = 0;
    let pages = 0;
    const policies = await this.listPolicies();
    // The next page is fetched while this one is applied (scale-out: the index search overlaps the store and catalog round trips).
    // The hold itself is not matched per document (the walk is its match set), so only the policies may need the text.
    for await (const docs of readAhead(this.walk(q, h.scope, !needsText(policies)))) {
      if (pages++ && between && !(await between(n))) break;
      for (const batch of batches(uniqueById(docs), APPLY_BATCH)) {
        try {
          await this.upsertRecords(batch.map((doc) => ({ doc, ev: evaluate(doc, policies), covering: [h.id] })));
        } catch (err) {
          // Indexed but not stored (and not disposed of): the rest of the batch was written; a hold must not stop
          // half-way over it (the pages after would go unheld). `archive verify` reports the store's side.
          if (!(err instanceof NotFoundError)) throw err;
          this.o.log.error({ holdId: h.id, err: err.message }, 'a message the hold covers is in the index but not in the store; the hold goes on');
        }
      }
      n += docs.length;
    }
    return n;
  }

  /** Saves `change` of the current hold record (re-read and redone when another writer got there first). */
  private async updateHold(id: string, change: (h: Hold) => Hold): Promise<Hold> {
    for (;;) {
      const r = await this.o.catalog.get<Hold>(COLLECTIONS.holds, id);
      if (!r) throw new NotFoundError(`no hold ${id}`);
      const next = change(r.data);
      if (next === r.data) return r.data; // nothing to change: no write (no version bump for other writers to trip on)
      try {
        return (await this.o.catalog.update(COLLECTIONS.holds, id, next, r.version)).data;
      } catch (err) {
        if (!(err instanceof CatalogConflictError)) throw err;
      }
    }
  }

  /**
   * Releases a hold (a reason is required). The hold stops covering its
   * messages at once (it is no longer active); the legal-hold flag is cleared
   * on a message only when no other hold covers it.
   *
   * Durable: the hold is saved `released` with `clearsPending` set, and per
   * message the object's flag is cleared first and the record changed after.
   * A clear that fails (storage down) leaves that message's record as it was
   * (held, naming this hold: not a disposition candidate, and the object's
   * flag still on), counts it `pending`, and leaves `clearsPending` set; the
   * disposition job retries (`retryReleases`, at each run and at start-up)
   * until every message is done. Calling this again for a released hold
   * retries too. Flag first, record after also means a hold placed on the
   * message meanwhile is never left without its flag: whoever writes the
   * record second sees the other's change (optimistic versions) and sets
   * the flag again.
   */
  async releaseHold(id: string, reason: string, actor: RetentionActor): Promise<ReleaseResult> {
    if (!reason || !reason.trim()) throw new ValidationError('releasing a hold needs a reason');
    // Retried on a conflict: a walk applying the hold writes its progress to it page by page.
    const released = await this.updateHold(id, (d) => (d.status === 'active' ? { ...d, status: 'released', releasedAt: this.now().toISO()!, releasedBy: actor.user, releaseReason: reason, clearsPending: true } : d));
    const result = await this.finishReleaseOf(released);
    await this.audit(actor, 'retention.hold.release', id, { reason, ...result });
    return result;
  }

  /**
   * Finishes the releases that left messages pending (`clearsPending`: a
   * legal-hold flag could not be cleared, or the release was interrupted).
   * Idempotent; run by the disposition job at each run and at start-up.
   * Returns the totals over those holds.
   */
  async retryReleases(): Promise<ReleaseResult & { holds: number }> {
    const pending = (await this.listAll<Hold>(COLLECTIONS.holds, { status: 'released' })).filter((h) => h.data.clearsPending);
    const total = { holds: pending.length, released: 0, stillHeld: 0, pending: 0 };
    for (const h of pending) {
      const r = await this.finishReleaseOf(h.data);
      total.released += r.released;
      total.stillHeld += r.stillHeld;
      total.pending += r.pending;
      this.o.log.info({ holdId: h.id, ...r }, r.pending ? 'hold release retried; messages still pending' : 'hold release finished');
    }
    return total;
  }

  /** Finishes the release of a released hold (see finishRelease), through its application lease while it is being applied. */
  private finishReleaseOf(h: Hold): Promise<ReleaseResult> {
    return h.applyPending ? this.finishReleaseDuringApply(h.id) : this.finishRelease(h.id);
  }

  /**
   * The release retry of a hold released while it was being applied: when no
   * walk holds its application lease any more (it ended, or its node died),
   * the application is ended and the release finished; otherwise the release
   * is finished over what is marked so far, and stays pending for the walk.
   */
  private async finishReleaseDuringApply(id: string): Promise<ReleaseResult> {
    const lease = this.applyLease(id);
    if (!(await lease.acquire())) return this.finishRelease(id);
    try {
      await this.updateHold(id, withoutApply);
      return await this.finishRelease(id);
    } finally {
      await lease.release().catch(() => undefined);
    }
  }

  /**
   * Releases every message whose record still names released hold `id`, then
   * sets or clears the hold's `clearsPending`. Goes page by page through the
   * held records (never all of them in memory), a page as one batch: one
   * `setLegalHolds` per flag value and one catalog `writeMany` (fs: one fsync
   * each per page, where a message at a time cost two per message). A batch
   * that fails, and records that changed under it, are redone a message at a
   * time; messages that fail then are counted `pending` and left as they
   * were; after MAX_CLEAR_FAILURES failures in a row the rest are not tried
   * (the storage is down) and count as pending.
   */
  private async finishRelease(id: string): Promise<ReleaseResult> {
    // Holds that no longer protect anything: this one and any other released one a record still names.
    const inactive = new Set((await this.listAll<Hold>(COLLECTIONS.holds, { status: 'released' })).map((h) => h.id));
    inactive.add(id);
    const result: ReleaseResult = { released: 0, stillHeld: 0, pending: 0 };
    let failuresInARow = 0;
    let lastError: string | undefined;
    const one = async (rec: CatalogRecord<MessageRetention>): Promise<void> => {
      if (failuresInARow >= MAX_CLEAR_FAILURES) {
        result.pending++;
        return;
      }
      try {
        result[await this.releaseMessage(rec, inactive)]++;
        failuresInARow = 0;
      } catch (err) {
        failuresInARow++;
        result.pending++;
        lastError = (err as Error).message || String(err);
        this.o.log.warn({ holdId: id, sha256: rec.id, err: lastError }, 'could not release a message from a hold; the disposition job retries');
      }
    };
    let cursor: string | undefined;
    do {
      // Records released by this page leave the `held` set behind the cursor (id order): paging is unaffected.
      const page = await this.o.catalog.list<MessageRetention>(COLLECTIONS.messages, { where: { held: true }, limit: MAX_BATCH, cursor });
      cursor = page.nextCursor;
      const todo = page.records.filter((m) => m.data.holdIds.includes(id));
      if (!todo.length) continue;
      let redo = todo;
      if (failuresInARow < MAX_CLEAR_FAILURES) {
        try {
          const done = await this.releaseBatch(todo, inactive);
          result.released += done.released;
          result.stillHeld += done.stillHeld;
          redo = todo.filter((r) => done.conflicts.has(r.id));
          if (done.released + done.stillHeld) failuresInARow = 0;
        } catch (err) {
          this.o.log.warn({ holdId: id, messages: todo.length, err: (err as Error).message }, 'a batch release failed; releasing its messages one at a time');
        }
      }
      await eachLimit(redo, STORE_CONCURRENCY, one);
    } while (cursor);
    await this.setClearsPending(id, result.pending > 0, lastError);
    return result;
  }

  /**
   * `releaseMessage` for a page of records at once: the flags first (cleared
   * where no active hold is left, set again where one is), then the records
   * in one conditional write. Records another writer changed meanwhile come
   * back in `conflicts`, untouched, for the one-at-a-time path (which re-reads
   * them and mends a flag cleared too early). Throws when the store fails:
   * nothing in the catalog was written then.
   */
  private async releaseBatch(recs: CatalogRecord<MessageRetention>[], inactive: Set<string>): Promise<{ released: number; stillHeld: number; conflicts: Set<string> }> {
    const updatedAt = this.now().toISO()!;
    const next = recs.map((rec) => {
      const keep = rec.data.holdIds.filter((h) => !inactive.has(h));
      return { rec, data: { ...rec.data, holdIds: keep, held: keep.length > 0, updatedAt } };
    });
    const clear = next.filter((n) => !n.data.held).map((n) => n.rec.id);
    const set = next.filter((n) => n.data.held).map((n) => n.rec.id);
    // Absent objects (disposed of meanwhile) have no flag to change.
    if (clear.length) await this.o.store.setLegalHolds(clear, false);
    if (set.length) await this.o.store.setLegalHolds(set, true);
    const outcomes = await this.o.catalog.writeMany(
      COLLECTIONS.messages,
      next.map((n) => ({ id: n.rec.id, data: n.data, expectedVersion: n.rec.version })),
    );
    const out = { released: 0, stillHeld: 0, conflicts: new Set<string>() };
    outcomes.forEach((o, k) => {
      if (!o.ok) {
        // not_found: the record is gone (disposed of), nothing left to release.
        if (o.reason === 'not_found') out.released++;
        else out.conflicts.add(o.id);
      } else if (next[k].data.held) out.stillHeld++;
      else out.released++;
    });
    return out;
  }

  /**
   * Drops inactive holds from one message's record, the object's legal-hold
   * flag first (cleared when no active hold is left) and the record after.
   * When the record changed meanwhile (a new hold), it is re-read and
   * redone, and a flag cleared too early is set again.
   */
  private async releaseMessage(rec: CatalogRecord<MessageRetention>, inactive: Set<string>): Promise<'released' | 'stillHeld'> {
    let cur: CatalogRecord<MessageRetention> | undefined = rec;
    for (;;) {
      if (!cur) return 'released'; // the record is gone: nothing left to release
      const keep = cur.data.holdIds.filter((h) => !inactive.has(h));
      // The flag as the record is about to say: cleared when no active hold is left, (again) set when one is
      // (which also mends a flag an interrupted earlier attempt cleared before a new hold came).
      await this.o.store.setLegalHold(cur.id, keep.length > 0).catch((err: unknown) => {
        if (!(err instanceof NotFoundError)) throw err;
      });
      try {
        await this.o.catalog.update(COLLECTIONS.messages, cur.id, { ...cur.data, holdIds: keep, held: keep.length > 0, updatedAt: this.now().toISO()! }, cur.version);
        return keep.length ? 'stillHeld' : 'released';
      } catch (err) {
        if (!(err instanceof CatalogConflictError)) throw err;
        cur = await this.o.catalog.get<MessageRetention>(COLLECTIONS.messages, rec.id);
      }
    }
  }

  /** Records on the hold whether messages are still pending (a no-op when it already says so). */
  private async setClearsPending(id: string, pending: boolean, lastError: string | undefined): Promise<void> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const r = await this.o.catalog.get<Hold>(COLLECTIONS.holds, id);
      if (!r || r.data.status !== 'released' || (!pending && !r.data.clearsPending)) return;
      // A walk applying the hold may still mark records: the release is done only once it has ended.
      if (!pending && r.data.applyPending) return;
      const next: Hold = { ...r.data, clearsPending: true, lastClearError: lastError ?? r.data.lastClearError };
      if (!pending) {
        delete next.clearsPending;
        delete next.lastClearError;
      }
      try {
        await this.o.catalog.update(COLLECTIONS.holds, id, next, r.version);
        return;
      } catch (err) {
        if (!(err instanceof CatalogConflictError)) throw err;
      }
    }
  }

  // ------------------------------------------------------------ helpers

  /**
   * Pages of indexed documents matching a query within a scope (one pass,
   * in no promised order). Refreshes the index first, so that the walk sees
   * every document whose upsert resolved before it started. That closes the
   * race between a new hold and a message being indexed: the ingest hook
   * reads the active holds only after its upsert resolved, so a hold it did
   * not see was saved after that read, and this walk (which starts after the
   * save) sees the message.
   */
  async *walk(query: QueryNode, scope: HoldScope | null, withoutText = false): AsyncIterable<IndexedMessage[]> {
    await this.o.index.refresh();
    yield* this.o.index.scan({ query, scope, withoutText });
  }

  private async listAll<T>(collection: string, where?: Record<string, string>): Promise<CatalogRecord<T>[]> {
    const out: CatalogRecord<T>[] = [];
    let cursor: string | undefined;
    do {
      const page = await this.o.catalog.list<T>(collection, { where, limit: 1000, cursor });
      out.push(...page.records);
      cursor = page.nextCursor;
    } while (cursor);
    if (collection === COLLECTIONS.policyVersions && where?.id) return out.filter((r) => r.id.startsWith(`${where.id}@`));
    return out;
  }
}

/** A hold without its application state (applied, or released). */
function withoutApply(h: Hold): Hold {
  const { applyPending: _pending, lastApplyError: _error, ...rest } = h;
  return rest;
}

/** Whether an active hold covers a document (its query, within its creator's scope). */
export function holdCovers(h: Hold, doc: IndexedMessage): boolean {
  return h.status === 'active' && inScope(doc, h.scope) && matchDocument(holdMatcher(h), doc);
}

function holdMatcher(h: Hold): QueryNode {
  return cached(`h:${h.id}:${h.query ?? ''}:${(h.custodians ?? []).join(',')}:${h.dateFrom ?? ''}:${h.dateTo ?? ''}`, () => holdQuery(h));
}

function policyMatcher(p: Policy): QueryNode {
  return cached(`p:${JSON.stringify(p.matcher)}`, () => policyQuery(p.matcher));
}

/** Whether evaluating these policies (and holds) against a document looks at its text; when not, a walk may leave the text out. */
function needsText(policies: Policy[], holds: Hold[] = []): boolean {
  return policies.some((p) => queryUsesText(policyMatcher(p))) || holds.some((h) => queryUsesText(holdMatcher(h)));
}

/** Compiled matchers by what they were compiled from; parsing a query per message would dominate bulk application. */
const compiledQueries = new Map<string, QueryNode>();
/** Most compiled matchers kept (each a small AST). */
const MAX_COMPILED = 1000;

function cached(key: string, compile: () => QueryNode): QueryNode {
  let q = compiledQueries.get(key);
  if (!q) {
    q = compile();
    if (compiledQueries.size >= MAX_COMPILED) compiledQueries.clear();
    compiledQueries.set(key, q);
  }
  return q;
}

/**
 * The governing policy of a document: of the matching non-default policies,
 * the one giving the latest retain-until (longest wins); the default policy
 * when none matches.
 */
export function evaluate(doc: IndexedMessage, policies: Policy[]): Evaluation {
  let best: Evaluation | undefined;
  for (const p of policies) {
    if (p.isDefault || !matchDocument(policyMatcher(p), doc)) continue;
    const until = computeRetainUntil(p.period, doc);
    if (!best || until > best.until || (until === best.until && p.id < best.policy.id)) best = { policy: p, until };
  }
  if (best) return best;
  const def = policies.find((p) => p.isDefault);
  if (!def) throw new Error('no default retention policy (RetentionService.init was not run)');
  return { policy: def, until: computeRetainUntil(def.period, doc) };
}

function orOf(a: QueryNode, b: QueryNode): QueryNode {
  if (a.type === 'all' || b.type === 'all') return { type: 'all' };
  if (JSON.stringify(a) === JSON.stringify(b)) return a;
  return { type: 'or', children: [...(a.type === 'or' ? a.children : [a]), ...(b.type === 'or' ? b.children : [b])] };
}

/**
 * What applying policies and holds makes of one message's record: nothing to
 * write (already up to date, or being disposed of), or the next record, with
 * what the stored object needs first (legal hold set, retention extended).
 * Never shortens an applied retain-until; keeps every hold already recorded.
 */
function nextRecord(p: Planned, prev: MessageRetention | undefined, updatedAt: string): { write: false; record: MessageRetention } | { write: true; record: MessageRetention; setHold: boolean; extend: boolean } {
  // A disposed record means the same bytes were archived again after disposal: a fresh life for the message.
  const fresh = !prev || prev.state === 'disposed';
  const { doc, ev } = p;
  const holdIds = [...new Set([...(fresh ? [] : prev.holdIds), ...p.covering])].sort();
  const until = fresh ? ev.until : later(prev.retainUntil, ev.until);
  const next: MessageRetention = {
    sha256: doc.id,
    messageId: doc.messageId,
    date: doc.date,
    receivedAt: doc.receivedAt,
    size: doc.size,
    policyId: ev.policy.id,
    policyVersion: ev.policy.version,
    retainUntil: until,
    policyRetainUntil: ev.until,
    keptLonger: until > ev.until,
    action: ev.policy.action,
    holdIds,
    held: holdIds.length > 0,
    state: fresh ? 'active' : prev.state,
    proposedBy: fresh ? undefined : prev.proposedBy,
    approvals: fresh ? undefined : prev.approvals,
    dispositionId: fresh ? undefined : prev.dispositionId,
    updatedAt,
  };
  if (!fresh && sameRecord(prev, next)) return { write: false, record: prev };
  const setHold = next.held && (fresh || !prev.held);
  const extend = fresh || until !== prev.retainUntil;
  // A message the disposition job is deleting (its guards passed): only what protects it still reaches it, object
  // first: a hold placed meanwhile (a new hold id; the legal hold is set again, harmlessly, if already on) and a later
  // retain-until. The store then refuses the deletion in flight and the job puts the record back to `active`; a
  // message already deleted is reported missing by the store and left to the job.
  if (prev?.state === 'disposing') {
    const newHold = holdIds.some((id) => !prev.holdIds.includes(id));
    if (!newHold && !extend) return { write: false, record: prev };
    return { write: true, record: next, setHold: newHold, extend };
  }
  return { write: true, record: next, setHold, extend };
}

/** The documents with duplicate ids dropped (the first kept): a batch names each message once. */
function uniqueById(docs: IndexedMessage[]): IndexedMessage[] {
  const seen = new Set<string>();
  return docs.filter((d) => !seen.has(d.id) && (seen.add(d.id), true));
}

/**
 * The items of an async iterable, each next one requested as soon as the
 * previous is handed out, so that producing item k+1 overlaps consuming item
 * k. Holds at most one item ahead. Stopping early returns the source.
 */
async function* readAhead<T>(source: AsyncIterable<T>): AsyncIterable<T> {
  const it = source[Symbol.asyncIterator]();
  let next = it.next();
  try {
    for (;;) {
      const r = await next;
      if (r.done) return;
      next = it.next();
      // Awaited on the next turn; until then a rejection must not count as unhandled.
      next.catch(() => undefined);
      yield r.value;
    }
  } finally {
    await next.then(
      () => it.return?.(),
      () => undefined,
    );
  }
}

export function batches<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

function sameRecord(a: MessageRetention, b: MessageRetention): boolean {
  return (
    a.policyId === b.policyId &&
    a.policyVersion === b.policyVersion &&
    a.retainUntil === b.retainUntil &&
    a.policyRetainUntil === b.policyRetainUntil &&
    a.action === b.action &&
    a.holdIds.join() === b.holdIds.join()
  );
}

/** Runs `fn` over items with at most `limit` in flight. */
export async function eachLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]);
    }),
  );
}
