/**
 * The disposition job: deletes messages past retain-until that no hold
 * covers, and only those (promise 5).
 *
 * - Scheduling: `start(intervalMs)` runs it on a timer (ARCHIVE_DISPOSITION_INTERVAL_MINUTES);
 *   `run()` once (`archive dispose`, the API). No retries of its own: a
 *   skipped message is simply met again by the next run.
 * - Lock: a catalog lease (`retention_leases/disposition`, TTL 2 × the
 *   budget) so one node at a time runs it; renewed between pages.
 * - Budget: stops between messages after `budgetMs` of wall time and reports
 *   `complete: false`; the next run resumes (work is found afresh from the
 *   catalog, and a message left `disposing` by a crash is finished first).
 * - Guards, each fail-closed (any error: skip the message and report it):
 *   the catalog record (fresh read) is not held and past retain-until; no
 *   active hold covers the indexed document; the object carries no legal
 *   hold; the object's own retention is over. The store's deleteMessage
 *   checks hold and retention once more itself.
 * - Batches: the guards run a message at a time; the messages of a page
 *   that pass go as one batch, in the same steps as one deletion (marked,
 *   deleted, unindexed, recorded, disposed) with one catalog write per step
 *   (embedded: 477 → 1,289 msg/s in bench/retention.bench.ts at 10,000).
 * - Four-eyes mode (and `review` policies): a due message is first proposed
 *   (`awaiting_approval`); it is deleted only after approval by a person
 *   other than the proposer (two people when the scheduler proposed it).
 * - Records: each deletion writes an immutable disposition record (created
 *   once, never updated) and each run one audit event with a digest of
 *   what it deleted.
 * - Hold releases left pending (a legal-hold flag the storage would not
 *   clear, or an interrupted release; see RetentionService.releaseHold) are
 *   retried at the start of every run, before candidates are read, so the
 *   messages they free are disposed of in the same run; and once when the
 *   job starts (`start()`), whatever the interval. Until a release is
 *   finished its messages stay held in the catalog and flagged on the
 *   object, and the guard's legal-hold check refuses the object as well.
 */
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { MAX_BATCH, type CatalogRecord, type CatalogStore, type CatalogWrite, type CatalogWriteOutcome } from '../src/ports/catalog-store.js';
import type { MessageIndex } from '../src/ports/message-index.js';
import type { ObjectStore } from '../src/ports/object-store.js';
import { CatalogConflictError, ForbiddenError, NotFoundError, ValidationError } from '../src/errors.js';
import { CatalogLease } from './lease.js';
import { batches, eachLimit, holdCovers, type AuditSink, type RetentionActor, type RetentionService } from './retention-service.js';
import { COLLECTIONS, type Clock, type DispositionRecord, type Hold, type MessageRetention, type MessageState, type Policy } from './types.js';

export const DISPOSITION_JOB = 'disposition';

/**
 * Messages guarded, and deleted from the store, at once. Each is independent
 * (its own guards and optimistic writes); overlapping them overlaps the
 * store's fsyncs or S3 round trips. The budget is checked before each guard;
 * the messages of a page that passed theirs are still deleted, so a run
 * overruns its budget by at most one page of deletions.
 */
const DISPOSE_CONCURRENCY = 8;

export interface DispositionJobOptions {
  catalog: CatalogStore;
  index: MessageIndex;
  store: ObjectStore;
  audit: AuditSink;
  service: RetentionService;
  clock: Clock;
  log: Logger;
  /** Four-eyes: nothing is deleted before a second person approves it. */
  fourEyes: boolean;
  /** Wall-clock ms one run may work; it stops between messages after that. */
  budgetMs: number;
  /** Candidates read from the catalog per page (one list query each). */
  pageSize?: number;
  /** This node's name in the lease. */
  owner?: string;
  /**
   * Asks for a message to be indexed again (the index job): used when the
   * guard finds stored envelopes its indexed document lacks. Absent: the
   * message is only skipped, until `archive reindex` or its index job.
   */
  requestIndex?: (sha256: string, size: number) => Promise<void>;
}

export interface SkippedMessage {
  sha256: string;
  reason: string;
}

export interface DispositionRunReport {
  dryRun: boolean;
  /** False when another node holds the lease: nothing was done. */
  acquired: boolean;
  /** False when the budget ran out; the next run resumes. */
  complete: boolean;
  examined: number;
  disposed: number;
  /** Proposed for approval in this run (four-eyes, review policies). */
  proposed: number;
  skipped: SkippedMessage[];
  /** Messages whose pending hold release this run finished (flag cleared), and those still pending (not done in a dry run). */
  holdFlagsCleared: number;
  holdFlagsPending: number;
  /** Holds whose interrupted application this run finished, and those still pending (not done in a dry run). */
  holdsApplied: number;
  holdsApplyPending: number;
  /** Dry run: the messages that would be disposed of or proposed. */
  candidates: { sha256: string; retainUntil: string; policyId: string; action: 'delete' | 'propose' }[];
  /** SHA-256 over the newline-joined sha256 list of what this run deleted. */
  digest: string;
  startedAt: string;
  finishedAt: string;
}

export class DispositionJob {
  private readonly pageSize: number;
  private readonly owner: string;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private started = false;
  /** Set by stop(): a hold application under way stops between pages (it stays pending, resumed later). */
  private stopping = false;

  constructor(private readonly o: DispositionJobOptions) {
    this.pageSize = o.pageSize ?? 200;
    this.owner = o.owner ?? `${hostname()}:${process.pid}`;
  }

  /**
   * Retries pending hold applications and releases once now (start-up), then runs every
   * `intervalMs` (errors are logged; the next tick tries again). An interval
   * of 0 schedules no runs, but the start-up retry still happens.
   */
  start(intervalMs: number): void {
    if (this.timer || this.started) return;
    this.started = true;
    this.stopping = false;
    const startUp = async () => {
      const a = await this.o.service.retryApplies(() => this.stopping);
      if (a.holds) this.o.log.info(a, 'pending hold applications retried at start-up');
      const r = await this.o.service.retryReleases();
      if (r.holds) this.o.log.info(r, 'pending hold releases retried at start-up');
    };
    this.running = startUp()
      .catch((err: unknown) => this.o.log.warn({ err }, 'could not retry pending hold applications or releases at start-up; the next disposition run retries'))
      .finally(() => (this.running = undefined));
    if (intervalMs <= 0) return;
    this.timer = setInterval(() => {
      if (this.running) return;
      this.running = this.run({ actor: { user: 'scheduler' } })
        .then((r) => this.o.log.info({ disposed: r.disposed, proposed: r.proposed, skipped: r.skipped.length, complete: r.complete }, 'disposition run'))
        .catch((err: unknown) => this.o.log.error({ err }, 'disposition run failed'))
        .finally(() => (this.running = undefined));
    }, intervalMs);
    this.timer.unref();
  }

  /** Stops the schedule, interrupting a hold application or a run between pages, and waits for them. start() is refused until it returns. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
    this.started = false;
    this.stopping = false;
  }

  private nowIso(): string {
    return this.o.clock().toUTC().toJSDate().toISOString();
  }

  async run(opts: { dryRun?: boolean; actor: RetentionActor }): Promise<DispositionRunReport> {
    const report: DispositionRunReport = {
      dryRun: !!opts.dryRun,
      acquired: false,
      complete: true,
      examined: 0,
      disposed: 0,
      proposed: 0,
      skipped: [],
      holdFlagsCleared: 0,
      holdFlagsPending: 0,
      holdsApplied: 0,
      holdsApplyPending: 0,
      candidates: [],
      digest: '',
      startedAt: this.nowIso(),
      finishedAt: '',
    };
    // Hold applications and releases first, outside the lease and the budget: each has its own lease (or is idempotent), and may be long.
    if (!opts.dryRun) await this.retryHolds(report);
    const started = Date.now();
    const lease = new CatalogLease(this.o.catalog, DISPOSITION_JOB, this.owner, Math.max(2 * this.o.budgetMs, 60_000));
    if (!opts.dryRun && !(await lease.acquire())) {
      report.finishedAt = this.nowIso();
      return report;
    }
    report.acquired = true;
    const deleted: string[] = [];
    const skippedIds = new Set<string>();
    let skipsSeen = 0;
    const skippedBefore = (id: string): boolean => {
      for (; skipsSeen < report.skipped.length; skipsSeen++) skippedIds.add(report.skipped[skipsSeen].sha256);
      return skippedIds.has(id);
    };
    try {
      const policies = new Map((await this.o.service.listPolicies()).map((p) => [p.id, p]));
      const holds = await this.o.service.activeHolds();
      // Unfinished deletions first (a crash mid-way), then approved ones, then newly due ones.
      for (const state of ['disposing', 'approved', 'active'] as const) {
        let cursor: string | undefined;
        const until = this.nowIso();
        do {
          // Cursor paging by (retainUntil, id): records this run changes drop out, skipped ones are passed over.
          const page = await this.o.catalog.list<MessageRetention>(COLLECTIONS.messages, {
            where: { state, held: false },
            range: { retainUntil: { lte: until } },
            orderBy: 'retainUntil',
            limit: this.pageSize,
            cursor,
          });
          // The guards a message at a time (side by side), then the page's deletions as one batch.
          const cleared: CatalogRecord<MessageRetention>[] = [];
          await eachLimit(page.records, DISPOSE_CONCURRENCY, async (rec) => {
            if (Date.now() - started > this.o.budgetMs || this.stopping) {
              report.complete = false;
              return;
            }
            // Skipped (and put back) earlier in this run: once per run is enough (the next run tries again).
            if (skippedBefore(rec.id)) return;
            report.examined++;
            const outcome = await this.handle(rec, state, opts, holds, report);
            if (outcome === 'would-delete') deleted.push(rec.id);
            else if (typeof outcome === 'object') cleared.push(outcome);
          });
          if (cleared.length) deleted.push(...(await this.disposeBatch(cleared, policies, opts.actor, report, holds)));
          if (!report.complete) break;
          if (!opts.dryRun) await lease.renew();
          cursor = page.nextCursor;
        } while (cursor);
        if (!report.complete) break;
      }
    } finally {
      if (!opts.dryRun) await lease.release();
    }
    report.digest = createHash('sha256').update(deleted.sort().join('\n')).digest('hex');
    report.finishedAt = this.nowIso();
    if (!opts.dryRun && (report.disposed || report.proposed || report.skipped.length || report.holdFlagsCleared || report.holdFlagsPending || report.holdsApplied || report.holdsApplyPending)) {
      await this.o.audit.record({
        action: 'retention.dispose',
        outcome: 'success',
        user: opts.actor.user,
        clientAddress: opts.actor.clientAddress ?? null,
        target: null,
        details: {
          disposed: report.disposed,
          proposed: report.proposed,
          skipped: report.skipped.length,
          digest: report.digest,
          complete: report.complete,
          holdFlagsCleared: report.holdFlagsCleared,
          holdFlagsPending: report.holdFlagsPending,
          holdsApplied: report.holdsApplied,
          holdsApplyPending: report.holdsApplyPending,
        },
      });
    }
    return report;
  }

  /**
   * Finishes interrupted hold applications, then pending hold releases.
   * Fail-soft: an error is logged and the run goes on (a pending hold
   * protects its messages through the guard; a pending release leaves them held).
   */
  private async retryHolds(report: DispositionRunReport): Promise<void> {
    try {
      const a = await this.o.service.retryApplies(() => this.stopping);
      report.holdsApplied = a.applied;
      report.holdsApplyPending = a.pending;
      if (a.holds) this.o.log.info(a, 'pending hold applications retried');
    } catch (err) {
      this.o.log.warn({ err: (err as Error).message }, 'could not retry pending hold applications; the next run tries again');
    }
    try {
      const r = await this.o.service.retryReleases();
      report.holdFlagsCleared = r.released;
      report.holdFlagsPending = r.pending;
      if (r.holds) this.o.log.info(r, 'pending hold releases retried');
    } catch (err) {
      this.o.log.warn({ err: (err as Error).message }, 'could not retry pending hold releases; the next run tries again');
    }
  }

  /**
   * One candidate through the guards. A due message that needs approval is
   * proposed here; one that may go now comes back as its fresh record, for
   * {@link disposeBatch}. Any error skips the message (reported).
   */
  private async handle(
    rec: CatalogRecord<MessageRetention>,
    state: MessageState,
    opts: { dryRun?: boolean; actor: RetentionActor },
    holds: Hold[],
    report: DispositionRunReport,
  ): Promise<CatalogRecord<MessageRetention> | 'would-delete' | 'proposed' | 'skipped'> {
    const sha = rec.id;
    try {
      const needsApproval = state === 'active' && (this.o.fourEyes || rec.data.action === 'review');
      const current = await this.guard(sha, state, holds, state === 'disposing', !!opts.dryRun);
      if (needsApproval) {
        if (opts.dryRun) {
          report.candidates.push({ sha256: sha, retainUntil: current.data.retainUntil, policyId: current.data.policyId, action: 'propose' });
          return 'proposed';
        }
        const proposer = opts.actor.user;
        await this.o.catalog.update(COLLECTIONS.messages, sha, { ...current.data, state: 'awaiting_approval', proposedBy: proposer, approvals: [], updatedAt: this.nowIso() }, current.version);
        report.proposed++;
        return 'proposed';
      }
      if (opts.dryRun) {
        report.candidates.push({ sha256: sha, retainUntil: current.data.retainUntil, policyId: current.data.policyId, action: 'delete' });
        return 'would-delete';
      }
      return current;
    } catch (err) {
      this.skip(report, sha, err);
      return 'skipped';
    }
  }

  private skip(report: DispositionRunReport, sha256: string, err: unknown): void {
    const reason = err instanceof Error ? err.message || String(err) : String(err);
    report.skipped.push({ sha256, reason });
    this.o.log.warn({ sha256, err: reason }, 'disposition skipped a message');
  }

  /**
   * The fail-closed guard chain. Returns the fresh catalog record when every
   * guard passes; throws (the message is skipped) otherwise.
   */
  private async guard(sha: string, state: MessageState, holds: Hold[], resuming: boolean, dryRun: boolean): Promise<CatalogRecord<MessageRetention>> {
    const now = this.nowIso();
    // 1. The catalog, read again: not held, past retain-until, in the expected state.
    const rec = await this.o.catalog.get<MessageRetention>(COLLECTIONS.messages, sha);
    if (!rec) throw new Error('no retention record');
    if (rec.data.state !== state) throw new Error(`state changed to ${rec.data.state}`);
    if (rec.data.held || rec.data.holdIds.length) throw new Error(`held by ${rec.data.holdIds.join(', ')}`);
    if (!(rec.data.retainUntil <= now)) throw new Error(`retained until ${rec.data.retainUntil}`);
    // 2. Every active hold, re-evaluated against the indexed document (a hold placed while it was being ingested).
    const stored = await this.o.store.statMessage(sha);
    if (!stored && resuming) return rec; // deleted before a crash: only the bookkeeping is left
    if (!stored) throw new Error('message not in the store');
    const doc = await this.o.index.get(sha);
    if (!doc) throw new Error('not in the index: holds cannot be re-checked');
    // The document must reflect every stored envelope: a later delivery not yet indexed may name a custodian (Bcc).
    // Checked even with no active hold: one placed after this run read the holds walks the index, which would miss it.
    await this.assertIndexComplete(sha, doc.envelopeIds, dryRun ? undefined : stored.size);
    const covering = holds.filter((h) => holdCovers(h, doc));
    if (covering.length) throw new Error(`covered by active hold ${covering.map((h) => h.id).join(', ')}`);
    // 3. The object's own legal hold and retention.
    if (await this.o.store.getLegalHold(sha)) throw new Error('the stored object is under a legal hold');
    const r = await this.o.store.getRetention(sha);
    if (r && r.retainUntil.toISOString() > now) throw new Error(`the stored object is retained until ${r.retainUntil.toISOString()}`);
    return rec;
  }

  /**
   * Throws (the message is skipped) when the store holds an envelope of the
   * message that its indexed document lacks, and then asks for it to be
   * indexed again, given its size (not in a dry run: `size` undefined).
   */
  private async assertIndexComplete(sha: string, indexedIds: string[], size?: number): Promise<void> {
    const indexed = new Set(indexedIds);
    const unindexed = (await this.o.store.envelopeIds(sha)).filter((id) => !indexed.has(id));
    if (!unindexed.length) return;
    const requested = size === undefined ? ' (a run that is not a dry run requests it)' : await this.requestIndex(sha, size);
    throw new Error(`the index lacks ${unindexed.length} of its stored envelopes (${unindexed[0]}…): holds cannot be re-checked until it is indexed again${requested}`);
  }

  /** Asks for the message to be indexed again; returns how that went, for the skip reason. Never throws. */
  private async requestIndex(sha256: string, size: number): Promise<string> {
    if (!this.o.requestIndex) return ' (`archive reindex` does it)';
    try {
      await this.o.requestIndex(sha256, size);
      return ' (requested)';
    } catch (err) {
      return ` (could not be requested: ${(err as Error).message}; \`archive reindex\` does it)`;
    }
  }

  /**
   * Deletes messages that passed their guards, as one batch, in the steps a
   * single deletion takes, each step one catalog write for the whole batch
   * (embedded: one fsync per step, not per message):
   *
   * 1. each record is marked `disposing`, with its disposition record's id
   *    (a crash from here on is finished by the next run, under that id); a
   *    record another writer changed since its guard read it is skipped;
   * 2. each message is deleted from the store (one it did not delete is
   *    skipped, and goes back to its state while it is still stored: see
   *    afterFailedDelete);
   * 3. the deleted messages leave the index;
   * 4. their disposition records are created (one already there was written
   *    before a crash: immutable, the first is kept);
   * 5. their records become `disposed`.
   *
   * A failure in steps 3-5 skips the messages of that step onwards, left
   * `disposing`: the next run finishes them first. Returns the messages
   * disposed of.
   */
  private async disposeBatch(recs: CatalogRecord<MessageRetention>[], policies: Map<string, Policy>, actor: RetentionActor, report: DispositionRunReport, holds: Hold[]): Promise<string[]> {
    const now = this.nowIso();
    const done: string[] = [];
    // The holds the page's guards checked: every batch of the page is checked against any hold beyond them.
    const known = new Set(holds.map((h) => h.id));
    for (const batch of batches(recs, MAX_BATCH)) {
      // 1. Marked first.
      const marked: CatalogRecord<MessageRetention>[] = batch.filter((r) => r.data.state === 'disposing');
      const toMark = batch.filter((r) => r.data.state !== 'disposing');
      if (toMark.length) {
        const writes = toMark.map((r) => ({ id: r.id, data: { ...r.data, state: 'disposing' as const, dispositionId: `${now.replace(/[-:.]/g, '')}-${r.id}`, updatedAt: now }, expectedVersion: r.version }));
        const outcomes = await this.writeOrSkip(writes, report);
        outcomes.forEach((o, k) => {
          if (o?.ok) marked.push({ id: o.id, version: o.version, data: writes[k].data });
          else if (o) this.skip(report, o.id, new CatalogConflictError(`its retention record changed while it was being disposed of (${o.reason})`));
        });
      }
      const before = new Map(batch.map((r) => [r.id, r.data.state]));
      // 1b. Holds placed since this run read them (in force from the moment they are saved, their walks may not have reached these records yet).
      const clear = await this.withoutNewHolds(marked, holds, known, report, before);
      // 2. The store, a message at a time (overlapping their round trips).
      const gone: CatalogRecord<MessageRetention>[] = [];
      await eachLimit(clear, DISPOSE_CONCURRENCY, async (cur) => {
        try {
          await this.o.store.deleteMessage(cur.id);
          gone.push(cur);
        } catch (err) {
          this.skip(report, cur.id, err);
          await this.afterFailedDelete(cur, before.get(cur.id)!);
        }
      });
      if (!gone.length) continue;
      try {
        // 3. The index.
        await this.o.index.delete(gone.map((r) => r.id));
        // 4. The immutable records.
        const records = gone.map((cur) => this.dispositionRecord(cur, policies, actor, now));
        const created = await this.o.catalog.writeMany<DispositionRecord>(COLLECTIONS.dispositions, records.map((r) => ({ id: r.id, data: r, expectedVersion: 'create' as const })));
        const failed = created.find((o) => !o.ok && o.reason !== 'conflict');
        if (failed) throw new Error(`could not write the disposition record ${failed.id}`);
        // 5. Disposed.
        const finals = gone.map((cur) => ({ id: cur.id, data: { ...cur.data, state: 'disposed' as const, updatedAt: now }, expectedVersion: cur.version }));
        let outcomes: CatalogWriteOutcome[];
        try {
          outcomes = await this.o.catalog.writeMany(COLLECTIONS.messages, finals);
        } catch (err) {
          // The batch may have been written in part (a bulk request that timed out): what became `disposed` counts.
          const reread = await this.o.catalog.getMany<MessageRetention>(COLLECTIONS.messages, finals.map((f) => f.id)).catch(() => new Map<string, CatalogRecord<MessageRetention>>());
          outcomes = finals.map((f) => {
            const r = reread.get(f.id);
            return r?.data.state === 'disposed' && r.version === f.expectedVersion + 1 ? { id: f.id, ok: true, version: r.version } : { id: f.id, ok: false, reason: 'conflict' };
          });
          if (outcomes.every((o) => !o.ok)) throw err;
        }
        outcomes.forEach((o) => {
          if (o.ok) done.push(o.id);
          else this.skip(report, o.id, new CatalogConflictError(`deleted, but its retention record changed before it was marked disposed (${o.reason}); the next run finishes it`));
        });
      } catch (err) {
        for (const cur of gone) this.skip(report, cur.id, err);
      }
    }
    report.disposed += done.length;
    return done;
  }

  /**
   * The active holds read again, right before a batch's deletions: a hold
   * saved since this run read them (`holds`, to which it is added for the
   * rest of the run) is checked against each marked message's indexed
   * document, and a message it covers is skipped and put back. Fail-closed:
   * when the holds or a document cannot be read, the messages concerned are
   * skipped and put back. A hold saved after this read meets these records
   * `disposing` and sets the object's legal hold first, which stops a
   * deletion that has not yet checked it.
   */
  private async withoutNewHolds(marked: CatalogRecord<MessageRetention>[], holds: Hold[], known: Set<string>, report: DispositionRunReport, before: Map<string, MessageState>): Promise<CatalogRecord<MessageRetention>[]> {
    if (!marked.length) return marked;
    const putBack = async (cur: CatalogRecord<MessageRetention>, err: unknown) => {
      this.skip(report, cur.id, err);
      await this.afterFailedDelete(cur, before.get(cur.id)!);
    };
    let fresh: Hold[];
    try {
      fresh = (await this.o.service.activeHolds()).filter((h) => !known.has(h.id));
    } catch (err) {
      await eachLimit(marked, DISPOSE_CONCURRENCY, (cur) => putBack(cur, new Error(`the active holds could not be read again before deleting: ${(err as Error).message}`)));
      return [];
    }
    if (!fresh.length) return marked;
    // For the rest of the run (later pages' guards check them).
    for (const h of fresh) if (!holds.some((x) => x.id === h.id)) holds.push(h);
    const clear: CatalogRecord<MessageRetention>[] = [];
    await eachLimit(marked, DISPOSE_CONCURRENCY, async (cur) => {
      try {
        // A deletion finished before a crash (only the bookkeeping is left) has nothing left to protect.
        if (!(await this.o.store.statMessage(cur.id))) {
          clear.push(cur);
          return;
        }
        const doc = await this.o.index.get(cur.id);
        if (!doc) throw new Error('not in the index: holds cannot be re-checked');
        await this.assertIndexComplete(cur.id, doc.envelopeIds);
        const covering = fresh.filter((h) => holdCovers(h, doc));
        if (covering.length) throw new Error(`covered by hold ${covering.map((h) => h.id).join(', ')}, placed during this run`);
        clear.push(cur);
      } catch (err) {
        await putBack(cur, err);
      }
    });
    return clear;
  }

  /**
   * After the store did not delete a message. When the message is still
   * there (the store refused, e.g. a hold set on it meanwhile, or failed
   * before deleting it), its record goes back to where it was, re-read so that
   * a hold or extension written meanwhile stays. When it is gone, or its
   * presence cannot be read, the record stays `disposing`: the next run
   * finishes it, through every guard again.
   */
  private async afterFailedDelete(cur: CatalogRecord<MessageRetention>, was: MessageState): Promise<void> {
    try {
      // Even a refusal may come after part of it went (S3: an envelope version still locked after the message's went).
      if (!(await this.o.store.statMessage(cur.id))) return;
      for (let attempt = 0; attempt < 3; attempt++) {
        const fresh = await this.o.catalog.get<MessageRetention>(COLLECTIONS.messages, cur.id);
        if (!fresh || fresh.data.state !== 'disposing' || fresh.data.dispositionId !== cur.data.dispositionId) return;
        const back: MessageState = was === 'disposing' ? 'active' : was;
        try {
          await this.o.catalog.update(COLLECTIONS.messages, cur.id, { ...fresh.data, state: back, dispositionId: undefined }, fresh.version);
          return;
        } catch (e) {
          if (!(e instanceof CatalogConflictError)) throw e;
        }
      }
    } catch (e) {
      this.o.log.warn({ sha256: cur.id, err: (e as Error).message }, 'could not put back a message the store did not delete; it stays disposing and the next run guards it again');
    }
  }

  /** Catalog writes of a batch; when the write itself fails, every message of it is skipped (undefined outcomes). */
  private async writeOrSkip(writes: CatalogWrite<MessageRetention>[], report: DispositionRunReport): Promise<(CatalogWriteOutcome | undefined)[]> {
    try {
      return await this.o.catalog.writeMany(COLLECTIONS.messages, writes);
    } catch (err) {
      for (const w of writes) this.skip(report, w.id, err);
      return writes.map(() => undefined);
    }
  }

  private dispositionRecord(cur: CatalogRecord<MessageRetention>, policies: Map<string, Policy>, actor: RetentionActor, now: string): DispositionRecord {
    const policy = policies.get(cur.data.policyId);
    const approvals = cur.data.approvals ?? [];
    return {
      id: cur.data.dispositionId!,
      sha256: cur.id,
      messageId: cur.data.messageId,
      date: new Date(cur.data.date).toISOString(),
      size: cur.data.size,
      policyId: cur.data.policyId,
      policyName: policy?.name ?? cur.data.policyId,
      policyVersion: cur.data.policyVersion,
      retainUntil: cur.data.retainUntil,
      disposedAt: now,
      approver: approvals.length ? approvals.join(', ') : `policy:${cur.data.policyId}@${cur.data.policyVersion}`,
      runBy: actor.user,
    };
  }

  /** Messages waiting for approval (four-eyes, review policies). */
  async pending(limit = 1000): Promise<MessageRetention[]> {
    const page = await this.o.catalog.list<MessageRetention>(COLLECTIONS.messages, { where: { state: 'awaiting_approval' }, orderBy: 'retainUntil', limit });
    return page.records.map((r) => r.data);
  }

  /**
   * Approves proposed dispositions. The proposer cannot approve their own
   * proposal; a proposal by the scheduler needs two different people. A
   * message becomes `approved` (deleted by the next run, guards again) once
   * enough people approved. Returns how many became approved.
   */
  async approve(shas: string[], actor: RetentionActor): Promise<{ approved: number; waiting: number }> {
    if (!actor.user || actor.user === 'scheduler') throw new ValidationError('approval needs a person');
    let approved = 0;
    let waiting = 0;
    for (const sha of shas) {
      const rec = await this.o.catalog.get<MessageRetention>(COLLECTIONS.messages, sha);
      if (!rec || rec.data.state !== 'awaiting_approval') throw new NotFoundError(`${sha} is not awaiting approval`);
      if (rec.data.proposedBy === actor.user) throw new ForbiddenError('four-eyes: the proposer cannot approve their own proposal');
      const approvals = [...new Set([...(rec.data.approvals ?? []), actor.user])];
      const people = new Set([...approvals, ...(rec.data.proposedBy && rec.data.proposedBy !== 'scheduler' ? [rec.data.proposedBy] : [])]);
      const done = people.size >= 2;
      await this.o.catalog.update(COLLECTIONS.messages, sha, { ...rec.data, approvals, state: done ? 'approved' : 'awaiting_approval', updatedAt: this.nowIso() }, rec.version);
      if (done) approved++;
      else waiting++;
    }
    await this.o.audit.record({ action: 'retention.disposition.approve', outcome: 'success', user: actor.user, clientAddress: actor.clientAddress ?? null, target: null, details: { messages: shas.length, approved, waiting } });
    return { approved, waiting };
  }
}
