/**
 * Index jobs that could not be enqueued (Redis down or hung) are remembered
 * and added again every RETRY_INTERVAL_MS until the queue takes them, so a
 * message acknowledged during a Redis outage becomes searchable once Redis is
 * back, without waiting for the next start's reconciliation. Bounded: beyond
 * MAX_REMEMBERED messages the rest are left to that reconciliation (the
 * store is the truth; nothing is lost either way).
 */
import type { Logger } from 'pino';
import type { JobQueue } from '../src/ports/job-queue.js';
import { INDEX_JOB, indexJobOptions, type IndexJobPayload } from './index-job.js';

export const RETRY_INTERVAL_MS = 10_000;
export const MAX_REMEMBERED = 100_000;
/** Jobs added per retry round (one addBulk). */
const RETRY_BATCH = 1000;

export class IndexEnqueueRetry {
  /** Per message: its size, and a stamp that changes whenever it is remembered again. */
  private readonly pending = new Map<string, { size: number; stamp: number }>();
  private stamps = 0;
  private timer: NodeJS.Timeout | undefined;
  private retrying = false;
  private closed = false;
  private warnedFull = false;

  constructor(
    private readonly queue: JobQueue,
    private readonly log: Logger,
    private readonly intervalMs = RETRY_INTERVAL_MS,
  ) {}

  /** Remembers a message whose index job was refused, and schedules a retry. */
  remember(sha256: string, size: number): void {
    if (this.closed) return;
    if (!this.pending.has(sha256) && this.pending.size >= MAX_REMEMBERED) {
      if (!this.warnedFull) this.log.warn({ remembered: this.pending.size }, 'too many index jobs wait to be enqueued again; the rest are left to start-up reconciliation');
      this.warnedFull = true;
      return;
    }
    this.pending.set(sha256, { size, stamp: ++this.stamps });
    this.schedule();
  }

  /** Messages waiting to be enqueued again. */
  get size(): number {
    return this.pending.size;
  }

  /** One round: adds up to RETRY_BATCH remembered jobs; those the queue took are forgotten. Returns how many. */
  async retry(): Promise<number> {
    this.timer = undefined;
    // One round at a time: a remember() during a hung add does not start a second one.
    if (this.retrying) return 0;
    this.retrying = true;
    const batch = [...this.pending].slice(0, RETRY_BATCH);
    let added = 0;
    try {
      if (batch.length) {
        await this.queue.addBulk<IndexJobPayload>(INDEX_JOB, batch.map(([sha256, { size }]) => ({ payload: { sha256, size }, opts: indexJobOptions(sha256) })));
        // Forgotten unless remembered again meanwhile (another delivery, refused while this add was on its way).
        for (const [sha256, { stamp }] of batch) if (this.pending.get(sha256)?.stamp === stamp) this.pending.delete(sha256);
        added = batch.length;
        this.warnedFull = false;
        this.log.info({ enqueued: added, left: this.pending.size }, 'index jobs enqueued again after the queue was unavailable');
      }
    } catch (err) {
      this.log.warn({ err: (err as Error).message, waiting: this.pending.size }, 'the queue still refuses index jobs; retrying later');
    } finally {
      this.retrying = false;
    }
    if (this.pending.size) this.schedule();
    return added;
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => void this.retry(), this.intervalMs);
    this.timer.unref();
  }
}
