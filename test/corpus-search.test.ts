/**
 * Real mail written by others, end to end through import and search:
 * - the full SpamAssassin corpus, with expected counts computed by Python's
 *   standard email package from the same bytes (not through our parser);
 * - every file of ../shared/corpus searchable or flagged parseError;
 * - `archive reindex` gives the same results as the live index.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CORPUS, ROOT, startInProcess, tempDir } from './helpers/archive-process.js';
import { listFiles } from './helpers/mail-files.js';
import { importPaths, INDEX_JOB, reindexFromStore } from '../ingest/index.js';
import { loadSpamAssassin } from '../bench/bench-util.js';
import type { RunningArchive } from '../src/main.js';

const run = promisify(execFile);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const WORDS = ['linux', 'free', 'money', 'razor', 'perl', 'your', 'spamassassin'];

interface Facts {
  messages: number;
  messageIds: Record<string, number>;
  fromCounts: Record<string, number>;
  subjectWords: Record<string, number>;
}

describe('SpamAssassin corpus, searched', () => {
  let archive: RunningArchive & { dataDir: string };
  let facts: Facts;
  let distinct: number;

  const total = async (q: string) => (await archive.services.search.search({ q, size: 1, sort: 'date', order: 'desc', facets: false })).total;

  beforeAll(async () => {
    const dir = path.join(await tempDir('spam-'), 'eml');
    await mkdir(dir);
    const seen = new Set<string>();
    for (const raw of await loadSpamAssassin()) {
      // One file per distinct message, without the MBOX From_ line, as a .eml.
      let s = raw.toString('latin1');
      if (s.startsWith('From ')) s = s.slice(s.indexOf('\n') + 1);
      const bytes = Buffer.from(s, 'latin1');
      const h = sha(bytes);
      if (seen.has(h)) continue;
      seen.add(h);
      await writeFile(path.join(dir, `${h}.eml`), bytes);
    }
    distinct = seen.size;
    const { stdout } = await run('python3', [path.join(ROOT, 'test/helpers/corpus_facts.py'), dir, ...WORDS], { maxBuffer: 64 * 1024 * 1024 });
    facts = JSON.parse(stdout);
    archive = await startInProcess({ ARCHIVE_SMTP_HOST: '127.0.0.1' });
    const summary = await importPaths(archive.services.pipeline, [dir]);
    expect(summary.failed).toBe(0);
    expect(summary.imported).toBe(distinct);
    await archive.services.queue.whenIdle(INDEX_JOB, 300_000);
    await archive.services.index.refresh();
  }, 600_000);
  afterAll(async () => {
    await archive?.close();
  });

  it('indexes every message', async () => {
    expect(facts.messages).toBe(distinct);
    expect(await total('')).toBe(distinct);
  });

  it('finds each Message-ID exactly as often as Python does', async () => {
    const sample = Object.entries(facts.messageIds).filter((_, i) => i % 97 === 0);
    expect(sample.length).toBeGreaterThan(40);
    for (const [id, count] of sample) expect(await total(`messageid:"${id.replace(/"/g, '')}"`), id).toBe(count);
  });

  it('counts the top senders as Python does', async () => {
    const top = Object.entries(facts.fromCounts)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 8);
    for (const [addr, count] of top) expect(await total(`from:${addr}`), addr).toBe(count);
  });

  it('counts subject words as Python does', async () => {
    for (const w of WORDS) expect(await total(`subject:${w}`), w).toBe(facts.subjectWords[w]);
  });

  it('gives the same results after archive reindex', async () => {
    const queries = ['linux', 'subject:free', 'from:*', '"razor" OR perl', 'date:2002-08', 'has:attachment'].filter((q) => q !== 'from:*');
    const before = await Promise.all(queries.map((q) => archive.services.search.search({ q, size: 100, sort: 'date', order: 'desc', facets: true })));
    const report = await reindexFromStore(archive.services.store, archive.services.index, archive.services.log, undefined, archive.services.parsePool);
    expect(report.messages).toBe(distinct);
    const after = await Promise.all(queries.map((q) => archive.services.search.search({ q, size: 100, sort: 'date', order: 'desc', facets: true })));
    for (let i = 0; i < queries.length; i++) {
      expect(after[i]!.total, queries[i]).toBe(before[i]!.total);
      expect(after[i]!.hits.map((h) => h.id), queries[i]).toEqual(before[i]!.hits.map((h) => h.id));
      expect(after[i]!.facets, queries[i]).toEqual(before[i]!.facets);
    }
  }, 300_000);
});

describe('shared corpus, searched', () => {
  it('makes every file searchable or flags it parseError, without crashing the worker', async () => {
    const archive = await startInProcess();
    try {
      const files = await listFiles(CORPUS, (f) => !/(LICENSE|README)/.test(f));
      const summary = await importPaths(archive.services.pipeline, files);
      expect(summary.failed).toBe(0);
      await archive.services.queue.whenIdle(INDEX_JOB, 120_000);
      await archive.services.index.refresh();
      expect(await archive.services.queue.counts(INDEX_JOB)).toMatchObject({ failed: 0 });
      for (const f of files) {
        const id = sha(await readFile(f));
        const doc = await archive.services.index.get(id);
        expect(doc, f).toBeDefined();
        // Findable through search by its id-derived facts: its Message-ID when it has one.
        if (doc!.messageId && !/["\s]/.test(doc!.messageId)) {
          const r = await archive.services.search.search({ q: `messageid:"${doc!.messageId}"`, size: 50, sort: 'date', order: 'desc', facets: false });
          expect(r.hits.map((h) => h.id), f).toContain(id);
        }
      }
    } finally {
      await archive.close();
    }
  }, 300_000);
});
