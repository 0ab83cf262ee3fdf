import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { JobQueue } from '../src/ports/job-queue.js';
import { IndexEnqueueRetry, MAX_REMEMBERED } from './enqueue-retry.js';
import { INDEX_JOB } from './index-job.js';

const log = pino({ level: 'silent' });

/** The queue's side only (the retry is what is under test): refuses while `down`, records what it takes. */
function queueThatIs(state: { down: boolean; taken: { name: string; sha256: string; jobId?: string }[] }): JobQueue {
  return {
    addBulk: async (name: string, jobs: { payload: unknown; opts?: { jobId?: string } }[]) => {
      if (state.down) throw new Error('queue unavailable');
      for (const j of jobs) state.taken.push({ name, sha256: (j.payload as { sha256: string }).sha256, jobId: j.opts?.jobId });
    },
  } as unknown as JobQueue;
}

describe('IndexEnqueueRetry', () => {
  it('keeps refused index jobs until the queue takes them, then forgets them', async () => {
    const state = { down: true, taken: [] as { name: string; sha256: string; jobId?: string }[] };
    const r = new IndexEnqueueRetry(queueThatIs(state), log, 60_000);
    r.remember('a'.repeat(64), 10);
    r.remember('b'.repeat(64), 20);
    r.remember('a'.repeat(64), 10);
    expect(r.size).toBe(2);
    expect(await r.retry()).toBe(0);
    expect(r.size).toBe(2);
    state.down = false;
    expect(await r.retry()).toBe(2);
    expect(r.size).toBe(0);
    expect(state.taken).toEqual([
      { name: INDEX_JOB, sha256: 'a'.repeat(64), jobId: 'a'.repeat(64) },
      { name: INDEX_JOB, sha256: 'b'.repeat(64), jobId: 'b'.repeat(64) },
    ]);
    r.close();
  });

  it('a message remembered again while its add is on its way is kept for the next round', async () => {
    let release!: () => void;
    const taken: string[] = [];
    const queue = {
      addBulk: async (_name: string, jobs: { payload: { sha256: string } }[]) => {
        await new Promise<void>((r) => (release = r));
        for (const j of jobs) taken.push(j.payload.sha256);
      },
    } as unknown as JobQueue;
    const r = new IndexEnqueueRetry(queue, log, 60_000);
    r.remember('d'.repeat(64), 1);
    const round = r.retry();
    expect(await r.retry()).toBe(0); // one round at a time
    r.remember('d'.repeat(64), 1); // a second delivery, refused meanwhile
    release();
    expect(await round).toBe(1);
    expect(r.size).toBe(1);
    r.close();
  });

  it('retries on its own timer', async () => {
    const state = { down: false, taken: [] as { name: string; sha256: string }[] };
    const r = new IndexEnqueueRetry(queueThatIs(state), log, 20);
    r.remember('c'.repeat(64), 1);
    await new Promise((res) => setTimeout(res, 200));
    expect(state.taken.map((t) => t.sha256)).toEqual(['c'.repeat(64)]);
    expect(r.size).toBe(0);
    r.close();
  });

  it(`remembers at most ${MAX_REMEMBERED} messages (the rest are left to start-up reconciliation)`, () => {
    const r = new IndexEnqueueRetry(queueThatIs({ down: true, taken: [] }), log, 60_000);
    for (let i = 0; i <= MAX_REMEMBERED; i++) r.remember(i.toString(16).padStart(64, '0'), 1);
    expect(r.size).toBe(MAX_REMEMBERED);
    r.close();
  });
});
