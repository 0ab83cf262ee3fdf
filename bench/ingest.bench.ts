/**
 * Ingest benchmark (store only: parsing and indexing are off).
 *
 *   npm run build && node dist/bench/ingest.bench.js [--limit N] [--connections 8] [--skip-large]
 *
 * 1. The SpamAssassin corpus over SMTP with 8 concurrent connections.
 * 2. `archive import --no-index` of the same corpus as one MBOX file.
 * 3. One 100 MB message over SMTP.
 * Prints messages/s, MB/s, p50/p99 from end of DATA to 250, and peak RSS.
 * Data goes to a fresh directory under $BENCH_DIR (default: the OS temp dir),
 * on the filesystem store with fsync, as in production.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile, open } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { SmtpLoadConnection } from './smtp-load-client.js';
import { CLI, asSmtpMessage, fmt, loadSpamAssassin, percentile, rssSampler, startArchiveChild } from './bench-util.js';

const { values } = parseArgs({ options: { limit: { type: 'string' }, connections: { type: 'string', default: '8' }, 'skip-large': { type: 'boolean' } } });
const limit = values.limit ? Number(values.limit) : Infinity;
const connections = Number(values.connections);
const baseDir = process.env.BENCH_DIR ?? os.tmpdir();

async function smtpRun(messages: Buffer[]): Promise<void> {
  const dataDir = await mkdtemp(path.join(baseDir, 'bench-smtp-'));
  const archive = await startArchiveChild({ ARCHIVE_DATA_DIR: dataDir, ARCHIVE_SERVE_WORKERS: 'false' });
  const rss = rssSampler(archive.proc.pid!);
  const latencies: number[] = [];
  let bytes = 0;
  let failed = 0;
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: connections }, async () => {
      const c = await SmtpLoadConnection.open(archive.smtpPort);
      for (let i = next++; i < messages.length; i = next++) {
        const r = await c.send('bench@example.com', 'journal@archive.example.com', messages[i]!);
        if (r.code === 250) {
          latencies.push(r.latencyMs);
          bytes += messages[i]!.length;
        } else failed++;
      }
      c.close();
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  rss.stop();
  await archive.stop();
  latencies.sort((a, b) => a - b);
  console.log(`SMTP, ${connections} connections, ${fmt(latencies.length)} messages (${failed} failed):`);
  console.log(`  ${fmt(latencies.length / secs)} msg/s, ${fmt(bytes / 1048576 / secs, 1)} MB/s, end of DATA → 250: p50 ${fmt(percentile(latencies, 50), 2)} ms, p99 ${fmt(percentile(latencies, 99), 2)} ms, server peak RSS ${fmt(rss.peakMb())} MB`);
  await rm(dataDir, { recursive: true, force: true });
}

async function importRun(raw: Buffer[]): Promise<void> {
  const dataDir = await mkdtemp(path.join(baseDir, 'bench-import-'));
  const mbox = path.join(dataDir, 'corpus.mbox');
  const fh = await open(mbox, 'w');
  let bytes = 0;
  for (const m of raw) {
    // The corpus files already start with a From_ line; mboxrd-escape the body.
    let s = m.toString('latin1');
    const first = s.startsWith('From ') ? s.slice(0, s.indexOf('\n') + 1) : 'From bench@example.com Thu Jan  1 00:00:00 2004\n';
    if (s.startsWith('From ')) s = s.slice(first.length);
    const body = s.replace(/^(>*From )/gm, '>$1');
    const chunk = `${first}${body}${body.endsWith('\n') ? '' : '\n'}\n`;
    bytes += chunk.length;
    await fh.write(chunk, null, 'latin1');
  }
  await fh.close();
  const proc = spawn(process.execPath, [CLI, 'import', '--no-index', '--json', mbox], { env: { ...process.env, ARCHIVE_DATA_DIR: dataDir, ARCHIVE_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'inherit'] });
  const rss = rssSampler(proc.pid!);
  let out = '';
  proc.stdout.on('data', (d) => (out += d));
  const t0 = performance.now();
  await new Promise((r) => proc.once('exit', r));
  const secs = (performance.now() - t0) / 1000;
  rss.stop();
  const summary = JSON.parse(out) as { imported: number; duplicates: number; failed: number };
  const n = summary.imported + summary.duplicates;
  console.log(`archive import, one MBOX of ${fmt(raw.length)} messages (${fmt(bytes / 1048576, 1)} MB), process start to exit:`);
  console.log(`  ${fmt(n / secs)} msg/s, ${fmt(bytes / 1048576 / secs, 1)} MB/s, imported ${summary.imported}, duplicates ${summary.duplicates}, failed ${summary.failed}, peak RSS ${fmt(rss.peakMb())} MB`);
  await rm(dataDir, { recursive: true, force: true });
}

async function largeRun(): Promise<void> {
  const dataDir = await mkdtemp(path.join(baseDir, 'bench-large-'));
  const archive = await startArchiveChild({ ARCHIVE_DATA_DIR: dataDir, ARCHIVE_SERVE_WORKERS: 'false' });
  const rss = rssSampler(archive.proc.pid!);
  const line = Buffer.from(`${'A'.repeat(76)}\r\n`);
  const body = Buffer.alloc(100 * 1024 * 1024 - (100 * 1024 * 1024) % line.length);
  for (let o = 0; o < body.length; o += line.length) line.copy(body, o);
  const msg = Buffer.concat([Buffer.from('From: big@example.com\r\nSubject: 100 MB\r\nContent-Transfer-Encoding: base64\r\n\r\n'), body]);
  const c = await SmtpLoadConnection.open(archive.smtpPort);
  const t0 = performance.now();
  const r = await c.send('big@example.com', 'journal@archive.example.com', msg);
  const secs = (performance.now() - t0) / 1000;
  c.close();
  rss.stop();
  await archive.stop();
  console.log(`One ${fmt(msg.length / 1048576, 1)} MB message over SMTP: answer ${r.code}, ${fmt(msg.length / 1048576 / secs, 1)} MB/s, end of DATA → 250 ${fmt(r.latencyMs, 1)} ms, server peak RSS ${fmt(rss.peakMb())} MB`);
  await rm(dataDir, { recursive: true, force: true });
}

const raw = await loadSpamAssassin(limit);
console.log(`Ingest benchmark on ${os.cpus().length} cores, data under ${baseDir}`);
await smtpRun(raw.map(asSmtpMessage));
await importRun(raw);
if (!values['skip-large']) await largeRun();
await writeFile('/dev/null', '');
