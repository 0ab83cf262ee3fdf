/**
 * Runs the real archive for tests: in-process (fast, for most API and SMTP
 * tests) or as a child process through the built CLI (for crash tests and
 * anything that must see exit codes).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../../src/config/config.js';
import { createLogger } from '../../src/logger.js';
import { startArchive, type RunningArchive } from '../../src/main.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const CLI = path.join(ROOT, 'bin/archive.js');
export const CORPUS = path.resolve(ROOT, '../shared/corpus');

export async function tempDir(prefix = 'archive-test-'): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), prefix));
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Environment for a test archive: its own data dir, loopback, ephemeral ports, quiet logs. */
export function testEnv(dataDir: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    ARCHIVE_DATA_DIR: dataDir,
    ARCHIVE_HTTP_HOST: '127.0.0.1',
    ARCHIVE_HTTP_PORT: '0',
    ARCHIVE_SMTP_HOST: '127.0.0.1',
    ARCHIVE_SMTP_PORT: '0',
    ARCHIVE_LOG_LEVEL: process.env.ARCHIVE_TEST_LOG_LEVEL ?? 'silent',
    ...extra,
  };
}

/** Starts the archive inside the test process. */
export async function startInProcess(extra: Record<string, string> = {}, dataDir?: string): Promise<RunningArchive & { dataDir: string }> {
  const dir = dataDir ?? (await tempDir());
  const env = testEnv(dir, extra);
  const config = loadConfig(env);
  const log = createLogger({ level: env.ARCHIVE_LOG_LEVEL });
  const running = await startArchive(config, log);
  return Object.assign(running, { dataDir: dir });
}

export interface ChildArchive {
  proc: ChildProcess;
  httpPort: number;
  smtpPort: number;
  dataDir: string;
  stderr: () => string;
  stop(): Promise<number | null>;
  kill(): Promise<void>;
}

/** Starts `archive serve` as a child process on fixed free ports and waits until both listen. */
export async function startChild(dataDir: string, extra: Record<string, string> = {}): Promise<ChildArchive> {
  const httpPort = await freePort();
  const smtpPort = await freePort();
  const env = { ...process.env, ...testEnv(dataDir, { ARCHIVE_LOG_LEVEL: 'info', ARCHIVE_HTTP_PORT: String(httpPort), ARCHIVE_SMTP_PORT: String(smtpPort), ...extra }) };
  const proc = spawn(process.execPath, [CLI, 'serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (d) => (err += d.toString()));
  proc.stdout!.resume();
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  await waitUntilListening(httpPort, smtpPort, exited, () => err);
  return {
    proc,
    httpPort,
    smtpPort,
    dataDir,
    stderr: () => err,
    async stop() {
      proc.kill('SIGTERM');
      return exited;
    },
    async kill() {
      proc.kill('SIGKILL');
      await exited;
    },
  };
}

export interface WorkerChild {
  proc: ChildProcess;
  stderr: () => string;
  /** SIGKILL, as a crash would end it. */
  kill(): Promise<void>;
  stop(): Promise<number | null>;
}

/**
 * Starts `archive worker` as a child process: the background jobs (index,
 * export) of a scale-out node, which `archive serve` and the CLI leave to
 * workers when the queue is on Redis.
 */
export function startWorker(env: Record<string, string>): WorkerChild {
  const proc = spawn(process.execPath, [CLI, 'worker'], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (d) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const end = async (signal: NodeJS.Signals) => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
    return exited;
  };
  return {
    proc,
    stderr: () => err,
    kill: async () => {
      await end('SIGKILL');
    },
    stop: () => end('SIGTERM'),
  };
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the built `archive` CLI to completion. */
export async function runCli(args: string[], env: Record<string, string>, opts: { timeoutMs?: number } = {}): Promise<CliResult> {
  const proc = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d) => (stdout += d.toString()));
  proc.stderr.on('data', (d) => (stderr += d.toString()));
  const t = setTimeout(() => proc.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
  const code = await new Promise<number | null>((resolve) => proc.once('exit', (c) => resolve(c)));
  clearTimeout(t);
  return { code, stdout, stderr };
}

/** Polls until both ports accept connections; fails fast if the process exits. */
async function waitUntilListening(httpPort: number, smtpPort: number, exited: Promise<number | null>, stderr: () => string): Promise<void> {
  const { connect } = await import('node:net');
  const accepts = (port: number) =>
    new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
  let gone: number | null | undefined;
  void exited.then((c) => (gone = c));
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (gone !== undefined) throw new Error(`archive exited with ${gone}:\n${stderr()}`);
    if ((await accepts(httpPort)) && (await accepts(smtpPort))) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`archive did not start:\n${stderr()}`);
}
