/**
 * The embedded job queue: in-process, in memory. Jobs do not survive a crash;
 * that is safe because every job here is derived work (indexing) that the
 * start-up reconciliation re-creates from the object store.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { NotFoundError } from '../../errors.js';
import type { JobHandler, JobInfo, JobOptions, JobQueue, QueueCounts } from '../../ports/job-queue.js';

interface Job {
  id: string;
  name: string;
  payload: unknown;
  opts: Required<Pick<JobOptions, 'attempts' | 'backoffMs'>> & { jobId?: string };
  attempts: number;
  timestamp: number;
  failedReason?: string;
}

interface Lane {
  waiting: Job[];
  waitingIds: Set<string>;
  delayed: Set<NodeJS.Timeout>;
  active: number;
  completed: number;
  failed: Job[];
  concurrency: number;
  handler?: JobHandler<unknown>;
  idleWaiters: (() => void)[];
}

/** Failed jobs kept for inspection; older ones are dropped (they are logged). */
const MAX_FAILED_KEPT = 1000;

export class InlineQueue implements JobQueue {
  readonly driver = 'inline';
  private readonly lanes = new Map<string, Lane>();
  private closing = false;

  constructor(private readonly log: Logger) {}

  private lane(name: string): Lane {
    let l = this.lanes.get(name);
    if (!l) {
      l = { waiting: [], waitingIds: new Set(), delayed: new Set(), active: 0, completed: 0, failed: [], concurrency: 1, idleWaiters: [] };
      this.lanes.set(name, l);
    }
    return l;
  }

  async add<P>(name: string, payload: P, opts: JobOptions = {}): Promise<void> {
    this.enqueue(name, payload, opts);
  }

  async addBulk<P>(name: string, jobs: { payload: P; opts?: JobOptions }[]): Promise<void> {
    for (const j of jobs) this.enqueue(name, j.payload, j.opts ?? {});
  }

  private enqueue(name: string, payload: unknown, opts: JobOptions): void {
    if (this.closing) throw new Error('queue is closing');
    const l = this.lane(name);
    if (opts.jobId && l.waitingIds.has(opts.jobId)) return;
    const job: Job = {
      id: opts.jobId ?? randomUUID(),
      name,
      // Round-trip through JSON, as Redis does, so a payload that only works
      // in-process (a Date, a Buffer) fails here too and not only in production.
      payload: JSON.parse(JSON.stringify(payload)) as unknown,
      opts: { attempts: opts.attempts ?? 5, backoffMs: opts.backoffMs ?? 1000, jobId: opts.jobId },
      attempts: 0,
      timestamp: Date.now(),
    };
    l.waiting.push(job);
    if (opts.jobId) l.waitingIds.add(opts.jobId);
    this.pump(l);
  }

  process<P>(name: string, concurrency: number, handler: JobHandler<P>): void {
    const l = this.lane(name);
    if (l.handler) throw new Error(`a handler for ${name} is already registered`);
    l.handler = handler as JobHandler<unknown>;
    l.concurrency = concurrency;
    this.pump(l);
  }

  private pump(l: Lane): void {
    while (l.handler && !this.closing && l.active < l.concurrency && l.waiting.length) {
      const job = l.waiting.shift()!;
      if (job.opts.jobId) l.waitingIds.delete(job.opts.jobId);
      l.active++;
      job.attempts++;
      void this.run(l, job);
    }
    this.checkIdle(l);
  }

  private async run(l: Lane, job: Job): Promise<void> {
    try {
      await l.handler!(job.payload, { id: job.id, attempt: job.attempts });
      l.completed++;
    } catch (err) {
      job.failedReason = (err as Error).message;
      if (job.attempts < job.opts.attempts && !this.closing) {
        const delay = job.opts.backoffMs * 2 ** (job.attempts - 1);
        this.log.warn({ job: job.id, name: job.name, attempt: job.attempts, delay, err }, 'job failed, will retry');
        const t = setTimeout(() => {
          l.delayed.delete(t);
          l.waiting.push(job);
          this.pump(l);
        }, delay);
        t.unref();
        l.delayed.add(t);
      } else {
        this.log.error({ job: job.id, name: job.name, attempts: job.attempts, err }, 'job failed permanently');
        l.failed.unshift(job);
        if (l.failed.length > MAX_FAILED_KEPT) l.failed.pop();
      }
    } finally {
      l.active--;
      this.pump(l);
    }
  }

  private checkIdle(l: Lane): void {
    if (l.active === 0 && l.waiting.length === 0 && l.delayed.size === 0) {
      const waiters = l.idleWaiters.splice(0);
      for (const w of waiters) w();
    }
  }

  async counts(name: string): Promise<QueueCounts> {
    const l = this.lane(name);
    return { waiting: l.waiting.length, active: l.active, delayed: l.delayed.size, failed: l.failed.length, completed: l.completed };
  }

  async failed(name: string, limit = 100): Promise<JobInfo[]> {
    return this.lane(name)
      .failed.slice(0, limit)
      .map((j) => ({ id: j.id, name: j.name, payload: j.payload, attempts: j.attempts, failedReason: j.failedReason, timestamp: j.timestamp }));
  }

  async retry(name: string, id: string): Promise<void> {
    const l = this.lane(name);
    const i = l.failed.findIndex((j) => j.id === id);
    if (i < 0) throw new NotFoundError(`no failed job ${id} in ${name}`);
    const [job] = l.failed.splice(i, 1);
    job!.attempts = 0;
    l.waiting.push(job!);
    this.pump(l);
  }

  whenIdle(name: string, timeoutMs = 60_000): Promise<void> {
    const l = this.lane(name);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`queue ${name} not idle after ${timeoutMs} ms`)), timeoutMs);
      l.idleWaiters.push(() => {
        clearTimeout(t);
        resolve();
      });
      this.checkIdle(l);
    });
  }

  async close(): Promise<void> {
    this.closing = true;
    for (const l of this.lanes.values()) {
      for (const t of l.delayed) clearTimeout(t);
      l.delayed.clear();
      l.waiting = [];
    }
    await Promise.all([...this.lanes.values()].map((l) => (l.active ? new Promise<void>((r) => l.idleWaiters.push(r)) : undefined)));
  }
}
