/**
 * Export benchmark: EML-ZIP, MBOX and PDF productions of an archive built
 * from the SpamAssassin corpus, each run as `archive export` in a child
 * process (the real command, inline queue), timed and with its peak RSS.
 *
 *   npm run build && node dist/bench/export.bench.js [--limit N] [--messages 100000] [--pdf-messages N] [--skip-mbox] [--keep] [--archive DIR]
 *
 * --limit: corpus messages used (default all 6,046). --messages: archive size
 * for the EML and MBOX runs (the corpus repeated, each copy with its own
 * bytes; default 100,000). --pdf-messages: messages in the PDF run (default:
 * the corpus). The archive goes to a fresh directory under $BENCH_DIR (default:
 * the OS temp dir). Copies are stored through the real ingest pipeline; their
 * index documents are the parsed corpus documents re-keyed, so building
 * 100,000 messages does not take 100,000 parses. --keep keeps the archive
 * and --archive DIR runs the exports on a kept one.
 * Targets (issue 7): EML-ZIP >= 2,000 msg/s, PDF >= 100 msg/s; memory flat.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config/config.js';
import { createLogger } from '../src/logger.js';
import { createServices } from '../src/services.js';
import { documentFor } from '../ingest/index.js';
import type { IndexedMessage } from '../src/domain/indexed-message.js';
import { readFile } from 'node:fs/promises';
import { CLI, asSmtpMessage, fmt, loadSpamAssassin } from './bench-util.js';

/**
 * Peak memory of a process, sampled every 50 ms: VmHWM (all resident pages,
 * including the SQLite index file's pages mapped with mmap, which the kernel
 * may drop at will) and RssAnon (the process's own memory: heap, buffers).
 */
function memorySampler(pid: number): { stop(): void; peakMb(): number; peakAnonMb(): number } {
  let peak = 0;
  let anon = 0;
  const read = async () => {
    try {
      const st = await readFile(`/proc/${pid}/status`, 'utf8');
      peak = Math.max(peak, Number(/VmHWM:\s+(\d+)/.exec(st)?.[1] ?? 0));
      anon = Math.max(anon, Number(/RssAnon:\s+(\d+)/.exec(st)?.[1] ?? 0));
    } catch {
      /* gone */
    }
  };
  const t = setInterval(() => void read(), 50);
  return { stop: () => clearInterval(t), peakMb: () => peak / 1024, peakAnonMb: () => anon / 1024 };
}

const { values } = parseArgs({ options: { limit: { type: 'string' }, messages: { type: 'string', default: '100000' }, 'pdf-messages': { type: 'string' }, 'skip-mbox': { type: 'boolean' }, keep: { type: 'boolean' }, archive: { type: 'string' } } });
const limit = values.limit ? Number(values.limit) : Infinity;
const total = Number(values.messages);
const baseDir = process.env.BENCH_DIR ?? os.tmpdir();
/** Ingests in flight while building the archive (fsyncs overlap on the thread pool). */
const BUILD_CONCURRENCY = 16;

async function buildArchive(dataDir: string): Promise<{ corpus: number; total: number; pdfDomain: string }> {
  const env = { ARCHIVE_DATA_DIR: dataDir, ARCHIVE_LOG_LEVEL: 'warn' };
  const config = loadConfig(env);
  const services = await createServices(config, createLogger({ level: 'warn' }));
  const corpus = (await loadSpamAssassin(limit)).map(asSmtpMessage);
  const pdfMessages = Math.min(corpus.length, values['pdf-messages'] ? Number(values['pdf-messages']) : corpus.length);
  const t0 = performance.now();
  try {
    // Copy 0: the corpus as it is, parsed and indexed for real.
    const docs: (IndexedMessage | undefined)[] = [];
    for (let i = 0; i < corpus.length; i++) {
      const rcpt = i < pdfMessages ? 'custodian@pdf.bench.example' : 'custodian@copies.bench.example';
      const r = await services.pipeline.ingest(Readable.from([corpus[i]!]), { source: 'smtp', smtp: { peer: '127.0.0.1', mailFrom: 'bench@example.com', rcptTo: [rcpt] } });
      docs.push(await documentFor(services.store, r.sha256));
    }
    await services.index.upsert(docs.filter((d): d is IndexedMessage => !!d));
    // Further copies: other bytes (a header in front), the same document re-keyed.
    let made = corpus.length;
    let batch: IndexedMessage[] = [];
    while (made < total) {
      const k = Math.floor(made / corpus.length);
      const chunk = Array.from({ length: Math.min(BUILD_CONCURRENCY * 8, total - made) }, (_, j) => made + j);
      made += chunk.length;
      let next = 0;
      await Promise.all(
        Array.from({ length: BUILD_CONCURRENCY }, async () => {
          for (let c = next++; c < chunk.length; c = next++) {
            const n = chunk[c]!;
            const i = n % corpus.length;
            const base = docs[i];
            const raw = Buffer.concat([Buffer.from(`X-Bench-Copy: ${k}\r\n`), corpus[i]!]);
            const r = await services.pipeline.ingest(Readable.from([raw]), { source: 'smtp', smtp: { peer: '127.0.0.1', mailFrom: 'bench@example.com', rcptTo: ['custodian@copies.bench.example'] } });
            if (base) batch.push({ ...base, id: r.sha256, size: raw.length, envelopeIds: [r.envelopeId], envelopeRecipients: [{ address: 'custodian@copies.bench.example', kind: 'recipient' }], ...(base.messageId ? { messageId: `${base.messageId}.copy${k}` } : {}) });
          }
        }),
      );
      if (batch.length >= 1000) {
        await services.index.upsert(batch);
        batch = [];
      }
      if (made % 10_000 < chunk.length) process.stderr.write(`\rbuilding archive: ${made}/${total}`);
    }
    if (batch.length) await services.index.upsert(batch);
    process.stderr.write('\r\x1b[2K');
    console.log(`archive: ${fmt(total)} messages (${fmt(corpus.length)} corpus messages, ${fmt(pdfMessages)} of them in the PDF set), built in ${fmt((performance.now() - t0) / 1000, 1)} s`);
    return { corpus: corpus.length, total, pdfDomain: 'pdf.bench.example' };
  } finally {
    await services.close();
  }
}

interface RunResult {
  items: number;
  exportSecs: number;
  wallSecs: number;
  peakMb: number;
  peakAnonMb: number;
  bytes: number;
}

async function runExport(dataDir: string, args: string[]): Promise<RunResult> {
  const out = await mkdtemp(path.join(baseDir, 'bench-export-out-'));
  const pkg = path.join(out, 'package');
  const zip = args.includes('--zip') ? path.join(out, 'package.zip') : undefined;
  const t0 = performance.now();
  const proc = spawn(process.execPath, [CLI, 'export', ...args.filter((a) => a !== '--zip'), '--out', pkg, ...(zip ? ['--zip', zip] : []), '--json'], {
    env: { ...process.env, ARCHIVE_DATA_DIR: dataDir, ARCHIVE_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const rss = memorySampler(proc.pid!);
  let stdout = '';
  proc.stdout.on('data', (d) => (stdout += d.toString()));
  const code = await new Promise<number | null>((resolve) => proc.once('exit', resolve));
  const wallSecs = (performance.now() - t0) / 1000;
  rss.stop();
  if (code !== 0) throw new Error(`archive export exited with ${code}: ${stdout}`);
  const rec = JSON.parse(stdout) as { createdAt: string; finishedAt: string; counts: { items: number; bytes: number } };
  const bytes = zip ? (await stat(zip)).size : rec.counts.bytes;
  await rm(out, { recursive: true, force: true });
  return { items: rec.counts.items, exportSecs: (Date.parse(rec.finishedAt) - Date.parse(rec.createdAt)) / 1000, wallSecs, peakMb: rss.peakMb(), peakAnonMb: rss.peakAnonMb(), bytes };
}

function report(name: string, r: RunResult, target?: number): void {
  const rate = r.items / r.wallSecs;
  console.log(
    `${name}: ${fmt(r.items)} messages in ${fmt(r.wallSecs, 1)} s (export job ${fmt(r.exportSecs, 1)} s): ${fmt(rate)} msg/s` +
      `${target ? ` (target ${fmt(target)})` : ''}, ${fmt(r.bytes / 1048576, 1)} MB, peak RSS ${fmt(r.peakMb)} MB (own memory ${fmt(r.peakAnonMb)} MB; the rest is the index file mapped by SQLite)`,
  );
}

const dataDir = values.archive ?? (await mkdtemp(path.join(baseDir, 'bench-export-')));
try {
  const a = values.archive ? { pdfDomain: 'pdf.bench.example' } : await buildArchive(dataDir);
  report('EML-ZIP (natives, CSV, signed manifest, then the ZIP)', await runExport(dataDir, ['--q', '', '--format', 'eml', '--zip']), 2000);
  if (!values['skip-mbox']) report('MBOX', await runExport(dataDir, ['--q', '', '--format', 'mbox']));
  report('PDF (one Bates-stamped PDF per message, OPT, CSV)', await runExport(dataDir, ['--q', `domain:${a.pdfDomain}`, '--format', 'pdf']), 100);
  report('Load files (natives, attachments, PDFs, text, DAT, OPT, EDRM XML)', await runExport(dataDir, ['--q', `domain:${a.pdfDomain}`, '--format', 'load']));
} finally {
  if (values.keep || values.archive) console.log(`archive kept in ${dataDir}`);
  else await rm(dataDir, { recursive: true, force: true });
}
