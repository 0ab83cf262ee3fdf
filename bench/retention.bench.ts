/**
 * Retention benchmark, in either deployment or both side by side:
 *
 * - embedded: fs store, SQLite index and catalog;
 * - scale-out: S3 at $ARCHIVE_TEST_S3_ENDPOINT (moto here), OpenSearch index
 *   and catalog at $ARCHIVE_TEST_OPENSEARCH_URL (bench/scale-out-env.ts: a
 *   fresh Object Lock bucket and index prefix; the indices are dropped after).
 *
 *   npm run build && node dist/bench/retention.bench.js [--messages 10000]
 *     [--mode embedded|scale-out|both] [--scale-out-messages 5000] [--hold-only]
 *     [--profile-hold <file prefix>] [--keep] [--reuse <dir>] [--hold-covers half|all]
 *
 * Phases: the build (messages stored through the real store; their index
 * documents built directly, no parse; not part of any figure) with the
 * ingest hook (`applyToDocuments`, timed on its own); the application of a
 * custodian hold over half of the messages, or all with --hold-covers all (the issue 6 target: 1,000,000
 * messages in at most 60 s), broken down into the time spent in the index
 * walk, the catalog and the object store; disposition of the other half
 * (scale-out: S3 enforces Object Lock by its own, real clock, which this
 * benchmark cannot move, so that half is written straight to the bucket
 * with a lock of seconds, and the job runs on the real clock once the locks
 * have run out); and the release of the hold.
 *
 * The breakdown counts, per component, the wall time during which at least
 * one of its calls was in flight; what is left is the engine's own CPU.
 * On scale-out the S3 endpoint dominates: moto manages ~150 small requests/s
 * (printed as its PUT ceiling), and S3 has no batch API for legal holds, so
 * measure scale-out at a smaller N (--scale-out-messages).
 *
 * --reuse <dir> (embedded): builds the archive in <dir> and keeps it; a later
 * run with the same <dir> and --messages skips the build (an hour at
 * 1,000,000 messages on 2 cores), releases the holds of earlier runs
 * (untimed) and times a new hold, so the hold can be measured again on a
 * quiet machine.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { DateTime } from 'luxon';
import { pino } from 'pino';
import { FsObjectStore } from '../src/adapters/fs/fs-object-store.js';
import { SqliteCatalogStore } from '../src/adapters/sqlite/sqlite-catalog-store.js';
import { SqliteMessageIndex } from '../search/sqlite/sqlite-message-index.js';
import { AuditTrail } from '../src/audit/audit-trail.js';
import { loadConfig } from '../src/config/config.js';
import { newEnvelopeId } from '../src/domain/envelope-id.js';
import type { IndexedMessage } from '../src/domain/indexed-message.js';
import { createCatalogStore, createMessageIndex, createObjectStore } from '../src/factory.js';
import type { CatalogStore } from '../src/ports/catalog-store.js';
import type { MessageIndex } from '../src/ports/message-index.js';
import type { ObjectStore } from '../src/ports/object-store.js';
import { DispositionJob, RetentionService } from '../retention/index.js';
import { cpuMeter, fmt, pidOf } from './bench-util.js';
import { dropOpenSearchIndices, s3PutRate, scaleOutEnv } from './scale-out-env.js';

type Mode = 'embedded' | 'scale-out';
const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '10000' },
    'scale-out-messages': { type: 'string' },
    mode: { type: 'string', default: 'embedded' },
    keep: { type: 'boolean' },
    reuse: { type: 'string' },
    /** The hold's custodians: `half` (custodian0: every other message, the default) or `all` (both custodians: every message). */
    'hold-covers': { type: 'string', default: 'half' },
    /** Only the hold application (and the build): disposition and release cost minutes at 100,000 messages. */
    'hold-only': { type: 'boolean' },
    /** Writes a V8 CPU profile of the hold application to this file (open it in Chrome DevTools). */
    'profile-hold': { type: 'string' },
  },
});
const MODES: Mode[] = values.mode === 'both' ? ['embedded', 'scale-out'] : [values.mode as Mode];
if (values['hold-covers'] !== 'half' && values['hold-covers'] !== 'all') throw new Error(`--hold-covers: half or all, not ${values['hold-covers']}`);
if (!MODES.every((m) => m === 'embedded' || m === 'scale-out')) throw new Error(`--mode: embedded, scale-out or both, not ${values.mode}`);
const log = pino({ level: 'warn' });
/** Messages stored, indexed and recorded per batch while building (the index job's batch size is of this order). */
const BATCH = 500;

function isAsyncIterable(v: unknown): v is AsyncIterable<unknown> {
  return typeof v === 'object' && v !== null && !(v instanceof Promise) && typeof (v as Record<symbol, unknown>)[Symbol.asyncIterator] === 'function';
}

/**
 * Wall time per component (index, catalog, store) during which at least one
 * of its calls was in flight: overlapping calls count once, so the times
 * add up to at most the elapsed time of a phase.
 */
class BusyClock {
  private readonly inFlight = new Map<string, { n: number; since: number }>();
  private readonly totals = new Map<string, number>();

  /** The same object, with every promise-returning method timed under `name`. */
  wrap<T extends object>(name: string, target: T): T {
    return new Proxy(target, {
      get: (t, prop, recv) => {
        const v: unknown = Reflect.get(t, prop, recv);
        if (typeof v !== 'function') return v;
        return (...args: unknown[]) => {
          // Begun before the call: SQLite adapters do their work synchronously inside it.
          this.begin(name);
          let r: unknown;
          try {
            r = (v as (...a: unknown[]) => unknown).apply(t, args);
          } catch (err) {
            this.end(name);
            throw err;
          }
          if (isAsyncIterable(r)) {
            // A scan: its work happens in each next(), timed like a call.
            this.end(name);
            return this.timedIterable(name, r);
          }
          if (!(r instanceof Promise)) {
            this.end(name);
            return r;
          }
          return r.finally(() => this.end(name));
        };
      },
    });
  }

  private timedIterable<V>(name: string, source: AsyncIterable<V>): AsyncIterable<V> {
    return {
      [Symbol.asyncIterator]: () => {
        const it = source[Symbol.asyncIterator]();
        return {
          next: () => {
            this.begin(name);
            let p: Promise<IteratorResult<V>>;
            try {
              p = it.next();
            } catch (err) {
              this.end(name);
              throw err;
            }
            return p.finally(() => this.end(name));
          },
          return: async (value?: unknown) => (it.return ? it.return(value) : { done: true as const, value: undefined as never }),
        };
      },
    };
  }

  private begin(name: string): void {
    const f = this.inFlight.get(name) ?? { n: 0, since: 0 };
    if (f.n++ === 0) f.since = performance.now();
    this.inFlight.set(name, f);
  }

  private end(name: string): void {
    const f = this.inFlight.get(name)!;
    if (--f.n === 0) this.totals.set(name, (this.totals.get(name) ?? 0) + performance.now() - f.since);
  }

  /** Seconds per component since the last reset. */
  seconds(name: string): number {
    return (this.totals.get(name) ?? 0) / 1000;
  }

  reset(): void {
    this.totals.clear();
  }
}

interface Phase {
  messages: number;
  seconds: number;
  /** This process's CPU time (user + system), s: what the phase costs regardless of how busy the machine is. */
  cpu: number;
  index?: number;
  catalog?: number;
  store?: number;
  /** CPU seconds of the S3 endpoint's process (moto) during the phase, when it runs on this machine. */
  endpointCpu?: number;
}

interface Result {
  mode: Mode;
  n: number;
  build: number;
  ingestHook: Phase;
  hold: Phase;
  disposition?: Phase;
  release?: Phase;
  s3PutRate?: number;
}

async function run(mode: Mode, n: number): Promise<Result> {
  if (values.reuse && mode !== 'embedded') throw new Error('--reuse is for the embedded mode');
  const dir = values.reuse ? path.resolve(values.reuse) : await mkdtemp(path.join(process.env.BENCH_DIR ?? os.tmpdir(), `retention-bench-${mode}-`));
  const builtMarker = path.join(dir, 'built.json');
  const reused = values.reuse ? await readBuilt(builtMarker, n) : false;
  let now = DateTime.fromISO('2024-06-01T00:00:00Z', { zone: 'utc' });
  const clock = () => now;
  let baseStore: ObjectStore;
  let baseIndex: MessageIndex;
  let baseCatalog: CatalogStore;
  let env: Record<string, string> | undefined;
  if (mode === 'embedded') {
    const fs = new FsObjectStore(path.join(dir, 'store'), path.join(dir, 'spool'), { clock: () => now.toJSDate() });
    await fs.init();
    baseStore = fs;
    baseIndex = new SqliteMessageIndex(path.join(dir, 'index.sqlite'), log);
    await baseIndex.init();
    baseCatalog = new SqliteCatalogStore(path.join(dir, 'records.sqlite'), log);
    await baseCatalog.init();
  } else {
    env = await scaleOutEnv();
    const config = loadConfig({ ...process.env, ...env, ARCHIVE_DATA_DIR: dir, ARCHIVE_LOG_LEVEL: 'warn' });
    baseStore = await createObjectStore(config, log);
    baseIndex = await createMessageIndex(config, log);
    baseCatalog = await createCatalogStore(config, log);
  }
  const busy = new BusyClock();
  const store = busy.wrap('store', baseStore);
  const index = busy.wrap('index', baseIndex);
  const catalog = busy.wrap('catalog', baseCatalog);
  const audit = new AuditTrail({ catalog: baseCatalog, store: baseStore, log, now: () => now.toJSDate() });
  const service = new RetentionService({ catalog, index, store, audit, clock, log });
  await service.init();
  const actor = { user: 'bench@corp.example' };
  if (!reused) await service.updatePolicy('default', { name: 'Default', matcher: {}, period: { unit: 'days', count: 30, from: 'received' }, action: 'delete' }, actor);
  const spool = path.join(dir, 'bench-spool');
  await mkdir(spool, { recursive: true });
  const timed = async (messages: number, fn: () => Promise<unknown>): Promise<Phase> => {
    busy.reset();
    const endpoint = mode === 'scale-out' ? cpuMeter({ s3: pidOf('moto.server') }) : undefined;
    const t = performance.now();
    const c = process.cpuUsage();
    await fn();
    const cpu = process.cpuUsage(c);
    const endpointCpu = endpoint?.read().s3;
    return { messages, seconds: (performance.now() - t) / 1000, cpu: (cpu.user + cpu.system) / 1e6, index: busy.seconds('index'), catalog: busy.seconds('catalog'), store: busy.seconds('store'), endpointCpu };
  };

  // Scale-out disposition: S3 enforces Object Lock by its own, real clock, and the store gives every new
  // object at least a day. The half to be disposed of is written straight to the bucket with a lock of a few
  // seconds (as an archive whose locks have run out), and the job runs on the real clock once they have.
  const shortLock = mode === 'scale-out' && !values['hold-only'] && !reused ? new ShortLockWriter(env!, new Date(Date.now() + SHORT_LOCK_MS)) : undefined;
  const t0 = performance.now();
  const hook: Phase = { messages: n, seconds: 0, cpu: 0, index: 0, catalog: 0, store: 0 };
  if (reused) {
    console.log(`[${mode}] reusing ${fmt(n)} messages in ${dir}; releasing earlier holds (untimed) …`);
    for (const h of await service.listHolds()) if (h.status === 'active') await service.releaseHold(h.id, 'bench: next run', actor);
  } else {
    console.log(`[${mode}] building ${fmt(n)} messages in ${dir} …`);
  }
  for (let start = 0; !reused && start < n; start += BATCH) {
    const docs: IndexedMessage[] = [];
    await Promise.all(
      Array.from({ length: Math.min(BATCH, n - start) }, async (_, k) => {
        const i = start + k;
        const custodian = `custodian${i % 2}@corp.example`;
        const date = Date.parse('2024-01-01T00:00:00Z') + i * 1000;
        const raw = Buffer.from(`From: sender${i % 97}@corp.example\r\nTo: ${custodian}\r\nSubject: bench ${i}\r\nMessage-ID: <bench-${i}@corp.example>\r\n\r\nbody ${i}\r\n`);
        const sha = createHash('sha256').update(raw).digest('hex');
        const file = path.join(spool, `${sha}.spool`);
        const env = { id: newEnvelopeId(new Date(date)), sha256: sha, source: 'import' as const, receivedAt: new Date(date).toISOString(), recipients: [{ address: custodian, kind: 'to' as const }], flags: [] };
        if (shortLock && i % 2 === 1) {
          await shortLock.put(sha, raw, env);
        } else {
          await writeFile(file, raw);
          await baseStore.putMessage({ path: file, sha256: sha, size: raw.length });
          await baseStore.putEnvelope(env);
        }
        docs.push({
          id: sha, messageId: `bench-${i}@corp.example`, date, receivedAt: date,
          from: [{ address: `sender${i % 97}@corp.example` }], sender: [], to: [{ address: custodian }], cc: [], bcc: [], replyTo: [],
          envelopeRecipients: env.recipients, envelopeSenders: [], subject: `bench ${i}`, body: `body ${i}`, attachments: [], attachmentText: '',
          references: [], threadId: `bench-${i}@corp.example`, size: raw.length, hasAttachments: false, envelopeIds: [env.id],
        });
      }),
    );
    await baseIndex.upsert(docs);
    const h = await timed(docs.length, () => service.applyToDocuments(docs));
    hook.seconds += h.seconds;
    hook.cpu += h.cpu;
    hook.index! += h.index!;
    hook.catalog! += h.catalog!;
    hook.store! += h.store!;
    if ((start / BATCH) % 20 === 0) process.stdout.write(`\r  ${fmt(start + docs.length)} built`);
  }
  const build = (performance.now() - t0) / 1000;
  if (!reused) {
    console.log(`\r  built ${fmt(n)} in ${build.toFixed(1)} s (${fmt(n / build)} msg/s: store, index, and the ingest hook at ${fmt(n / hook.seconds)} msg/s)`);
    if (values.reuse) await writeFile(builtMarker, JSON.stringify({ messages: n }));
  }

  // 1. A custodian hold over half of the messages.
  const custodians = values['hold-covers'] === 'all' ? ['custodian0@corp.example', 'custodian1@corp.example'] : ['custodian0@corp.example'];
  const kase = await service.createCase({ name: 'Bench', matterNumber: 'B-1', custodians }, actor);
  let held = 0;
  const profiler = values['profile-hold'] ? await startProfile() : undefined;
  const hold = await timed(0, async () => {
    held = (await service.createHold({ caseId: kase.id, name: 'custodian0' }, actor)).messageCount;
  });
  if (profiler) await profiler.stop(`${values['profile-hold']}.${mode}.cpuprofile`);
  hold.messages = held;
  const holdId = (await service.listHolds(kase.id))[0].id;
  console.log(`  hold application: ${fmt(held)} held in ${hold.seconds.toFixed(2)} s = ${fmt(held / hold.seconds)} msg/s`);

  // 2. Disposition of the other half (the held half is passed over by the catalog query).
  let disposition: Phase | undefined;
  if (!values['hold-only']) {
    if (shortLock) {
      await shortLock.passed();
      now = DateTime.utc();
    } else {
      now = now.plus({ years: 1 });
    }
    const job = new DispositionJob({ catalog, index, store, audit, service, clock, log, fourEyes: false, budgetMs: 3_600_000, pageSize: 500 });
    let disposed = 0;
    disposition = await timed(0, async () => {
      const r = await job.run({ actor: { user: 'scheduler' } });
      disposed = r.disposed;
      if (r.skipped.length) console.log(`  disposition skipped ${r.skipped.length}, e.g. ${JSON.stringify(r.skipped[0])}`);
    });
    disposition.messages = disposed;
    console.log(`  disposition: ${fmt(disposed)} deleted in ${disposition.seconds.toFixed(2)} s = ${fmt(disposed / disposition.seconds)} msg/s`);
  }

  // 3. Release.
  let release: Phase | undefined;
  if (!values['hold-only']) {
    let released = 0;
    release = await timed(0, async () => {
      released = (await service.releaseHold(holdId, 'bench', actor)).released;
    });
    release.messages = released;
    console.log(`  hold release: ${fmt(released)} flags cleared in ${release.seconds.toFixed(2)} s = ${fmt(released / release.seconds)} msg/s`);
  }

  // Measured once the run is over, so that the endpoint is idle.
  const putRate = env ? await s3PutRate(env) : undefined;
  await baseIndex.close();
  await baseCatalog.close();
  await baseStore.close();
  if (!values.keep && !values.reuse) {
    if (env) await dropOpenSearchIndices(env.ARCHIVE_OPENSEARCH_URL!, env.ARCHIVE_OPENSEARCH_INDEX_PREFIX!);
    await rm(dir, { recursive: true, force: true });
  }
  return { mode, n, build, ingestHook: hook, hold, disposition, release, s3PutRate: putRate };
}

/** How long the directly written objects of the scale-out disposition phase are locked. */
const SHORT_LOCK_MS = 15_000;

/** Writes a message and its envelope straight to the scale-out bucket, under the store's keys, locked until `until` only. */
class ShortLockWriter {
  private readonly s3: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  constructor(env: Record<string, string>, private readonly until: Date) {
    this.s3 = new S3Client({ endpoint: env.ARCHIVE_S3_ENDPOINT, region: env.ARCHIVE_S3_REGION, forcePathStyle: true, credentials: { accessKeyId: env.ARCHIVE_S3_ACCESS_KEY_ID!, secretAccessKey: env.ARCHIVE_S3_SECRET_ACCESS_KEY! } });
    this.bucket = env.ARCHIVE_S3_BUCKET!;
    this.prefix = env.ARCHIVE_S3_PREFIX ?? '';
  }

  async put(sha: string, raw: Buffer, envelope: { id: string }): Promise<void> {
    const lock = { ObjectLockMode: 'GOVERNANCE' as const, ObjectLockRetainUntilDate: this.until, ChecksumAlgorithm: 'SHA256' as const };
    await this.s3.send(new PutObjectCommand({ Bucket: this.bucket, Key: `${this.prefix}messages/${sha}`, Body: raw, ...lock }));
    await this.s3.send(new PutObjectCommand({ Bucket: this.bucket, Key: `${this.prefix}envelopes/${sha}/${envelope.id}.json`, Body: JSON.stringify(envelope), ...lock }));
  }

  /** Resolves once the locks have run out (by a second more than S3's own clock could lag). */
  async passed(): Promise<void> {
    const wait = this.until.getTime() + 1_000 - Date.now();
    if (wait > 0) {
      console.log(`  waiting ${(wait / 1000).toFixed(1)} s for the short Object Lock retention of the half to dispose of to run out`);
      await new Promise((r) => setTimeout(r, wait));
    }
    this.s3.destroy();
  }
}

/** Whether `file` records a finished build of `n` messages (a different size is refused: the figures would mislead). */
async function readBuilt(file: string, n: number): Promise<boolean> {
  let built: { messages: number };
  try {
    built = JSON.parse(await readFile(file, 'utf8')) as { messages: number };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
  if (built.messages !== n) throw new Error(`${file}: built with ${built.messages} messages, not --messages ${n}`);
  return true;
}

/** A V8 CPU profile of this process from now until `stop`, written as a `.cpuprofile` file. */
async function startProfile(): Promise<{ stop(file: string): Promise<void> }> {
  const { Session } = await import('node:inspector/promises');
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  return {
    async stop(file) {
      const { profile } = await session.post('Profiler.stop');
      await writeFile(file, JSON.stringify(profile));
      session.disconnect();
      console.log(`  CPU profile of the hold application: ${file}`);
    },
  };
}

function rate(messages: number, seconds: number | undefined): string {
  return seconds === undefined ? 'n/a' : seconds > 0 ? `${fmt(messages / seconds)}/s` : '-';
}

/** `seconds (rate)` of a phase or of one component of it. */
function cell(p: Phase | undefined, part?: 'index' | 'catalog' | 'store' | 'other' | 'cpu' | 'endpoint'): string {
  if (!p || (part === 'endpoint' && p.endpointCpu === undefined)) return 'n/a';
  let s = p.seconds;
  if (part === 'cpu') s = p.cpu;
  else if (part === 'endpoint') s = p.endpointCpu!;
  else if (part === 'other') s = Math.max(0, p.seconds - (p.index ?? 0) - (p.catalog ?? 0) - (p.store ?? 0));
  else if (part) s = p[part] ?? 0;
  return `${s.toFixed(2)} s (${rate(p.messages, s)})`;
}

async function main(): Promise<void> {
  const n = Number(values.messages);
  const results: Result[] = [];
  for (const mode of MODES) results.push(await run(mode, mode === 'scale-out' ? Number(values['scale-out-messages'] ?? Math.min(n, 5000)) : n));
  const w = 30;
  const row = (label: string, f: (r: Result) => string) => console.log(`${label.padEnd(34)}${results.map((r) => f(r).padStart(w)).join('')}`);
  console.log(`\nretention, ${os.availableParallelism()} cores, load average ${os.loadavg()[0].toFixed(1)}; per component: wall time with a call of it in flight (rate = messages of the phase / that time)`);
  row('', (r) => `${r.mode} (${fmt(r.n)} msgs)`);
  type Part = Parameters<typeof cell>[1];
  const PART_LABEL: Record<NonNullable<Part>, string> = { index: 'index', catalog: 'catalog', store: 'object store', other: 'engine CPU (rest)', cpu: 'process CPU time', endpoint: 'S3 endpoint CPU time' };
  /** A phase's row, then one row per component of it. */
  const phase = (label: string, of: (r: Result) => Phase | undefined, parts: NonNullable<Part>[], extra?: () => void) => {
    row(label, (r) => cell(of(r)));
    for (const p of parts) row(`  ${p === 'index' && label.startsWith('hold') ? 'index walk' : PART_LABEL[p]}`, (r) => cell(of(r), p));
    extra?.();
  };
  phase('ingest hook (applyToDocuments)', (r) => r.ingestHook, ['catalog', 'store', 'other', 'cpu']);
  row('hold application: held', (r) => fmt(r.hold.messages));
  phase('hold application', (r) => r.hold, ['index', 'catalog', 'store', 'other', 'cpu', 'endpoint'], () =>
    row('  projected 1,000,000 held', (r) => `${fmt(1_000_000 / (r.hold.messages / r.hold.seconds))} s`),
  );
  phase('disposition', (r) => r.disposition, ['index', 'catalog', 'store', 'cpu', 'endpoint']);
  phase('hold release', (r) => r.release, ['catalog', 'store']);
  if (results.some((r) => r.s3PutRate)) row('S3 endpoint: small PUTs (8 in flight)', (r) => (r.s3PutRate ? `${fmt(r.s3PutRate)}/s` : 'n/a'));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
