import type { JobInfo, JobOptions } from '../src/ports/job-queue.js';
import type { Envelope } from '../src/domain/types.js';

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
  /**
   * The envelope the enqueuing delivery wrote, when the producer has it
   * (ingest) and it is small (ENVELOPE_PAYLOAD_MAX_BYTES). The job still
   * lists the message's envelopes in the store, which stays the truth; an
   * S3 store then skips the read of this one (one request per message).
   */
  envelope?: Envelope;
}

/**
 * A failed job as the failed-jobs API and `archive jobs failed` show it. An
 * index job's carried envelope (its recipients, Bcc and expanded lists
 * included) stays internal: an administrator scoped to some mailboxes must not
 * read the recipients of other mail there. Its id still says which delivery
 * queued the job. Other jobs are shown as they are.
 */
export function failedJobView(job: JobInfo): JobInfo {
  if (job.name !== INDEX_JOB || typeof job.payload !== 'object' || job.payload === null) return job;
  const { envelope, ...rest } = job.payload as IndexJobPayload;
  return envelope ? { ...job, payload: { ...rest, envelopeId: envelope.id } } : job;
}

/**
 * Largest envelope (as JSON, bytes) carried in an index job's payload. Most
 * are under 1 KB; a journal report with thousands of recipients is not
 * carried. Cost: Redis keeps the payload of each waiting job and of the last
 * 1000 completed ones.
 */
export const ENVELOPE_PAYLOAD_MAX_BYTES = 16 * 1024;

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
