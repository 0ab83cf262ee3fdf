/**
 * The two deployments every API test runs on: embedded (fs, SQLite, inline)
 * and scale-out (S3 with Object Lock, OpenSearch, bull on Redis), against the
 * services of infra/test-services.sh. Outside CI a missing service skips the
 * scale-out run loudly; in CI it fails.
 */
import { chmod, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { dropOpenSearchIndices, scaleOutEnv } from '../../bench/scale-out-env.js';
import { createCatalogStore, createObjectStore } from '../../src/factory.js';
import { loadConfig } from '../../src/config/config.js';
import { createLogger } from '../../src/logger.js';
import { testEnv } from './archive-process.js';
import type { Services } from '../../src/services.js';
import { INDEX_JOB } from '../../ingest/index.js';
import { afterAll } from 'vitest';

export const SCALE_OUT_AVAILABLE = !!process.env.ARCHIVE_TEST_OPENSEARCH_URL && !!process.env.ARCHIVE_TEST_S3_ENDPOINT;

if (!SCALE_OUT_AVAILABLE) {
  if (process.env.CI === 'true') throw new Error('scale-out tests need ARCHIVE_TEST_OPENSEARCH_URL and ARCHIVE_TEST_S3_ENDPOINT in CI (bash infra/test-services.sh up)');
  console.warn('\n*** SKIPPING scale-out runs: start the services with `bash infra/test-services.sh up` and export its env ***\n');
}

export type Mode = 'embedded' | 'scale-out';

/** Scale-out environments this test file created; their OpenSearch indices are dropped once the file is done. */
const created: Record<string, string>[] = [];

/** A fresh scale-out environment (bench/scale-out-env.ts) whose indices are dropped once the calling test file is done. */
export async function trackedScaleOutEnv(): Promise<Record<string, string>> {
  const env = await scaleOutEnv();
  created.push(env);
  return env;
}

// Registered while the importing test file is collected: runs after all of its suites, so no archive of it still uses the indices.
afterAll(async () => {
  for (const env of created.splice(0)) await dropModeIndices(env);
});

export const MODES: { mode: Mode; enabled: boolean; env: () => Promise<Record<string, string>> }[] = [
  { mode: 'embedded', enabled: true, env: async () => ({}) },
  { mode: 'scale-out', enabled: SCALE_OUT_AVAILABLE, env: trackedScaleOutEnv },
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

/**
 * The stored bytes of a message, read back through the store port of the
 * deployment (files on disk, or S3 objects), verifying the hash on the way.
 */
export async function storedBytes(dataDir: string, modeEnv: Record<string, string>, sha256: string): Promise<Buffer> {
  const store = await createObjectStore(loadConfig(testEnv(dataDir, modeEnv)), createLogger({ level: 'silent' }));
  try {
    const chunks: Buffer[] = [];
    for await (const c of await store.getMessage(sha256)) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  } finally {
    await store.close();
  }
}

/**
 * Damages a stored message the way an intruder with write access would: on
 * disk, one flipped byte in the file; on S3, a new current version of the key
 * with one flipped byte (Object Lock keeps the old version, but readers get
 * the new one).
 */
export async function tamperStored(dataDir: string, modeEnv: Record<string, string>, sha256: string): Promise<void> {
  if (modeEnv.ARCHIVE_STORE !== 's3') {
    const file = path.join(dataDir, 'store', 'objects', sha256.slice(0, 2), sha256.slice(2, 4), sha256);
    await chmod(file, 0o644);
    const bytes = await readFile(file);
    bytes[0] = bytes[0]! ^ 1;
    await writeFile(file, bytes);
    return;
  }
  const s3 = new S3Client({
    endpoint: modeEnv.ARCHIVE_S3_ENDPOINT,
    region: modeEnv.ARCHIVE_S3_REGION,
    forcePathStyle: true,
    credentials: { accessKeyId: modeEnv.ARCHIVE_S3_ACCESS_KEY_ID!, secretAccessKey: modeEnv.ARCHIVE_S3_SECRET_ACCESS_KEY! },
  });
  try {
    const key = `${modeEnv.ARCHIVE_S3_PREFIX ?? ''}messages/${sha256}`;
    const cur = await s3.send(new GetObjectCommand({ Bucket: modeEnv.ARCHIVE_S3_BUCKET, Key: key }));
    const bytes = Buffer.from(await cur.Body!.transformToByteArray());
    bytes[0] = bytes[0]! ^ 1;
    await s3.send(new PutObjectCommand({ Bucket: modeEnv.ARCHIVE_S3_BUCKET, Key: key, Body: bytes }));
  } finally {
    s3.destroy();
  }
}

/**
 * Drops the OpenSearch indices of a scale-out environment once its suite is
 * done (every environment has its own prefix; left behind, they add up
 * towards the node's shard limit). Nothing to do for embedded.
 */
export async function dropModeIndices(modeEnv: Record<string, string> | undefined): Promise<void> {
  if (modeEnv?.ARCHIVE_INDEX !== 'opensearch') return;
  await dropOpenSearchIndices(modeEnv.ARCHIVE_OPENSEARCH_URL!, modeEnv.ARCHIVE_OPENSEARCH_INDEX_PREFIX!).catch(() => undefined);
}

/**
 * Alters one catalog record behind the archive's back (the archive is not
 * running), the way someone with write access to SQLite or OpenSearch would:
 * through the deployment's own catalog store.
 */
export async function tamperCatalogRecord<T>(dataDir: string, modeEnv: Record<string, string>, collection: string, id: string, change: (data: T) => T): Promise<T> {
  const catalog = await createCatalogStore(loadConfig(testEnv(dataDir, modeEnv)), createLogger({ level: 'silent' }));
  try {
    const cur = await catalog.get<T>(collection, id);
    if (!cur) throw new Error(`no ${collection} record ${id}`);
    await catalog.update(collection, id, change(cur.data), cur.version);
    return cur.data;
  } finally {
    await catalog.close();
  }
}
