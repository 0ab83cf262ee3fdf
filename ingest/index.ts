/** The ingest module's public face: other modules import from here only. */
export { IngestPipeline, type IngestContext, type IngestResult } from './ingest-pipeline.js';
export { SmtpJournalServer } from './smtp-journal-server.js';
export { importPaths, type ImportSummary } from './importer.js';
export { IndexMessageJob, documentFor } from './index-message.job.js';
export { reconcileIndex } from './reconcile.js';
export { extractAttachment } from './attachment-extractor.js';
export { INDEX_JOB, failedJobView } from './index-job.js';
export { reindexFromStore, type ReindexReport, type ReindexBatchHook } from './reindex.js';
