/**
 * Batches index writes: documents from concurrent jobs are written together,
 * and each job's promise settles when its batch is written, so a job only
 * succeeds once its document is really in the index.
 *
 * One write at a time. A write starts when the oldest waiting document has
 * waited `maxDelayMs`, or when `maxDocs` are waiting; documents that arrive
 * while a write runs wait for it to end (group commit), so under load writes
 * follow one another and each takes everything that came meanwhile. A write
 * has a fixed cost whatever its size (the index's bulk round trip, the
 * retention step's catalog reads and writes: ~50-100 ms on OpenSearch), so
 * the batch size, not the document count, sets what indexing costs. (Cutting
 * a batch every `maxDelayMs` even while a write ran, as before, queued up
 * writes of 3 or 4 documents behind one another and capped indexing.)
 */
import { supersedes, type IndexedMessage } from '../src/domain/indexed-message.js';

export interface DocBatcherOptions {
  write: (docs: IndexedMessage[]) => Promise<void>;
  /** Documents per write. Bigger batches amortise the transaction/bulk round trip; cost: memory of that many parsed docs. */
  maxDocs?: number;
  /**
   * Longest a document waits for companions before its write starts, in ms
   * (unless a write is in flight: then until it ends). Adds up to this much
   * to "searchable after 250"; buys bigger batches, fewer index round trips.
   */
  maxDelayMs?: number;
}

interface Waiter {
  doc: IndexedMessage;
  /** When it arrived (performance.now()). */
  at: number;
  resolve: () => void;
  reject: (e: unknown) => void;
}

export class DocBatcher {
  private pending: Waiter[] = [];
  private timer: NodeJS.Timeout | undefined;
  /** The write in flight (never rejects: failures go to its waiters); undefined when idle. */
  private inFlight: Promise<void> | undefined;
  private maxDocs: number;
  private readonly maxDelayMs: number;

  constructor(private readonly opts: DocBatcherOptions) {
    this.maxDocs = opts.maxDocs ?? 200;
    this.maxDelayMs = opts.maxDelayMs ?? 50;
  }

  /**
   * Lowers maxDocs, e.g. to the number of jobs that can wait here at once:
   * once all of them wait, no companion can come, so waiting longer is pointless.
   */
  capMaxDocs(n: number): void {
    this.maxDocs = Math.max(1, Math.min(this.maxDocs, n));
  }

  add(doc: IndexedMessage): Promise<void> {
    return new Promise((resolve, reject) => {
      this.pending.push({ doc, at: performance.now(), resolve, reject });
      this.schedule();
    });
  }

  /** Writes everything pending now (not waiting out maxDelayMs); resolves when no write is in flight and nothing is pending. */
  async flush(): Promise<void> {
    for (;;) {
      if (this.inFlight) await this.inFlight;
      else if (this.pending.length) this.startWrite();
      else return;
    }
  }

  /** Starts a write now, or sets the timer for when the oldest waiting document is due. */
  private schedule(): void {
    // A write in flight schedules the next when it ends.
    if (this.inFlight || !this.pending.length) return;
    if (this.pending.length >= this.maxDocs) return this.startWrite();
    if (this.timer) return;
    const wait = this.pending[0]!.at + this.maxDelayMs - performance.now();
    if (wait <= 0) return this.startWrite();
    this.timer = setTimeout(() => this.startWrite(), wait);
  }

  private startWrite(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.inFlight || !this.pending.length) return;
    const batch = this.pending.splice(0, this.maxDocs);
    // Last write wins within a batch when one id appears twice, unless the earlier one was built from more of its envelopes.
    const byId = new Map<string, IndexedMessage>();
    for (const w of batch) if (!supersedes(byId.get(w.doc.id)?.envelopeIds, w.doc)) byId.set(w.doc.id, w.doc);
    this.inFlight = Promise.resolve()
      .then(() => this.opts.write([...byId.values()]))
      .then(
        () => batch.forEach((w) => w.resolve()),
        (err: unknown) => batch.forEach((w) => w.reject(err)),
      )
      .finally(() => {
        this.inFlight = undefined;
        this.schedule();
      });
  }
}
