/**
 * Start-up reconciliation: finds messages that are stored but not indexed
 * (a crash between 250 and indexing, a lost in-memory job, Redis down at
 * ingest), and indexed messages whose document lacks a stored envelope (a
 * later delivery of the same message whose index job was lost the same
 * ways: its recipients, Bcc custodians included, would be missing from
 * search, holds and exports), and enqueues them. The store is the truth;
 * the index catches up. Two passes over the store's listings (messages,
 * then envelope names); no object is read.
 */
import type { Logger } from 'pino';
import type { ObjectStore } from '../src/ports/object-store.js';
import type { MessageIndex } from '../src/ports/message-index.js';
import type { JobQueue } from '../src/ports/job-queue.js';
import { INDEX_JOB, indexJobOptions, type IndexJobPayload } from './index-job.js';

/** Ids checked against the index per round trip. */
const BATCH = 1000;
/**
 * Messages whose envelope ids are compared per round trip. Smaller: on
 * SQLite the lookup reads each document's JSON, synchronously, so a batch
 * holds the event loop (SMTP, HTTP) for its duration (~20 ms at this size).
 */
const ENVELOPE_BATCH = 250;

export async function reconcileIndex(store: ObjectStore, index: MessageIndex, queue: JobQueue, log: Logger): Promise<{ checked: number; enqueued: number; stale: number }> {
  let checked = 0;
  let enqueued = 0;
  let stale = 0;
  const enqueue = async (jobs: IndexJobPayload[]) => {
    if (jobs.length) await queue.addBulk<IndexJobPayload>(INDEX_JOB, jobs.map((payload) => ({ payload, opts: indexJobOptions(payload.sha256) })));
  };
  await inBatches(store.listMessages(), BATCH, async (batch) => {
    const have = await index.existing(batch.map((m) => m.sha256));
    const missing = batch.filter((m) => !have.has(m.sha256));
    await enqueue(missing.map((m) => ({ sha256: m.sha256, size: m.size })));
    enqueued += missing.length;
    checked += batch.length;
  });
  await inBatches(store.listEnvelopeIds(), ENVELOPE_BATCH, async (batch) => {
    const indexed = await index.indexedEnvelopeIds(batch.map((m) => m.sha256));
    const behind = batch.filter((m) => {
      const have = indexed.get(m.sha256);
      return have !== undefined && m.ids.some((id) => !have.includes(id));
    });
    await enqueue(behind.map((m) => ({ sha256: m.sha256 })));
    stale += behind.length;
  });
  log.info({ checked, enqueued, stale }, 'index reconciliation done');
  return { checked, enqueued, stale };
}

/** Runs `fn` over a listing, `size` items at a time. */
async function inBatches<T>(items: AsyncIterable<T>, size: number, fn: (batch: T[]) => Promise<void>): Promise<void> {
  let batch: T[] = [];
  for await (const item of items) {
    batch.push(item);
    if (batch.length >= size) {
      await fn(batch);
      batch = [];
    }
  }
  if (batch.length) await fn(batch);
}
