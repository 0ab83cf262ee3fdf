/**
 * Releasing a hold while the object store is down, on both deployments: the
 * release is recorded, the legal-hold flags it could not clear stay on and
 * their messages stay held in the catalog (the hold is `clearsPending`), and
 * the disposition job finishes the release once the store is back (at the
 * start of a run, so the freed messages are disposed of in that same run;
 * or at start-up).
 *
 * Scale-out: a real outage of the S3 endpoint, played by a TCP proxy in
 * front of it that refuses connections (stopping the test endpoint itself
 * would lose its in-memory objects); the flags are read straight from S3.
 * Embedded: the fs store behind a wrapper whose legal-hold writes fail while
 * "down".
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { GetObjectLegalHoldCommand, ListObjectVersionsCommand } from '@aws-sdk/client-s3';
import { retentionFixture, type RetentionFixture } from './helpers/retention-fixture.js';
import { MODES, type Mode } from './helpers/modes.js';
import { StorageUnavailableError } from '../src/errors.js';
import type { ObjectStore } from '../src/ports/object-store.js';
import { COLLECTIONS, type Hold } from '../retention/index.js';

const actor = { user: 'officer@corp.example' };
const scheduler = { actor: { user: 'scheduler' } };

/** A TCP proxy to `target` that can refuse connections (and drop open ones) to play an outage. */
class TcpOutage {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  port = 0;

  constructor(private readonly target: URL) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async up(): Promise<void> {
    const server = createServer((client) => {
      const upstream = connect(Number(this.target.port), this.target.hostname);
      const end = () => {
        for (const s of [client, upstream]) {
          s.destroy();
          this.sockets.delete(s);
        }
      };
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('error', end).on('close', end);
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(this.port, '127.0.0.1', () => resolve()));
    const addr = server.address();
    this.port = typeof addr === 'object' && addr ? addr.port : 0;
    this.server = server;
  }

  async down(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

/** Embedded: a store whose legal-hold writes fail while `down()`. */
function flakyLegalHolds(store: ObjectStore, isDown: () => boolean): ObjectStore {
  return new Proxy(store, {
    get(target, prop, recv) {
      const v = Reflect.get(target, prop, recv);
      if (prop === 'setLegalHold' || prop === 'setLegalHolds') {
        return async (...args: unknown[]) => {
          if (isDown()) throw new StorageUnavailableError('could not set the legal hold: the store is down (injected)');
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        };
      }
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

interface Setup {
  fx: RetentionFixture;
  down(): Promise<void>;
  up(): Promise<void>;
  /** The legal-hold flag as the storage itself says (S3: read straight from the endpoint, not through the outage). */
  flag(sha: string): Promise<boolean>;
  /** Whether the message is still stored (S3: any version of it left). */
  stored(sha: string): Promise<boolean>;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function setup(mode: Mode): Promise<Setup> {
  if (mode === 'scale-out') {
    const outage = new TcpOutage(new URL(process.env.ARCHIVE_TEST_S3_ENDPOINT!));
    await outage.up();
    const fx = await retentionFixture({ start: '2020-01-01T00:00:00Z', mode, s3Endpoint: outage.url });
    cleanups.push(async () => {
      await outage.up().catch(() => undefined);
      await fx.close();
      await outage.down();
    });
    const s3 = fx.s3!;
    return {
      fx,
      down: () => outage.down(),
      up: () => outage.up(),
      flag: async (sha) => (await s3.client.send(new GetObjectLegalHoldCommand({ Bucket: s3.bucket, Key: s3.key(sha) }))).LegalHold?.Status === 'ON',
      stored: async (sha) => ((await s3.client.send(new ListObjectVersionsCommand({ Bucket: s3.bucket, Prefix: s3.key(sha) }))).Versions ?? []).length > 0,
    };
  }
  let isDown = false;
  let inner: ObjectStore | undefined;
  const fx = await retentionFixture({ start: '2020-01-01T00:00:00Z', mode, wrapStore: (s) => flakyLegalHolds((inner = s), () => isDown) });
  cleanups.push(() => fx.close());
  return {
    fx,
    down: async () => void (isDown = true),
    up: async () => void (isDown = false),
    flag: (sha) => inner!.getLegalHold(sha),
    stored: async (sha) => (await inner!.statMessage(sha)) !== undefined,
  };
}

/** Three due messages: two held by `cust` only, one also by `other`. */
async function archiveAndHold(fx: RetentionFixture) {
  await fx.service.updatePolicy('default', { name: 'Default', matcher: {}, period: { unit: 'days', count: 10, from: 'received' }, action: 'delete' }, actor);
  const only1 = await fx.archive({ from: 'a@corp.example', to: ['cust@corp.example'], date: '2020-01-01T00:00:00Z' });
  const only2 = await fx.archive({ from: 'cust@corp.example', to: ['b@corp.example'], date: '2020-01-01T00:00:00Z' });
  const both = await fx.archive({ from: 'c@corp.example', to: ['cust@corp.example', 'other@corp.example'], date: '2020-01-01T00:00:00Z' });
  const kase = await fx.service.createCase({ name: 'Case', matterNumber: 'R-1', custodians: ['cust@corp.example'] }, actor);
  const cust = await fx.service.createHold({ caseId: kase.id, name: 'cust' }, actor);
  const other = await fx.service.createHold({ caseId: kase.id, name: 'other', custodians: ['other@corp.example'] }, actor);
  expect([cust.messageCount, other.messageCount]).toEqual([3, 1]);
  fx.setNow('2021-01-01T00:00:00Z');
  return { only1, only2, both, cust, other };
}

const holdOf = async (fx: RetentionFixture, id: string) => (await fx.catalog.get<Hold>(COLLECTIONS.holds, id))!.data;

for (const { mode, enabled } of MODES)
describe.runIf(enabled)(`a hold released while the store is down (${mode})`, () => {
  it('stays pending (flags on, messages held), and the next disposition run finishes it and disposes of what it freed', async () => {
    const s = await setup(mode);
    const { fx } = s;
    const { only1, only2, both, cust, other } = await archiveAndHold(fx);
    for (const sha of [only1, only2, both]) expect(await s.flag(sha)).toBe(true);

    await s.down();
    // Every message is pending: the cleared ones could not be cleared, and the one another hold
    // still covers has its flag confirmed on the object first, which failed too.
    expect(await fx.service.releaseHold(cust.id, 'Matter settled', actor)).toEqual({ released: 0, stillHeld: 0, pending: 3 });
    const h = await holdOf(fx, cust.id);
    expect(h).toMatchObject({ status: 'released', releaseReason: 'Matter settled', clearsPending: true });
    expect(h.lastClearError).toMatch(/legal hold/);
    // The catalog goes on saying held, by the released hold, as the object does.
    for (const sha of [only1, only2]) expect(await fx.service.getMessageRetention(sha)).toMatchObject({ held: true, holdIds: [cust.id] });
    expect((await fx.service.getMessageRetention(both))!.holdIds).toEqual([cust.id, other.id].sort());

    // A run while the store is still down retries, finishes nothing and deletes nothing.
    const during = await fx.job.run(scheduler);
    expect(during).toMatchObject({ disposed: 0, holdFlagsCleared: 0, holdFlagsPending: 3 });
    expect((await holdOf(fx, cust.id)).clearsPending).toBe(true);

    await s.up();
    for (const sha of [only1, only2, both]) expect(await s.flag(sha)).toBe(true);
    for (const sha of [only1, only2, both]) expect(await s.stored(sha)).toBe(true);

    // The store is back: the run finishes the release first, then disposes of what it freed.
    const after = await fx.job.run(scheduler);
    expect(after).toMatchObject({ holdFlagsCleared: 2, holdFlagsPending: 0, disposed: 2, skipped: [] });
    expect(await holdOf(fx, cust.id)).not.toHaveProperty('clearsPending');
    expect(await holdOf(fx, cust.id)).not.toHaveProperty('lastClearError');
    expect([await s.stored(only1), await s.stored(only2)]).toEqual([false, false]);
    expect(await s.flag(both)).toBe(true);
    expect(await fx.service.getMessageRetention(both)).toMatchObject({ held: true, holdIds: [other.id] });

    // The other hold's release goes through at once, and the last message goes too.
    expect(await fx.service.releaseHold(other.id, 'Closed', actor)).toEqual({ released: 1, stillHeld: 0, pending: 0 });
    expect(await s.flag(both)).toBe(false);
    expect((await fx.job.run(scheduler)).disposed).toBe(1);
    expect(await s.stored(both)).toBe(false);
    const v = await fx.audit.verify();
    expect(v.ok).toBe(true);
  }, 120_000);

  it('is finished by the start-up pass of the disposition job (even with no schedule)', async () => {
    const s = await setup(mode);
    const { fx } = s;
    const { only1, both, cust } = await archiveAndHold(fx);
    await s.down();
    expect((await fx.service.releaseHold(cust.id, 'Matter settled', actor)).pending).toBe(3);
    await s.up();
    fx.job.start(0);
    await fx.job.stop();
    expect(await holdOf(fx, cust.id)).not.toHaveProperty('clearsPending');
    expect(await s.flag(only1)).toBe(false);
    expect(await s.flag(both)).toBe(true);
    // A flag still on with a catalog that says free is the one thing the release must never leave
    // behind; should it happen anyway, the guard refuses the object (fail-closed).
    await fx.store.setLegalHold(only1, true);
    const r = await fx.job.run(scheduler);
    expect(r.disposed).toBe(1);
    expect(r.skipped).toEqual([{ sha256: only1, reason: 'the stored object is under a legal hold' }]);
    expect(await s.stored(only1)).toBe(true);
  }, 120_000);
});
