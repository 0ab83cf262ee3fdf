/**
 * The export job's record in the catalog (collection `exports`): request,
 * owner, scope, status and progress. The API and the CLI read progress from
 * here; cancellation is a flag set here that the running job polls; the
 * runner lease (who runs it, heartbeat) keeps two nodes from running one
 * export at once. Every write is a versioned update (optimistic concurrency).
 */
import { hostname } from 'node:os';
import type { CatalogRecord, CatalogStore } from '../ports/catalog-store.js';
import type { Scope } from '../ports/message-index.js';
import { CatalogConflictError, NotFoundError } from '../errors.js';
import type { ExportRequest } from './export-request.js';

export const EXPORTS_COLLECTION = 'exports';

export type ExportStatus = 'queued' | 'running' | 'done' | 'failed' | 'cancelled';
export type ExportPhase = 'queued' | 'listing' | 'exporting' | 'finalizing' | 'done';

export interface ExportRequester {
  id: string;
  name?: string;
}

export interface ExportProgress {
  phase: ExportPhase;
  /** Items (messages, or message-custodian pairs with per-custodian dedup) produced so far. */
  itemsDone: number;
  /** Items in the fixed item list; 0 until it is built. */
  itemsTotal: number;
  documents: number;
  pages: number;
  /** Bytes written into the package. */
  bytes: number;
}

export interface ExportRunner {
  id: string;
  host: string;
  pid: number;
  /** ISO time of the last checkpoint or lease renewal. */
  heartbeatAt: string;
}

export interface ExportRecordData {
  id: string;
  /** Top-level for `list({where: {ownerId}})`. */
  ownerId: string;
  requestedBy: ExportRequester;
  /** The requester's scope when they asked: the export never sees beyond it (promise 7). */
  scope: Scope | null;
  request: ExportRequest;
  status: ExportStatus;
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  /** Absolute path of the package directory. */
  packageDir: string;
  progress: ExportProgress;
  cancelRequested: boolean;
  runner?: ExportRunner;
  error?: string;
  manifestSha256?: string;
  counts?: { matched: number; duplicates: number; items: number; withdrawn: number; documents: number; pages: number; files: number; bytes: number };
}

export type ExportRecord = CatalogRecord<ExportRecordData>;

/** A runner whose heartbeat is older than this (ms) is presumed dead; checkpoints renew it far more often. */
export const LEASE_TTL_MS = 120_000;

/** Whether a runner is gone: a stale heartbeat, or (same host) a process that no longer exists. */
export function runnerIsGone(r: ExportRunner | undefined, now = Date.now()): boolean {
  if (!r) return true;
  if (now - Date.parse(r.heartbeatAt) > LEASE_TTL_MS) return true;
  if (r.host === hostname()) {
    if (r.pid === process.pid) return false;
    try {
      process.kill(r.pid, 0);
      return false;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'ESRCH';
    }
  }
  return false;
}

export class ExportRecords {
  constructor(private readonly catalog: CatalogStore) {}

  async get(id: string): Promise<ExportRecord | undefined> {
    return this.catalog.get<ExportRecordData>(EXPORTS_COLLECTION, id);
  }

  async require(id: string): Promise<ExportRecord> {
    const r = await this.get(id);
    if (!r) throw new NotFoundError(`export ${id} not found`);
    return r;
  }

  async create(data: ExportRecordData): Promise<ExportRecord> {
    return this.catalog.create(EXPORTS_COLLECTION, data.id, data);
  }

  /**
   * Read-modify-write with retries on conflict. `fn` returns the new data, or
   * undefined to leave the record as it is.
   */
  async mutate(id: string, fn: (d: ExportRecordData) => ExportRecordData | undefined): Promise<ExportRecord> {
    for (let attempt = 0; ; attempt++) {
      const cur = await this.require(id);
      const next = fn(structuredClone(cur.data));
      if (!next) return cur;
      try {
        return await this.catalog.update(EXPORTS_COLLECTION, id, next, cur.version);
      } catch (err) {
        if (!(err instanceof CatalogConflictError) || attempt >= 20) throw err;
      }
    }
  }

  /** Exports of one owner, newest first. */
  async listByOwner(ownerId: string, limit = 100, cursor?: string): Promise<{ records: ExportRecord[]; nextCursor?: string }> {
    return this.catalog.list<ExportRecordData>(EXPORTS_COLLECTION, { where: { ownerId }, orderBy: 'createdAt', order: 'desc', limit, cursor });
  }

  /** Exports not finished (queued or running), for resumption at start-up. */
  async *unfinished(): AsyncIterable<ExportRecord> {
    for (const status of ['queued', 'running'] as const) {
      let cursor: string | undefined;
      do {
        const page = await this.catalog.list<ExportRecordData>(EXPORTS_COLLECTION, { where: { status }, limit: 500, cursor });
        yield* page.records;
        cursor = page.nextCursor;
      } while (cursor);
    }
  }
}
