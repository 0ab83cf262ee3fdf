/**
 * An archive's retention engine with an injected clock, for tests that move
 * through years in milliseconds, in either deployment:
 * - embedded: fs store (whose deleteMessage uses the same clock), SQLite
 *   index and catalog;
 * - scale-out: the S3 store on the test S3 endpoint (a fresh prefix of one
 *   Object Lock bucket, COMPLIANCE mode, the same injected clock for its own
 *   checks), OpenSearch index and catalog (a fresh index prefix). No queue:
 *   `archive()` runs the index job's steps itself.
 * Both with the real audit trail. `archive()` stores, indexes and applies
 * policies and holds to a message the way the index job's retention hook
 * does.
 *
 * S3 caveats: the S3 endpoint enforces Object Lock retention by its own
 * (real) clock, so a test whose injected clock lies in the real future
 * cannot delete there; tests that dispose in scale-out keep their dates in
 * the real past (see retention-ten-years.test.ts). And every new object is
 * locked for the store's default retention, 1 day here (production:
 * ARCHIVE_S3_DEFAULT_RETENTION_DAYS, 2555), whatever the policies say;
 * disposition waits for that lock too.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DateTime } from 'luxon';
import { pino } from 'pino';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { FsObjectStore } from '../../src/adapters/fs/fs-object-store.js';
import { SqliteCatalogStore } from '../../src/adapters/sqlite/sqlite-catalog-store.js';
import { SqliteMessageIndex } from '../../search/sqlite/sqlite-message-index.js';
import { AuditTrail } from '../../src/audit/audit-trail.js';
import { newEnvelopeId } from '../../src/domain/envelope-id.js';
import type { ObjectStore } from '../../src/ports/object-store.js';
import type { CatalogStore } from '../../src/ports/catalog-store.js';
import type { MessageIndex } from '../../src/ports/message-index.js';
import { documentFor } from '../../ingest/index-message.job.js';
import { DispositionJob, RetentionReports, RetentionService } from '../../retention/index.js';
import type { Mode } from './modes.js';

export interface TestMail {
  from: string;
  to?: string[];
  cc?: string[];
  /** Envelope-only recipients (Bcc, expanded lists). */
  envelopeTo?: string[];
  /** ISO-8601 Date header. */
  date: string;
  subject?: string;
  /** Plain-text body (default `Body <n>`). */
  body?: string;
  attachment?: boolean;
}

/** Scale-out only: a raw client on the S3 endpoint itself (not through the store), to see what S3 says. */
export interface RawS3 {
  client: S3Client;
  bucket: string;
  /** The object key of a message. */
  key(sha256: string): string;
}

export interface RetentionFixture {
  mode: Mode;
  dir: string;
  /** Scale-out only. */
  s3?: RawS3;
  store: ObjectStore;
  index: MessageIndex;
  catalog: CatalogStore;
  audit: AuditTrail;
  service: RetentionService;
  job: DispositionJob;
  reports: RetentionReports;
  now(): DateTime;
  setNow(iso: string | DateTime): void;
  /** Stores, indexes and applies retention, with the envelope received now. Returns the SHA-256. */
  archive(mail: TestMail): Promise<string>;
  exists(sha256: string): Promise<boolean>;
  close(): Promise<void>;
}

export const silent = pino({ level: 'silent' });

let seq = 0;

export function rawMail(mail: TestMail): Buffer {
  const lines = [
    `From: ${mail.from}`,
    `To: ${(mail.to ?? []).join(', ') || 'undisclosed-recipients:;'}`,
    ...(mail.cc?.length ? [`Cc: ${mail.cc.join(', ')}`] : []),
    `Subject: ${mail.subject ?? `message ${++seq}`}`,
    `Date: ${DateTime.fromISO(mail.date, { zone: 'utc' }).toRFC2822()}`,
    `Message-ID: <${createHash('sha256').update(`${JSON.stringify(mail)} ${++seq} ${Math.random()}`).digest('hex').slice(0, 24)}@test.example>`,
    'MIME-Version: 1.0',
  ];
  if (!mail.attachment) return Buffer.from([...lines, 'Content-Type: text/plain; charset=utf-8', '', mail.body ?? `Body ${seq}`, ''].join('\r\n'));
  return Buffer.from(
    [
      ...lines,
      'Content-Type: multipart/mixed; boundary="b1"',
      '',
      '--b1',
      'Content-Type: text/plain',
      '',
      mail.body ?? `Body ${seq}`,
      '--b1',
      'Content-Type: application/octet-stream',
      'Content-Disposition: attachment; filename="report.bin"',
      'Content-Transfer-Encoding: base64',
      '',
      Buffer.from(`attachment ${seq}`).toString('base64'),
      '--b1--',
      '',
    ].join('\r\n'),
  );
}

const S3_CREDENTIALS = { accessKeyId: process.env.ARCHIVE_TEST_S3_ACCESS_KEY_ID ?? 'test', secretAccessKey: process.env.ARCHIVE_TEST_S3_SECRET_ACCESS_KEY ?? 'test' };
/** One Object Lock bucket per test process; each fixture gets its own prefix in it. */
let sharedBucket: Promise<string> | undefined;

function rawS3Client(endpoint: string): S3Client {
  const quiet = { trace: () => undefined, debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };
  return new S3Client({ endpoint, region: 'us-east-1', credentials: S3_CREDENTIALS, forcePathStyle: true, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED', logger: quiet });
}

export async function retentionFixture(opts: {
  start: string;
  /** Default embedded. Scale-out needs ARCHIVE_TEST_S3_ENDPOINT and ARCHIVE_TEST_OPENSEARCH_URL. */
  mode?: Mode;
  /** Scale-out: the endpoint the store talks to (default ARCHIVE_TEST_S3_ENDPOINT), e.g. a proxy that can play an outage. */
  s3Endpoint?: string;
  fourEyes?: boolean;
  /** OpenSearch index and catalog over the default fs store (implied by scale-out). */
  openSearch?: string;
  store?: (dir: string, clock: () => Date) => Promise<ObjectStore>;
  wrapCatalog?: (c: CatalogStore) => CatalogStore;
  wrapStore?: (s: ObjectStore) => ObjectStore;
}): Promise<RetentionFixture> {
  const mode: Mode = opts.mode ?? 'embedded';
  const dir = await mkdtemp(path.join(os.tmpdir(), 'archive-retention-'));
  let now: DateTime = DateTime.fromISO(opts.start, { zone: 'utc' });
  const clock = () => now;
  const jsClock = () => now.toJSDate();
  let baseStore: ObjectStore;
  let s3: RawS3 | undefined;
  let openSearch = opts.openSearch;
  if (mode === 'scale-out') {
    const endpoint = process.env.ARCHIVE_TEST_S3_ENDPOINT;
    openSearch = process.env.ARCHIVE_TEST_OPENSEARCH_URL;
    if (!endpoint || !openSearch) throw new Error('a scale-out retention fixture needs ARCHIVE_TEST_S3_ENDPOINT and ARCHIVE_TEST_OPENSEARCH_URL (bash infra/test-services.sh up)');
    const client = rawS3Client(endpoint);
    sharedBucket ??= (async () => {
      const bucket = `archive-retfx-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
      await client.send(new CreateBucketCommand({ Bucket: bucket, ObjectLockEnabledForBucket: true }));
      return bucket;
    })();
    const bucket = await sharedBucket;
    const prefix = `fx/${randomBytes(6).toString('hex')}/`;
    const { S3ObjectStore } = await import('../../src/adapters/s3/s3-object-store.js');
    const store = new S3ObjectStore({ endpoint: opts.s3Endpoint ?? endpoint, region: 'us-east-1', bucket, prefix, credentials: S3_CREDENTIALS, forcePathStyle: true, lockMode: 'COMPLIANCE', defaultRetentionDays: 1, sse: 'none', log: silent, clock: jsClock });
    await store.init();
    baseStore = store;
    s3 = { client, bucket, key: (sha256) => `${prefix}messages/${sha256}` };
  } else if (opts.store) baseStore = await opts.store(dir, jsClock);
  else {
    const fs = new FsObjectStore(path.join(dir, 'store'), path.join(dir, 'spool'), { clock: jsClock });
    await fs.init();
    baseStore = fs;
  }
  const store = opts.wrapStore ? opts.wrapStore(baseStore) : baseStore;
  let index: MessageIndex;
  let baseCatalog: CatalogStore;
  let dropOpenSearch = async () => undefined as unknown;
  if (openSearch) {
    // Scale-out: OpenSearch index and catalog, a fresh prefix per fixture.
    const [{ Client }, { OpenSearchMessageIndex }, { OpenSearchCatalogStoreAdapter }] = await Promise.all([
      import('@opensearch-project/opensearch'),
      import('../../search/opensearch/opensearch-message-index.js'),
      import('../../src/adapters/opensearch/opensearch-catalog-store-adapter.js'),
    ]);
    const prefix = `archive-test-ret-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
    const client = new Client({ node: openSearch });
    index = new OpenSearchMessageIndex({ client, indexPrefix: prefix, log: silent });
    baseCatalog = new OpenSearchCatalogStoreAdapter({ client, indexPrefix: prefix, log: silent });
    dropOpenSearch = async () => {
      await client.indices.delete({ index: `${prefix}-*`, expand_wildcards: 'all' } as never).catch(() => undefined);
    };
  } else {
    index = new SqliteMessageIndex(path.join(dir, 'index.sqlite'), silent);
    baseCatalog = new SqliteCatalogStore(path.join(dir, 'records.sqlite'), silent);
  }
  await index.init();
  await baseCatalog.init();
  const catalog = opts.wrapCatalog ? opts.wrapCatalog(baseCatalog) : baseCatalog;
  const audit = new AuditTrail({ catalog: baseCatalog, store: baseStore, log: silent, now: jsClock });
  const service = new RetentionService({ catalog, index, store, audit, clock, log: silent });
  await service.init();
  const job = new DispositionJob({ catalog, index, store, audit, service, clock, log: silent, fourEyes: !!opts.fourEyes, budgetMs: 120_000 });
  const reports = new RetentionReports(catalog, clock);
  const spoolDir = path.join(dir, 'spool-test');
  await import('node:fs/promises').then((f) => f.mkdir(spoolDir, { recursive: true }));
  return {
    mode,
    dir,
    s3,
    store,
    index,
    catalog,
    audit,
    service,
    job,
    reports,
    now: clock,
    setNow(iso) {
      now = typeof iso === 'string' ? DateTime.fromISO(iso, { zone: 'utc' }) : iso.toUTC();
    },
    async archive(mail) {
      const bytes = rawMail(mail);
      const sha256 = createHash('sha256').update(bytes).digest('hex');
      const file = path.join(spoolDir, `${sha256}.${++seq}.spool`);
      await writeFile(file, bytes);
      await baseStore.putMessage({ path: file, sha256, size: bytes.length });
      const recipients = [
        ...(mail.to ?? []).map((address) => ({ address, kind: 'to' as const })),
        ...(mail.cc ?? []).map((address) => ({ address, kind: 'cc' as const })),
        ...(mail.envelopeTo ?? []).map((address) => ({ address, kind: 'bcc' as const })),
      ];
      await baseStore.putEnvelope({ id: newEnvelopeId(now.toJSDate()), sha256, source: 'import', receivedAt: now.toJSDate().toISOString(), recipients, flags: [] });
      const doc = (await documentFor(baseStore, sha256))!;
      await index.upsert([doc]);
      await index.refresh();
      await service.applyToDocuments([doc]);
      return sha256;
    },
    async exists(sha256) {
      return (await baseStore.statMessage(sha256)) !== undefined;
    },
    async close() {
      // OpenSearch indices go first, while the client is still open.
      await dropOpenSearch();
      await index.close();
      await baseCatalog.close();
      await baseStore.close();
      // The objects stay (COMPLIANCE-locked, as in production); moto keeps them in memory until it stops.
      s3?.client.destroy();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
