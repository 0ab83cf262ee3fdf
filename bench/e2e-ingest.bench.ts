/**
 * End-to-end ingest benchmark: SMTP to searchable, with parsing and indexing.
 *
 *   npm run build && node dist/bench/e2e-ingest.bench.js [--limit N] [--connections 8] [--mode embedded|scale-out|both]
 *
 * Sends the SpamAssassin corpus over 8 SMTP connections to a child archive
 * and measures until the last message is searchable (msg/s), then sends a
 * trickle of messages at normal load and measures 250 → searchable latency.
 * Scale-out mode runs against $ARCHIVE_TEST_S3_ENDPOINT (moto), OpenSearch at
 * $ARCHIVE_TEST_OPENSEARCH_URL and Redis at $ARCHIVE_TEST_REDIS_URL, with one
 * `archive worker` process beside the server.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { SmtpLoadConnection } from './smtp-load-client.js';
import { CLI, asSmtpMessage, fmt, loadSpamAssassin, percentile, rssSampler, startArchiveChild } from './bench-util.js';
import { scaleOutEnv } from './scale-out-env.js';

const { values } = parseArgs({ options: { limit: { type: 'string' }, connections: { type: 'string', default: '8' }, mode: { type: 'string', default: 'embedded' } } });
const limit = values.limit ? Number(values.limit) : Infinity;
const connections = Number(values.connections);

async function searchTotal(httpPort: number, q = ''): Promise<number> {
  const r = await fetch(`http://127.0.0.1:${httpPort}/api/search?size=1&facets=false&q=${encodeURIComponent(q)}`, { headers: authHeaders() });
  if (!r.ok) throw new Error(`search answered ${r.status}: ${await r.text()}`);
  return ((await r.json()) as { total: number }).total;
}

let token: string | undefined;
function authHeaders(): Record<string, string> {
  return token ? { authorization: `Bearer ${token}` } : {};
}

async function run(mode: 'embedded' | 'scale-out', messages: Buffer[]): Promise<string> {
  const dataDir = await mkdtemp(path.join(process.env.BENCH_DIR ?? os.tmpdir(), `bench-e2e-${mode}-`));
  // The benchmark polls search to see when messages become searchable; the per-user rate limit would throttle that.
  const env: Record<string, string> = { ARCHIVE_DATA_DIR: dataDir, ARCHIVE_RATE_LIMIT_SEARCH: '1000000', ...(mode === 'scale-out' ? await scaleOutEnv() : {}) };
  token = await createToken(env);
  const archive = await startArchiveChild(env);
  let worker: ChildProcess | undefined;
  if (mode === 'scale-out') worker = spawn(process.execPath, [CLI, 'worker'], { env: { ...process.env, ARCHIVE_LOG_LEVEL: 'warn', ...env }, stdio: 'inherit' });
  const rss = rssSampler(archive.proc.pid!);
  const distinct = new Set(messages.map((m) => m.toString('base64'))).size;
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: connections }, async () => {
      const c = await SmtpLoadConnection.open(archive.smtpPort);
      for (let i = next++; i < messages.length; i = next++) await c.send('bench@example.com', 'journal@archive.example.com', messages[i]!);
      c.close();
    }),
  );
  const acked = (performance.now() - t0) / 1000;
  while ((await searchTotal(archive.httpPort)) < distinct) await new Promise((r) => setTimeout(r, 100));
  const searchable = (performance.now() - t0) / 1000;

  // Normal load: one message every 100 ms; time from 250 to searchable by its Message-ID.
  const lat: number[] = [];
  const c = await SmtpLoadConnection.open(archive.smtpPort);
  for (let i = 0; i < 20; i++) {
    const mid = `trickle-${Date.now()}-${i}@bench.example.com`;
    await c.send('bench@example.com', 'journal@archive.example.com', Buffer.from(`From: t@bench.example.com\r\nSubject: trickle ${i}\r\nMessage-ID: <${mid}>\r\n\r\nbody\r\n`));
    const t = performance.now();
    while ((await searchTotal(archive.httpPort, `messageid:"${mid}"`)) < 1) await new Promise((r) => setTimeout(r, 20));
    lat.push(performance.now() - t);
    await new Promise((r) => setTimeout(r, 100));
  }
  c.close();
  rss.stop();
  worker?.kill('SIGTERM');
  await archive.stop();
  await rm(dataDir, { recursive: true, force: true });
  lat.sort((a, b) => a - b);
  return `${mode.padEnd(10)} ${fmt(messages.length / acked).padStart(8)} ${fmt(distinct / searchable).padStart(12)} ${fmt(percentile(lat, 50)).padStart(10)} ${fmt(lat.at(-1)!).padStart(10)} ${fmt(rss.peakMb()).padStart(8)}`;
}

/** Creates an API token through the CLI when the archive has users (issue 5); none otherwise. */
async function createToken(env: Record<string, string>): Promise<string | undefined> {
  const cli = (args: string[]) =>
    new Promise<{ code: number | null; out: string }>((resolve) => {
      const p = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ARCHIVE_LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      p.stdout.on('data', (d) => (out += d));
      p.once('exit', (code) => resolve({ code, out }));
    });
  const add = await cli(['users', 'add', '--email', 'bench@example.com', '--role', 'officer']);
  if (add.code !== 0) return undefined;
  const tok = await cli(['tokens', 'create', '--email', 'bench@example.com']);
  return tok.out.trim().split('\n').at(-1);
}

const raw = await loadSpamAssassin(limit);
const messages = raw.map(asSmtpMessage);
const modes = values.mode === 'both' ? (['embedded', 'scale-out'] as const) : [values.mode as 'embedded' | 'scale-out'];
const rows: string[] = [];
for (const m of modes) rows.push(await run(m, messages));
console.log(`\nSMTP → searchable, ${fmt(messages.length)} SpamAssassin messages, ${connections} connections, ${os.availableParallelism()} cores`);
console.log(`${'mode'.padEnd(10)} ${'250 msg/s'.padStart(8)} ${'searchable/s'.padStart(12)} ${'p50 ms'.padStart(10)} ${'max ms'.padStart(10)} ${'RSS MB'.padStart(8)}`);
for (const r of rows) console.log(r);
console.log('(p50/max: 250 → searchable at one message per 100 ms; RSS: the server process)');
