/**
 * Runs the CatalogStore contract against both adapters: SQLite (a fresh file
 * per test) and OpenSearch at ARCHIVE_TEST_OPENSEARCH_URL (a fresh index
 * prefix per test, dropped afterwards). Without the variable the OpenSearch
 * half is skipped loudly, or fails under CI=true.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Client } from '@opensearch-project/opensearch';
import { pino } from 'pino';
import { describe, it } from 'vitest';
import { SqliteCatalogStore } from '../src/adapters/sqlite/sqlite-catalog-store.js';
import { OpenSearchCatalogStoreAdapter } from '../src/adapters/opensearch/opensearch-catalog-store-adapter.js';
import { catalogStoreContract } from './contract/catalog-store.contract.js';

const log = pino({ level: process.env.ARCHIVE_TEST_LOG_LEVEL ?? 'silent' });

catalogStoreContract('sqlite', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'archive-catalog-'));
  const store = new SqliteCatalogStore(path.join(dir, 'catalog', 'records.sqlite'), log);
  return {
    store,
    cleanup: async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

const OS_URL = process.env.ARCHIVE_TEST_OPENSEARCH_URL;
const RUN = `archive-test-catalog-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;

if (OS_URL) {
  let n = 0;
  catalogStoreContract('opensearch', async () => {
    const prefix = `${RUN}-${n++}`;
    const client = new Client({ node: OS_URL });
    const store = new OpenSearchCatalogStoreAdapter({ client, indexPrefix: prefix, log });
    return {
      store,
      cleanup: async () => {
        await client.indices.delete({ index: `${prefix}-catalog-*`, expand_wildcards: 'all' } as never).catch(() => undefined);
        await client.close();
      },
    };
  });
} else if (process.env.CI === 'true') {
  describe('CatalogStore contract: opensearch', () => {
    it('needs OpenSearch (CI=true: nothing may skip)', () => {
      throw new Error('ARCHIVE_TEST_OPENSEARCH_URL is not set; start OpenSearch with infra/opensearch.sh start and eval "$(bash infra/test-services.sh env)"');
    });
  });
} else {
  console.warn(
    [
      '',
      '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!',
      '!!! SKIPPED: CatalogStore contract on OpenSearch. ARCHIVE_TEST_OPENSEARCH_URL is unset.',
      '!!! Start it with infra/opensearch.sh start and eval "$(bash infra/test-services.sh env)".',
      '!!! In CI (CI=true) this is a failure.',
      '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!',
      '',
    ].join('\n'),
  );
  describe.skip('CatalogStore contract: opensearch (ARCHIVE_TEST_OPENSEARCH_URL unset)', () => {
    it('skipped', () => undefined);
  });
}
