/**
 * End-to-end ingest benchmark: SMTP to searchable, with parsing and indexing.
 *
 *   npm run build && node dist/bench/e2e-ingest.bench.js [--limit N] [--connections 8]
 *     [--mode embedded|scale-out|scale-out-fs|both|all]
 *
 * Sends the SpamAssassin corpus over 8 SMTP connections to a child archive
 * and measures until the last message is searchable (msg/s), then sends a
 * trickle of messages at normal load and measures 250 → searchable latency.
 * Prints the modes side by side, each as a share of embedded.
 *
 * - scale-out: S3 at $ARCHIVE_TEST_S3_ENDPOINT (moto here), OpenSearch at
 *   $ARCHIVE_TEST_OPENSEARCH_URL and bull on $ARCHIVE_TEST_REDIS_URL, with one
 *   `archive worker` process beside the server. The run also measures the S3
 *   endpoint's own small-PUT ceiling, because each message costs several S3
 *   requests (2 at ingest, 1 to index when the worker shares the server's data
 *   directory as here, 1-2 for retention; see the README's scale-out section).
 * - scale-out-fs: the same but with the filesystem store, isolating what
 *   OpenSearch and bull cost from what the S3 endpoint costs.
 * `both` = embedded and scale-out; `all` = the three.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { SmtpLoadConnection } from './smtp-load-client.js';
import { CLI, asSmtpMessage, cpuMeter, fmt, pidOf, loadSpamAssassin, percentile, rssSampler, startArchiveChild } from './bench-util.js';
import { dropOpenSearchIndices, s3PutRate, scaleOutEnv } from './scale-out-env.js';

type Mode = 'embedded' | 'scale-out' | 'scale-out-fs';
const MODES: Record<string, Mode[]> = { both: ['embedded', 'scale-out'], all: ['embedded', 'scale-out-fs', 'scale-out'] };

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

interface Row {
  mode: Mode;
  acked: number;
  searchable: number;
  p50: number;
  max: number;
  rssMb: number;
  s3PutRate?: number;
  /** CPU seconds per process from the first message to the last searchable. */
  cpu: Record<string, number>;
}

async function run(mode: Mode, messages: Buffer[]): Promise<Row> {
  const dataDir = await mkdtemp(path.join(process.env.BENCH_DIR ?? os.tmpdir(), `bench-e2e-${mode}-`));
  // The benchmark polls search to see when messages become searchable; the per-user rate limit would throttle that.
  const env: Record<string, string> = { ARCHIVE_DATA_DIR: dataDir, ARCHIVE_RATE_LIMIT_SEARCH: '1000000' };
  if (mode !== 'embedded') Object.assign(env, await scaleOutEnv());
  if (mode === 'scale-out-fs') env.ARCHIVE_STORE = 'fs';
  token = await createToken(env);
  const archive = await startArchiveChild(env);
  let worker: ChildProcess | undefined;
  if (mode !== 'embedded') worker = spawn(process.execPath, [CLI, 'worker'], { env: { ...process.env, ARCHIVE_LOG_LEVEL: 'warn', ...env }, stdio: 'inherit' });
  const rss = rssSampler(archive.proc.pid!);
  const cpu = cpuMeter({
    server: archive.proc.pid,
    'load client': process.pid,
    worker: worker?.pid,
    ...(mode === 'embedded' ? {} : { opensearch: pidOf('org.opensearch.bootstrap.OpenSearch'), redis: pidOf('redis-server') }),
    ...(mode === 'scale-out' ? { s3: pidOf('moto.server') } : {}),
  });
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
  const cpuUsed = cpu.read();

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
  // Measured once the archive is idle, so that it has the endpoint to itself.
  const putRate = mode === 'scale-out' ? await s3PutRate(env) : undefined;
  if (mode !== 'embedded') await dropOpenSearchIndices(env.ARCHIVE_OPENSEARCH_URL!, env.ARCHIVE_OPENSEARCH_INDEX_PREFIX!);
  await rm(dataDir, { recursive: true, force: true });
  lat.sort((a, b) => a - b);
  return { mode, acked: messages.length / acked, searchable: distinct / searchable, p50: percentile(lat, 50), max: lat.at(-1)!, rssMb: rss.peakMb(), s3PutRate: putRate, cpu: cpuUsed };
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
const modes = MODES[values.mode!] ?? [values.mode as Mode];
const rows: Row[] = [];
const distinctCount = new Set(messages.map((m) => m.toString('base64'))).size;
for (const m of modes) rows.push(await run(m, messages));
const base = rows.find((r) => r.mode === 'embedded');
const share = (v: number, b?: number) => (b ? `${fmt((100 * v) / b)}%` : '');
console.log(`\nSMTP → searchable, ${fmt(messages.length)} SpamAssassin messages, ${connections} connections, ${os.availableParallelism()} cores`);
console.log(`${'mode'.padEnd(13)} ${'250 msg/s'.padStart(9)} ${'searchable/s'.padStart(12)} ${'of embedded'.padStart(11)} ${'p50 ms'.padStart(8)} ${'max ms'.padStart(8)} ${'RSS MB'.padStart(7)}`);
for (const r of rows) {
  console.log(
    `${r.mode.padEnd(13)} ${fmt(r.acked).padStart(9)} ${fmt(r.searchable).padStart(12)} ${share(r.searchable, base?.searchable).padStart(11)} ${fmt(r.p50).padStart(8)} ${fmt(r.max).padStart(8)} ${fmt(r.rssMb).padStart(7)}`,
  );
}
console.log('(p50/max: 250 → searchable at one message per 100 ms; RSS: the server process)');
console.log('CPU seconds per process, first message to last searchable (2 cores: at most 2 s per second of run):');
for (const r of rows) {
  const parts = Object.entries(r.cpu).map(([name, s]) => `${name} ${fmt(s, 1)}`);
  const total = Object.values(r.cpu).reduce((a, b) => a + b, 0);
  console.log(`  ${r.mode.padEnd(13)} ${parts.join(', ')}; total ${fmt(total, 1)} s, ${fmt((total * 1000) / distinctCount, 2)} ms per message`);
}
for (const r of rows) if (r.s3PutRate) console.log(`S3 endpoint ceiling (scale-out): ${fmt(r.s3PutRate)} small PUTs/s at 8 in flight, measured after the run`);
