/**
 * Start-up reconciliation: finds messages that are stored but not indexed
 * (a crash between 250 and indexing, a lost in-memory job, Redis down at
 * ingest) and enqueues them. The store is the truth; the index catches up.
 */
import type { Logger } from 'pino';
import type { ObjectStore } from '../src/ports/object-store.js';
import type { MessageIndex } from '../src/ports/message-index.js';
import type { JobQueue } from '../src/ports/job-queue.js';
import { INDEX_JOB, indexJobOptions, type IndexJobPayload } from './index-job.js';

/** Ids checked against the index per round trip. */
const BATCH = 1000;

export async function reconcileIndex(store: ObjectStore, index: MessageIndex, queue: JobQueue, log: Logger): Promise<{ checked: number; enqueued: number }> {
  let checked = 0;
  let enqueued = 0;
  let batch: { sha256: string; size: number }[] = [];
  const flush = async () => {
    const have = await index.existing(batch.map((m) => m.sha256));
    const missing = batch.filter((m) => !have.has(m.sha256));
    if (missing.length) {
      await queue.addBulk<IndexJobPayload>(INDEX_JOB, missing.map((m) => ({ payload: { sha256: m.sha256, size: m.size }, opts: indexJobOptions(m.sha256) })));
      enqueued += missing.length;
    }
    checked += batch.length;
    batch = [];
  };
  for await (const m of store.listMessages()) {
    batch.push({ sha256: m.sha256, size: m.size });
    if (batch.length >= BATCH) await flush();
  }
  if (batch.length) await flush();
  log.info({ checked, enqueued }, 'index reconciliation done');
  return { checked, enqueued };
}
