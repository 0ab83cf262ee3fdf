/**
 * Environment for running the archive in scale-out mode against the local
 * test services (infra/test-services.sh): a fresh Object Lock bucket on the
 * S3 endpoint, OpenSearch with a fresh index prefix, Redis with a fresh key prefix.
 */
import { S3Client, CreateBucketCommand } from '@aws-sdk/client-s3';

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
  };
}
