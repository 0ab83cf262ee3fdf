/**
 * `archive import`: EML files, directories of them (recursively, Maildir
 * too) and MBOX files, through the same pipeline as SMTP, so journal reports
 * inside imports are unwrapped too. Streams: one MBOX message at a time is
 * read, while up to `concurrency` earlier ones are being made durable.
 */
import { createReadStream } from 'node:fs';
import { open, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { IngestPipeline, IngestResult } from './ingest-pipeline.js';
import { isMboxFile, readMbox } from './mbox-reader.js';

export interface ImportFailure {
  /** File, with `#n` (0-based message index) for a message inside an MBOX. */
  item: string;
  reason: string;
}

export interface ImportSummary {
  imported: number;
  duplicates: number;
  failed: number;
  skipped: number;
  bytes: number;
  journalReports: number;
  failures: ImportFailure[];
  skippedFiles: string[];
  seconds: number;
}

export interface ImportOptions {
  /**
   * Messages being committed (fsync + link) at once. Each holds one spool
   * file and a thread-pool slot; more hides fsync latency, up to the pool size.
   */
  concurrency?: number;
  onProgress?: (s: ImportSummary) => void;
}

/** Failures kept in the summary; beyond that they are counted, not listed. */
const MAX_LISTED_FAILURES = 1000;

const MAIL_EXTENSIONS = new Set(['.eml', '.msg822', '.rfc822']);
const MBOX_EXTENSIONS = new Set(['.mbox', '.mbx', '.mbs']);

export async function importPaths(pipeline: IngestPipeline, paths: string[], opts: ImportOptions = {}): Promise<ImportSummary> {
  const started = Date.now();
  const summary: ImportSummary = { imported: 0, duplicates: 0, failed: 0, skipped: 0, bytes: 0, journalReports: 0, failures: [], skippedFiles: [], seconds: 0 };
  const limit = opts.concurrency ?? 32;
  const running = new Set<Promise<void>>();

  const fail = (item: string, err: unknown) => {
    summary.failed++;
    if (summary.failures.length < MAX_LISTED_FAILURES) summary.failures.push({ item, reason: (err as Error)?.message ?? String(err) });
  };
  const done = (r: IngestResult) => {
    if (r.created) summary.imported++;
    else summary.duplicates++;
    if (r.journal) summary.journalReports++;
    summary.bytes += r.size;
    opts.onProgress?.(summary);
  };
  const track = async (p: Promise<void>) => {
    running.add(p);
    void p.finally(() => running.delete(p));
    while (running.size >= limit) await Promise.race(running);
  };

  const importOne = async (file: string, index?: number, stream?: NodeJS.ReadableStream) => {
    const item = index === undefined ? file : `${file}#${index}`;
    let spooled;
    try {
      spooled = await pipeline.spool((stream ?? createReadStream(file)) as import('node:stream').Readable);
    } catch (err) {
      fail(item, err);
      return;
    }
    await track(
      pipeline.commit(spooled, { source: 'import', import: { file: path.resolve(file), ...(index === undefined ? {} : { index }) } }).then(done, (err) => fail(item, err)),
    );
  };

  for (const p of paths) {
    let files: string[];
    try {
      files = await expand(p, summary);
    } catch (err) {
      fail(p, err);
      continue;
    }
    for (const file of files) {
      let mbox = false;
      try {
        // A `.eml` is one message as given, even when it starts with an MBOX
        // `From ` line (downloads often do): it is archived byte for byte.
        const ext = path.extname(file).toLowerCase();
        mbox = MBOX_EXTENSIONS.has(ext) || (!MAIL_EXTENSIONS.has(ext) && (await isMboxFile(file)));
      } catch (err) {
        fail(file, err);
        continue;
      }
      if (!mbox) {
        await importOne(file);
        continue;
      }
      try {
        for await (const msg of readMbox(file)) await importOne(file, msg.index, msg.stream);
      } catch (err) {
        fail(file, err);
      }
    }
  }
  await Promise.all(running);
  summary.seconds = (Date.now() - started) / 1000;
  return summary;
}

/** Expands a path into mail files: a file is taken as given; a directory is walked. */
async function expand(p: string, summary: ImportSummary): Promise<string[]> {
  const st = await stat(p);
  if (st.isFile()) return [p];
  if (!st.isDirectory()) throw new Error('not a file or directory');
  const out: string[] = [];
  await walk(p, out, summary);
  return out;
}

async function walk(dir: string, out: string[], summary: ImportSummary): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true });
  entries.sort((a, b) => a.name.localeCompare(b.name));
  for (const e of entries) {
    if (e.name.startsWith('.')) continue;
    const full = path.join(dir, e.name);
    if (e.isDirectory()) await walk(full, out, summary);
    else if (e.isFile()) {
      if (await looksLikeMail(full)) out.push(full);
      else {
        summary.skipped++;
        if (summary.skippedFiles.length < MAX_LISTED_FAILURES) summary.skippedFiles.push(full);
      }
    }
  }
}

/**
 * In a directory walk, takes `.eml`/`.mbox` files, and files of other names
 * (Maildir's `cur/` and `new/`, `.raw`) whose first line is an MBOX separator
 * or an RFC 5322 header field. READMEs, licences and pictures are skipped and
 * listed in the summary.
 */
async function looksLikeMail(file: string): Promise<boolean> {
  const ext = path.extname(file).toLowerCase();
  if (MAIL_EXTENSIONS.has(ext) || MBOX_EXTENSIONS.has(ext)) return true;
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(512);
    const { bytesRead } = await fh.read(buf, 0, 512, 0);
    const first = buf.subarray(0, bytesRead).toString('latin1').split(/\r?\n/)[0] ?? '';
    return /^From \S/.test(first) || /^[!-9;-~]+:/.test(first);
  } finally {
    await fh.close();
  }
}
