/**
 * Export jobs as the API and the CLI see them: start (validated, scoped,
 * queued), look, list, cancel, resume, and download the finished package as
 * a ZIP. Only the requester sees their exports (or an operator at the
 * command line). Audit (promise 6): the caller records the human actions
 * (the API through its route declarations, the CLI through `audit`); the
 * job records how each export ended.
 */
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Config } from '../config/config.js';
import type { JobQueue } from '../ports/job-queue.js';
import type { Scope } from '../ports/message-index.js';
import type { AuditEvent } from '../audit/audit-trail.js';
import { AppError, NotFoundError, ValidationError } from '../errors.js';
import { parseQuery } from '../../search/index.js';
import { exportRequestSchema, type ExportRequestInput } from './export-request.js';
import { runnerIsGone, type ExportRecord, type ExportRecordData, type ExportRecords, type ExportRequester } from './export-record.js';
import { EXPORT_JOB, exportJobOptions, removeIfOwned, type ExportJobPayload } from './export.job.js';
import { zipPackage } from './package-zip.js';
import { loadSigningKey, type SigningKey } from './signing-key.js';

/** The one hook through which exports reach the audit trail. */
export type ExportAudit = (rec: ExportRecordData, action: string, outcome: AuditEvent['outcome'], details?: Record<string, unknown>, clientAddress?: string | null) => Promise<void>;

/** Builds the hook on the audit trail when there is one; otherwise exports are logged as audit events. */
export function exportAudit(trail: { record(e: AuditEvent): Promise<unknown> } | undefined, log: Logger): ExportAudit {
  return async (rec, action, outcome, details = {}, clientAddress = null) => {
    const event: AuditEvent = {
      action,
      outcome,
      user: rec.requestedBy.id,
      clientAddress,
      target: rec.id,
      details: { format: rec.request.format, source: rec.request.source, ...details },
    };
    if (trail) await trail.record(event);
    else log.info({ audit: event }, 'audit');
  };
}

/** An export that is not in a state for what was asked (cancel a finished one, download an unfinished one). */
export class ExportStateError extends AppError {
  constructor(message: string) {
    super('export_state', 409, message);
  }
}

/** Who acts: a requester (sees their own exports) or the operator at the command line (sees all). */
export type ExportActor = ExportRequester | 'operator';

export interface ExportServiceDeps {
  records: ExportRecords;
  queue: JobQueue;
  config: Config;
  log: Logger;
  audit: ExportAudit;
  /** A case's held set as a query (retention); enables `{kind: 'case'}` sources. */
  resolveCase?: import('./item-list.js').CaseResolver;
}

export function exportRootOf(config: Config): string {
  return config.ARCHIVE_EXPORT_DIR ? path.resolve(config.ARCHIVE_EXPORT_DIR) : path.join(config.dataDir, 'exports');
}

/** Sortable, unguessable: `exp-20240101T090000Z-<12 hex>`. */
function newExportId(now: Date): string {
  return `exp-${now.toISOString().replace(/[-:]/g, '').replace(/\.\d+/, '')}-${randomBytes(6).toString('hex')}`;
}

export const EXPORT_ID = /^exp-\d{8}T\d{6}Z-[0-9a-f]{12}$/;

export class ExportService {
  readonly exportRoot: string;
  /** Records an export event in the audit trail (the one hook; see exportAudit). */
  readonly audit: ExportAudit;

  constructor(private readonly deps: ExportServiceDeps) {
    this.exportRoot = exportRootOf(deps.config);
    this.audit = deps.audit;
  }

  signingKey(): Promise<SigningKey> {
    return loadSigningKey(this.deps.config);
  }

  /**
   * Validates and queues an export. `scope` is the requester's: the export
   * never sees beyond it. `packageDir` (CLI `--out`) must be absent or empty.
   */
  async start(input: ExportRequestInput, requester: ExportRequester, scope: Scope | null, opts: { packageDir?: string } = {}): Promise<ExportRecordData> {
    const parsed = exportRequestSchema.safeParse(input);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new ValidationError(`invalid export request ${issue.path.join('.')}: ${issue.message}`);
    }
    const request = parsed.data;
    if (request.source.kind === 'query') parseQuery(request.source.q, { allowEmpty: true }); // a syntax error answers 400 now, not a failed job later
    if (request.source.kind === 'case') {
      // An unknown case, or one without an active hold, answers now, not as a failed job later.
      if (!this.deps.resolveCase) throw new ValidationError('case exports need the retention module');
      await this.deps.resolveCase(request.source.caseId);
    }
    await this.signingKey(); // scale-out without ARCHIVE_SIGNING_KEY: refused now, naming the variable
    const now = new Date();
    const id = newExportId(now);
    const packageDir = opts.packageDir ? path.resolve(opts.packageDir) : path.join(this.exportRoot, id);
    if (opts.packageDir && (await readdir(packageDir).catch(() => [])).length) throw new ValidationError(`${packageDir} is not empty`);
    const data: ExportRecordData = {
      id,
      ownerId: requester.id,
      requestedBy: requester,
      scope,
      request,
      status: 'queued',
      createdAt: now.toISOString(),
      packageDir,
      progress: { phase: 'queued', itemsDone: 0, itemsTotal: 0, documents: 0, pages: 0, bytes: 0 },
      cancelRequested: false,
    };
    await this.deps.records.create(data);
    await this.deps.queue.add<ExportJobPayload>(EXPORT_JOB, { exportId: id }, exportJobOptions(id));
    this.deps.log.info({ exportId: id, format: request.format, user: requester.id }, 'export queued');
    return data;
  }

  /** One export the actor may see, or NotFoundError (also for someone else's: indistinguishable on purpose). */
  async get(id: string, actor: ExportActor): Promise<ExportRecordData> {
    const rec = EXPORT_ID.test(id) ? await this.deps.records.get(id) : undefined;
    if (!rec || (actor !== 'operator' && rec.data.ownerId !== actor.id)) throw new NotFoundError(`export ${id} not found`);
    return rec.data;
  }

  async list(requester: ExportRequester, limit = 100, cursor?: string): Promise<{ exports: ExportRecordData[]; nextCursor?: string }> {
    const page = await this.deps.records.listByOwner(requester.id, limit, cursor);
    return { exports: page.records.map((r: ExportRecord) => r.data), ...(page.nextCursor ? { nextCursor: page.nextCursor } : {}) };
  }

  /**
   * Cancels: a queued export, or one whose runner is gone, at once; a
   * running one at its next checkpoint (within seconds).
   */
  async cancel(id: string, actor: ExportActor): Promise<ExportRecordData> {
    await this.get(id, actor);
    let immediate = false;
    const rec = await this.deps.records.mutate(id, (d) => {
      if (d.status === 'cancelled') return undefined;
      if (d.status === 'done' || d.status === 'failed') throw new ExportStateError(`export ${id} is already ${d.status}`);
      immediate = d.status === 'queued' || runnerIsGone(d.runner);
      return immediate ? { ...d, cancelRequested: true, status: 'cancelled', runner: undefined, finishedAt: new Date().toISOString() } : { ...d, cancelRequested: true };
    });
    if (immediate) await removeIfOwned(rec.data.packageDir, this.exportRoot);
    return rec.data;
  }

  /** Queues an unfinished export again (its job resumes from the checkpoint). */
  async resume(id: string): Promise<ExportRecordData> {
    const data = await this.get(id, 'operator');
    if (data.status !== 'queued' && data.status !== 'running') throw new ExportStateError(`export ${id} is ${data.status}`);
    await this.deps.queue.add<ExportJobPayload>(EXPORT_JOB, { exportId: id }, exportJobOptions(id));
    return data;
  }

  /**
   * Re-queues exports left unfinished by a process that is gone (the
   * in-process queue forgets its jobs at a crash; bull keeps them, and the
   * jobId makes this a no-op there). Called at start-up.
   */
  async resumeUnfinished(): Promise<number> {
    let n = 0;
    for await (const rec of this.deps.records.unfinished()) {
      if (rec.data.status === 'running' && !runnerIsGone(rec.data.runner)) continue;
      await this.deps.queue.add<ExportJobPayload>(EXPORT_JOB, { exportId: rec.id }, exportJobOptions(rec.id));
      n++;
    }
    if (n) this.deps.log.info({ exports: n }, 'resuming unfinished exports');
    return n;
  }

  /** The finished package as a streamed ZIP. */
  async download(id: string, actor: ExportActor): Promise<{ filename: string; stream: Readable; data: ExportRecordData }> {
    const data = await this.get(id, actor);
    if (data.status !== 'done') throw new ExportStateError(`export ${id} is ${data.status}, not done`);
    return { filename: `${id}.zip`, stream: zipPackage(data.packageDir, { mtime: data.finishedAt ? new Date(data.finishedAt) : undefined }), data };
  }
}
