/** The retention module's public face: other modules import from here only. */
export { RetentionService, DEFAULT_POLICY_ID, evaluate, holdCovers, type RetentionActor, type AuditSink, type SimulationResult, type ReleaseResult } from './retention-service.js';
export { DispositionJob, DISPOSITION_JOB, type DispositionRunReport, type SkippedMessage } from './disposition.job.js';
export { RetentionReports, certificateDigest, certificateLines, type RetentionReportData, type CertificateData, type HoldReportData, type Period, type PolicyVersionCount } from './report-data.js';
export { computeRetainUntil } from './retain-until.js';
export { policyQuery, holdQuery, matchDocument } from './matcher.js';
export { CatalogLease } from './lease.js';
export * from './types.js';

import { DateTime } from 'luxon';
import type { Clock } from './types.js';
/** The real clock (UTC). */
export const systemClock: Clock = () => DateTime.utc();
