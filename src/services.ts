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
import { createJobQueue, createMessageIndex, createObjectStore, spoolDirOf } from './factory.js';
import { IngestPipeline } from '../ingest/ingest-pipeline.js';
import { IndexMessageJob } from '../ingest/index-message.job.js';
import { ParsePool } from '../ingest/parse-pool.js';
import { FsObjectStore } from './adapters/fs/fs-object-store.js';
import { SearchService } from '../search/index.js';

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
  /** Starts consuming index jobs in this process (serve with the inline queue, `archive worker`, import). */
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
  const pipeline = new IngestPipeline({ store, queue, log: log.child({ component: 'ingest' }), spoolDir, maxBytes: config.ARCHIVE_SMTP_MAX_SIZE });
  const parsePool = new ParsePool(log.child({ component: 'parse-pool' }), config.ARCHIVE_PARSE_THREADS);
  const indexJob = new IndexMessageJob(store, index, log.child({ component: 'indexer' }), parsePool);
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
    startWorkers() {
      if (workers) return;
      workers = true;
      indexJob.register(queue, config.ARCHIVE_INDEX_CONCURRENCY);
    },
    async close() {
      await queue.close();
      await indexJob.flush();
      await parsePool.close();
      await index.close();
      await store.close();
    },
  };
}
