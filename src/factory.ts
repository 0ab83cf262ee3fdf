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
import type { MessageIndex } from './ports/message-index.js';
import type { CatalogStore } from './ports/catalog-store.js';
import { FsObjectStore } from './adapters/fs/fs-object-store.js';
import { InlineQueue } from './adapters/inline/inline-queue.js';

/** Where spool files go: on the data volume, so the fs store can link them into place. */
export function spoolDirOf(config: Config): string {
  return path.join(config.dataDir, 'spool');
}

export async function createObjectStore(config: Config, log: Logger): Promise<ObjectStore> {
  switch (config.ARCHIVE_STORE) {
    case 'fs': {
      const store = new FsObjectStore(path.join(config.dataDir, 'store'), spoolDirOf(config));
      await store.init();
      return store;
    }
    case 's3': {
      // Lazy: the embedded default never loads the AWS SDK.
      const { S3ObjectStore } = await import('./adapters/s3/s3-object-store.js');
      // Local copies of new messages (read by the index job instead of S3): beside the spool, on the same volume, so they arrive by rename.
      const store = S3ObjectStore.fromConfig(config, log, path.join(config.dataDir, 'recent-messages'));
      try {
        await store.init();
      } catch (err) {
        await store.close();
        throw err;
      }
      return store;
    }
  }
}

export async function createJobQueue(config: Config, log: Logger): Promise<JobQueue> {
  switch (config.ARCHIVE_QUEUE) {
    case 'inline':
      return new InlineQueue(log.child({ component: 'queue' }));
    case 'redis': {
      const { BullQueue } = await import('./adapters/redis/bull-queue.js');
      return BullQueue.fromConfig(config, log.child({ component: 'queue' }));
    }
  }
}

export async function createMessageIndex(config: Config, log: Logger): Promise<MessageIndex> {
  const child = log.child({ component: 'index' });
  let index: MessageIndex;
  switch (config.ARCHIVE_INDEX) {
    case 'sqlite': {
      const { SqliteMessageIndex } = await import('../search/sqlite/sqlite-message-index.js');
      index = SqliteMessageIndex.fromConfig(config, child);
      break;
    }
    case 'opensearch': {
      // Lazy: the embedded default never loads the OpenSearch client.
      const { OpenSearchMessageIndex } = await import('../search/opensearch/opensearch-message-index.js');
      index = OpenSearchMessageIndex.fromConfig(config, child);
      break;
    }
  }
  await index.init();
  return index;
}

/**
 * The catalog store (users, tokens, sessions, the audit trail) follows the
 * index driver: SQLite beside the embedded index, OpenSearch in scale-out.
 */
export async function createCatalogStore(config: Config, log: Logger): Promise<CatalogStore> {
  const child = log.child({ component: 'catalog' });
  let catalog: CatalogStore;
  switch (config.ARCHIVE_INDEX) {
    case 'sqlite': {
      const { SqliteCatalogStore } = await import('./adapters/sqlite/sqlite-catalog-store.js');
      catalog = SqliteCatalogStore.fromConfig(config, child);
      break;
    }
    case 'opensearch': {
      // Lazy: the embedded default never loads the OpenSearch client. Its own
      // connection pool (the index has another): catalog traffic is light.
      const [{ Client }, { clientOptionsFromConfig }, { OpenSearchCatalogStoreAdapter }] = await Promise.all([
        import('@opensearch-project/opensearch'),
        import('../search/opensearch/opensearch-message-index.js'),
        import('./adapters/opensearch/opensearch-catalog-store-adapter.js'),
      ]);
      catalog = new OpenSearchCatalogStoreAdapter({
        client: new Client(clientOptionsFromConfig(config)),
        indexPrefix: config.ARCHIVE_OPENSEARCH_INDEX_PREFIX,
        log: child.child({ driver: 'opensearch' }),
        ownsClient: true,
      });
      break;
    }
  }
  await catalog.init();
  return catalog;
}
