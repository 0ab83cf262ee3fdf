/**
 * The one place that picks adapters from configuration. Nothing else knows
 * which adapter it holds. Scale-out adapters are imported lazily, so the
 * embedded default never loads the AWS SDK, OpenSearch client or bull.
 */
import path from 'node:path';
import type { Logger } from 'pino';
import type { Config } from './config/config.js';
import type { ObjectStore } from './ports/object-store.js';
import type { JobQueue } from './ports/job-queue.js';
import { FsObjectStore } from './adapters/fs/fs-object-store.js';
import { InlineQueue } from './adapters/inline/inline-queue.js';
import { ConfigError } from './errors.js';

/** Where spool files go: on the data volume, so the fs store can link them into place. */
export function spoolDirOf(config: Config): string {
  return path.join(config.dataDir, 'spool');
}

export async function createObjectStore(config: Config, _log: Logger): Promise<ObjectStore> {
  switch (config.ARCHIVE_STORE) {
    case 'fs': {
      const store = new FsObjectStore(path.join(config.dataDir, 'store'), spoolDirOf(config));
      await store.init();
      return store;
    }
    case 's3':
      throw new ConfigError('ARCHIVE_STORE=s3 is not available in this build yet');
  }
}

export async function createJobQueue(config: Config, log: Logger): Promise<JobQueue> {
  switch (config.ARCHIVE_QUEUE) {
    case 'inline':
      return new InlineQueue(log.child({ component: 'queue' }));
    case 'redis':
      throw new ConfigError('ARCHIVE_QUEUE=redis is not available in this build yet');
  }
}
