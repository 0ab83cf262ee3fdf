import { open } from 'node:fs/promises';

/**
 * Coalesces directory fsyncs (group commit). A rename or link is durable only
 * once its directory is fsync'd; under load many writers land in the same
 * directory at once, and one fsync issued after all of their links covers
 * all of them. Each caller waits for a sync that *begins after* its request:
 * it joins a sync that is scheduled but has not begun, or else schedules one.
 * A scheduled sync waits one event-loop turn before it begins, so links that
 * finish together (a message and its envelope, other connections) share it.
 * Cost: one event-loop turn of latency, at most one fsync in flight per
 * directory.
 */
export class DirSyncer {
  private readonly scheduled = new Map<string, Promise<void>>();
  private readonly running = new Map<string, Promise<void>>();

  sync(dir: string): Promise<void> {
    const queued = this.scheduled.get(dir);
    if (queued) return queued;
    const before = this.running.get(dir) ?? Promise.resolve();
    const p = before
      .catch(() => undefined)
      .then(() => new Promise<void>((r) => setImmediate(r)))
      .then(() => {
        // From here on, new callers need a later sync.
        this.scheduled.delete(dir);
        const run = fsyncDir(dir).finally(() => {
          if (this.running.get(dir) === run) this.running.delete(dir);
        });
        this.running.set(dir, run);
        return run;
      });
    this.scheduled.set(dir, p);
    return p;
  }
}

/** fsync a directory so that the names created in it survive a crash. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
