/**
 * The archive's services wired together: what `serve`, `import`, `worker`
 * and the other commands share. Built once per process by the composition root.
 */
import { mkdir } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { Config } from './config/config.js';
import type { ObjectStore } from './ports/object-store.js';
import type { JobQueue } from './ports/job-queue.js';
import { createJobQueue, createObjectStore, spoolDirOf } from './factory.js';
import { IngestPipeline } from '../ingest/ingest-pipeline.js';
import { FsObjectStore } from './adapters/fs/fs-object-store.js';

export interface Services {
  config: Config;
  log: Logger;
  store: ObjectStore;
  queue: JobQueue;
  pipeline: IngestPipeline;
  close(): Promise<void>;
}

export async function createServices(config: Config, log: Logger): Promise<Services> {
  const spoolDir = spoolDirOf(config);
  await mkdir(spoolDir, { recursive: true });
  const removed = await FsObjectStore.cleanSpool(spoolDir);
  if (removed) log.info({ removed, spoolDir }, 'removed spool debris of an earlier crash');
  const store = await createObjectStore(config, log);
  const queue = await createJobQueue(config, log);
  const pipeline = new IngestPipeline({ store, queue, log: log.child({ component: 'ingest' }), spoolDir, maxBytes: config.ARCHIVE_SMTP_MAX_SIZE });
  return {
    config,
    log,
    store,
    queue,
    pipeline,
    async close() {
      await queue.close();
      await store.close();
    },
  };
}
