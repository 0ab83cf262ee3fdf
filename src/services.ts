/**
 * The archive's services wired together: what `serve`, `worker`, `import`
 * and the other commands share. Built once per process by the composition root.
 */
import { mkdir } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { Config } from './config/config.js';
import type { ObjectStore } from './ports/object-store.js';
import type { JobQueue } from './ports/job-queue.js';
import type { MessageIndex } from './ports/message-index.js';
import type { CatalogStore } from './ports/catalog-store.js';
import { createCatalogStore, createJobQueue, createMessageIndex, createObjectStore, spoolDirOf } from './factory.js';
import { AuditTrail } from './audit/audit-trail.js';
import { AuthService } from './auth/auth-service.js';
import { OidcSignIn } from './auth/oidc.js';
import { IngestPipeline } from '../ingest/ingest-pipeline.js';
import { IndexMessageJob } from '../ingest/index-message.job.js';
import { INDEX_JOB, indexJobOptions, type IndexJobPayload } from '../ingest/index-job.js';
import { ParsePool } from '../ingest/parse-pool.js';
import { FsObjectStore } from './adapters/fs/fs-object-store.js';
import { SearchService } from '../search/index.js';
import { createExports, type ExportService, type ExportJob } from './export/index.js';
import { DispositionJob, RetentionReports, RetentionService, holdQuery, systemClock } from '../retention/index.js';
import { describeImmutability } from './reports/immutability.js';
import type { QueryNode } from '../search/index.js';
import { ValidationError } from './errors.js';

export interface Services {
  config: Config;
  log: Logger;
  store: ObjectStore;
  queue: JobQueue;
  index: MessageIndex;
  pipeline: IngestPipeline;
  search: SearchService;
  indexJob: IndexMessageJob;
  parsePool: ParsePool;
  /** Users, tokens, sessions, the audit trail (and, later, holds, cases, exports). */
  catalog: CatalogStore;
  /** The tamper-evident audit trail: `audit.record({...})` for every human action. */
  audit: AuditTrail;
  /** Users, roles, scopes, tokens, sign-in, sessions. */
  auth: AuthService;
  /** Single sign-on, when ARCHIVE_OIDC_ISSUER is set. */
  oidc?: OidcSignIn;
  /** E-discovery exports: start, progress, cancel, download (src/export). */
  exports: ExportService;
  exportJob: ExportJob;
  /** Retention policies, cases and legal holds (retention/). */
  retention: RetentionService;
  /** The scheduled disposition job (ARCHIVE_DISPOSITION_*). */
  disposition: DispositionJob;
  /** Data of the auditors' retention reports. */
  retentionReports: RetentionReports;
  /** Starts consuming index and export jobs in this process (serve with the inline queue, `archive worker`, import). */
  startWorkers(): void;
  close(): Promise<void>;
}

export async function createServices(config: Config, log: Logger): Promise<Services> {
  const spoolDir = spoolDirOf(config);
  await mkdir(spoolDir, { recursive: true });
  const removed = await FsObjectStore.cleanSpool(spoolDir);
  if (removed) log.info({ removed, spoolDir }, 'removed spool debris of an earlier crash');
  const store = await createObjectStore(config, log);
  const queue = await createJobQueue(config, log);
  const index = await createMessageIndex(config, log);
  const catalog = await createCatalogStore(config, log);
  const audit = new AuditTrail({ catalog, store, log: log.child({ component: 'audit' }) });
  const auth = new AuthService(
    catalog,
    audit,
    {
      sessionTtlMs: config.ARCHIVE_SESSION_TTL_HOURS * 3_600_000,
      sessionIdleMs: config.ARCHIVE_SESSION_IDLE_MINUTES * 60_000,
      lockoutThreshold: config.ARCHIVE_AUTH_LOCKOUT_THRESHOLD,
      lockoutMs: config.ARCHIVE_AUTH_LOCKOUT_MINUTES * 60_000,
      backoffMs: config.ARCHIVE_AUTH_BACKOFF_MS,
      issuerName: config.ARCHIVE_ORG_NAME,
    },
    log.child({ component: 'auth' }),
  );
  const oidc =
    config.ARCHIVE_OIDC_ISSUER && config.ARCHIVE_OIDC_CLIENT_ID && config.ARCHIVE_OIDC_REDIRECT_URL
      ? new OidcSignIn(
          {
            issuer: config.ARCHIVE_OIDC_ISSUER,
            clientId: config.ARCHIVE_OIDC_CLIENT_ID,
            clientSecret: config.ARCHIVE_OIDC_CLIENT_SECRET,
            redirectUrl: config.ARCHIVE_OIDC_REDIRECT_URL,
            scopes: config.ARCHIVE_OIDC_SCOPES,
            groupsClaim: config.ARCHIVE_OIDC_GROUPS_CLAIM,
            groupMap: config.ARCHIVE_OIDC_GROUP_MAP,
          },
          catalog,
          auth,
          log.child({ component: 'oidc' }),
        )
      : undefined;
  const pipeline = new IngestPipeline({ store, queue, log: log.child({ component: 'ingest' }), spoolDir, maxBytes: config.ARCHIVE_SMTP_MAX_SIZE });
  const parsePool = new ParsePool(log.child({ component: 'parse-pool' }), config.ARCHIVE_PARSE_THREADS);
  const retentionLog = log.child({ component: 'retention' });
  const retention = new RetentionService({ catalog, index, store, audit, clock: systemClock, log: retentionLog });
  await retention.init();
  const disposition = new DispositionJob({
    catalog,
    index,
    store,
    audit,
    service: retention,
    clock: systemClock,
    log: retentionLog,
    fourEyes: config.ARCHIVE_DISPOSITION_FOUR_EYES,
    budgetMs: config.ARCHIVE_DISPOSITION_BUDGET_SECONDS * 1000,
    requestIndex: async (sha256, size) => {
      await queue.add<IndexJobPayload>(INDEX_JOB, { sha256, size }, indexJobOptions(sha256));
    },
  });
  // Retain-until and holds are applied as each batch lands in the index.
  const indexJob = new IndexMessageJob(store, index, log.child({ component: 'indexer' }), parsePool, (docs) => retention.applyToDocuments(docs), {
    batchDelayMs: config.ARCHIVE_INDEX_BATCH_MS ?? (config.ARCHIVE_INDEX === 'opensearch' ? 200 : 50),
  });
  // A case's held set, for exports: the OR of the case's active holds (the user's scope applies on top).
  const resolveCase = async (caseId: string): Promise<QueryNode> => {
    await retention.getCase(caseId);
    const holds = (await retention.listHolds(caseId)).filter((h) => h.status === 'active');
    if (!holds.length) throw new ValidationError(`case ${caseId} has no active hold to export`);
    return holds.length === 1 ? holdQuery(holds[0]!) : { type: 'or', children: holds.map((h) => holdQuery(h)) };
  };
  const { service: exports, job: exportJob } = createExports({ config, log, store, index, queue, catalog, audit, resolveCase });
  let workers = false;
  return {
    config,
    log,
    store,
    queue,
    index,
    pipeline,
    search: new SearchService(index),
    indexJob,
    parsePool,
    catalog,
    audit,
    auth,
    oidc,
    exports,
    exportJob,
    retention,
    disposition,
    retentionReports: new RetentionReports(catalog, systemClock, describeImmutability(config)),
    startWorkers() {
      if (workers) return;
      workers = true;
      indexJob.register(queue, config.ARCHIVE_INDEX_CONCURRENCY);
      exportJob.register(queue, config.ARCHIVE_EXPORT_CONCURRENCY);
      disposition.start(config.ARCHIVE_DISPOSITION_INTERVAL_MINUTES * 60_000);
    },
    async close() {
      pipeline.close();
      exportJob.stop();
      await disposition.stop();
      await retention.close();
      await queue.close();
      await indexJob.flush();
      await parsePool.close();
      await index.close();
      // Seals the latest chain head (write-once store) before the store closes.
      await audit.close();
      await catalog.close();
      await store.close();
    },
  };
}
