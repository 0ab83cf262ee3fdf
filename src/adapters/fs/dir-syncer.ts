import { open } from 'node:fs/promises';

/**
 * Coalesces directory fsyncs. A rename or link is durable only once its
 * directory is fsync'd; under load many writers land in the same directory at
 * once, and one fsync issued after all of their links covers all of them.
 * So each caller waits for a sync that *starts after* its request: if one is
 * already running, the caller joins the next one, which serves every caller
 * that arrived meanwhile. Cost: at most two fsyncs in flight per directory.
 */
export class DirSyncer {
  private readonly running = new Map<string, Promise<void>>();
  private readonly next = new Map<string, Promise<void>>();

  sync(dir: string): Promise<void> {
    const queued = this.next.get(dir);
    if (queued) return queued;
    const current = this.running.get(dir);
    if (!current) return this.start(dir);
    const p = current
      .catch(() => undefined)
      .then(() => {
        this.next.delete(dir);
        return this.start(dir);
      });
    this.next.set(dir, p);
    return p;
  }

  private start(dir: string): Promise<void> {
    const p = fsyncDir(dir).finally(() => {
      if (this.running.get(dir) === p) this.running.delete(dir);
    });
    this.running.set(dir, p);
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
