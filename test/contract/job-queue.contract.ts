/**
 * The JobQueue contract: every adapter (InlineQueue, BullQueue) must pass it
 * unchanged. A behaviour that differs between the adapters is a bug.
 *
 * Timings are small (backoff 20-50 ms) so the suite stays fast; assertions on
 * time are lower bounds only, never "finished within", except for timeouts
 * that must fire.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NotFoundError } from '../../src/errors.js';
import type { JobQueue } from '../../src/ports/job-queue.js';

export type MakeQueue = () => JobQueue | Promise<JobQueue>;

interface Payload {
  n: number;
  tag?: string;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A promise to release by hand: lets a test hold a job in the middle of its run. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
}

/** Polls `cond` every 10 ms until true; fails the test after `timeoutMs`. */
async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** Timer slack: a timer may fire a millisecond or two "early" against Date.now(). */
const SLACK_MS = 5;

export function jobQueueContract(adapter: string, makeQueue: MakeQueue): void {
  describe(`JobQueue contract: ${adapter}`, () => {
    let queue: JobQueue;
    /** A job name of its own per test: a Redis-backed queue keeps state between tests. */
    const jobName = (label: string) => `${label}-${randomUUID().slice(0, 8)}`;

    beforeEach(async () => {
      queue = await makeQueue();
    });

    afterEach(async () => {
      await queue.close();
    });

    it('runs jobs with their payload, one attempt each when they succeed', async () => {
      const name = jobName('payload');
      const seen: { payload: Payload & { nested?: unknown }; id: string; attempt: number }[] = [];
      queue.process<Payload>(name, 2, async (payload, job) => {
        seen.push({ payload, id: job.id, attempt: job.attempt });
      });
      await queue.add(name, { n: 1, tag: 'one', nested: { list: [1, 'two', null], ok: true } });
      await queue.addBulk<Payload>(name, [{ payload: { n: 2 } }, { payload: { n: 3 }, opts: { attempts: 2 } }, { payload: { n: 4 } }]);
      await queue.whenIdle(name, 5000);

      expect(seen.map((s) => s.payload.n).sort()).toEqual([1, 2, 3, 4]);
      expect(seen.find((s) => s.payload.n === 1)!.payload).toEqual({ n: 1, tag: 'one', nested: { list: [1, 'two', null], ok: true } });
      expect(seen.every((s) => s.attempt === 1)).toBe(true);
      expect(new Set(seen.map((s) => s.id)).size).toBe(4);
      expect(seen.every((s) => typeof s.id === 'string' && s.id.length > 0)).toBe(true);
    });

    it('never runs more jobs of a name at once than its concurrency', async () => {
      const name = jobName('concurrency');
      let running = 0;
      let max = 0;
      let done = 0;
      await queue.addBulk<Payload>(
        name,
        Array.from({ length: 9 }, (_, n) => ({ payload: { n } })),
      );
      queue.process<Payload>(name, 3, async () => {
        running++;
        max = Math.max(max, running);
        await sleep(80);
        running--;
        done++;
      });
      await queue.whenIdle(name, 10_000);
      expect(done).toBe(9);
      expect(max).toBe(3);
    });

    it('retries a failing job with doubling backoff, then it succeeds', async () => {
      const name = jobName('retry-backoff');
      const starts: { attempt: number; at: number }[] = [];
      queue.process<Payload>(name, 1, async (_payload, job) => {
        starts.push({ attempt: job.attempt, at: Date.now() });
        if (job.attempt < 3) throw new Error(`transient ${job.attempt}`);
      });
      await queue.add<Payload>(name, { n: 1 }, { attempts: 5, backoffMs: 50 });
      await queue.whenIdle(name, 10_000);

      expect(starts.map((s) => s.attempt)).toEqual([1, 2, 3]);
      // First retry after >= backoffMs, the second after >= 2 x backoffMs.
      expect(starts[1]!.at - starts[0]!.at).toBeGreaterThanOrEqual(50 - SLACK_MS);
      expect(starts[2]!.at - starts[1]!.at).toBeGreaterThanOrEqual(100 - SLACK_MS);
      const c = await queue.counts(name);
      expect(c).toMatchObject({ failed: 0, completed: 1, waiting: 0, active: 0, delayed: 0 });
      expect(await queue.failed(name)).toEqual([]);
    });

    it('a job that always fails ends in failed() with its reason and attempts; retry() runs it again with full attempts', async () => {
      const name = jobName('always-fails');
      let healed = false;
      let calls = 0;
      queue.process<Payload>(name, 1, async (payload) => {
        calls++;
        if (!healed) throw new Error(`boom ${payload.n}`);
      });
      const before = Date.now();
      await queue.add<Payload>(name, { n: 7, tag: 'x' }, { attempts: 3, backoffMs: 20 });
      await queue.whenIdle(name, 10_000);

      expect(calls).toBe(3);
      const failed = await queue.failed(name);
      expect(failed).toHaveLength(1);
      const f = failed[0]!;
      expect(f).toMatchObject({ name, payload: { n: 7, tag: 'x' }, attempts: 3, failedReason: 'boom 7' });
      expect(f.timestamp).toBeGreaterThanOrEqual(before - SLACK_MS);
      expect(f.timestamp).toBeLessThanOrEqual(Date.now());
      expect((await queue.counts(name)).failed).toBe(1);

      // Retried while still broken: it gets all 3 attempts again, and fails again.
      await queue.retry(name, f.id);
      await queue.whenIdle(name, 10_000);
      expect(calls).toBe(6);
      expect(await queue.failed(name)).toMatchObject([{ id: f.id, attempts: 3, failedReason: 'boom 7' }]);

      // Fixed, then retried: it runs once and succeeds.
      healed = true;
      await queue.retry(name, f.id);
      await queue.whenIdle(name, 10_000);
      expect(calls).toBe(7);
      expect(await queue.failed(name)).toEqual([]);
      expect(await queue.counts(name)).toMatchObject({ failed: 0, completed: 1 });

      // Nothing failed under that id any more, and no such id at all.
      await expect(queue.retry(name, f.id)).rejects.toBeInstanceOf(NotFoundError);
      await expect(queue.retry(name, 'no-such-job')).rejects.toBeInstanceOf(NotFoundError);
    });

    it('failed() lists newest first and honours its limit', async () => {
      const name = jobName('failed-order');
      queue.process<Payload>(name, 1, async (payload) => {
        throw new Error(`fail ${payload.n}`);
      });
      await queue.add<Payload>(name, { n: 1 }, { attempts: 1 });
      await queue.whenIdle(name, 5000);
      await sleep(5); // distinct timestamps
      await queue.add<Payload>(name, { n: 2 }, { attempts: 1 });
      await queue.whenIdle(name, 5000);

      const all = await queue.failed(name);
      expect(all.map((f) => f.payload)).toEqual([{ n: 2 }, { n: 1 }]);
      expect(all.map((f) => f.failedReason)).toEqual(['fail 2', 'fail 1']);
      expect((await queue.failed(name, 1)).map((f) => f.payload)).toEqual([{ n: 2 }]);
    });

    it('a jobId is deduplicated while its job is waiting: the first add wins', async () => {
      const name = jobName('dedup-waiting');
      await queue.add<Payload>(name, { n: 1 }, { jobId: 'msg-a' });
      await queue.add<Payload>(name, { n: 2 }, { jobId: 'msg-a' });
      await queue.addBulk<Payload>(name, [
        { payload: { n: 3 }, opts: { jobId: 'msg-a' } },
        { payload: { n: 4 }, opts: { jobId: 'msg-b' } },
        { payload: { n: 5 }, opts: { jobId: 'msg-b' } },
        { payload: { n: 6 } },
      ]);
      expect(await queue.counts(name)).toMatchObject({ waiting: 3, active: 0 });

      const seen: number[] = [];
      queue.process<Payload>(name, 1, async (payload) => {
        seen.push(payload.n);
      });
      await queue.whenIdle(name, 5000);
      expect(seen.sort()).toEqual([1, 4, 6]);
    });

    it('many adds at once (fire-and-forget, as ingest makes them) each land once; concurrent adds of one jobId dedup as one after another would', async () => {
      const name = jobName('concurrent-adds');
      // 60 adds without awaiting any; ids m-0..m-39, so the last 20 repeat ids added just before them.
      const adds = Array.from({ length: 60 }, (_, n) => queue.add<Payload>(name, { n }, { jobId: `m-${n % 40}` }));
      // Some without a jobId, interleaved.
      adds.push(...Array.from({ length: 5 }, (_, k) => queue.add<Payload>(name, { n: 100 + k })));
      await Promise.all(adds);
      expect(await queue.counts(name)).toMatchObject({ waiting: 45, active: 0 });

      const seen: number[] = [];
      queue.process<Payload>(name, 4, async (payload) => {
        seen.push(payload.n);
      });
      await queue.whenIdle(name, 10_000);
      // The first add of each id wins.
      expect(seen.sort((a, b) => a - b)).toEqual([...Array.from({ length: 40 }, (_, n) => n), 100, 101, 102, 103, 104]);
    });

    it('the same jobId added again after its job completed runs again (and again)', async () => {
      const name = jobName('dedup-completed');
      const seen: number[] = [];
      queue.process<Payload>(name, 1, async (payload) => {
        seen.push(payload.n);
      });
      for (const n of [1, 2, 3, 4]) {
        await queue.add<Payload>(name, { n }, { jobId: 'msg-a' });
        await queue.whenIdle(name, 5000);
      }
      await queue.addBulk<Payload>(name, [{ payload: { n: 5 }, opts: { jobId: 'msg-a' } }]);
      await queue.whenIdle(name, 5000);
      expect(seen).toEqual([1, 2, 3, 4, 5]);
      expect(await queue.counts(name)).toMatchObject({ waiting: 0, failed: 0 });
    });

    it('the same jobId added again after its job failed runs again', async () => {
      const name = jobName('dedup-failed');
      const seen: number[] = [];
      queue.process<Payload>(name, 1, async (payload) => {
        seen.push(payload.n);
        if (payload.n === 1) throw new Error('first one fails');
      });
      await queue.add<Payload>(name, { n: 1 }, { jobId: 'msg-a', attempts: 1 });
      await queue.whenIdle(name, 5000);
      await queue.add<Payload>(name, { n: 2 }, { jobId: 'msg-a', attempts: 1 });
      await queue.whenIdle(name, 5000);
      expect(seen).toEqual([1, 2]);
    });

    it('the same jobId added while its job runs runs once more after it (further adds dedup)', async () => {
      const name = jobName('dedup-active');
      const seen: number[] = [];
      const hold = gate();
      let started = false;
      queue.process<Payload>(name, 1, async (payload) => {
        seen.push(payload.n);
        if (payload.n === 1) {
          started = true;
          await hold.promise;
        }
      });
      await queue.add<Payload>(name, { n: 1 }, { jobId: 'msg-a' });
      await waitFor('the first job to start', () => started);
      // A new envelope arrived after the running job read the store: it must run again.
      await queue.add<Payload>(name, { n: 2 }, { jobId: 'msg-a' });
      await queue.add<Payload>(name, { n: 3 }, { jobId: 'msg-a' });
      hold.open();
      await queue.whenIdle(name, 5000);
      expect(seen).toEqual([1, 2]);
    });

    it('whenIdle resolves when nothing is waiting, running or delayed, and rejects after its timeout', async () => {
      const name = jobName('when-idle');
      // Nothing ever added: idle at once.
      await queue.whenIdle(name, 1000);

      // Waiting with no handler: never idle.
      await queue.add<Payload>(name, { n: 1 });
      let t0 = Date.now();
      await expect(queue.whenIdle(name, 150)).rejects.toThrow(/not idle/);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(150 - SLACK_MS);
      expect(Date.now() - t0).toBeLessThan(3000);

      // Running: not idle until the handler returns.
      const hold = gate();
      let finished = 0;
      queue.process<Payload>(name, 1, async (payload) => {
        if (payload.n === 2) throw new Error('fails, retries much later');
        await hold.promise;
        finished++;
      });
      await waitFor('the job to start', async () => (await queue.counts(name)).active === 1);
      t0 = Date.now();
      await expect(queue.whenIdle(name, 150)).rejects.toThrow(/not idle/);
      expect(Date.now() - t0).toBeLessThan(3000);
      const idle = queue.whenIdle(name, 5000).then(() => finished);
      await sleep(50);
      hold.open();
      expect(await idle).toBe(1);

      // Delayed (waiting out a retry backoff): not idle either.
      await queue.add<Payload>(name, { n: 2 }, { attempts: 2, backoffMs: 60_000 });
      await queue.add<Payload>(name, { n: 3 });
      await waitFor('a job to fail once', async () => (await queue.counts(name)).delayed === 1);
      await expect(queue.whenIdle(name, 100)).rejects.toThrow(/not idle/);
    });

    it('close() waits for a running job to finish, and later adds are refused', async () => {
      const name = jobName('close');
      let started = false;
      let finished = false;
      queue.process<Payload>(name, 1, async () => {
        started = true;
        await sleep(300);
        finished = true;
      });
      await queue.add<Payload>(name, { n: 1 });
      await waitFor('the job to start', () => started);
      await queue.close();
      expect(finished).toBe(true);
      await expect(queue.add<Payload>(name, { n: 2 })).rejects.toThrow();
    });

    it('counts each state', async () => {
      const name = jobName('counts');
      const empty = { waiting: 0, active: 0, delayed: 0, failed: 0, completed: 0 };
      expect(await queue.counts(name)).toEqual(empty);

      await queue.addBulk<Payload>(name, [
        { payload: { n: 1 } },
        { payload: { n: 2 } },
        { payload: { n: 3, tag: 'fail' }, opts: { attempts: 1 } },
        { payload: { n: 4, tag: 'hold' } },
      ]);
      expect(await queue.counts(name)).toEqual({ ...empty, waiting: 4 });

      const hold = gate();
      queue.process<Payload>(name, 4, async (payload) => {
        if (payload.tag === 'fail') throw new Error('fails');
        if (payload.tag === 'hold') await hold.promise;
        if (payload.tag === 'retry') throw new Error('fails, retries much later');
      });
      await waitFor('3 jobs to finish', async () => {
        const c = await queue.counts(name);
        return c.completed + c.failed === 3;
      });
      expect(await queue.counts(name)).toEqual({ ...empty, active: 1, completed: 2, failed: 1 });

      hold.open();
      await queue.whenIdle(name, 5000);
      expect(await queue.counts(name)).toEqual({ ...empty, completed: 3, failed: 1 });

      await queue.add<Payload>(name, { n: 5, tag: 'retry' }, { attempts: 2, backoffMs: 60_000 });
      await waitFor('the job to wait for its retry', async () => (await queue.counts(name)).delayed === 1);
      expect(await queue.counts(name)).toEqual({ ...empty, delayed: 1, completed: 3, failed: 1 });
    });
  });
}
