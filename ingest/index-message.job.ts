/**
 * The index job: parse one stored message with all of its envelopes and write
 * its document to the index. Retry settings: `indexJobOptions` in index-job.ts.
 * Idempotent: the document is a pure function of the stored bytes and
 * envelopes, so running twice writes the same document.
 */
import type { Logger } from 'pino';
import type { ObjectStore } from '../src/ports/object-store.js';
import type { MessageIndex } from '../src/ports/message-index.js';
import type { JobQueue } from '../src/ports/job-queue.js';
import { parseMessage, DEFAULT_PARSE_LIMITS } from './message-parser.js';
import { buildIndexedMessage } from './index-document.js';
import { DocBatcher } from './doc-batcher.js';
import { INDEX_JOB, type IndexJobPayload } from './index-job.js';
import type { IndexedMessage } from '../src/domain/indexed-message.js';

/** Reads a stored message and builds its document (also used by `archive reindex`). */
export async function documentFor(store: ObjectStore, sha256: string): Promise<IndexedMessage | undefined> {
  const info = await store.statMessage(sha256);
  if (!info) return undefined;
  const [envelopes, raw] = await Promise.all([store.getEnvelopes(sha256), store.getMessage(sha256, { verify: false })]);
  const parsed = await parseMessage(raw, DEFAULT_PARSE_LIMITS);
  return buildIndexedMessage(sha256, info.size, parsed, envelopes);
}

export class IndexMessageJob {
  private readonly batcher: DocBatcher;

  constructor(
    private readonly store: ObjectStore,
    index: MessageIndex,
    private readonly log: Logger,
  ) {
    this.batcher = new DocBatcher({ write: (docs) => index.upsert(docs) });
  }

  async handle(payload: IndexJobPayload): Promise<void> {
    const doc = await documentFor(this.store, payload.sha256);
    if (!doc) {
      // Disposed of between enqueue and run: nothing to index.
      this.log.warn({ sha256: payload.sha256 }, 'index job for a message no longer stored');
      return;
    }
    if (doc.parseError) this.log.warn({ sha256: doc.id, reason: doc.parseError }, 'message indexed with parseError');
    await this.batcher.add(doc);
  }

  /** Starts consuming index jobs in this process. */
  register(queue: JobQueue, concurrency: number): void {
    queue.process<IndexJobPayload>(INDEX_JOB, concurrency, (p) => this.handle(p));
  }

  flush(): Promise<void> {
    return this.batcher.flush();
  }
}
