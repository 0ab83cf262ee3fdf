/**
 * Scale-out resilience, by really stopping each service (dedicated instances
 * started by the infra/ scripts on their own ports, so the shared test
 * services are untouched):
 * - OpenSearch down: SMTP keeps accepting, messages are stored, indexing
 *   queues up and catches up on recovery.
 * - S3 down: SMTP answers 451 and acknowledges nothing.
 * - Redis down: acknowledged messages are never lost; at the next start,
 *   reconciliation finds stored but unindexed messages and indexes them; and
 *   when Redis comes back while the archive runs, their refused index jobs
 *   are enqueued again and indexed without a restart.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ROOT, freePort, startInProcess, tempDir } from './helpers/archive-process.js';
import { archivedSha, sendRaw } from './helpers/smtp-client.js';
import { trackedScaleOutEnv as scaleOutEnv } from './helpers/modes.js';
import type { RunningArchive } from '../src/main.js';

const run = promisify(execFile);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const osUrl = process.env.ARCHIVE_TEST_OPENSEARCH_URL;
const s3Url = process.env.ARCHIVE_TEST_S3_ENDPOINT;
const available = !!osUrl && !!s3Url;
if (!available) {
  if (process.env.CI === 'true') throw new Error('resilience tests need ARCHIVE_TEST_OPENSEARCH_URL and ARCHIVE_TEST_S3_ENDPOINT in CI');
  console.warn('\n*** SKIPPING resilience tests: start the services with `bash infra/test-services.sh up` and export its env ***\n');
}

const msg = (n: string) => Buffer.from(`From: r@corp.example\r\nTo: x@corp.example\r\nSubject: resilience ${n}\r\nMessage-ID: <res-${n}-${Date.now()}@corp.example>\r\n\r\nbody ${n}\r\n`);
const deliver = (port: number, m: Buffer) => sendRaw(port, { from: 'r@corp.example', to: ['journal@archive.example'] }, m, { timeoutMs: 60_000 });

async function until(what: string, cond: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await cond().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe.runIf(available)('scale-out resilience', () => {
  it('keeps accepting while OpenSearch is down, then catches up', async () => {
    const state = await tempDir('os-resilience-');
    const port = await freePort();
    const osEnv = { ...process.env, ARCHIVE_INFRA_STATE: state, ARCHIVE_TEST_OPENSEARCH_PORT: String(port), ARCHIVE_TEST_OPENSEARCH_TRANSPORT_PORT: '9450-9499' };
    const os = (cmd: string, extra: Record<string, string> = {}) => run('bash', [path.join(ROOT, 'infra/opensearch.sh'), cmd], { env: { ...osEnv, ...extra }, timeout: 240_000 });
    await os('start');
    const env = { ...(await scaleOutEnv()), ARCHIVE_OPENSEARCH_URL: `http://127.0.0.1:${port}` };
    let archive: RunningArchive | undefined = await startInProcess(env);
    try {
      const first = msg('before');
      expect((await deliver(archive.smtpPort, first)).code).toBe(250);
      await until('the first message to be indexed', async () => !!(await archive!.services.index.get(sha(first))), 60_000);

      await os('stop');
      const during = ['a', 'b', 'c'].map((n) => msg(`during-${n}`));
      for (const m of during) {
        const answer = await deliver(archive.smtpPort, m);
        expect(answer.code).toBe(250);
        expect(archivedSha(answer)).toBe(sha(m));
        expect(await archive.services.store.statMessage(sha(m))).toBeDefined();
      }
      expect((await archive.services.index.health()).ok).toBe(false);

      await os('start', { ARCHIVE_TEST_OPENSEARCH_KEEP_DATA: '1' });
      await until('the index to catch up', async () => (await Promise.all(during.map((m) => archive!.services.index.get(sha(m))))).every(Boolean), 180_000);
      expect(await archive.services.index.get(sha(first))).toBeDefined();
    } finally {
      await archive?.close();
      archive = undefined;
      await os('stop').catch(() => undefined);
    }
  }, 420_000);

  it('answers 451 while S3 is down and acknowledges nothing', async () => {
    const state = await tempDir('s3-resilience-');
    const port = await freePort();
    const s3Env = { ...process.env, ARCHIVE_INFRA_STATE: state, ARCHIVE_TEST_S3_PORT: String(port) };
    const s3 = (cmd: string) => run('bash', [path.join(ROOT, 'infra/s3.sh'), cmd], { env: s3Env, timeout: 60_000 });
    await s3('start');
    const env = { ...(await scaleOutEnvAt(`http://127.0.0.1:${port}`)) };
    const archive = await startInProcess(env);
    try {
      expect((await deliver(archive.smtpPort, msg('s3-up'))).code).toBe(250);
      await s3('stop');
      const lost = msg('s3-down');
      const answer = await deliver(archive.smtpPort, lost);
      expect(answer.code).toBe(451);
      expect(archivedSha(answer)).toBeUndefined();
      const health = await fetch(`http://127.0.0.1:${archive.httpPort}/healthz`);
      expect(health.status).toBe(503);
    } finally {
      await archive.close();
      await s3('stop').catch(() => undefined);
    }
  }, 180_000);

  it('never loses an acknowledged message while Redis is down; reconciliation indexes it at the next start', async () => {
    const port = await freePort();
    const redis: ChildProcess = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    await until('redis', async () => (await run('redis-cli', ['-p', String(port), 'ping'])).stdout.includes('PONG'), 20_000);
    const env = { ...(await scaleOutEnv()), ARCHIVE_REDIS_URL: `redis://127.0.0.1:${port}` };
    const dataDir = await tempDir();
    let archive: RunningArchive | undefined = await startInProcess(env, dataDir);
    const m = msg('redis-down');
    try {
      redis.kill('SIGKILL');
      await new Promise((r) => redis.once('exit', r));
      const answer = await deliver(archive.smtpPort, m);
      expect(answer.code).toBe(250);
      expect(await archive.services.store.statMessage(sha(m))).toBeDefined();
      await archive.close().catch(() => undefined);
      archive = undefined;

      // Redis is back (empty: the job is gone); the next start reconciles the store with the index.
      const redis2 = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
      try {
        await until('redis again', async () => (await run('redis-cli', ['-p', String(port), 'ping'])).stdout.includes('PONG'), 20_000);
        archive = await startInProcess(env, dataDir);
        await until('reconciliation to index the message', async () => !!(await archive!.services.index.get(sha(m))), 120_000);
      } finally {
        await archive?.close();
        archive = undefined;
        redis2.kill('SIGKILL');
      }
    } finally {
      await archive?.close();
      redis.kill('SIGKILL');
    }
  }, 300_000);
});

describe.runIf(available)('scale-out resilience: Redis back while the archive runs', () => {
  it('a message acknowledged while Redis was down is indexed once Redis is back, without a restart', async () => {
    const port = await freePort();
    const startRedis = () => spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    let redis: ChildProcess = startRedis();
    await until('redis', async () => (await run('redis-cli', ['-p', String(port), 'ping'])).stdout.includes('PONG'), 20_000);
    const env = { ...(await scaleOutEnv()), ARCHIVE_REDIS_URL: `redis://127.0.0.1:${port}` };
    const archive = await startInProcess(env, await tempDir());
    const m = msg('redis-blip');
    try {
      redis.kill('SIGKILL');
      await new Promise((r) => redis.once('exit', r));
      expect((await deliver(archive.smtpPort, m)).code).toBe(250);
      await until('the queue to refuse the index job', async () => archive.services.pipeline.refusedEnqueues === 1, 30_000);
      expect(await archive.services.index.get(sha(m))).toBeUndefined();
      // Redis comes back empty (the job was never in it); the same process enqueues it again and indexes it.
      redis = startRedis();
      await until('redis again', async () => (await run('redis-cli', ['-p', String(port), 'ping'])).stdout.includes('PONG'), 20_000);
      await until('the message to be indexed without a restart', async () => !!(await archive.services.index.get(sha(m))), 90_000);
    } finally {
      await archive.close().catch(() => undefined);
      redis.kill('SIGKILL');
    }
  }, 300_000);
});

/** The scale-out environment, with its bucket on a given S3 endpoint. */
async function scaleOutEnvAt(endpoint: string): Promise<Record<string, string>> {
  const saved = process.env.ARCHIVE_TEST_S3_ENDPOINT;
  process.env.ARCHIVE_TEST_S3_ENDPOINT = endpoint;
  try {
    return await scaleOutEnv();
  } finally {
    process.env.ARCHIVE_TEST_S3_ENDPOINT = saved;
  }
}
