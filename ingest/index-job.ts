import type { JobOptions } from '../src/ports/job-queue.js';

/** Name and payload of the job that indexes one stored message (all of its envelopes). */
export const INDEX_JOB = 'index-message';

export interface IndexJobPayload {
  sha256: string;
  /**
   * Size in bytes when the producer knows it (ingest, reconciliation): saves
   * the job a stat of the object (one request per message on S3). Absent in
   * jobs from older versions; the job stats then.
   */
  size?: number;
}

/**
 * Retry: 8 attempts, exponential backoff from 2 s (2, 4, 8 ... 256 s: about
 * 8.5 minutes in all), enough to ride out an index restart; after that the
 * job stays in the failed list and start-up reconciliation retries it.
 * Dedup by sha256: while a job for a message waits, another delivery of the
 * same message does not add a second one.
 */
export function indexJobOptions(sha256: string): JobOptions {
  return { jobId: sha256, attempts: 8, backoffMs: 2000 };
}
