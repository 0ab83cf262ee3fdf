/**
 * The export job: produces one export package in the background (export-runner.ts).
 *
 * Payload: `{exportId}`; everything else is in the catalog record.
 * Retry: 5 attempts, backoff doubling from 30 s (30 s … 4 min), for an index
 * or store that is briefly away; each attempt resumes from the last
 * checkpoint, so a retry never redoes finished work. An integrity failure
 * (archived bytes that do not match their SHA-256) is not retried: it fails
 * the export at once and raises an alert.
 * Lock: bull's job lock (renewed while the handler runs), and the runner
 * lease in the record (export-record.ts): a run that finds another live
 * runner leaves the export to it; a run whose lease was taken over stops at
 * its next checkpoint. Dedup: jobId = export id.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import type { JobOptions, JobQueue } from '../ports/job-queue.js';
import { IntegrityError } from '../errors.js';
import { ExportRun, type RunDecision, type RunDeps } from './export-runner.js';
import { runnerIsGone, type ExportRecords, type ExportRecordData, type ExportRunner } from './export-record.js';
import { WORK_DIR } from './package-files.js';
import type { ExportAudit } from './export-service.js';

export const EXPORT_JOB = 'export';

export interface ExportJobPayload {
  exportId: string;
}

export const EXPORT_ATTEMPTS = 5;
/** Lease renewal period (ms), well inside LEASE_TTL_MS: one catalog write per running export. */
const HEARTBEAT_MS = 30_000;

export function exportJobOptions(exportId: string): JobOptions {
  return { jobId: exportId, attempts: EXPORT_ATTEMPTS, backoffMs: 30_000 };
}

export interface ExportJobDeps extends RunDeps {
  records: ExportRecords;
  audit: ExportAudit;
  /** Packages under this root are the archive's own and are removed when cancelled. */
  exportRoot: string;
}

export class ExportJob {
  private stopping = false;
  /** Exports running in this process. */
  private readonly active = new Set<string>();
  /** With bull a paused export fails this attempt so another node retries it; in-process, the next start resumes it. */
  private rethrowPause = false;

  constructor(private readonly deps: ExportJobDeps) {}

  /**
   * Shutdown: running exports stop at their next checkpoint (seconds) and
   * release their lease; they resume from it at the next start (or, with
   * bull, on another node), so a shutdown never waits for a whole export.
   */
  stop(): void {
    this.stopping = true;
  }

  register(queue: JobQueue, concurrency: number): void {
    this.rethrowPause = queue.driver !== 'inline';
    queue.process<ExportJobPayload>(EXPORT_JOB, concurrency, (p, job) => this.handle(p, job.attempt));
  }

  async handle(payload: ExportJobPayload, attempt = 1): Promise<void> {
    const { records, log } = this.deps;
    const id = payload.exportId;
    // A second job for an export this process is already running (a resume while it runs): nothing to do.
    if (this.active.has(id)) return;
    const rec = await records.get(id);
    if (!rec) {
      log.warn({ exportId: id }, 'export job for an export that does not exist');
      return;
    }
    if (rec.data.status === 'done' || rec.data.status === 'failed' || rec.data.status === 'cancelled') return;
    if (rec.data.cancelRequested) {
      await this.finishCancelled(rec.data);
      return;
    }

    // Take the lease, unless a live runner holds it.
    const me = { id: randomUUID(), host: hostname(), pid: process.pid, heartbeatAt: new Date().toISOString() };
    let held = false;
    const taken = await records.mutate(id, (d) => {
      if (d.status !== 'queued' && d.status !== 'running') return undefined;
      // A lease of this very process that no job here holds is left from a failed attempt: stale.
      const mine = d.runner?.host === me.host && d.runner.pid === me.pid;
      if (d.runner && (mine ? this.active.has(id) : !runnerIsGone(d.runner))) {
        held = true;
        return undefined;
      }
      return { ...d, status: 'running', startedAt: d.startedAt ?? me.heartbeatAt, runner: me, error: undefined };
    });
    if (held) {
      // Retried with backoff: if that runner died, its lease will have expired by then (bull re-runs a
      // stalled job sooner than LEASE_TTL_MS); if it lives, the retry finds the export finished.
      throw new Error(`export ${id} is running elsewhere (${taken.data.runner?.host}:${taken.data.runner?.pid}); retrying later`);
    }
    if (taken.data.runner?.id !== me.id) return;
    // The lease is renewed on a timer too, not only at checkpoints: listing a big query or hashing
    // tens of GB at the end must not look like a dead runner.
    const heartbeat = setInterval(() => {
      void records.mutate(id, (d) => (d.runner?.id === me.id ? { ...d, runner: { ...me, heartbeatAt: new Date().toISOString() } } : undefined)).catch(() => undefined);
    }, HEARTBEAT_MS);
    heartbeat.unref();
    this.active.add(id);
    try {
      await this.run(id, taken.data, me, attempt);
    } catch (err) {
      // Whatever failed, the lease goes, so a retry (here or on another node) can take it at once.
      await records.mutate(id, (d) => (d.runner?.id === me.id ? { ...d, runner: undefined } : undefined)).catch(() => undefined);
      throw err;
    } finally {
      clearInterval(heartbeat);
      this.active.delete(id);
    }
  }

  private async run(id: string, data: ExportRecordData, me: ExportRunner, attempt: number): Promise<void> {
    const { records, log } = this.deps;
    const taken = { data };

    const control = {
      report: async (progress: ExportRecordData['progress']): Promise<RunDecision> => {
        let decision: RunDecision = 'continue';
        await records.mutate(id, (d) => {
          if (d.runner?.id !== me.id) {
            decision = 'lost';
            return undefined;
          }
          if (d.cancelRequested) decision = 'cancel';
          else if (this.stopping) decision = 'lost';
          return { ...d, progress, runner: { ...me, heartbeatAt: new Date().toISOString() } };
        });
        return decision;
      },
    };

    const logCtx = { exportId: id, format: data.request.format, attempt };
    log.info(logCtx, 'export running');
    let outcome;
    try {
      outcome = await new ExportRun(this.deps, taken.data, control).run();
    } catch (err) {
      const last = attempt >= EXPORT_ATTEMPTS || err instanceof IntegrityError;
      if (err instanceof IntegrityError) log.error({ ...logCtx, err, alert: 'integrity' }, 'INTEGRITY ALERT: archived bytes do not match their SHA-256; export failed');
      else log.error({ ...logCtx, err, willRetry: !last }, 'export failed');
      await records.mutate(id, (d) =>
        d.runner?.id !== me.id ? undefined : { ...d, runner: undefined, error: (err as Error).message, ...(last ? { status: 'failed' as const, finishedAt: new Date().toISOString() } : {}) },
      );
      if (last) {
        await this.deps.audit(taken.data, 'export.complete', 'failure', { error: (err as Error).message });
        return;
      }
      throw err;
    }

    if (outcome.outcome === 'lost') {
      if (this.stopping) {
        await records.mutate(id, (d) => (d.runner?.id === me.id ? { ...d, runner: undefined } : undefined));
        log.info(logCtx, 'export paused for shutdown; it resumes from its checkpoint');
        if (this.rethrowPause) throw new Error('export paused for shutdown');
        return;
      }
      log.warn(logCtx, 'export lease taken over by another runner; stopping here');
      return;
    }
    if (outcome.outcome === 'cancel') {
      await this.finishCancelled(taken.data, me.id);
      return;
    }
    const finishedAt = new Date().toISOString();
    const done = await records.mutate(id, (d) =>
      d.runner?.id !== me.id
        ? undefined
        : { ...d, status: 'done', finishedAt, runner: undefined, manifestSha256: outcome.manifestSha256, counts: outcome.counts, progress: { ...d.progress, phase: 'done', itemsDone: outcome.counts.items, itemsTotal: outcome.counts.items, documents: outcome.counts.documents, pages: outcome.counts.pages, bytes: outcome.counts.bytes } },
    );
    if (done.data.status !== 'done') return;
    await rm(path.join(done.data.packageDir, WORK_DIR), { recursive: true, force: true });
    log.info({ ...logCtx, ...outcome.counts, manifestSha256: outcome.manifestSha256 }, 'export complete');
    await this.deps.audit(done.data, 'export.complete', 'success', { counts: outcome.counts, manifestSha256: outcome.manifestSha256 });
  }

  private async finishCancelled(data: ExportRecordData, runnerId?: string): Promise<void> {
    const rec = await this.deps.records.mutate(data.id, (d) =>
      runnerId && d.runner?.id !== runnerId ? undefined : { ...d, status: 'cancelled', runner: undefined, finishedAt: new Date().toISOString(), progress: { ...d.progress } },
    );
    if (rec.data.status !== 'cancelled') return;
    await removeIfOwned(rec.data.packageDir, this.deps.exportRoot);
    this.deps.log.info({ exportId: data.id }, 'export cancelled');
    await this.deps.audit(rec.data, 'export.cancelled', 'success', { itemsDone: rec.data.progress.itemsDone });
  }
}

/** Removes a package directory only when it is one of the archive's own (never a directory a user named with --out). */
export async function removeIfOwned(dir: string, exportRoot: string): Promise<void> {
  const rel = path.relative(exportRoot, dir);
  if (!rel || rel.startsWith('..') || path.isAbsolute(rel)) return;
  await rm(dir, { recursive: true, force: true });
}
