/**
 * The background job port. Adapters: `InlineQueue` (in-process, embedded) and
 * `BullQueue` (Redis, scale-out). Jobs are idempotent: a job may run twice
 * after a crash, and must give the same result.
 */

export interface JobOptions {
  /** Deduplication key: while a job with this id is waiting, another add is a no-op. */
  jobId?: string;
  /** Total tries before the job is marked failed. */
  attempts?: number;
  /** First retry delay in ms; doubles each retry (exponential backoff). */
  backoffMs?: number;
}

export interface JobInfo<P = unknown> {
  id: string;
  name: string;
  payload: P;
  attempts: number;
  failedReason?: string;
  timestamp: number;
}

export interface QueueCounts {
  waiting: number;
  active: number;
  delayed: number;
  failed: number;
  completed: number;
}

export type JobHandler<P> = (payload: P, job: { id: string; attempt: number }) => Promise<void>;

export interface JobQueue {
  readonly driver: string;

  /** Enqueues one job. Resolves when the queue has accepted it (durably, for Redis). */
  add<P>(name: string, payload: P, opts?: JobOptions): Promise<void>;

  /** Enqueues many jobs of one kind in one round trip. */
  addBulk<P>(name: string, jobs: { payload: P; opts?: JobOptions }[]): Promise<void>;

  /**
   * Starts consuming jobs of `name` in this process with at most `concurrency`
   * running at once. Call once per name.
   */
  process<P>(name: string, concurrency: number, handler: JobHandler<P>): void;

  counts(name: string): Promise<QueueCounts>;

  /** Jobs that exhausted their attempts, newest first. */
  failed(name: string, limit?: number): Promise<JobInfo[]>;

  /** Puts a failed job back to waiting. Throws NotFoundError if there is no such failed job. */
  retry(name: string, id: string): Promise<void>;

  /** Resolves when no job of `name` is waiting, delayed or active (tests, reindex). */
  whenIdle(name: string, timeoutMs?: number): Promise<void>;

  /** Stops taking jobs, waits for running ones to finish, and disconnects. */
  close(): Promise<void>;
}
