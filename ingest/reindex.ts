/**
 * `archive reindex`: rebuilds the index and catalog from the object store
 * alone (promise 4) into a new index, swapped in at the end. The live index
 * keeps serving searches until the swap.
 *
 * Each batch written to the new index is also handed to `afterBatch`, as the
 * index job hands its batches to its hook: `archive reindex` re-applies the
 * current retention policies and legal holds there, so that a message whose
 * retention record is missing (a catalog restored from an older backup, an
 * ingest that crashed between indexing and the retention step) gets its
 * retain-until and holds back. That is idempotent and never shortens
 * anything, so it is safe on messages whose records are intact, and it does
 * not wait for the commit: what it applies follows from the stored message
 * alone, whatever becomes of the rebuilt index.
 */
import type { Logger } from 'pino';
import type { ObjectStore } from '../src/ports/object-store.js';
import type { MessageIndex } from '../src/ports/message-index.js';
import type { IndexedMessage } from '../src/domain/indexed-message.js';
import { documentFor } from './index-message.job.js';
import type { ParsePool } from './parse-pool.js';

/** Runs after each batch of documents is written to the rebuilt index; an error fails the reindex (the live index is left as it was). */
export type ReindexBatchHook = (docs: IndexedMessage[]) => Promise<unknown>;

export interface ReindexReport {
  messages: number;
  /** Documents handed to the batch hook (retention re-applied); 0 without one. */
  retentionApplied: number;
  parseErrors: number;
  failed: { sha256: string; reason: string }[];
  seconds: number;
}

/** Messages parsed at once. Parsing is CPU-bound; more than the core count only adds memory. */
const CONCURRENCY = 4;
/** Documents per index write. */
const BATCH = 500;

export async function reindexFromStore(
  store: ObjectStore,
  index: MessageIndex,
  log: Logger,
  onProgress?: (n: number) => void,
  pool?: ParsePool,
  afterBatch?: ReindexBatchHook,
): Promise<ReindexReport> {
  const started = Date.now();
  const report: ReindexReport = { messages: 0, retentionApplied: 0, parseErrors: 0, failed: [], seconds: 0 };
  const rebuild = await index.beginRebuild();
  try {
    let batch: IndexedMessage[] = [];
    const running = new Set<Promise<void>>();
    const writeBatch = async () => {
      const docs = batch;
      batch = [];
      if (!docs.length) return;
      await rebuild.upsert(docs);
      if (afterBatch) {
        await afterBatch(docs);
        report.retentionApplied += docs.length;
      }
    };
    for await (const m of store.listMessages()) {
      const p = documentFor(store, m.sha256, pool).then(
        (doc) => {
          if (!doc) return;
          report.messages++;
          if (doc.parseError) report.parseErrors++;
          batch.push(doc);
          onProgress?.(report.messages);
        },
        (err: Error) => {
          report.failed.push({ sha256: m.sha256, reason: err.message });
        },
      );
      running.add(p);
      void p.finally(() => running.delete(p));
      if (running.size >= CONCURRENCY) await Promise.race(running);
      if (batch.length >= BATCH) await writeBatch();
    }
    await Promise.all(running);
    await writeBatch();
    if (report.failed.length) throw new Error(`${report.failed.length} messages could not be read; the live index was left as it was`);
    await rebuild.commit();
  } catch (err) {
    await rebuild.abort().catch((e) => log.error({ err: e }, 'could not drop the half-built index'));
    throw Object.assign(err as Error, { report });
  }
  report.seconds = (Date.now() - started) / 1000;
  log.info({ messages: report.messages, retentionApplied: report.retentionApplied, parseErrors: report.parseErrors, seconds: report.seconds }, 'reindex committed');
  return report;
}
