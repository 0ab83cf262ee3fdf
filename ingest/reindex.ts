/**
 * `archive reindex`: rebuilds the index and catalog from the object store
 * alone (promise 4) into a new index, swapped in at the end. The live index
 * keeps serving searches until the swap.
 */
import type { Logger } from 'pino';
import type { ObjectStore } from '../src/ports/object-store.js';
import type { MessageIndex } from '../src/ports/message-index.js';
import type { IndexedMessage } from '../src/domain/indexed-message.js';
import { documentFor } from './index-message.job.js';
import type { ParsePool } from './parse-pool.js';

export interface ReindexReport {
  messages: number;
  parseErrors: number;
  failed: { sha256: string; reason: string }[];
  seconds: number;
}

/** Messages parsed at once. Parsing is CPU-bound; more than the core count only adds memory. */
const CONCURRENCY = 4;
/** Documents per index write. */
const BATCH = 500;

export async function reindexFromStore(store: ObjectStore, index: MessageIndex, log: Logger, onProgress?: (n: number) => void, pool?: ParsePool): Promise<ReindexReport> {
  const started = Date.now();
  const report: ReindexReport = { messages: 0, parseErrors: 0, failed: [], seconds: 0 };
  const rebuild = await index.beginRebuild();
  try {
    let batch: IndexedMessage[] = [];
    const running = new Set<Promise<void>>();
    const writeBatch = async () => {
      const docs = batch;
      batch = [];
      if (docs.length) await rebuild.upsert(docs);
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
  log.info({ messages: report.messages, parseErrors: report.parseErrors, seconds: report.seconds }, 'reindex committed');
  return report;
}
