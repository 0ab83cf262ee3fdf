/**
 * A pool of worker threads that parse messages. Small messages (the vast
 * majority) are read into memory and transferred to a worker without a copy;
 * large ones are parsed by the streaming parser on the calling thread, so no
 * large message is ever held whole in memory.
 */
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { parseMessage, DEFAULT_PARSE_LIMITS, type ParsedMessage } from './message-parser.js';

/** Messages up to this size go to a worker (read whole, then transferred). Cost: this much memory per message in flight. */
export const POOL_MAX_BYTES = 4 * 1024 * 1024;

interface Pending {
  resolve: (p: ParsedMessage) => void;
  reject: (e: Error) => void;
  worker: Worker;
}

/** The compiled worker script; tests run from TypeScript sources, so look in dist/ as well. */
function workerScript(): string | undefined {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [path.join(here, 'parse-worker.js'), path.resolve(here, '../dist/ingest/parse-worker.js')];
  return candidates.find((c) => existsSync(c));
}

export class ParsePool {
  private readonly workers: Worker[] = [];
  private readonly load = new Map<Worker, number>();
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closed = false;

  /**
   * @param threads worker threads; 0 parses on the calling thread. Default:
   *   one per core, since the main thread mostly waits on I/O.
   */
  constructor(private readonly log: Logger, threads = os.availableParallelism()) {
    const script = threads > 0 ? workerScript() : undefined;
    if (threads > 0 && !script) log.warn('parse worker script not built; parsing on the main thread (run npm run build)');
    for (let i = 0; script && i < threads; i++) this.spawn(script);
  }

  private spawn(script: string): void {
    const w = new Worker(script);
    w.unref();
    this.load.set(w, 0);
    w.on('message', (m: { id: number; parsed?: ParsedMessage; error?: string }) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      this.load.set(w, (this.load.get(w) ?? 1) - 1);
      if (m.parsed) p.resolve(m.parsed);
      else p.reject(new Error(m.error ?? 'parse failed'));
    });
    w.on('error', (err) => this.onWorkerDeath(w, script, err));
    w.on('exit', (code) => {
      if (!this.closed) this.onWorkerDeath(w, script, new Error(`parse worker exited with ${code}`));
    });
    this.workers.push(w);
  }

  /** A crashed worker fails only its own messages (their jobs retry) and is replaced. */
  private onWorkerDeath(w: Worker, script: string, err: Error): void {
    const i = this.workers.indexOf(w);
    if (i < 0) return;
    this.workers.splice(i, 1);
    this.load.delete(w);
    for (const [id, p] of this.pending) {
      if (p.worker === w) {
        this.pending.delete(id);
        p.reject(err);
      }
    }
    this.log.error({ err }, 'parse worker died; replacing it');
    if (!this.closed) this.spawn(script);
  }

  /** Parses a message of `size` bytes from `open()`. */
  async parse(size: number, open: () => Promise<Readable>): Promise<ParsedMessage> {
    if (!this.workers.length || size > POOL_MAX_BYTES) return parseMessage(await open(), DEFAULT_PARSE_LIMITS);
    const chunks: Buffer[] = [];
    for await (const c of await open()) chunks.push(c as Buffer);
    const buf = Buffer.concat(chunks);
    // Copy into a fresh ArrayBuffer we own, so it can be transferred (pooled Buffers cannot).
    const bytes = new Uint8Array(buf.length);
    bytes.set(buf);
    const worker = this.workers.reduce((a, b) => ((this.load.get(a) ?? 0) <= (this.load.get(b) ?? 0) ? a : b));
    this.load.set(worker, (this.load.get(worker) ?? 0) + 1);
    const id = this.nextId++;
    return new Promise<ParsedMessage>((resolve, reject) => {
      // Watchdog: a worker stuck in a hostile message (its own timer cannot
      // fire while its thread is busy) is terminated; its messages fail over
      // to the header-only fallback and the worker is replaced.
      const watchdog = setTimeout(() => {
        this.log.error({ size }, 'parse worker unresponsive; terminating it');
        void worker.terminate();
      }, DEFAULT_PARSE_LIMITS.timeoutMs + 5_000);
      watchdog.unref();
      this.pending.set(id, {
        resolve: (p) => {
          clearTimeout(watchdog);
          resolve(p);
        },
        reject: (e) => {
          clearTimeout(watchdog);
          reject(e);
        },
        worker,
      });
      worker.postMessage({ id, bytes }, [bytes.buffer]);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
    for (const p of this.pending.values()) p.reject(new Error('parse pool closed'));
    this.pending.clear();
  }
}
