/**
 * The two deployments every API test runs on: embedded (fs, SQLite, inline)
 * and scale-out (S3 with Object Lock, OpenSearch, bull on Redis), against the
 * services of infra/test-services.sh. Outside CI a missing service skips the
 * scale-out run loudly; in CI it fails.
 */
import { scaleOutEnv } from '../../bench/scale-out-env.js';
import type { Services } from '../../src/services.js';
import { INDEX_JOB } from '../../ingest/index.js';

export const SCALE_OUT_AVAILABLE = !!process.env.ARCHIVE_TEST_OPENSEARCH_URL && !!process.env.ARCHIVE_TEST_S3_ENDPOINT;

if (!SCALE_OUT_AVAILABLE) {
  if (process.env.CI === 'true') throw new Error('scale-out tests need ARCHIVE_TEST_OPENSEARCH_URL and ARCHIVE_TEST_S3_ENDPOINT in CI (bash infra/test-services.sh up)');
  console.warn('\n*** SKIPPING scale-out runs: start the services with `bash infra/test-services.sh up` and export its env ***\n');
}

export type Mode = 'embedded' | 'scale-out';

export const MODES: { mode: Mode; enabled: boolean; env: () => Promise<Record<string, string>> }[] = [
  { mode: 'embedded', enabled: true, env: async () => ({}) },
  { mode: 'scale-out', enabled: SCALE_OUT_AVAILABLE, env: scaleOutEnv },
];

/** Waits until every id is in the index (an acknowledged message is indexed shortly after, by a queue job). */
export async function waitForIndexed(services: Services, ids: string[], timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const have = await services.index.existing(ids);
    if (have.size === new Set(ids).size) {
      // existing() sees a document (OpenSearch realtime get) before a search
      // can, and before its job's after-index retention step has run: wait
      // for the jobs, then make every write searchable.
      await services.queue.whenIdle(INDEX_JOB, Math.max(1000, end - Date.now()));
      await services.index.refresh();
      return;
    }
    if (Date.now() > end) throw new Error(`not indexed after ${timeoutMs} ms: ${ids.filter((i) => !have.has(i)).join(', ')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
