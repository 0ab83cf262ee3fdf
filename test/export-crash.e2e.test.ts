/**
 * Crash-resume of exports: `archive export` runs in a child process and is
 * killed with SIGKILL mid-export (between checkpoints, with files written
 * after the last one); `archive export resume` finishes it. The package
 * must then be complete, with nothing twice: every item once, control
 * numbers contiguous, every shared output with exactly one record per
 * document, and `archive verify-export` clean (no stray files either).
 * On both deployments: the export record and its items live in the catalog,
 * the messages in the store (files, or S3 in scale-out). What gets killed is
 * the process that runs the export: the CLI itself with the in-process
 * queue; in scale-out an `archive worker` (the CLI only follows the record),
 * and a new worker takes the export over.
 */
import { spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { CLI, runCli, startInProcess, startWorker, tempDir, testEnv, type WorkerChild } from './helpers/archive-process.js';
import { dropModeIndices, MODES, waitForIndexed } from './helpers/modes.js';
import { asSmtpMessage, loadSpamAssassin } from '../bench/bench-util.js';
import { parseDat } from '../src/export/concordance-dat.js';
import { parseOpt } from '../src/export/opticon-opt.js';

/** Messages in the archive: enough that a load-format export runs for seconds. */
const MESSAGES = 600;

interface Manifest {
  manifest: { counts: Record<string, number> };
  items: { n: number; sha256: string; docs: { docId: string; endDocId: string }[] }[];
  files: { path: string }[];
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe.each(MODES.filter((m) => m.enabled))('export crash-resume ($mode)', ({ mode, env: modeEnvOf }) => {
  let dataDir: string;
  let modeEnv: Record<string, string>;
  let env: Record<string, string>;
  let stored = 0;

  beforeAll(async () => {
    dataDir = await tempDir();
    modeEnv = await modeEnvOf();
    const archive = await startInProcess(modeEnv, dataDir);
    try {
      const seen = new Set<string>();
      for (const raw of await loadSpamAssassin(MESSAGES)) {
        const r = await archive.services.pipeline.ingest(Readable.from([asSmtpMessage(raw)]), { source: 'api' });
        seen.add(r.sha256);
      }
      stored = seen.size;
      await waitForIndexed(archive.services, [...seen], 120_000);
    } finally {
      await archive.close();
    }
    // Small checkpoints, so a kill lands between two of them with work after the last.
    env = testEnv(dataDir, { ...modeEnv, ARCHIVE_EXPORT_CHECKPOINT_ITEMS: '40', ARCHIVE_LOG_LEVEL: 'warn' });
  }, 300_000);

  afterAll(() => dropModeIndices(modeEnv));

  for (const variant of [
    { name: 'load files (natives, PDFs, text, DAT, OPT, EDRM)', args: ['--format', 'load'] },
    { name: 'mbox', args: ['--format', 'mbox'] },
    { name: 'combined PDF', args: ['--format', 'pdf', '--pdf', 'combined'] },
  ]) {
    it(`resumes a killed ${variant.name} export with nothing duplicated or missing`, async () => {
      const workers: WorkerChild[] = [];
      onTestFinished(async () => {
        for (const w of workers) await w.kill();
      });
      // Scale-out: a worker runs the export.
      const worker = () => (mode === 'scale-out' ? workers[workers.push(startWorker(env)) - 1] : undefined);
      const runner = worker();
      const out = path.join(await tempDir('export-out-'), 'package');
      const child = spawn(process.execPath, [CLI, 'export', '--q', '', ...variant.args, '--out', out], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d) => (stderr += d.toString()));
      child.stdout.resume();
      const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
      // Kill once some checkpoints are behind it and more work is in flight.
      const cp = await waitFor('a checkpoint past item 120', async () => {
        const c = JSON.parse(await readFile(path.join(out, '.export', 'checkpoint.json'), 'utf8')) as { next: number };
        return c.next >= 120 ? c : undefined;
      });
      await runner?.kill();
      child.kill('SIGKILL');
      expect(await exited).toBe(null);
      const id = /export (exp-\S+) started/.exec(stderr)?.[1];
      expect(id, stderr).toBeTruthy();
      const killedAt = JSON.parse(await readFile(path.join(out, '.export', 'checkpoint.json'), 'utf8')) as { next: number };
      expect(killedAt.next).toBeGreaterThanOrEqual(cp.next);
      expect(killedAt.next).toBeLessThan(stored);
      await expect(readFile(path.join(out, 'manifest.json'))).rejects.toThrow();

      const status = await runCli(['export', 'status', id!, '--json'], env);
      expect(JSON.parse(status.stdout).status).toBe('running');

      // Scale-out: a new worker. Bull hands it the dead worker's job once that job's lock has expired
      // (within a minute); the lease of the dead runner is recognised as gone at once.
      worker();
      const resumed = await runCli(['export', 'resume', id!, '--json'], env, { timeoutMs: 240_000 });
      expect(resumed.code, resumed.stderr).toBe(0);
      const final = JSON.parse(resumed.stdout) as { status: string; counts: Record<string, number> };
      expect(final.status).toBe('done');
      expect(final.counts.items).toBe(stored);

      const manifest = JSON.parse(await readFile(path.join(out, 'manifest.json'), 'utf8')) as Manifest;
      expect(manifest.items.map((i) => i.n)).toEqual([...Array(stored).keys()]);
      expect(new Set(manifest.items.map((i) => i.sha256)).size).toBe(stored);
      const docIds = manifest.items.flatMap((i) => i.docs.map((d) => d.docId));
      expect(new Set(docIds).size).toBe(docIds.length);
      expect(await readdir(out)).not.toContain('.export');

      if (variant.args.includes('mbox')) {
        const count = execFileSync('python3', ['-c', 'import sys,mailbox; print(len(mailbox.mbox(sys.argv[1])))', path.join(out, 'export.mbox')]).toString().trim();
        expect(Number(count)).toBe(stored);
      } else {
        const opt = parseOpt(await readFile(path.join(out, 'DATA/export.opt'), 'utf8'));
        expect(opt.map((l) => l.bates)).toEqual(opt.map((_, i) => `ARCH${String(i + 1).padStart(7, '0')}`));
        expect(opt.filter((l) => l.docBreak)).toHaveLength(docIds.length);
        expect(opt.length).toBe(manifest.manifest.counts.pages);
      }
      if (variant.args.includes('load')) {
        const dat = parseDat(await readFile(path.join(out, 'DATA/export.dat'), 'utf8'));
        expect(dat.slice(1).map((r) => r[0])).toEqual(docIds);
        const natives = (await readdir(path.join(out, 'NATIVES'), { recursive: true })).filter((f) => f.endsWith('.eml'));
        expect(natives).toHaveLength(stored);
      }
      if (variant.args.includes('combined')) {
        // Every page of the re-rendered combined PDF carries its own number, in order.
        const pages = execFileSync('pdftotext', [path.join(out, 'IMAGES/production.pdf'), '-'], { maxBuffer: 512 * 1024 * 1024 }).toString('utf8').split('\f').slice(0, -1);
        expect(pages.map((p) => p.match(/ARCH\d{7}/g)?.at(-1))).toEqual(pages.map((_, i) => `ARCH${String(i + 1).padStart(7, '0')}`));
        expect(pages.length).toBe(manifest.manifest.counts.pages);
      }
      const verified = await runCli(['verify-export', out], env);
      expect(verified.code, verified.stdout).toBe(0);
    }, 300_000);
  }
});
