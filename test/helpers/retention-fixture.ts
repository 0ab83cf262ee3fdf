/**
 * An embedded archive's retention engine with an injected clock, for tests
 * that move through years in milliseconds: fs store (whose deleteMessage
 * uses the same clock), SQLite index and catalog, the real audit trail.
 * `archive()` stores, indexes and applies policies and holds to a message
 * the way the index job's retention hook does.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DateTime } from 'luxon';
import { pino } from 'pino';
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

export interface TestMail {
  from: string;
  to?: string[];
  cc?: string[];
  /** Envelope-only recipients (Bcc, expanded lists). */
  envelopeTo?: string[];
  /** ISO-8601 Date header. */
  date: string;
  subject?: string;
  attachment?: boolean;
}

export interface RetentionFixture {
  dir: string;
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
  if (!mail.attachment) return Buffer.from([...lines, 'Content-Type: text/plain; charset=utf-8', '', `Body ${seq}`, ''].join('\r\n'));
  return Buffer.from(
    [
      ...lines,
      'Content-Type: multipart/mixed; boundary="b1"',
      '',
      '--b1',
      'Content-Type: text/plain',
      '',
      `Body ${seq}`,
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

export async function retentionFixture(opts: { start: string; fourEyes?: boolean; openSearch?: string; store?: (dir: string, clock: () => Date) => Promise<ObjectStore>; wrapCatalog?: (c: CatalogStore) => CatalogStore; wrapStore?: (s: ObjectStore) => ObjectStore }): Promise<RetentionFixture> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'archive-retention-'));
  let now: DateTime = DateTime.fromISO(opts.start, { zone: 'utc' });
  const clock = () => now;
  const jsClock = () => now.toJSDate();
  let baseStore: ObjectStore;
  if (opts.store) baseStore = await opts.store(dir, jsClock);
  else {
    const fs = new FsObjectStore(path.join(dir, 'store'), path.join(dir, 'spool'), { clock: jsClock });
    await fs.init();
    baseStore = fs;
  }
  const store = opts.wrapStore ? opts.wrapStore(baseStore) : baseStore;
  let index: MessageIndex;
  let baseCatalog: CatalogStore;
  let dropOpenSearch = async () => undefined as unknown;
  if (opts.openSearch) {
    // Scale-out: OpenSearch index and catalog, a fresh prefix per fixture.
    const [{ Client }, { OpenSearchMessageIndex }, { OpenSearchCatalogStoreAdapter }] = await Promise.all([
      import('@opensearch-project/opensearch'),
      import('../../search/opensearch/opensearch-message-index.js'),
      import('../../src/adapters/opensearch/opensearch-catalog-store-adapter.js'),
    ]);
    const prefix = `archive-test-ret-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
    const client = new Client({ node: opts.openSearch });
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
    dir,
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
      await rm(dir, { recursive: true, force: true });
    },
  };
}
