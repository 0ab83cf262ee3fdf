/**
 * Batches index writes: documents from concurrent jobs are written together,
 * and each job's promise settles when its batch is written, so a job only
 * succeeds once its document is really in the index.
 */
import type { IndexedMessage } from '../src/domain/indexed-message.js';

export interface DocBatcherOptions {
  write: (docs: IndexedMessage[]) => Promise<void>;
  /** Documents per write. Bigger batches amortise the transaction/bulk round trip; cost: memory of that many parsed docs. */
  maxDocs?: number;
  /** Longest a document waits for companions, in ms. Bounds the "searchable after 250" delay. */
  maxDelayMs?: number;
}

interface Waiter {
  doc: IndexedMessage;
  resolve: () => void;
  reject: (e: unknown) => void;
}

export class DocBatcher {
  private pending: Waiter[] = [];
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();
  private readonly maxDocs: number;
  private readonly maxDelayMs: number;

  constructor(private readonly opts: DocBatcherOptions) {
    this.maxDocs = opts.maxDocs ?? 200;
    this.maxDelayMs = opts.maxDelayMs ?? 50;
  }

  add(doc: IndexedMessage): Promise<void> {
    return new Promise((resolve, reject) => {
      this.pending.push({ doc, resolve, reject });
      if (this.pending.length >= this.maxDocs) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), this.maxDelayMs);
    });
  }

  /** Writes what is pending now; batches are written one at a time, in order. */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.pending;
    this.pending = [];
    if (!batch.length) return this.writing;
    // Last write wins within a batch when one id appears twice.
    const byId = new Map<string, IndexedMessage>();
    for (const w of batch) byId.set(w.doc.id, w.doc);
    this.writing = this.writing
      .catch(() => undefined)
      .then(() => this.opts.write([...byId.values()]))
      .then(
        () => batch.forEach((w) => w.resolve()),
        (err) => batch.forEach((w) => w.reject(err)),
      );
    return this.writing;
  }
}
