/**
 * Runs the object store contract against both adapters, then the S3 Object
 * Lock behaviour that only the S3 adapter has (lock mode, retention, legal
 * holds, bucket checks, an unreachable endpoint).
 *
 * S3 runs against the endpoint in ARCHIVE_TEST_S3_ENDPOINT (moto from
 * `infra/s3.sh start`: http://127.0.0.1:4566, any credentials). Each run makes
 * a fresh bucket with Object Lock, and each test a fresh key prefix in it.
 * Without the variable the S3 part is skipped loudly, or fails under CI=true.
 */
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import {
  CreateBucketCommand,
  GetObjectCommand,
  GetObjectLegalHoldCommand,
  HeadObjectCommand,
  ListObjectVersionsCommand,
  PutObjectCommand,
  S3Client,
  type PutObjectRetentionCommandInput,
} from '@aws-sdk/client-s3';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { FsObjectStore } from '../src/adapters/fs/fs-object-store.js';
import { S3ObjectStore, type S3ObjectStoreOptions } from '../src/adapters/s3/s3-object-store.js';
import { ConfigError, NotFoundError, RetentionLockedError, StorageUnavailableError } from '../src/errors.js';
import { sha256Hex } from '../src/integrity/sha256.js';
import {
  fileGone,
  hashStream,
  makeEnvelope,
  objectStoreContract,
  readAll,
  sampleMessage,
  spoolBytes,
  spoolRandom,
  type StoreFixture,
} from './contract/object-store.contract.js';

const silent = pino({ level: 'silent' });
const DAY_MS = 24 * 60 * 60 * 1000;
const MiB = 1024 * 1024;

// ---------------------------------------------------------------- fs adapter

objectStoreContract('fs', async (): Promise<StoreFixture> => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'archive-fs-contract-'));
  const spoolDir = path.join(root, 'spool');
  const store = new FsObjectStore(path.join(root, 'store'), spoolDir);
  await store.init();
  return {
    store,
    spoolDir,
    cleanup: async () => {
      await store.close();
      await rm(root, { recursive: true, force: true });
    },
    corrupt: async (sha256, bytes) => {
      // Stored objects are 0444; root (or anyone who can chmod) can still rewrite them.
      const file = store.objectPath(sha256);
      await chmod(file, 0o644);
      await writeFile(file, bytes);
      await chmod(file, 0o444);
    },
  };
});

describe('FsObjectStore: disposition', () => {
  it('deleteMessage removes the message, its envelopes and lock records only after retain-until (store clock) and without a hold', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'archive-fs-delete-'));
    let now = Date.parse('2030-01-01T00:00:00Z');
    const store = new FsObjectStore(path.join(root, 'store'), path.join(root, 'spool'), { clock: () => new Date(now) });
    await store.init();
    try {
      const spool = await spoolBytes(path.join(root, 'spool'), sampleMessage('dispose'));
      await store.putMessage(spool);
      await store.putEnvelope(makeEnvelope(spool.sha256));
      await store.extendRetention(spool.sha256, new Date('2030-06-01T00:00:00Z'));
      await expect(store.deleteMessage(spool.sha256)).rejects.toBeInstanceOf(RetentionLockedError);
      now = Date.parse('2030-06-01T00:00:00Z');
      await store.setLegalHold(spool.sha256, true);
      await expect(store.deleteMessage(spool.sha256)).rejects.toBeInstanceOf(RetentionLockedError);
      expect(await store.statMessage(spool.sha256)).toBeDefined();
      await store.setLegalHold(spool.sha256, false);
      const r = await store.deleteMessage(spool.sha256);
      expect(r.deleted).toBe(true);
      expect(r.objects).toBeGreaterThanOrEqual(2);
      expect(await store.statMessage(spool.sha256)).toBeUndefined();
      expect(await store.getEnvelopes(spool.sha256)).toEqual([]);
      expect((await store.deleteMessage(spool.sha256)).deleted).toBe(false);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('a legal hold set while a deletion is under way either stops it or finds the message gone, never both missed', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'archive-fs-race-'));
    const store = new FsObjectStore(path.join(root, 'store'), path.join(root, 'spool'), { clock: () => new Date('2030-01-01T00:00:00Z') });
    await store.init();
    try {
      // The hold lands after 0..N turns of the event loop into the deletion: every interleaving is tried.
      for (let turns = 0; turns < 12; turns++) {
        const spool = await spoolBytes(path.join(root, 'spool'), sampleMessage(`race ${turns}`));
        await store.putMessage(spool);
        await store.putEnvelope(makeEnvelope(spool.sha256));
        const deletion = store.deleteMessage(spool.sha256).then(
          () => 'deleted' as const,
          (err: unknown) => err,
        );
        for (let t = 0; t < turns; t++) await new Promise((r) => setImmediate(r));
        const { missing } = await store.setLegalHolds([spool.sha256], true);
        const outcome = await deletion;
        const stored = (await store.statMessage(spool.sha256)) !== undefined;
        if (missing.length === 0) {
          // The hold was recorded: the message must still be there, the deletion refused.
          expect(stored, `turns=${turns}`).toBe(true);
          expect(outcome, `turns=${turns}`).toBeInstanceOf(RetentionLockedError);
        } else {
          expect(stored, `turns=${turns}`).toBe(false);
          expect(outcome, `turns=${turns}`).toBe('deleted');
        }
      }
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('lock files of the first layout are still honoured, and later changes continue from them', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'archive-fs-legacy-lock-'));
    let now = Date.parse('2030-01-01T00:00:00Z');
    const open = async () => {
      const s = new FsObjectStore(path.join(root, 'store'), path.join(root, 'spool'), { clock: () => new Date(now) });
      await s.init();
      return s;
    };
    let store = await open();
    try {
      const bytes = sampleMessage('legacy lock');
      const spool = await spoolBytes(path.join(root, 'spool'), bytes);
      await store.putMessage(spool);
      const sha = spool.sha256;
      // A store written by an earlier version: lock state in write-once files, the highest seq current.
      const dir = path.join(root, 'store', 'locks', sha.slice(0, 2), sha.slice(2, 4));
      await import('node:fs/promises').then((f) => f.mkdir(dir, { recursive: true }));
      await writeFile(path.join(dir, `${sha}.1.json`), JSON.stringify({ legalHold: false, retainUntil: '2030-03-01T00:00:00.000Z' }));
      await writeFile(path.join(dir, `${sha}.2.json`), JSON.stringify({ legalHold: true, retainUntil: '2030-06-01T00:00:00.000Z' }));
      await store.close();
      store = await open();
      expect(await store.getLegalHold(sha)).toBe(true);
      expect((await store.getRetention(sha))!.retainUntil.toISOString()).toBe('2030-06-01T00:00:00.000Z');
      now = Date.parse('2030-07-01T00:00:00Z');
      await expect(store.deleteMessage(sha)).rejects.toBeInstanceOf(RetentionLockedError);
      // A change continues from the file's state (the retention it recorded is kept).
      expect(await store.setLegalHolds([sha], false)).toEqual({ missing: [] });
      expect(await store.getLegalHold(sha)).toBe(false);
      expect((await store.getRetention(sha))!.retainUntil.toISOString()).toBe('2030-06-01T00:00:00.000Z');
      expect(await store.extendRetention(sha, new Date('2030-05-01T00:00:00Z'))).toBe(false);
      expect(await store.extendRetention(sha, new Date('2030-08-01T00:00:00Z'))).toBe(true);
      await expect(store.deleteMessage(sha)).rejects.toBeInstanceOf(RetentionLockedError);
      now = Date.parse('2030-08-02T00:00:00Z');
      const r = await store.deleteMessage(sha);
      expect(r.deleted).toBe(true);
      expect(r.objects).toBe(4); // the message, two lock files, the lock row
      // The same bytes archived again start without a lock.
      await store.putMessage(await spoolBytes(path.join(root, 'spool'), bytes));
      expect(await store.getLegalHold(sha)).toBe(false);
      expect(await store.getRetention(sha)).toBeUndefined();
    } finally {
      await store.close();
      await rm(root, { recursive: true, force: true });
    }
  });

  it('a batch lock change over many messages of one shard directory (listed once, not stat\'ed each) reports exactly the absent ones', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'archive-fs-shard-batch-'));
    const store = new FsObjectStore(path.join(root, 'store'), path.join(root, 'spool'));
    await store.init();
    try {
      // Messages whose hashes share their first four hex digits, i.e. one shard directory (ab/cd/).
      const first = Buffer.from('shard batch 0');
      const prefix = sha256Hex(first).slice(0, 4);
      const same: Buffer[] = [first];
      for (let i = 1; same.length < 5; i++) {
        const b = Buffer.from(`shard batch ${i}`);
        if (sha256Hex(b).startsWith(prefix)) same.push(b);
      }
      const stored: string[] = [];
      for (const b of same) stored.push((await store.putMessage(await spoolBytes(path.join(root, 'spool'), b)), sha256Hex(b)));
      // Absent: one named in the same directory, four in a directory that does not exist, one alone.
      const fake = (p: string) => p + randomBytes(32).toString('hex').slice(p.length);
      const otherPrefix = prefix === 'ffff' ? '0000' : 'ffff';
      const absent = [fake(prefix), ...Array.from({ length: 4 }, () => fake(otherPrefix)), fake('ab')];
      const r = await store.setLegalHolds([...stored, ...absent], true);
      expect(r.missing.sort()).toEqual([...absent].sort());
      for (const s of stored) expect(await store.getLegalHold(s)).toBe(true);
      // And the same batch scattered (one per directory, stat'ed): the same answer.
      expect((await store.setLegalHolds([stored[0]!, absent[0]!, absent[5]!], false)).missing.sort()).toEqual([absent[0], absent[5]].sort());
      expect(await store.getLegalHold(stored[0]!)).toBe(false);
      expect((await store.extendRetentions([...stored, ...absent].map((sha256) => ({ sha256, until: new Date(Date.now() + DAY_MS) })))).missing.sort()).toEqual([...absent].sort());
    } finally {
      await store.close();
      await rm(root, { recursive: true, force: true });
    }
  });

  it('two stores on one directory (server and CLI): concurrent lock changes are all kept', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'archive-fs-lock-race-'));
    const open = async () => {
      const s = new FsObjectStore(path.join(root, 'store'), path.join(root, 'spool'));
      await s.init();
      return s;
    };
    const [a, b] = [await open(), await open()];
    try {
      const shas: string[] = [];
      for (let i = 0; i < 20; i++) {
        const spool = await spoolBytes(path.join(root, 'spool'), sampleMessage(`race ${i}`));
        await a.putMessage(spool);
        shas.push(spool.sha256);
      }
      const base = Date.parse('2040-01-01T00:00:00Z');
      await Promise.all([
        a.setLegalHolds(shas, true),
        ...shas.map((s, i) => b.extendRetention(s, new Date(base + i * DAY_MS))),
        b.extendRetentions(shas.map((sha256, i) => ({ sha256, until: new Date(base + (i - 5) * DAY_MS) }))),
      ]);
      for (const [i, s] of shas.entries()) {
        expect(await a.getLegalHold(s)).toBe(true);
        expect((await b.getRetention(s))!.retainUntil.getTime()).toBe(base + i * DAY_MS);
      }
    } finally {
      await a.close();
      await b.close();
      await rm(root, { recursive: true, force: true });
    }
  });
});

// ---------------------------------------------------------------- S3 adapter

const endpoint = process.env.ARCHIVE_TEST_S3_ENDPOINT;
const credentials = { accessKeyId: 'test', secretAccessKey: 'test' };
const region = 'us-east-1';
const bucket = `archive-contract-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;

function rawClient(): S3Client {
  const quiet = { trace: () => undefined, debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };
  return new S3Client({
    endpoint,
    region,
    credentials,
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    logger: quiet,
  });
}

let raw: S3Client | undefined;
let bucketReady: Promise<void> | undefined;
let prefixSeq = 0;

/** The run's bucket, created once, with Object Lock (which turns versioning on). */
function ensureBucket(): Promise<void> {
  raw ??= rawClient();
  const client = raw;
  bucketReady ??= client.send(new CreateBucketCommand({ Bucket: bucket, ObjectLockEnabledForBucket: true })).then(() => undefined);
  return bucketReady;
}

function s3Options(over: Partial<S3ObjectStoreOptions> = {}): S3ObjectStoreOptions {
  return {
    endpoint,
    region,
    bucket,
    prefix: `run/${++prefixSeq}-${randomBytes(3).toString('hex')}/`,
    credentials,
    forcePathStyle: true,
    lockMode: 'COMPLIANCE',
    defaultRetentionDays: 30,
    sse: 'none',
    log: silent,
    // Small pages, so listing crosses many page boundaries.
    listPageSize: 7,
    ...over,
  };
}

async function s3Fixture(over: Partial<S3ObjectStoreOptions> = {}): Promise<StoreFixture & { store: S3ObjectStore; prefix: string }> {
  await ensureBucket();
  const opts = s3Options(over);
  const store = new S3ObjectStore(opts);
  await store.init();
  const spoolDir = await mkdtemp(path.join(os.tmpdir(), 'archive-s3-contract-'));
  return {
    store,
    spoolDir,
    prefix: opts.prefix,
    cleanup: async () => {
      await store.close();
      await rm(spoolDir, { recursive: true, force: true });
    },
    corrupt: async (sha256, bytes) => {
      // Anyone with s3:PutObject can stack a new version on the key; the
      // locked original survives, but a plain GET now returns the new bytes.
      await raw!.send(new PutObjectCommand({ Bucket: bucket, Key: `${opts.prefix}messages/${sha256}`, Body: bytes }));
    },
  };
}

afterAll(() => {
  raw?.destroy();
});

/** A TCP port on which nothing listens. */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

/** Within `slackMs` of `expected` (S3 may keep retain-until dates to the second). */
function near(actual: Date | undefined, expected: number, slackMs = 2_000): boolean {
  return actual !== undefined && Math.abs(actual.getTime() - expected) <= slackMs;
}

/**
 * A client that answers 501 NotImplemented to any request carrying
 * If-None-Match, as some S3-compatible endpoints do.
 */
function clientWithoutConditionalWrites(): { client: S3Client; refusals: () => number } {
  const client = rawClient();
  let refused = 0;
  client.middlewareStack.add(
    (next) => async (args) => {
      const req = args.request as { headers?: Record<string, string> };
      if (req.headers?.['if-none-match'] !== undefined) {
        refused++;
        throw Object.assign(new Error('A header you provided implies functionality that is not implemented'), {
          name: 'NotImplemented',
          $metadata: { httpStatusCode: 501 },
        });
      }
      return next(args);
    },
    { step: 'finalizeRequest', name: 'noConditionalWrites' },
  );
  return { client, refusals: () => refused };
}

if (!endpoint) {
  const msg =
    'ARCHIVE_TEST_S3_ENDPOINT is not set: the S3 object store contract did NOT run. ' +
    'Start moto with `infra/s3.sh start` and export ARCHIVE_TEST_S3_ENDPOINT=http://127.0.0.1:4566';
  if (process.env.CI === 'true') {
    describe('ObjectStore contract: s3', () => {
      it('needs an S3 endpoint in CI', () => {
        throw new Error(msg);
      });
    });
  } else {
    console.warn(`\n${'!'.repeat(100)}\n!! SKIPPED: ${msg}\n${'!'.repeat(100)}\n`);
    describe.skip('ObjectStore contract: s3 (no ARCHIVE_TEST_S3_ENDPOINT)', () => {
      it('skipped', () => undefined);
    });
  }
} else {
  objectStoreContract('s3', () => s3Fixture());

  describe('S3ObjectStore: Object Lock', () => {
    it('messages and envelopes carry the lock mode and a retain-until date defaultRetentionDays ahead', async () => {
      const fx = await s3Fixture({ defaultRetentionDays: 30 });
      try {
        const spool = await spoolBytes(fx.spoolDir, sampleMessage('locked'));
        const before = Date.now();
        await fx.store.putMessage(spool);
        const after = Date.now();
        const head = await raw!.send(new HeadObjectCommand({ Bucket: bucket, Key: `${fx.prefix}messages/${spool.sha256}` }));
        expect(head.ObjectLockMode).toBe('COMPLIANCE');
        const until = head.ObjectLockRetainUntilDate!.getTime();
        expect(until).toBeGreaterThanOrEqual(before + 30 * DAY_MS - 1_000);
        expect(until).toBeLessThanOrEqual(after + 30 * DAY_MS + 1_000);
        const r = await fx.store.getRetention(spool.sha256);
        expect(r?.mode).toBe('COMPLIANCE');
        expect(r?.retainUntil.getTime()).toBe(until);

        const env = makeEnvelope(spool.sha256);
        await fx.store.putEnvelope(env);
        const envHead = await raw!.send(new HeadObjectCommand({ Bucket: bucket, Key: `${fx.prefix}envelopes/${spool.sha256}/${env.id}.json` }));
        expect(envHead.ObjectLockMode).toBe('COMPLIANCE');
        expect(near(envHead.ObjectLockRetainUntilDate, until, 60_000)).toBe(true);
      } finally {
        await fx.cleanup();
      }
    });

    it('GOVERNANCE mode is applied when configured', async () => {
      const fx = await s3Fixture({ lockMode: 'GOVERNANCE', defaultRetentionDays: 1 });
      try {
        const spool = await spoolBytes(fx.spoolDir, sampleMessage('governance'));
        await fx.store.putMessage(spool);
        expect((await fx.store.getRetention(spool.sha256))?.mode).toBe('GOVERNANCE');
      } finally {
        await fx.cleanup();
      }
    });

    it('a multipart upload is locked too, and round-trips', async () => {
      // Small threshold and parts, so multipart runs on 12 MiB.
      const fx = await s3Fixture({ multipartThreshold: 6 * MiB, partSize: 5 * MiB, defaultRetentionDays: 10 });
      try {
        const spool = await spoolRandom(fx.spoolDir, 12 * MiB);
        const before = Date.now();
        expect(await fx.store.putMessage(spool)).toEqual({ created: true });
        const head = await raw!.send(new HeadObjectCommand({ Bucket: bucket, Key: `${fx.prefix}messages/${spool.sha256}` }));
        expect(head.ETag).toMatch(/-3"$/); // three parts
        expect(head.ObjectLockMode).toBe('COMPLIANCE');
        expect(near(head.ObjectLockRetainUntilDate, before + 10 * DAY_MS, 30_000)).toBe(true);
        expect(await hashStream(await fx.store.getMessage(spool.sha256))).toEqual({ sha256: spool.sha256, bytes: 12 * MiB });
        // A duplicate large delivery is not uploaded again.
        const dup = await spoolRandom(fx.spoolDir, 6 * MiB);
        expect(await fx.store.putMessage({ ...dup, sha256: spool.sha256 })).toEqual({ created: false });
        expect(await fileGone(dup.path)).toBe(true);
      } finally {
        await fx.cleanup();
      }
    }, 120_000);

    it('a multipart upload whose bytes do not match the key is never completed', async () => {
      const fx = await s3Fixture({ multipartThreshold: 6 * MiB, partSize: 5 * MiB });
      try {
        const spool = await spoolRandom(fx.spoolDir, 11 * MiB);
        const lie = { ...spool, sha256: sha256Hex('something else') };
        await expect(fx.store.putMessage(lie)).rejects.toBeInstanceOf(StorageUnavailableError);
        expect(await fileGone(spool.path)).toBe(true);
        expect(await fx.store.statMessage(lie.sha256)).toBeUndefined();
      } finally {
        await fx.cleanup();
      }
    }, 120_000);

    it('legal hold: set, read, cleared', async () => {
      const fx = await s3Fixture();
      try {
        const spool = await spoolBytes(fx.spoolDir, sampleMessage('hold'));
        await fx.store.putMessage(spool);
        const key = `${fx.prefix}messages/${spool.sha256}`;
        expect(await fx.store.getLegalHold(spool.sha256)).toBe(false);
        await fx.store.setLegalHold(spool.sha256, true);
        expect(await fx.store.getLegalHold(spool.sha256)).toBe(true);
        expect((await raw!.send(new GetObjectLegalHoldCommand({ Bucket: bucket, Key: key }))).LegalHold?.Status).toBe('ON');
        await fx.store.setLegalHold(spool.sha256, false);
        expect(await fx.store.getLegalHold(spool.sha256)).toBe(false);
        await expect(fx.store.setLegalHold(sha256Hex('absent'), true)).rejects.toBeInstanceOf(NotFoundError);
        await expect(fx.store.getLegalHold(sha256Hex('absent'))).rejects.toBeInstanceOf(NotFoundError);
      } finally {
        await fx.cleanup();
      }
    });

    it('extendRetention extends, and never sends a shorter date', async () => {
      // The store's client records every PutObjectRetention it sends.
      const sent: PutObjectRetentionCommandInput[] = [];
      const client = rawClient();
      client.middlewareStack.add(
        (next, context) => async (args) => {
          if (context.commandName === 'PutObjectRetentionCommand') sent.push(structuredClone(args.input as PutObjectRetentionCommandInput));
          return next(args);
        },
        { step: 'initialize', name: 'recordRetention' },
      );
      const fx = await s3Fixture({ client, defaultRetentionDays: 30 });
      try {
        const spool = await spoolBytes(fx.spoolDir, sampleMessage('retention'));
        await fx.store.putMessage(spool);
        const r0 = (await fx.store.getRetention(spool.sha256))!;
        expect(r0.mode).toBe('COMPLIANCE');

        const longer = new Date(r0.retainUntil.getTime() + 10 * DAY_MS);
        expect(await fx.store.extendRetention(spool.sha256, longer)).toBe(true);
        const r1 = (await fx.store.getRetention(spool.sha256))!;
        expect(r1.mode).toBe('COMPLIANCE');
        expect(near(r1.retainUntil, longer.getTime(), 1_000)).toBe(true);

        // Shorter, equal and past dates: nothing is sent, nothing changes.
        for (const d of [new Date(r1.retainUntil.getTime() - 5 * DAY_MS), new Date(r1.retainUntil.getTime()), new Date(Date.now() - DAY_MS)]) {
          expect(await fx.store.extendRetention(spool.sha256, d)).toBe(false);
          expect((await fx.store.getRetention(spool.sha256))!.retainUntil.getTime()).toBe(r1.retainUntil.getTime());
        }

        expect(sent).toHaveLength(1);
        expect(sent[0].Retention?.Mode).toBe('COMPLIANCE');
        expect(new Date(sent[0].Retention!.RetainUntilDate!).getTime()).toBe(longer.getTime());
        expect(sent[0].VersionId).toBeTruthy();
        for (const s of sent) expect(new Date(s.Retention!.RetainUntilDate!).getTime()).toBeGreaterThan(r0.retainUntil.getTime());

        await expect(fx.store.extendRetention(sha256Hex('absent'), longer)).rejects.toBeInstanceOf(NotFoundError);
        expect(await fx.store.getRetention(spool.sha256).then((r) => r?.mode)).toBe('COMPLIANCE');
      } finally {
        await fx.cleanup();
      }
    });

    it('deleteMessage deletes every version only once nothing locks them (legal hold, retention)', async () => {
      const fx = await s3Fixture();
      try {
        const bytes = sampleMessage('dispose s3');
        const sha = sha256Hex(bytes);
        const key = `${fx.prefix}messages/${sha}`;
        // Written around the store with a retention a few seconds long, so the test can outlive it
        // (long enough that the first delete attempt falls inside it on a loaded machine).
        const until = new Date(Date.now() + 12_000);
        await raw!.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: bytes, ObjectLockMode: 'COMPLIANCE', ObjectLockRetainUntilDate: until, ChecksumAlgorithm: 'SHA256' }));
        await raw!.send(new PutObjectCommand({ Bucket: bucket, Key: `${fx.prefix}envelopes/${sha}/x1.json`, Body: '{}', ObjectLockMode: 'COMPLIANCE', ObjectLockRetainUntilDate: until, ChecksumAlgorithm: 'SHA256' }));
        expect((await fx.store.getEnvelopes(sha)).length).toBe(1);
        await expect(fx.store.deleteMessage(sha)).rejects.toBeInstanceOf(RetentionLockedError);
        await fx.store.setLegalHold(sha, true);
        await new Promise((r) => setTimeout(r, Math.max(0, until.getTime() - Date.now()) + 1_500));
        // Retention over, but the legal hold still locks it.
        await expect(fx.store.deleteMessage(sha)).rejects.toBeInstanceOf(RetentionLockedError);
        expect(await fx.store.statMessage(sha)).toBeDefined();
        await fx.store.setLegalHold(sha, false);
        const r = await fx.store.deleteMessage(sha);
        expect(r).toEqual({ deleted: true, objects: 2 });
        const versions = await raw!.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: `${fx.prefix}` }));
        expect((versions.Versions ?? []).filter((v) => v.Key?.includes(sha))).toEqual([]);
        expect(await fx.store.statMessage(sha)).toBeUndefined();
        expect((await fx.store.deleteMessage(sha)).deleted).toBe(false);
      } finally {
        await fx.cleanup();
      }
      // 13.5 s of it is waiting for the retention to run out; the rest is a dozen requests to an S3 endpoint that other test files load too.
    }, 60_000);

    it('If-None-Match: a writer that stores the key just before our PUT is not overwritten', async () => {
      const bytes = sampleMessage('raced');
      const sha = sha256Hex(bytes);
      const client = rawClient();
      let raced = false;
      const sent: string[] = [];
      // Right before the store's PUT goes out, another writer stores the key.
      client.middlewareStack.add(
        (next, context) => async (args) => {
          const input = args.input as { Key?: string };
          if (input.Key?.endsWith(`messages/${sha}`)) sent.push(context.commandName ?? '');
          if (!raced && context.commandName === 'PutObjectCommand' && input.Key?.endsWith(`messages/${sha}`)) {
            raced = true;
            await raw!.send(new PutObjectCommand({ Bucket: bucket, Key: input.Key, Body: bytes }));
          }
          return next(args);
        },
        { step: 'initialize', name: 'racingWriter' },
      );
      const fx = await s3Fixture({ client });
      try {
        const spool = await spoolBytes(fx.spoolDir, bytes);
        expect(await fx.store.putMessage(spool)).toEqual({ created: false });
        expect(raced).toBe(true);
        // A small message costs one request: no HEAD before the conditional PUT.
        expect(sent).toEqual(['PutObjectCommand']);
        const versions = await raw!.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: `${fx.prefix}messages/${sha}` }));
        expect(versions.Versions ?? []).toHaveLength(1);
      } finally {
        await fx.cleanup();
      }
    });

    it('an endpoint without If-None-Match (501) is handled: HEAD remains the guard', async () => {
      const { client, refusals } = clientWithoutConditionalWrites();
      const fx = await s3Fixture({ client });
      try {
        const bytes = sampleMessage('no inm');
        const spool = await spoolBytes(fx.spoolDir, bytes);
        expect(await fx.store.putMessage(spool)).toEqual({ created: true });
        expect(refusals()).toBe(1);
        expect(await fx.store.putMessage(await spoolBytes(fx.spoolDir, bytes))).toEqual({ created: false });
        const env = makeEnvelope(spool.sha256);
        await fx.store.putEnvelope(env);
        await expect(fx.store.putEnvelope(env)).rejects.toBeInstanceOf(StorageUnavailableError);
        expect(refusals()).toBe(1);
        expect((await readAll(await fx.store.getMessage(spool.sha256))).equals(bytes)).toBe(true);
      } finally {
        await fx.cleanup();
      }
    });

    it('an endpoint without If-None-Match (501) on multipart completion is handled too', async () => {
      const { client, refusals } = clientWithoutConditionalWrites();
      const fx = await s3Fixture({ client, multipartThreshold: 6 * MiB, partSize: 5 * MiB });
      try {
        const spool = await spoolRandom(fx.spoolDir, 7 * MiB);
        expect(await fx.store.putMessage(spool)).toEqual({ created: true });
        expect(refusals()).toBe(1);
        expect(await hashStream(await fx.store.getMessage(spool.sha256))).toEqual({ sha256: spool.sha256, bytes: 7 * MiB });
        expect((await fx.store.getRetention(spool.sha256))?.mode).toBe('COMPLIANCE');
      } finally {
        await fx.cleanup();
      }
    }, 120_000);

    it('the key prefix isolates stores sharing a bucket', async () => {
      const a = await s3Fixture();
      const b = await s3Fixture();
      try {
        const spool = await spoolBytes(a.spoolDir, sampleMessage('prefix'));
        await a.store.putMessage(spool);
        expect(await b.store.statMessage(spool.sha256)).toBeUndefined();
        const listed = [];
        for await (const m of b.store.listMessages()) listed.push(m);
        expect(listed).toEqual([]);
        const obj = await raw!.send(new GetObjectCommand({ Bucket: bucket, Key: `${a.prefix}messages/${spool.sha256}` }));
        expect(obj.ContentLength).toBe(spool.size);
      } finally {
        await a.cleanup();
        await b.cleanup();
      }
    });
  });

  describe('S3ObjectStore: requests saved for the index job', () => {
    /** A client that records the command name of every request it sends. */
    function recordingClient(): { client: S3Client; sent: string[] } {
      const client = rawClient();
      const sent: string[] = [];
      client.middlewareStack.add(
        (next, context) => async (args) => {
          sent.push(context.commandName ?? '');
          return next(args);
        },
        { step: 'initialize', name: 'recordCommands' },
      );
      return { client, sent };
    }

    /** Runs `body` on a store that keeps local copies in a fresh directory, recording its requests; cleans up after. */
    async function withLocalCopies(body: (fx: Awaited<ReturnType<typeof s3Fixture>>, sent: string[], copies: string) => Promise<void>): Promise<void> {
      const { client, sent } = recordingClient();
      const copies = await mkdtemp(path.join(os.tmpdir(), 'archive-s3-copies-'));
      const fx = await s3Fixture({ client, localCopyDir: copies });
      try {
        await body(fx, sent, copies);
      } finally {
        await fx.cleanup();
        await rm(copies, { recursive: true, force: true });
      }
    }

    it('getEnvelopes reads only the envelopes it does not hold as stored (the listing ETag is their MD5)', async () => {
      const { client, sent } = recordingClient();
      const fx = await s3Fixture({ client });
      try {
        const spool = await spoolBytes(fx.spoolDir, sampleMessage('known s3'));
        await fx.store.putMessage(spool);
        const a = makeEnvelope(spool.sha256);
        const b = makeEnvelope(spool.sha256);
        await fx.store.putEnvelope(a);
        await fx.store.putEnvelope(b);
        sent.length = 0;
        expect(await fx.store.getEnvelopes(spool.sha256, [JSON.parse(JSON.stringify(a)) as typeof a, b])).toEqual([a, b].sort((x, y) => (x.id < y.id ? -1 : 1)));
        expect(sent).toEqual(['ListObjectsV2Command']);
        sent.length = 0;
        await fx.store.getEnvelopes(spool.sha256, [a]);
        expect(sent.sort()).toEqual(['GetObjectCommand', 'ListObjectsV2Command']);
        sent.length = 0;
        // An altered one is read, and the stored bytes win.
        expect(await fx.store.getEnvelopes(spool.sha256, [{ ...a, flags: ['tampered'] }, b])).toContainEqual(a);
        expect(sent.sort()).toEqual(['GetObjectCommand', 'ListObjectsV2Command']);
      } finally {
        await fx.cleanup();
      }
    });

    it('the index job (recentCopy) reads a message this store just created from its local copy (no GET), also through another store on the directory; every other read, and a duplicate, reads S3', async () => {
      await withLocalCopies(async (fx, sent, copies) => {
        const bytes = sampleMessage('local copy');
        const spool = await spoolBytes(fx.spoolDir, bytes);
        expect(await fx.store.putMessage(spool)).toEqual({ created: true });
        await expect(fileGone(spool.path)).resolves.toBe(true);
        sent.length = 0;
        expect((await readAll(await fx.store.getMessage(spool.sha256, { recentCopy: true }))).equals(bytes)).toBe(true);
        expect((await readAll(await fx.store.getMessage(spool.sha256, { verify: false, recentCopy: true }))).equals(bytes)).toBe(true);
        expect(sent).toEqual([]);
        // A fixity check, an export or a download reads what S3 holds, never the copy.
        expect((await readAll(await fx.store.getMessage(spool.sha256))).equals(bytes)).toBe(true);
        expect((await readAll(await fx.store.getMessage(spool.sha256, { verify: false }))).equals(bytes)).toBe(true);
        expect(sent).toEqual(['GetObjectCommand', 'GetObjectCommand']);

        // Another store on the same directory (a worker beside the server) uses the copy too.
        const other = new S3ObjectStore(s3Options({ prefix: fx.prefix, client: rawClient(), localCopyDir: copies }));
        await other.init();
        try {
          expect((await readAll(await other.getMessage(spool.sha256, { recentCopy: true }))).equals(bytes)).toBe(true);
        } finally {
          await other.close();
        }

        // A duplicate delivery's spool file is not kept (the object it found may be old, and disposable).
        const dup = await spoolBytes(fx.spoolDir, sampleMessage('dup'));
        await raw!.send(new PutObjectCommand({ Bucket: bucket, Key: `${fx.prefix}messages/${dup.sha256}`, Body: await readFile(dup.path), ObjectLockMode: 'COMPLIANCE', ObjectLockRetainUntilDate: new Date(Date.now() + DAY_MS), ChecksumAlgorithm: 'SHA256' }));
        expect(await fx.store.putMessage(dup)).toEqual({ created: false });
        await expect(fileGone(dup.path)).resolves.toBe(true);
        sent.length = 0;
        await readAll(await fx.store.getMessage(dup.sha256, { recentCopy: true }));
        expect(sent).toEqual(['GetObjectCommand']);
      });
    });

    it('a local copy that does not hash to its name is never used: deleted, and S3 is read', async () => {
      await withLocalCopies(async (fx, sent, copies) => {
        const bytes = sampleMessage('torn copy');
        const spool = await spoolBytes(fx.spoolDir, bytes);
        await fx.store.putMessage(spool);
        const copy = path.join(copies, spool.sha256);
        // A crash can leave a renamed file that never reached the disk in full.
        await chmod(copy, 0o644);
        await writeFile(copy, bytes.subarray(0, 10));
        sent.length = 0;
        expect((await readAll(await fx.store.getMessage(spool.sha256, { recentCopy: true }))).equals(bytes)).toBe(true);
        expect(sent).toEqual(['GetObjectCommand']);
        await expect(fileGone(copy)).resolves.toBe(true);
      });
    });
  });

  describe('S3ObjectStore: init and outages', () => {
    it('init() refuses a bucket without Object Lock, saying why and how to fix it', async () => {
      await ensureBucket();
      const plain = `${bucket}-nolock`;
      await raw!.send(new CreateBucketCommand({ Bucket: plain }));
      const store = new S3ObjectStore(s3Options({ bucket: plain }));
      try {
        const err = await store.init().then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(ConfigError);
        const msg = (err as Error).message;
        expect(msg).toContain(`bucket "${plain}" has no Object Lock`);
        expect(msg).toContain('--object-lock-enabled-for-bucket');
        expect(msg).toContain('infra/aws-s3-bucket.md');
      } finally {
        await store.close();
      }
    });

    it('init() refuses a bucket that does not exist', async () => {
      const store = new S3ObjectStore(s3Options({ bucket: `${bucket}-absent` }));
      try {
        await expect(store.init()).rejects.toThrow(ConfigError);
        await expect(store.init()).rejects.toThrow(/does not exist.*create it with Object Lock enabled/);
      } finally {
        await store.close();
      }
    });

    it('storage down: putMessage rejects with StorageUnavailableError and the spool file is gone', async () => {
      const port = await closedPort();
      const store = new S3ObjectStore(s3Options({ endpoint: `http://127.0.0.1:${port}` }));
      const spoolDir = await mkdtemp(path.join(os.tmpdir(), 'archive-s3-down-'));
      try {
        const spool = await spoolBytes(spoolDir, sampleMessage('down'));
        await expect(store.putMessage(spool)).rejects.toBeInstanceOf(StorageUnavailableError);
        expect(await fileGone(spool.path)).toBe(true);
        await expect(store.putEnvelope(makeEnvelope(spool.sha256))).rejects.toBeInstanceOf(StorageUnavailableError);
        // Unreachable is never "absent".
        await expect(store.statMessage(spool.sha256)).rejects.toBeInstanceOf(StorageUnavailableError);
        await expect(store.getMessage(spool.sha256)).rejects.toBeInstanceOf(StorageUnavailableError);
        await expect(store.init()).rejects.toBeInstanceOf(StorageUnavailableError);
        const h = await store.health();
        expect(h.ok).toBe(false);
        expect(h.detail).toMatch(/ECONNREFUSED|connect/i);
      } finally {
        await store.close();
        await rm(spoolDir, { recursive: true, force: true });
      }
    });
  });
}
