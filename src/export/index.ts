/**
 * E-discovery exports: the module's public face and its wiring. The
 * composition root calls `createExports` once and registers the job where
 * workers run; the API, the CLI and tests use the service.
 */
import type { Logger } from 'pino';
import type { Config } from '../config/config.js';
import type { CatalogStore } from '../ports/catalog-store.js';
import type { JobQueue } from '../ports/job-queue.js';
import type { MessageIndex } from '../ports/message-index.js';
import type { ObjectStore } from '../ports/object-store.js';
import type { AuditEvent } from '../audit/audit-trail.js';
import { ExportRecords } from './export-record.js';
import { ExportJob } from './export.job.js';
import { ExportService, exportAudit, exportRootOf } from './export-service.js';
import { defaultUnicodeFont } from './pdf-renderer.js';
import { loadSigningKey } from './signing-key.js';

export { ExportService, ExportStateError, EXPORT_ID, type ExportActor } from './export-service.js';
export { ExportJob, EXPORT_JOB, type ExportJobPayload } from './export.job.js';
export { exportRequestSchema, EXPORT_FORMATS, STANDARD_FIELDS, ALL_FIELDS, type ExportRequest, type ExportRequestInput, type ExportFormat } from './export-request.js';
export type { ExportRecordData, ExportStatus, ExportProgress, ExportRequester } from './export-record.js';
export { verifyPackage, type VerifyReport } from './package-verifier.js';
export { zipPackage } from './package-zip.js';
export { loadSigningKey, type SigningKey } from './signing-key.js';

export interface ExportsModule {
  service: ExportService;
  job: ExportJob;
}

import type { CaseResolver } from './item-list.js';

export function createExports(deps: {
  config: Config;
  log: Logger;
  store: ObjectStore;
  index: MessageIndex;
  queue: JobQueue;
  catalog: CatalogStore;
  /** The audit trail; without one, export events are logged as audit events. */
  audit?: { record(e: AuditEvent): Promise<unknown> };
  /** A case's held set as a query (retention); enables `{kind: 'case'}` sources. */
  resolveCase?: CaseResolver;
}): ExportsModule {
  const log = deps.log.child({ component: 'export' });
  const records = new ExportRecords(deps.catalog);
  const audit = exportAudit(deps.audit, log);
  const service = new ExportService({ records, queue: deps.queue, config: deps.config, log, audit, resolveCase: deps.resolveCase });
  const job = new ExportJob({
    records,
    audit,
    exportRoot: exportRootOf(deps.config),
    store: deps.store,
    index: deps.index,
    log,
    signingKey: () => loadSigningKey(deps.config),
    orgName: deps.config.ARCHIVE_ORG_NAME,
    checkpointItems: deps.config.ARCHIVE_EXPORT_CHECKPOINT_ITEMS,
    unicodeFont: defaultUnicodeFont(deps.config.ARCHIVE_EXPORT_PDF_FONT),
    resolveCase: deps.resolveCase,
  });
  return { service, job };
}
