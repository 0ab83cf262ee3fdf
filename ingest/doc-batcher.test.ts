import { describe, expect, it } from 'vitest';
import type { IndexedMessage } from '../src/domain/indexed-message.js';
import { DocBatcher } from './doc-batcher.js';

const doc = (id: string) => ({ id }) as IndexedMessage;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A write that records its batch and finishes when the test says so. */
function gatedWriter() {
  const batches: string[][] = [];
  const gates: (() => void)[] = [];
  let failNext: Error | undefined;
  const write = (docs: IndexedMessage[]) =>
    new Promise<void>((resolve, reject) => {
      batches.push(docs.map((d) => d.id));
      const err = failNext;
      failNext = undefined;
      gates.push(() => (err ? reject(err) : resolve()));
    });
  return { write, batches, release: () => gates.shift()?.(), failNext: (e: Error) => (failNext = e) };
}

describe('DocBatcher', () => {
  it('waits up to maxDelayMs for companions, then writes them together', async () => {
    const w = gatedWriter();
    const b = new DocBatcher({ write: w.write, maxDelayMs: 100 });
    const t0 = performance.now();
    const done = [b.add(doc('a'))];
    await sleep(0);
    done.push(b.add(doc('b')));
    await sleep(0);
    expect(w.batches).toEqual([]);
    while (!w.batches.length) await sleep(5);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(95);
    expect(w.batches).toEqual([['a', 'b']]);
    w.release();
    await Promise.all(done);
  });

  it('one write at a time: what arrives meanwhile goes out together as the next write, not as a string of small ones', async () => {
    const w = gatedWriter();
    const b = new DocBatcher({ write: w.write, maxDelayMs: 5 });
    const first = b.add(doc('a'));
    await sleep(20);
    expect(w.batches).toEqual([['a']]);
    // The write of 'a' is slow: many maxDelayMs pass while these arrive.
    const rest: Promise<void>[] = [];
    for (const id of ['b', 'c', 'd', 'e']) {
      rest.push(b.add(doc(id)));
      await sleep(10);
    }
    expect(w.batches).toEqual([['a']]);
    w.release();
    await first;
    await sleep(0);
    // Each waited longer than maxDelayMs already: the next write starts at once, with all of them.
    expect(w.batches).toEqual([['a'], ['b', 'c', 'd', 'e']]);
    w.release();
    await Promise.all(rest);
  });

  it('writes at once when maxDocs wait (capMaxDocs: every job slot is waiting)', async () => {
    const w = gatedWriter();
    const b = new DocBatcher({ write: w.write, maxDelayMs: 60_000 });
    b.capMaxDocs(3);
    const p = [b.add(doc('a')), b.add(doc('b')), b.add(doc('c')), b.add(doc('d'))];
    await sleep(0);
    expect(w.batches).toEqual([['a', 'b', 'c']]);
    w.release();
    await Promise.all(p.slice(0, 3));
    // 'd' is alone and young: it waits for companions (here flushed by hand).
    expect(w.batches).toHaveLength(1);
    const flushed = b.flush();
    await sleep(0);
    expect(w.batches).toEqual([['a', 'b', 'c'], ['d']]);
    w.release();
    await flushed;
    await p[3];
  });

  it("a failed write fails only its own documents' promises; the next batch is written", async () => {
    const w = gatedWriter();
    const b = new DocBatcher({ write: w.write, maxDelayMs: 1 });
    w.failNext(new Error('index down'));
    const bad = b.add(doc('a'));
    await sleep(10);
    const good = b.add(doc('b'));
    w.release();
    await expect(bad).rejects.toThrow('index down');
    await sleep(10);
    expect(w.batches).toEqual([['a'], ['b']]);
    w.release();
    await expect(good).resolves.toBeUndefined();
  });

  it('flush writes everything pending, even while a write is in flight, and resolves when all is written', async () => {
    const w = gatedWriter();
    const b = new DocBatcher({ write: w.write, maxDelayMs: 60_000, maxDocs: 2 });
    const p = ['a', 'b', 'c', 'd', 'e'].map((id) => b.add(doc(id)));
    let flushed = false;
    const f = b.flush().then(() => (flushed = true));
    for (let i = 0; i < 3; i++) {
      await sleep(0);
      w.release();
      await sleep(0);
    }
    await f;
    expect(flushed).toBe(true);
    expect(w.batches).toEqual([['a', 'b'], ['c', 'd'], ['e']]);
    await Promise.all(p);
  });

  it('the same id twice in a batch is written once (the last document wins)', async () => {
    const seen: IndexedMessage[][] = [];
    const b = new DocBatcher({ write: async (docs) => void seen.push(docs), maxDelayMs: 1 });
    await Promise.all([b.add({ id: 'x', subject: 'old' } as IndexedMessage), b.add({ id: 'x', subject: 'new' } as IndexedMessage)]);
    expect(seen).toEqual([[{ id: 'x', subject: 'new' }]]);
  });

  it('but never a document built from fewer of the envelopes (a job that listed them before a second delivery)', async () => {
    const seen: IndexedMessage[][] = [];
    const b = new DocBatcher({ write: async (docs) => void seen.push(docs), maxDelayMs: 1 });
    const both = { id: 'x', envelopeIds: ['e1', 'e2'] } as IndexedMessage;
    await Promise.all([b.add(both), b.add({ id: 'x', envelopeIds: ['e1'] } as IndexedMessage)]);
    expect(seen).toEqual([[both]]);
  });
});
