/**
 * Environment for running the archive in scale-out mode against the local
 * test services (infra/test-services.sh): a fresh Object Lock bucket on the
 * S3 endpoint, OpenSearch with a fresh index prefix, Redis with a fresh key prefix.
 */
import { S3Client, CreateBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { Client } from '@opensearch-project/opensearch';
import { generateKeyPairSync } from 'node:crypto';

export async function scaleOutEnv(): Promise<Record<string, string>> {
  const endpoint = process.env.ARCHIVE_TEST_S3_ENDPOINT ?? 'http://127.0.0.1:4566';
  const bucket = `bench-${Date.now()}`;
  const s3 = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
  await s3.send(new CreateBucketCommand({ Bucket: bucket, ObjectLockEnabledForBucket: true }));
  s3.destroy();
  const stamp = `b${Date.now()}`;
  return {
    ARCHIVE_STORE: 's3',
    ARCHIVE_S3_ENDPOINT: endpoint,
    ARCHIVE_S3_BUCKET: bucket,
    ARCHIVE_S3_REGION: 'us-east-1',
    ARCHIVE_S3_FORCE_PATH_STYLE: 'true',
    ARCHIVE_S3_ACCESS_KEY_ID: 'test',
    ARCHIVE_S3_SECRET_ACCESS_KEY: 'test',
    ARCHIVE_S3_LOCK_MODE: 'GOVERNANCE',
    ARCHIVE_INDEX: 'opensearch',
    ARCHIVE_OPENSEARCH_URL: process.env.ARCHIVE_TEST_OPENSEARCH_URL ?? 'http://127.0.0.1:9200',
    ARCHIVE_OPENSEARCH_INDEX_PREFIX: stamp,
    ARCHIVE_QUEUE: 'redis',
    ARCHIVE_REDIS_URL: process.env.ARCHIVE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
    ARCHIVE_QUEUE_PREFIX: stamp,
    // Scale-out nodes share one signing key (exports, certificates); a fresh one per environment.
    ARCHIVE_SIGNING_KEY: generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

/** Drops the OpenSearch indices of a benchmark's index prefix (a large run leaves GBs of disk behind). */
export async function dropOpenSearchIndices(url: string, prefix: string): Promise<void> {
  const client = new Client({ node: url });
  try {
    await client.indices.delete({ index: `${prefix}-*`, expand_wildcards: 'all' });
  } finally {
    await client.close();
  }
}

/** Empties OpenSearch's shard request cache (cached facet counts) of a prefix's indices: the next search counts afresh. */
export async function clearRequestCache(url: string, prefix: string): Promise<void> {
  const client = new Client({ node: url });
  try {
    await client.indices.clearCache({ index: `${prefix}-*`, request: true });
  } finally {
    await client.close();
  }
}

/**
 * The S3 endpoint's own ceiling: small PutObject requests per second into the
 * environment's bucket at the given concurrency. Scale-out ingest makes
 * several requests per message, so this bounds its throughput on this box.
 */
export async function s3PutRate(env: Record<string, string>, concurrency = 8, requests = 400): Promise<number> {
  const s3 = new S3Client({
    endpoint: env.ARCHIVE_S3_ENDPOINT,
    region: env.ARCHIVE_S3_REGION,
    forcePathStyle: true,
    credentials: { accessKeyId: env.ARCHIVE_S3_ACCESS_KEY_ID!, secretAccessKey: env.ARCHIVE_S3_SECRET_ACCESS_KEY! },
  });
  const body = Buffer.alloc(4096, 'x');
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < requests; i = next++) await s3.send(new PutObjectCommand({ Bucket: env.ARCHIVE_S3_BUCKET, Key: `probe/${i}`, Body: body }));
    }),
  );
  s3.destroy();
  return requests / ((performance.now() - t0) / 1000);
}
