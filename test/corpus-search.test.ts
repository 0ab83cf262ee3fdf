/**
 * Real mail written by others, end to end through import and search:
 * - the full SpamAssassin corpus, with expected counts computed by Python's
 *   standard email package from the same bytes (not through our parser);
 * - every file of ../shared/corpus searchable or flagged parseError;
 * - `archive reindex` gives the same results as the live index.
 * On both deployments, with the same expected counts (scale-out searches
 * part of the SpamAssassin corpus: see SCALE_OUT_SPAM_FILES).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CORPUS, ROOT, startInProcess, tempDir } from './helpers/archive-process.js';
import { listFiles } from './helpers/mail-files.js';
import { dropModeIndices, MODES, waitForIndexed } from './helpers/modes.js';
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

interface SpamCorpus {
  dir: string;
  ids: string[];
  facts: Facts;
}

/**
 * Fewer messages in scale-out: each costs about seven S3 requests (README, Scale-out), and against the test
 * S3 endpoint (moto) on a loaded 2-core box the whole corpus (~6,000 messages) takes over five minutes to
 * index and ten to reindex (1,500 took 2.5 and 3 minutes). The first 500 files of the corpus, with their
 * own expected counts from Python.
 */
const SCALE_OUT_SPAM_FILES = 500;

const spamCorpora = new Map<number, Promise<SpamCorpus>>();
/** The corpus (its first `files` files) as .eml files and Python's facts about them. */
function spamAssassinCorpus(files = Infinity): Promise<SpamCorpus> {
  const cached = spamCorpora.get(files);
  if (cached) return cached;
  const made = (async () => {
    const dir = path.join(await tempDir('spam-'), 'eml');
    await mkdir(dir);
    const seen = new Set<string>();
    for (const raw of await loadSpamAssassin(files)) {
      // One file per distinct message, without the MBOX From_ line, as a .eml.
      let s = raw.toString('latin1');
      if (s.startsWith('From ')) s = s.slice(s.indexOf('\n') + 1);
      const bytes = Buffer.from(s, 'latin1');
      const h = sha(bytes);
      if (seen.has(h)) continue;
      seen.add(h);
      await writeFile(path.join(dir, `${h}.eml`), bytes);
    }
    const { stdout } = await run('python3', [path.join(ROOT, 'test/helpers/corpus_facts.py'), dir, ...WORDS], { maxBuffer: 64 * 1024 * 1024 });
    return { dir, ids: [...seen], facts: JSON.parse(stdout) as Facts };
  })();
  spamCorpora.set(files, made);
  return made;
}

describe.each(MODES.filter((m) => m.enabled))('SpamAssassin corpus, searched ($mode)', ({ mode, env }) => {
  let archive: RunningArchive & { dataDir: string };
  let modeEnv: Record<string, string>;
  let facts: Facts;
  let distinct: number;

  const total = async (q: string) => (await archive.services.search.search({ q, size: 1, sort: 'date', order: 'desc', facets: false })).total;

  beforeAll(async () => {
    const corpus = await spamAssassinCorpus(mode === 'embedded' ? Infinity : SCALE_OUT_SPAM_FILES);
    facts = corpus.facts;
    distinct = corpus.ids.length;
    modeEnv = await env();
    archive = await startInProcess({ ...modeEnv, ARCHIVE_SMTP_HOST: '127.0.0.1' });
    const summary = await importPaths(archive.services.pipeline, [corpus.dir]);
    expect(summary.failed).toBe(0);
    expect(summary.imported).toBe(distinct);
    await waitForIndexed(archive.services, corpus.ids, 300_000);
  }, 600_000);
  afterAll(async () => {
    await archive?.close();
    await dropModeIndices(modeEnv);
  });

  it('indexes every message', async () => {
    expect(facts.messages).toBe(distinct);
    expect(await total('')).toBe(distinct);
  });

  it('finds each Message-ID exactly as often as Python does', async () => {
    // IDs with a double quote in them (`<"x y"@host>`) cannot be written in a quoted query value (no escapes).
    const quotable = Object.entries(facts.messageIds).filter(([id]) => !id.includes('"'));
    // Every 97th of the whole corpus; as many as 50 of a smaller one.
    const step = Math.min(97, Math.floor(quotable.length / 50));
    const sample = quotable.filter((_, i) => i % step === 0);
    expect(sample.length).toBeGreaterThan(40);
    for (const [id, count] of sample) expect(await total(`messageid:"${id}"`), id).toBe(count);
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

describe.each(MODES.filter((m) => m.enabled))('shared corpus, searched ($mode)', ({ env }) => {
  it('makes every file searchable or flags it parseError, without crashing the worker', async () => {
    const modeEnv = await env();
    const archive = await startInProcess(modeEnv);
    try {
      const files = await listFiles(CORPUS, (f) => !/(LICENSE|README)/.test(f));
      const summary = await importPaths(archive.services.pipeline, files);
      expect(summary.failed).toBe(0);
      await waitForIndexed(archive.services, await Promise.all(files.map(async (f) => sha(await readFile(f)))), 120_000);
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
      await dropModeIndices(modeEnv);
    }
  }, 300_000);
});
