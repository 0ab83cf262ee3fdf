/**
 * Search latency benchmark on a generated archive (bench/archive-generator.ts).
 *
 *   npm run build && node dist/bench/search.bench.js [--messages 1000000] [--runs 30] [--index sqlite|opensearch|both]
 *     [--keep] [--prefix P]
 *
 * --keep leaves the OpenSearch index in place and prints its prefix; --prefix
 * reuses such an index (when it holds --messages documents) instead of
 * building it again, which takes most of a 1,000,000-message run.
 *
 * Builds the archive into the index (SQLite in a temp dir, or OpenSearch at
 * $ARCHIVE_OPENSEARCH_URL), then runs ten representative investigator
 * queries through the search service (facets included, like the UI), and
 * prints p50 and p95 for each, index bytes per message and peak RSS.
 */
import { mkdtemp, rm, stat, readdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { loadConfig } from '../src/config/config.js';
import { createMessageIndex } from '../src/factory.js';
import { SearchService } from '../search/index.js';
import type { MessageIndex } from '../src/ports/message-index.js';
import { buildShape, generateDocs } from './archive-generator.js';
import { fmt, percentile } from './bench-util.js';
import { clearRequestCache, dropOpenSearchIndices } from './scale-out-env.js';

const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '1000000' },
    runs: { type: 'string', default: '30' },
    index: { type: 'string', default: 'sqlite' },
    keep: { type: 'boolean', default: false },
    prefix: { type: 'string' },
  },
});
const count = Number(values.messages);
const runs = Number(values.runs);
const log = pino({ level: 'warn' });

async function dirBytes(dir: string): Promise<number> {
  let n = 0;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    n += e.isDirectory() ? await dirBytes(p) : (await stat(p)).size;
  }
  return n;
}

async function benchOne(driver: 'sqlite' | 'opensearch', shape: Awaited<ReturnType<typeof buildShape>>): Promise<void> {
  const dataDir = await mkdtemp(path.join(process.env.BENCH_DIR ?? os.tmpdir(), `bench-search-${driver}-`));
  const prefix = (driver === 'opensearch' && values.prefix) || `bench${Date.now()}`;
  const config = loadConfig({ ...process.env, ARCHIVE_DATA_DIR: dataDir, ARCHIVE_INDEX: driver, ARCHIVE_OPENSEARCH_INDEX_PREFIX: prefix });
  const index: MessageIndex = await createMessageIndex(config, log);
  const t0 = performance.now();
  const reuse = driver === 'opensearch' && !!values.prefix && (await index.count()) === count;
  if (!reuse) for await (const batch of generateDocs(shape, count, 2000)) await index.upsert(batch);
  await index.refresh();
  const buildSecs = (performance.now() - t0) / 1000;
  const people = shape.people;
  const queries: [string, string][] = [
    ['custodian + date range', `participant:${people[17]} date:2018-01-01..2019-12-31`],
    ['custodian (Bcc and lists)', `participant:${people[4242]}`],
    ['phrase', '"mailing list"'],
    ['boolean with NOT', 'money -subject:free'],
    ['wildcard', 'invest*'],
    ['proximity', '"free money"~5'],
    ['domain + attachment', `domain:${shape.domains[7]} has:attachment`],
    ['subject term', 'subject:money'],
    ['facet-heavy: one year', 'date:2020'],
    ['facet-heavy: everything', ''],
  ];
  const search = new SearchService(index);
  if (reuse) console.log(`\n${driver}: reusing the ${fmt(count)} messages under prefix ${prefix}`);
  else console.log(`\n${driver}: ${fmt(count)} messages indexed in ${fmt(buildSecs, 1)} s (${fmt(count / buildSecs)} docs/s)`);
  // OpenSearch keeps facet counts in its shard request cache until the next
  // refresh; repeated runs of one query hit it (as paging does). The cold
  // columns clear that cache before each run: what a new query costs.
  const cold = driver === 'opensearch';
  console.log(
    `  ${'query'.padEnd(28)} ${'hits'.padStart(9)} ${'p50 ms'.padStart(8)} ${'p95 ms'.padStart(8)}${cold ? ` ${'cold p50'.padStart(9)} ${'cold p95'.padStart(9)}` : ''}`,
  );
  const timeRuns = async (q: string, n: number, before?: () => Promise<void>): Promise<{ times: number[]; total: number }> => {
    const times: number[] = [];
    let total = 0;
    for (let i = 0; i < n + 2; i++) {
      await before?.();
      const t = performance.now();
      const r = await search.search({ q, size: 50, sort: 'date', order: 'desc', facets: true });
      if (i >= 2) times.push(performance.now() - t); // two warm-up runs
      total = r.total;
    }
    return { times: times.sort((a, b) => a - b), total };
  };
  for (const [name, q] of queries) {
    const { times, total } = await timeRuns(q, runs);
    let line = `  ${name.padEnd(28)} ${fmt(total).padStart(9)} ${fmt(percentile(times, 50), 1).padStart(8)} ${fmt(percentile(times, 95), 1).padStart(8)}`;
    if (cold) {
      const c = await timeRuns(q, runs, () => clearRequestCache(config.ARCHIVE_OPENSEARCH_URL, prefix));
      line += ` ${fmt(percentile(c.times, 50), 1).padStart(9)} ${fmt(percentile(c.times, 95), 1).padStart(9)}`;
    }
    console.log(line);
  }
  if (driver === 'sqlite') {
    const bytes = await dirBytes(path.join(dataDir, 'catalog'));
    console.log(`  index bytes per message: ${fmt(bytes / count)} (${fmt(bytes / 1048576)} MB in all)`);
  } else {
    const h = await index.health();
    console.log(`  index health: ${JSON.stringify(h)}`);
    if (values.keep) console.log(`  kept: rerun with --prefix ${prefix}`);
    else await dropOpenSearchIndices(config.ARCHIVE_OPENSEARCH_URL, prefix);
  }
  await index.close();
  await rm(dataDir, { recursive: true, force: true });
}

const shape = await buildShape();
const drivers = values.index === 'both' ? (['sqlite', 'opensearch'] as const) : [values.index as 'sqlite' | 'opensearch'];
for (const d of drivers) await benchOne(d, shape);
console.log(`\npeak RSS of the benchmark process: ${fmt(process.resourceUsage().maxRSS / 1024)} MB`);
