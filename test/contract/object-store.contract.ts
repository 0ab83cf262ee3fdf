/**
 * The object store contract: one suite that every ObjectStore adapter must
 * pass (fs and S3). A behaviour that differs between adapters is a bug, so
 * nothing here may know which adapter it drives, except through the fixture's
 * `corrupt` hook (tampering necessarily goes around the adapter).
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { access, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { newEnvelopeId } from '../../src/domain/envelope-id.js';
import type { Envelope, Sha256 } from '../../src/domain/types.js';
import { IntegrityError, NotFoundError, RetentionLockedError, StorageUnavailableError } from '../../src/errors.js';
import { sha256Hex } from '../../src/integrity/sha256.js';
import type { ObjectStore, SpoolFile } from '../../src/ports/object-store.js';

export interface StoreFixture {
  store: ObjectStore;
  /** Where the test writes spool files; the store takes them over. */
  spoolDir: string;
  cleanup(): Promise<void>;
  /**
   * Replaces the bytes stored for `sha256` behind the adapter's back, the way
   * bit rot or an attacker with raw access would (fs: rewrite the file; S3: a
   * new object version).
   */
  corrupt(sha256: Sha256, bytes: Buffer): Promise<void>;
}

const MiB = 1024 * 1024;

/** Writes `bytes` to a new spool file and describes it as ingest would. */
export async function spoolBytes(spoolDir: string, bytes: Buffer, claimedSha?: Sha256): Promise<SpoolFile> {
  const file = path.join(spoolDir, `${randomUUID()}.spool`);
  await writeFile(file, bytes);
  return { path: file, sha256: claimedSha ?? sha256Hex(bytes), size: bytes.length };
}

/** Streams `size` random bytes into a spool file, hashing on the way (never the whole file in memory). */
export async function spoolRandom(spoolDir: string, size: number): Promise<SpoolFile> {
  const file = path.join(spoolDir, `${randomUUID()}.spool`);
  const hash = createHash('sha256');
  let left = size;
  const chunks = (function* () {
    while (left > 0) {
      const n = Math.min(left, MiB);
      left -= n;
      const b = randomBytes(n);
      hash.update(b);
      yield b;
    }
  })();
  await pipeline(Readable.from(chunks), createWriteStream(file));
  return { path: file, sha256: hash.digest('hex'), size };
}

/** A small message that looks like mail and has every byte value in it (no text-mode mangling may survive). */
export function sampleMessage(tag: string): Buffer {
  const head = `From: a@example.com\r\nTo: b@example.com\r\nSubject: ${tag}\r\nMessage-ID: <${randomUUID()}@example.com>\r\n\r\n`;
  const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  return Buffer.concat([Buffer.from(head, 'latin1'), all, Buffer.from('\r\n.\r\n\n\r', 'latin1'), randomBytes(64)]);
}

export async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

export async function hashStream(stream: Readable): Promise<{ sha256: Sha256; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const c of stream) {
    hash.update(c as Buffer);
    bytes += (c as Buffer).length;
  }
  return { sha256: hash.digest('hex'), bytes };
}

export async function fileGone(file: string): Promise<boolean> {
  try {
    await access(file);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT';
  }
}

export function makeEnvelope(sha256: Sha256, over: Partial<Envelope> = {}): Envelope {
  return {
    id: newEnvelopeId(),
    sha256,
    source: 'smtp',
    receivedAt: new Date().toISOString(),
    recipients: [{ address: 'b@example.com', kind: 'to' }],
    smtp: { peer: '127.0.0.1', mailFrom: 'a@example.com', rcptTo: ['journal@archive.example'] },
    flags: [],
    ...over,
  };
}

/** Runs `fn` over `items`, `limit` at a time. */
async function eachLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < items.length) await fn(items[next++]);
    }),
  );
}

export function objectStoreContract(name: string, makeStore: () => Promise<StoreFixture>): void {
  describe(`ObjectStore contract: ${name}`, () => {
    let fx: StoreFixture;
    let store: ObjectStore;

    beforeEach(async () => {
      fx = await makeStore();
      store = fx.store;
    });

    afterEach(async () => {
      await fx?.cleanup();
    });

    it('round trip: getMessage returns the identical bytes, and the spool file is taken over', async () => {
      const bytes = sampleMessage('round trip');
      const spool = await spoolBytes(fx.spoolDir, bytes);
      expect(await store.putMessage(spool)).toEqual({ created: true });
      expect(await fileGone(spool.path)).toBe(true);
      expect((await readAll(await store.getMessage(spool.sha256))).equals(bytes)).toBe(true);
      expect((await readAll(await store.getMessage(spool.sha256, { verify: false }))).equals(bytes)).toBe(true);
    });

    it('duplicate put: created false, spool file removed, the stored original untouched', async () => {
      const original = sampleMessage('original');
      const first = await spoolBytes(fx.spoolDir, original);
      expect((await store.putMessage(first)).created).toBe(true);
      // A second delivery claiming the same hash, with other bytes: the store
      // must never replace what it holds.
      const impostor = await spoolBytes(fx.spoolDir, sampleMessage('impostor'), first.sha256);
      expect(await store.putMessage(impostor)).toEqual({ created: false });
      expect(await fileGone(impostor.path)).toBe(true);
      expect((await readAll(await store.getMessage(first.sha256))).equals(original)).toBe(true);
      expect(await store.statMessage(first.sha256)).toEqual({ sha256: first.sha256, size: original.length });
    });

    it('concurrent puts of one message: exactly one is created, the bytes are intact', async () => {
      const bytes = sampleMessage('race');
      const spools = await Promise.all([0, 1, 2].map(() => spoolBytes(fx.spoolDir, bytes)));
      const results = await Promise.all(spools.map((s) => store.putMessage(s)));
      expect(results.filter((r) => r.created)).toHaveLength(1);
      for (const s of spools) expect(await fileGone(s.path)).toBe(true);
      expect((await readAll(await store.getMessage(spools[0].sha256))).equals(bytes)).toBe(true);
    });

    it('envelope put/get round trip; a duplicate envelope id is rejected and the first record kept', async () => {
      const spool = await spoolBytes(fx.spoolDir, sampleMessage('envelope'));
      await store.putMessage(spool);
      const env = makeEnvelope(spool.sha256, {
        journal: { format: 'exchange2007', sender: 'a@example.com', subject: 'Grüße ✓', messageId: '<x@y>' },
        recipients: [
          { address: 'b@example.com', kind: 'to' },
          { address: 'c@example.com', kind: 'bcc', expandedFrom: 'all@example.com' },
        ],
        flags: ['journal-malformed'],
        notes: ['a note'],
      });
      await store.putEnvelope(env);
      expect(await store.getEnvelopes(spool.sha256)).toEqual([env]);

      const again = { ...env, flags: ['tampered'] };
      await expect(store.putEnvelope(again)).rejects.toBeInstanceOf(StorageUnavailableError);
      expect(await store.getEnvelopes(spool.sha256)).toEqual([env]);
    });

    it('putEnvelope refuses ids and hashes that could escape the layout', async () => {
      const sha = sha256Hex('x');
      await expect(store.putEnvelope(makeEnvelope(sha, { id: '../../etc' }))).rejects.toThrow();
      await expect(store.putEnvelope(makeEnvelope('../' + sha))).rejects.toThrow();
      await expect(store.getMessage('../../etc/passwd')).rejects.toThrow(/not a SHA-256/);
    });

    it('getEnvelopes: every envelope of the message, oldest first, and only its own', async () => {
      const spool = await spoolBytes(fx.spoolDir, sampleMessage('order'));
      const other = await spoolBytes(fx.spoolDir, sampleMessage('other'));
      await store.putMessage(spool);
      await store.putMessage(other);
      const t0 = Date.parse('2026-01-02T03:04:05.006Z');
      const envs = [5, 0, 3, 1, 4, 2].map((i) => makeEnvelope(spool.sha256, { id: newEnvelopeId(new Date(t0 + i * 1000)), receivedAt: new Date(t0 + i * 1000).toISOString() }));
      for (const e of envs) await store.putEnvelope(e);
      await store.putEnvelope(makeEnvelope(other.sha256));
      const got = await store.getEnvelopes(spool.sha256);
      expect(got.map((e) => e.id)).toEqual(envs.map((e) => e.id).sort());
      expect(got.map((e) => e.receivedAt)).toEqual([...got.map((e) => e.receivedAt)].sort());
      expect(await store.getEnvelopes(sha256Hex('never stored'))).toEqual([]);
      // The ids alone, from the listing: the same set, the same order.
      expect(await store.envelopeIds(spool.sha256)).toEqual(envs.map((e) => e.id).sort());
      expect(await store.envelopeIds(other.sha256)).toHaveLength(1);
      expect(await store.envelopeIds(sha256Hex('never stored'))).toEqual([]);
    });

    it('getEnvelopes with known envelopes (an index job payload): what is stored still wins', async () => {
      const spool = await spoolBytes(fx.spoolDir, sampleMessage('known envelopes'));
      await store.putMessage(spool);
      const a = makeEnvelope(spool.sha256, { recipients: [{ address: 'ä@example.com', kind: 'bcc', expandedFrom: 'list@example.com' }], notes: ['Grüße ✓'] });
      const b = makeEnvelope(spool.sha256, { source: 'import', import: { file: 'x.mbox', index: 3 } });
      await store.putEnvelope(a);
      await store.putEnvelope(b);
      const stored = await store.getEnvelopes(spool.sha256);
      expect(stored).toEqual([a, b].sort((x, y) => (x.id < y.id ? -1 : 1)));
      // As a job payload carries it (a JSON round trip through the queue).
      expect(await store.getEnvelopes(spool.sha256, [JSON.parse(JSON.stringify(a)) as typeof a])).toEqual(stored);
      expect(await store.getEnvelopes(spool.sha256, [a, b])).toEqual(stored);
      // Altered in the payload: the stored record comes back, not the altered one.
      expect(await store.getEnvelopes(spool.sha256, [{ ...a, flags: ['tampered'] }])).toEqual(stored);
      // Never stored, or another message's: not returned.
      const ghost = makeEnvelope(spool.sha256);
      expect(await store.getEnvelopes(spool.sha256, [ghost, makeEnvelope(sha256Hex('other message'))])).toEqual(stored);
      expect(await store.getEnvelopes(sha256Hex('never stored'), [ghost])).toEqual([]);
    });

    it('listMessages and listEnvelopes are complete (50 messages, 60 envelopes)', async () => {
      const expectedMessages = new Map<Sha256, number>();
      const expectedEnvelopes = new Set<string>();
      await eachLimit(
        Array.from({ length: 50 }, (_, i) => i),
        8,
        async (i) => {
          const bytes = Buffer.concat([sampleMessage(`list ${i}`), randomBytes(i * 37)]);
          const spool = await spoolBytes(fx.spoolDir, bytes);
          await store.putMessage(spool);
          expectedMessages.set(spool.sha256, bytes.length);
          for (let k = 0; k < (i % 5 === 0 ? 2 : 1); k++) {
            const env = makeEnvelope(spool.sha256);
            await store.putEnvelope(env);
            expectedEnvelopes.add(env.id);
          }
        },
      );
      const listed = new Map<Sha256, number>();
      for await (const m of store.listMessages()) {
        expect(listed.has(m.sha256)).toBe(false);
        listed.set(m.sha256, m.size);
      }
      expect(listed).toEqual(expectedMessages);

      const envIds: string[] = [];
      for await (const e of store.listEnvelopes()) {
        expect(expectedMessages.has(e.sha256)).toBe(true);
        envIds.push(e.id);
      }
      expect(envIds).toHaveLength(60);
      expect(new Set(envIds)).toEqual(expectedEnvelopes);

      // The names alone: each message once, with its envelopes' ids, sorted.
      const byMessage = new Map<string, string[]>();
      for await (const m of store.listEnvelopeIds()) {
        expect(byMessage.has(m.sha256)).toBe(false);
        expect(m.ids).toEqual([...m.ids].sort());
        byMessage.set(m.sha256, m.ids);
      }
      expect(new Set(byMessage.keys())).toEqual(new Set(expectedMessages.keys()));
      expect(new Set([...byMessage.values()].flat())).toEqual(expectedEnvelopes);
      for (const [sha, ids] of byMessage) expect(ids).toEqual(await store.envelopeIds(sha));
    });

    it('statMessage gives the size; undefined when absent', async () => {
      const bytes = sampleMessage('stat');
      const spool = await spoolBytes(fx.spoolDir, bytes);
      await store.putMessage(spool);
      expect(await store.statMessage(spool.sha256)).toEqual({ sha256: spool.sha256, size: bytes.length });
      expect(await store.statMessage(sha256Hex('absent'))).toBeUndefined();
    });

    it('getMessage of an absent message rejects with NotFoundError', async () => {
      await expect(store.getMessage(sha256Hex('absent'))).rejects.toBeInstanceOf(NotFoundError);
      await expect(store.getMessage(sha256Hex('absent'), { verify: false })).rejects.toBeInstanceOf(NotFoundError);
    });

    it('verify: stored bytes altered behind the store are detected with IntegrityError', async () => {
      const bytes = sampleMessage('evidence');
      const spool = await spoolBytes(fx.spoolDir, bytes);
      await store.putMessage(spool);
      const tampered = Buffer.from(bytes);
      tampered[tampered.length - 70] ^= 0x01; // one flipped bit
      await fx.corrupt(spool.sha256, tampered);

      const err = await readAll(await store.getMessage(spool.sha256)).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(IntegrityError);
      expect((err as IntegrityError).details).toMatchObject({ expected: spool.sha256, actual: sha256Hex(tampered) });
      // Opting out of verification hands over the bytes as stored.
      expect((await readAll(await store.getMessage(spool.sha256, { verify: false }))).equals(tampered)).toBe(true);
    });

    it('a 70 MiB message streams in and out and hashes right', async () => {
      const spool = await spoolRandom(fx.spoolDir, 70 * MiB);
      expect(await store.putMessage(spool)).toEqual({ created: true });
      expect(await fileGone(spool.path)).toBe(true);
      expect(await store.statMessage(spool.sha256)).toEqual({ sha256: spool.sha256, size: 70 * MiB });
      expect(await hashStream(await store.getMessage(spool.sha256))).toEqual({ sha256: spool.sha256, bytes: 70 * MiB });
    }, 180_000);

    it('seals: written once, read back, listed in name order; a second write of a name changes nothing', async () => {
      const a = Buffer.from(JSON.stringify({ seq: 1, hash: 'a'.repeat(64) }));
      const b = Buffer.from(JSON.stringify({ seq: 2, hash: 'b'.repeat(64) }));
      expect(await store.getSeal('audit-000000000001.json')).toBeUndefined();
      expect(await store.putSeal('audit-000000000002.json', b)).toEqual({ created: true });
      expect(await store.putSeal('audit-000000000001.json', a)).toEqual({ created: true });
      expect(await store.putSeal('audit-000000000001.json', Buffer.from('rewritten'))).toEqual({ created: false });
      expect((await store.getSeal('audit-000000000001.json'))!.equals(a)).toBe(true);
      expect((await store.getSeal('audit-000000000002.json'))!.equals(b)).toBe(true);
      const names: string[] = [];
      for await (const n of store.listSeals()) names.push(n);
      expect(names).toEqual(['audit-000000000001.json', 'audit-000000000002.json']);
      // Seals are not messages.
      for await (const m of store.listMessages()) expect(m.sha256).not.toContain('audit');
      await expect(store.putSeal('../escape', a)).rejects.toThrow(/bad seal name/);
      await expect(store.getSeal('a/b')).rejects.toThrow(/bad seal name/);
    });

    it('legal hold: off by default, set, read, cleared; a held message cannot be deleted', async () => {
      const spool = await spoolBytes(fx.spoolDir, sampleMessage('legal hold'));
      await store.putMessage(spool);
      await store.putEnvelope(makeEnvelope(spool.sha256));
      expect(await store.getLegalHold(spool.sha256)).toBe(false);
      await store.setLegalHold(spool.sha256, true);
      expect(await store.getLegalHold(spool.sha256)).toBe(true);
      await store.setLegalHold(spool.sha256, true); // idempotent
      expect(await store.getLegalHold(spool.sha256)).toBe(true);
      await expect(store.deleteMessage(spool.sha256)).rejects.toBeInstanceOf(RetentionLockedError);
      expect(await store.statMessage(spool.sha256)).toEqual({ sha256: spool.sha256, size: spool.size });
      expect(await store.getEnvelopes(spool.sha256)).toHaveLength(1);
      await store.setLegalHold(spool.sha256, false);
      expect(await store.getLegalHold(spool.sha256)).toBe(false);
      const absent = sha256Hex(`absent ${randomUUID()}`);
      await expect(store.setLegalHold(absent, true)).rejects.toBeInstanceOf(NotFoundError);
      await expect(store.getLegalHold(absent)).rejects.toBeInstanceOf(NotFoundError);
    });

    it('retention: extended, never shortened; a retained message cannot be deleted', async () => {
      const spool = await spoolBytes(fx.spoolDir, sampleMessage('retention'));
      await store.putMessage(spool);
      const before = (await store.getRetention(spool.sha256))?.retainUntil.getTime() ?? 0;
      const later = new Date(Math.max(before, Date.now()) + 100 * 24 * 3600_000);
      expect(await store.extendRetention(spool.sha256, later)).toBe(true);
      const r1 = (await store.getRetention(spool.sha256))!;
      expect(Math.abs(r1.retainUntil.getTime() - later.getTime())).toBeLessThanOrEqual(1_000);
      expect(typeof r1.mode).toBe('string');
      for (const d of [new Date(later.getTime() - 24 * 3600_000), new Date(r1.retainUntil.getTime()), new Date(0)]) {
        expect(await store.extendRetention(spool.sha256, d)).toBe(false);
        expect((await store.getRetention(spool.sha256))!.retainUntil.getTime()).toBe(r1.retainUntil.getTime());
      }
      await expect(store.deleteMessage(spool.sha256)).rejects.toBeInstanceOf(RetentionLockedError);
      expect(await hashStream(await store.getMessage(spool.sha256))).toEqual({ sha256: spool.sha256, bytes: spool.size });
      await expect(store.extendRetention(sha256Hex(`absent ${randomUUID()}`), later)).rejects.toBeInstanceOf(NotFoundError);
    });

    it('setLegalHolds: a batch is held, absent messages are reported, a repeat changes nothing, and it lifts again', async () => {
      const shas: string[] = [];
      for (let i = 0; i < 6; i++) {
        const spool = await spoolBytes(fx.spoolDir, sampleMessage(`batch hold ${i}`));
        await store.putMessage(spool);
        shas.push(spool.sha256);
      }
      await store.setLegalHold(shas[0], true); // already held before the batch
      const absent = sha256Hex(`absent ${randomUUID()}`);
      expect(await store.setLegalHolds([...shas, absent, shas[1]], true)).toEqual({ missing: [absent] });
      for (const s of shas) expect(await store.getLegalHold(s)).toBe(true);
      expect(await store.setLegalHolds(shas, true)).toEqual({ missing: [] }); // idempotent
      for (const s of shas) expect(await store.getLegalHold(s)).toBe(true);
      await expect(store.deleteMessage(shas[2])).rejects.toBeInstanceOf(RetentionLockedError);
      expect(await store.setLegalHolds(shas.slice(0, 3), false)).toEqual({ missing: [] });
      for (const [i, s] of shas.entries()) expect(await store.getLegalHold(s)).toBe(i >= 3);
      // The single and batch forms see each other's writes.
      await store.setLegalHold(shas[4], false);
      await store.setLegalHolds([shas[4], shas[5]], true);
      expect(await store.getLegalHold(shas[4])).toBe(true);
      await store.setLegalHold(shas[4], false);
      expect(await store.getLegalHold(shas[4])).toBe(false);
      expect(await store.setLegalHolds([], true)).toEqual({ missing: [] });
    });

    it('extendRetentions: each message moves later, never earlier; a repeated message gets its latest date; absent ones are reported', async () => {
      const shas: string[] = [];
      for (let i = 0; i < 4; i++) {
        const spool = await spoolBytes(fx.spoolDir, sampleMessage(`batch retention ${i}`));
        await store.putMessage(spool);
        shas.push(spool.sha256);
      }
      const untouched = await store.getRetention(shas[3]);
      const base = Math.max(Date.now(), ...(await Promise.all(shas.map(async (s) => (await store.getRetention(s))?.retainUntil.getTime() ?? 0))));
      const day = 24 * 3600_000;
      const at = (days: number) => new Date(base + days * day);
      await store.extendRetention(shas[0], at(300)); // later than the batch will ask
      const absent = sha256Hex(`absent ${randomUUID()}`);
      const r = await store.extendRetentions([
        { sha256: shas[0], until: at(100) },
        { sha256: shas[1], until: at(100) },
        { sha256: shas[2], until: at(50) },
        { sha256: shas[2], until: at(200) },
        { sha256: absent, until: at(100) },
      ]);
      expect(r).toEqual({ missing: [absent] });
      const until = async (s: string) => (await store.getRetention(s))!.retainUntil.getTime();
      expect(Math.abs((await until(shas[0])) - at(300).getTime())).toBeLessThanOrEqual(1_000);
      expect(Math.abs((await until(shas[1])) - at(100).getTime())).toBeLessThanOrEqual(1_000);
      expect(Math.abs((await until(shas[2])) - at(200).getTime())).toBeLessThanOrEqual(1_000);
      expect(await store.extendRetentions([{ sha256: shas[1], until: at(10) }])).toEqual({ missing: [] });
      expect(Math.abs((await until(shas[1])) - at(100).getTime())).toBeLessThanOrEqual(1_000);
      await expect(store.deleteMessage(shas[1])).rejects.toBeInstanceOf(RetentionLockedError);
      expect(await store.getRetention(shas[3])).toEqual(untouched); // not in the batch: untouched
    });

    it('deleteMessage of an absent message deletes nothing and says so', async () => {
      expect((await store.deleteMessage(sha256Hex(`absent ${randomUUID()}`))).deleted).toBe(false);
    });

    it('health is ok', async () => {
      const h = await store.health();
      expect(h.ok).toBe(true);
      expect(h.driver).toBe(store.driver);
    });
  });
}
