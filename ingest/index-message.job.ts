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
import type { Readable } from 'node:stream';
import { parseMessage, headerOnlyParse, DEFAULT_PARSE_LIMITS, type ParsedMessage } from './message-parser.js';
import type { ParsePool } from './parse-pool.js';
import { buildIndexedMessage } from './index-document.js';
import { DocBatcher } from './doc-batcher.js';
import { INDEX_JOB, type IndexJobPayload } from './index-job.js';
import type { IndexedMessage } from '../src/domain/indexed-message.js';
import type { Envelope } from '../src/domain/types.js';
import { NotFoundError } from '../src/errors.js';

/** Bytes read for the header-only fallback when the parser fails. */
const FALLBACK_HEAD = 256 * 1024;

/**
 * Reads a stored message and builds its document (also used by `archive
 * reindex`). Never fails on hostile content: when parsing fails or times
 * out, the document is built from the headers we can read and the envelopes,
 * flagged parseError (promise 3). Only storage errors propagate.
 */
export async function documentFor(
  store: ObjectStore,
  sha256: string,
  pool?: ParsePool,
  knownSize?: number,
  /** Envelopes the caller holds (the job payload's); the store lists the message's envelopes all the same. */
  knownEnvelopes?: Envelope[],
): Promise<IndexedMessage | undefined> {
  let size = knownSize;
  if (size === undefined) {
    const info = await store.statMessage(sha256);
    if (!info) return undefined;
    size = info.size;
  }
  const envelopes = await store.getEnvelopes(sha256, knownEnvelopes);
  // Every stored message has an envelope (both are written before the 250),
  // so none means it was disposed of since the size was known.
  if (envelopes.length === 0 && knownSize !== undefined && !(await store.statMessage(sha256))) return undefined;
  // The parser reads it whole; a fresh local copy (hash-checked) may stand in for the store's bytes here.
  const open = () => store.getMessage(sha256, { verify: false, recentCopy: true });
  let parsed: ParsedMessage;
  try {
    parsed = pool ? await pool.parse(size, open) : await parseMessage(await open(), DEFAULT_PARSE_LIMITS);
  } catch (err) {
    if (err instanceof NotFoundError) return undefined;
    try {
      parsed = headerOnlyParse(await readHead(await open(), FALLBACK_HEAD), (err as Error).message);
    } catch (again) {
      if (again instanceof NotFoundError) return undefined;
      throw again;
    }
  }
  return buildIndexedMessage(sha256, size, parsed, envelopes);
}

async function readHead(stream: Readable, max: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of stream) {
    parts.push(c as Buffer);
    n += (c as Buffer).length;
    if (n >= max) break;
  }
  stream.destroy();
  return Buffer.concat(parts).subarray(0, max);
}

export interface IndexMessageJobOptions {
  /** Longest a document waits for companions before its batch is written, in ms (DocBatcher's maxDelayMs). */
  batchDelayMs?: number;
}

export class IndexMessageJob {
  private readonly batcher: DocBatcher;

  constructor(
    private readonly store: ObjectStore,
    index: MessageIndex,
    private readonly log: Logger,
    private readonly pool?: ParsePool,
    /**
     * Runs after each batch is in the index, before its jobs succeed (the
     * retention engine applies policies and holds: retain-until set at
     * ingest, future messages held). A failure fails the batch's jobs, which
     * retry; both steps are idempotent.
     */
    afterIndex?: (docs: IndexedMessage[]) => Promise<unknown>,
    opts: IndexMessageJobOptions = {},
  ) {
    this.batcher = new DocBatcher({
      write: async (docs) => {
        await index.upsert(docs);
        if (afterIndex) await afterIndex(docs);
      },
      maxDelayMs: opts.batchDelayMs,
    });
  }

  async handle(payload: IndexJobPayload): Promise<void> {
    const doc = await documentFor(this.store, payload.sha256, this.pool, payload.size, payload.envelope ? [payload.envelope] : undefined);
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
    // Once every job slot waits for the batch, no companion can come: write at once.
    this.batcher.capMaxDocs(concurrency);
    queue.process<IndexJobPayload>(INDEX_JOB, concurrency, (p) => this.handle(p));
  }

  flush(): Promise<void> {
    return this.batcher.flush();
  }
}
