/**
 * Runs the MessageIndex contract against every adapter, then what only the
 * SQLite adapter has: several processes (here: connections) on one file, the
 * schema version, and the SQL it generates.
 *
 * SQLite needs nothing but a temporary directory.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { Client } from '@opensearch-project/opensearch';
import { pino, type Logger } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { QueryNode } from '../search/query-ast.js';
import { parseQuery } from '../search/query-parser.js';
import { SCHEMA_VERSION, SqliteMessageIndex } from '../search/sqlite/sqlite-message-index.js';
import { OpenSearchMessageIndex } from '../search/opensearch/opensearch-message-index.js';
import { exactToken, ftsExpression, ftsString, personKey, reverseDomain, SqliteQueryCompiler } from '../search/sqlite/sqlite-query-compiler.js';
import type { Config } from '../src/config/config.js';
import { ServiceUnavailableError } from '../src/errors.js';
import { messageIndexContract, type IndexFixture } from './contract/message-index.contract.js';
import { DOC, INDEX_DOCS, KEY_OF } from './fixtures/index-docs.js';

const silent = pino({ level: 'silent' });

// ---------------------------------------------------------------- SQLite

messageIndexContract('sqlite', async (): Promise<IndexFixture> => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'archive-index-contract-'));
  const index = new SqliteMessageIndex(path.join(dir, 'catalog', 'catalog.sqlite'), silent);
  await index.init();
  return {
    index,
    cleanup: async () => {
      await index.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

// The same, with every plan threshold set to force the other plan: scope by posting-list intersection
// instead of per message, and pages read along the date index instead of sorting the match set.
messageIndexContract('sqlite (alternative plans)', async (): Promise<IndexFixture> => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'archive-index-contract-'));
  const index = new SqliteMessageIndex(path.join(dir, 'catalog', 'catalog.sqlite'), silent, { scopePerMessageMax: 0, denseMinHits: 0, denseRatio: 1e9 });
  await index.init();
  return {
    index,
    cleanup: async () => {
      await index.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

// ---------------------------------------------------------------- OpenSearch

// A real node at ARCHIVE_TEST_OPENSEARCH_URL (`bash infra/opensearch.sh start`). Each fixture gets its
// own index prefix; its indices and template are deleted afterwards. Unset: skipped loudly, or a
// failure under CI=true.
const OS_URL = process.env.ARCHIVE_TEST_OPENSEARCH_URL;
if (OS_URL) {
  const run = `contract-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
  let n = 0;
  messageIndexContract('opensearch', async (): Promise<IndexFixture> => {
    const prefix = `${run}-${n++}`;
    const index = new OpenSearchMessageIndex({ client: new Client({ node: OS_URL }), indexPrefix: prefix, log: silent });
    await index.init();
    return {
      index,
      cleanup: async () => {
        await index.close();
        const admin = new Client({ node: OS_URL });
        await admin.indices.delete({ index: `${prefix}-*`, expand_wildcards: 'all' }).catch(() => undefined);
        await admin.indices.deleteIndexTemplate({ name: `${prefix}-messages` }).catch(() => undefined);
        await admin.close();
      },
    };
  });
} else if (process.env.CI === 'true') {
  describe('MessageIndex contract: opensearch', () => {
    it('needs OpenSearch (CI=true: nothing may skip)', () => {
      throw new Error('ARCHIVE_TEST_OPENSEARCH_URL is not set; start OpenSearch with `bash infra/opensearch.sh start` and export ARCHIVE_TEST_OPENSEARCH_URL=http://127.0.0.1:9200');
    });
  });
} else {
  console.warn(
    `\n${'!'.repeat(100)}\n!! SKIPPED: the MessageIndex contract on OpenSearch did NOT run: ARCHIVE_TEST_OPENSEARCH_URL is unset.\n` +
      `!! Start it with \`bash infra/opensearch.sh start\` and export ARCHIVE_TEST_OPENSEARCH_URL=http://127.0.0.1:9200\n${'!'.repeat(100)}\n`,
  );
  describe.skip('MessageIndex contract: opensearch (ARCHIVE_TEST_OPENSEARCH_URL unset)', () => {
    it('skipped', () => undefined);
  });
}

// ---------------------------------------------------------------- SQLite only

/** A logger that keeps its records. */
function recordingLogger(): { log: Logger; records: { level: number; msg: string; [k: string]: unknown }[] } {
  const records: { level: number; msg: string }[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void records.push(JSON.parse(line) as { level: number; msg: string }) });
  return { log, records };
}

const keysOf = (hits: { id: string }[]): string[] => hits.map((h) => KEY_OF.get(h.id) ?? h.id);
const all: QueryNode = { type: 'all' };

describe('SqliteMessageIndex', () => {
  let dir: string;
  let file: string;
  const open: SqliteMessageIndex[] = [];

  async function openIndex(log: Logger = silent): Promise<SqliteMessageIndex> {
    const index = new SqliteMessageIndex(file, log);
    await index.init();
    open.push(index);
    return index;
  }

  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'archive-sqlite-index-'));
    file = path.join(dir, 'catalog', 'catalog.sqlite');
  });
  afterEach(async () => {
    for (const i of open.splice(0)) await i.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('fromConfig puts the catalog under <dataDir>/catalog/catalog.sqlite', async () => {
    const index = SqliteMessageIndex.fromConfig({ dataDir: dir } as Config, silent);
    await index.init();
    open.push(index);
    const db = new Database(path.join(dir, 'catalog', 'catalog.sqlite'), { readonly: true });
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    db.close();
    expect(index.driver).toBe('sqlite');
  });

  it('logs the schema it creates, and nothing to change on the next start', async () => {
    const first = recordingLogger();
    const a = await openIndex(first.log);
    await a.close();
    const created = first.records.find((r) => r.msg === 'index schema created');
    expect(created).toMatchObject({ schemaVersion: SCHEMA_VERSION });
    expect(created?.created).toEqual(expect.arrayContaining(['messages', 'docs', 'people', 'idents', 'text_fts', 'ident_fts', 'facet_values']));
    const second = recordingLogger();
    await openIndex(second.log);
    expect(second.records.map((r) => r.msg)).toEqual(['index schema up to date']);
  });

  it('drops an index of an older schema version and says a reindex is needed', async () => {
    const a = await openIndex();
    await a.upsert([DOC.budget1]);
    await a.close();
    const db = new Database(file);
    db.prepare("UPDATE meta SET value = '1' WHERE key = 'schema_version'").run();
    // A table of an old layout, under a name the current one no longer has.
    db.exec("CREATE VIRTUAL TABLE people_fts USING fts5(words, content='')");
    db.close();
    const { log, records } = recordingLogger();
    const b = await openIndex(log);
    expect(await b.count()).toBe(0);
    const check = new Database(file, { readonly: true });
    expect(check.prepare("SELECT count(*) AS n FROM sqlite_master WHERE name LIKE 'people_fts%'").get()).toEqual({ n: 0 });
    check.close();
    const warn = records.find((r) => r.level === 40);
    expect(warn?.msg).toMatch(/reindex/);
    expect(warn).toMatchObject({ from: 1, to: SCHEMA_VERSION });
    expect(warn?.dropped).toEqual(expect.arrayContaining(['messages', 'people_fts']));
  });

  it('upgrades a schema 2 index in place: received_at is filled from the stored documents, nothing is dropped', async () => {
    const a = await openIndex();
    const docs = [
      { ...DOC.budget1, receivedAt: Date.parse('2024-03-01T00:00:00.000Z'), size: 10 },
      { ...DOC.budget2, receivedAt: Date.parse('2024-03-01T23:59:59.999Z'), size: 20 },
      { ...DOC.leap, receivedAt: Date.parse('2024-03-02T00:00:00.000Z') + 0.9, size: 40 }, // fractions cut, as on upsert
      { ...DOC.mar1, receivedAt: Number.NaN },
    ];
    await a.upsert(docs);
    await a.close();
    open.splice(0);
    // Make the file look like schema 2: no received_at column or index.
    const db = new Database(file);
    const idx = db.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'messages_received_%'").pluck().all() as string[];
    expect(idx).toHaveLength(1);
    db.exec(`DROP INDEX ${idx[0]}; ALTER TABLE messages DROP COLUMN received_at;`);
    db.prepare("UPDATE meta SET value = '2' WHERE key = 'schema_version'").run();
    db.close();

    const { log, records } = recordingLogger();
    const b = await openIndex(log);
    expect(await b.count()).toBe(4);
    expect(records.find((r) => r.msg.startsWith('index schema upgraded in place'))).toMatchObject({ from: 2, to: SCHEMA_VERSION, upgraded: { messages: 4 } });
    const h = await b.ingestHistogram({ interval: 'day', from: Date.parse('2024-03-01T00:00:00Z'), to: Date.parse('2024-03-03T00:00:00Z') });
    expect(h.buckets.map((x) => [x.messages, x.bytes])).toEqual([
      [2, 30],
      [1, 40],
    ]);
    expect(h.undated).toBe(1);
    // The upgraded table takes new writes like a fresh one, and a second start changes nothing.
    await b.upsert([{ ...DOC.mar1, receivedAt: Date.parse('2024-03-02T05:00:00Z'), size: 5 }]);
    expect((await b.ingestHistogram({ interval: 'day', from: Date.parse('2024-03-02T00:00:00Z'), to: Date.parse('2024-03-03T00:00:00Z') })).buckets[0]).toMatchObject({ messages: 2, bytes: 45 });
    const again = recordingLogger();
    await openIndex(again.log);
    expect(again.records.map((r) => r.msg)).toEqual(['index schema up to date']);
  });

  it('ingest statistics read only the (received_at, size) index', async () => {
    const a = await openIndex();
    await a.upsert([DOC.budget1]);
    const db = new Database(file, { readonly: true });
    const plan = (db.prepare('EXPLAIN QUERY PLAN SELECT count(*) AS n, coalesce(sum(size), 0) AS bytes FROM messages WHERE received_at >= ? AND received_at < ?').all(0, 1) as { detail: string }[]).map((r) => r.detail).join('\n');
    db.close();
    expect(plan).toMatch(/USING COVERING INDEX messages_received_\w+ \(received_at>\? AND received_at<\?\)/);
  });

  it('refuses an index written by a newer schema version', async () => {
    const a = await openIndex();
    await a.close();
    const db = new Database(file);
    db.prepare("UPDATE meta SET value = ? WHERE key = 'schema_version'").run(String(SCHEMA_VERSION + 1));
    db.close();
    const b = new SqliteMessageIndex(file, silent);
    await expect(b.init()).rejects.toBeInstanceOf(ServiceUnavailableError);
    await b.close();
  });

  it('a rebuild committed by one process is live in another without a restart', async () => {
    const server = await openIndex();
    const cli = await openIndex();
    await server.upsert([DOC.budget1, DOC.budget2]);
    // Warm the server's prepared statements on the old tables.
    expect(keysOf((await server.search({ query: parseQuery('budget'), sort: 'date', order: 'desc', size: 10, facets: true })).hits)).toEqual(['budget2', 'budget1']);

    const rebuild = await cli.beginRebuild();
    await rebuild.upsert([DOC.budget3, DOC.leap, DOC.mar1]);
    // The server keeps serving the live generation while the CLI builds.
    expect(keysOf((await server.search({ query: parseQuery('budget'), sort: 'date', order: 'desc', size: 10 })).hits)).toEqual(['budget2', 'budget1']);
    expect(await server.count()).toBe(2);

    await rebuild.commit();
    const page = await server.search({ query: parseQuery('budget OR leap'), sort: 'date', order: 'desc', size: 10, facets: true });
    expect(keysOf(page.hits)).toEqual(['mar1', 'leap', 'budget3']);
    expect(page.facets?.years).toEqual([
      { value: '2024', count: 2 },
      { value: '2023', count: 1 },
    ]);
    expect(await server.count()).toBe(3);
    expect(await server.get(DOC.budget1.id)).toBeUndefined();
    expect(await server.thread('budget1@example.com')).toEqual([DOC.budget3]);
    // And the server can write to the new generation.
    await server.upsert([DOC.budget2]);
    expect(keysOf((await cli.search({ query: parseQuery('budget'), sort: 'date', order: 'desc', size: 10 })).hits)).toEqual(['budget3', 'budget2']);
  });

  it('writes by other processes during a rebuild reach the rebuilt index too', async () => {
    const worker = await openIndex();
    const cli = await openIndex();
    await worker.upsert([DOC.budget1, DOC.budget2]);
    const rebuild = await cli.beginRebuild();
    await rebuild.upsert([DOC.budget1, DOC.budget2]);
    // New mail arrives and an old message is disposed of while the rebuild runs.
    await worker.upsert([DOC.leap]);
    await worker.delete([DOC.budget1.id]);
    expect(await worker.count()).toBe(2);
    await rebuild.commit();
    expect(await worker.existing([DOC.budget1.id, DOC.budget2.id, DOC.leap.id])).toEqual(new Set([DOC.budget2.id, DOC.leap.id]));
    expect(keysOf((await worker.search({ query: all, sort: 'date', order: 'desc', size: 10 })).hits)).toEqual(['leap', 'budget2']);
  });

  it('a second rebuild supersedes an unfinished one, whose commit then fails', async () => {
    const a = await openIndex();
    const b = await openIndex();
    await a.upsert([DOC.budget1]);
    const first = await a.beginRebuild();
    await first.upsert([DOC.leap]);
    const second = await b.beginRebuild();
    await second.upsert([DOC.mar1]);
    await expect(first.commit()).rejects.toBeInstanceOf(ServiceUnavailableError);
    await expect(first.upsert([DOC.leap])).rejects.toThrow();
    expect(await a.count()).toBe(1);
    await second.commit();
    expect(keysOf((await a.search({ query: all, sort: 'date', order: 'desc', size: 10 })).hits)).toEqual(['mar1']);
  });

  it('a rebuild abandoned by a crashed process is replaced by the next one; leftovers of a crashed commit are dropped at start', async () => {
    const a = await openIndex();
    await a.upsert([DOC.budget1]);
    await a.beginRebuild(); // never finished
    await a.close();
    const db = new Database(file);
    db.exec('CREATE TABLE messages_old (mid INTEGER PRIMARY KEY)');
    db.close();
    const { log, records } = recordingLogger();
    const b = await openIndex(log);
    expect(records.some((r) => r.msg === 'index schema repaired' && Array.isArray(r.dropped) && r.dropped.includes('messages_old'))).toBe(true);
    expect(records.some((r) => /rebuild is in progress or was abandoned/.test(r.msg))).toBe(true);
    const rebuild = await b.beginRebuild();
    await rebuild.upsert([DOC.leap]);
    await rebuild.commit();
    expect(await b.count()).toBe(1);
  });

  it('keeps the catalog consistent after many replaces and deletes (no orphan rows)', async () => {
    const index = await openIndex();
    await index.upsert([...INDEX_DOCS]);
    await index.upsert([...INDEX_DOCS]);
    await index.delete(INDEX_DOCS.filter((_, i) => i % 2 === 0).map((d) => d.id));
    await index.close();
    const db = new Database(file, { readonly: true });
    const n = (sql: string): number => (db.prepare(sql).get() as { n: number }).n;
    const kept = INDEX_DOCS.filter((_, i) => i % 2 === 1);
    expect(n('SELECT count(*) AS n FROM messages')).toBe(kept.length);
    expect(n('SELECT count(*) AS n FROM docs')).toBe(kept.length);
    expect(n('SELECT count(*) AS n FROM people WHERE (pid >> 24) NOT IN (SELECT mid FROM messages)')).toBe(0);
    // Identities: exactly the (address, name) pairs of the kept documents' people.
    const people = new Set<string>();
    for (const d of kept) {
      for (const p of [...d.from, ...d.sender, ...d.to, ...d.cc, ...d.bcc, ...d.replyTo]) people.add(`${p.address}\n${p.name ?? ''}`);
      for (const r of d.envelopeRecipients) {
        people.add(`${r.address}\n`);
        if (r.expandedFrom) people.add(`${r.expandedFrom}\n`);
        if (r.forwardedFrom) people.add(`${r.forwardedFrom}\n`);
      }
      for (const a of d.envelopeSenders) people.add(`${a}\n`);
    }
    const idents = db.prepare('SELECT address, name FROM idents').all() as { address: string; name: string }[];
    expect(new Set(idents.map((i) => `${i.address}\n${i.name}`))).toEqual(people);
    expect(n('SELECT count(*) AS n FROM idents WHERE iid NOT IN (SELECT iid FROM people)')).toBe(0);
    expect(n("SELECT count(*) AS n FROM text_fts WHERE text_fts MATCH '\"budget\"'")).toBe(kept.filter((d) => /budget/i.test(d.subject)).length);
    // The facet dictionary holds exactly the values the kept documents use: those of deleted mail are gone.
    const domainOf = (a: string): string => (a.includes('@') ? a.slice(a.lastIndexOf('@') + 1) : '');
    const expected = new Set<string>();
    for (const d of kept) {
      for (const p of d.from) if (p.address) expected.add(`1:${p.address}`);
      for (const p of [...d.to, ...d.cc, ...d.bcc, ...d.envelopeRecipients]) if (domainOf(p.address)) expected.add(`2:${domainOf(p.address)}`);
      expected.add(`3:${new Date(d.date).getUTCFullYear()}`);
    }
    const values = db.prepare('SELECT kind, value FROM facet_values').all() as { kind: number; value: string }[];
    expect(new Set(values.map((v) => `${v.kind}:${v.value}`))).toEqual(expected);
    expect(values).toHaveLength(expected.size);
    db.close();
  });

  it('closes cleanly and refuses calls after close', async () => {
    const index = await openIndex();
    await index.close();
    await index.close();
    await expect(index.count()).rejects.toBeInstanceOf(ServiceUnavailableError);
    expect((await index.health()).ok).toBe(false);
  });
});

describe('SqliteQueryCompiler', () => {
  const compiler = new SqliteQueryCompiler({ messages: 'messages', docs: 'docs', people: 'people', idents: 'idents', textFts: 'text_fts', identFts: 'ident_fts', facetValues: 'facet_values' });

  it('quotes every FTS5 token and doubles quotes', () => {
    expect(ftsString('a"b')).toBe('"a""b"');
    expect(ftsExpression({ type: 'term', field: 'any', value: 'budget', prefix: false })).toBe('"budget"');
    expect(ftsExpression({ type: 'term', field: 'any', value: 'contr', prefix: true })).toBe('"contr" *');
    expect(ftsExpression({ type: 'term', field: 'any', value: '契約', prefix: false })).toBe('"契 約"');
    expect(ftsExpression({ type: 'term', field: 'any', value: '契約', prefix: true })).toBe('"契 約" *');
    expect(ftsExpression({ type: 'phrase', field: 'any', terms: ['a', 'b', 'c'], slop: 0 })).toBe('"a b c"');
    expect(ftsExpression({ type: 'phrase', field: 'any', terms: ['a', '新契約'], slop: 3 })).toBe('NEAR("a" "新 契 約", 3)');
    expect(ftsExpression({ type: 'term', field: 'any', value: '"*:^()', prefix: false })).toBeUndefined();
  });

  it('never puts a value into the SQL text', () => {
    const values = ["x'); DROP TABLE messages;--@y", 'NEAR', 'CAF"1*', 'evil.example.com'];
    const q: QueryNode = {
      type: 'or',
      children: [
        { type: 'address', field: 'from', value: values[0], prefix: false },
        { type: 'not', child: { type: 'term', field: 'from', value: 'near', prefix: true } },
        { type: 'messageId', value: values[2] },
        { type: 'domain', field: 'cc', value: values[3] },
      ],
    };
    const c = compiler.compile(q);
    for (const v of values) expect(c.where.sql.toLowerCase()).not.toContain(v.toLowerCase());
    expect(c.where.params).toEqual(
      expect.arrayContaining([`{addr} : "${exactToken(values[0].toLowerCase())}"`, values[2], '{words} : ("near" *)', `{dom} : "${exactToken('com.example.evil.')}" *`]),
    );
    const scope = compiler.scope({ addresses: ["a'b@x.com"], domains: ['x.org'] });
    expect(scope?.sql).not.toContain("a'b");
    expect(scope?.params).toEqual([`{addr} : "${exactToken("a'b@x.com")}" OR {dom} : "${exactToken('org.x.')}" *`]);
    expect(compiler.scopeSet({ addresses: ["a'b@x.com"], domains: ['x.org', 'com'] }).params).toEqual([
      `{addr} : "${exactToken("a'b@x.com")}" OR {dom} : "${exactToken('org.x.')}" * OR {dom} : "${exactToken('com.')}"`,
    ]);
  });

  it('puts the text words of an AND into one MATCH, negations as FTS5 NOT', () => {
    const c = compiler.compile(parseQuery('budget approval -draft subject:q2 from:alice@example.com'));
    expect(c.match).toBe('(("budget") AND ("approval") AND ({subject_t} : ("q2"))) NOT (("draft"))');
    expect(c.where.params).toEqual([`{addr} : "${exactToken('alice@example.com')}"`]);
    expect(c.where.sql).toContain('& 1) != 0');
  });

  it('a lone negation, an OR of text and fields, and `all`', () => {
    expect(compiler.compile(parseQuery('-budget')).match).toBeUndefined();
    expect(compiler.compile(parseQuery('-budget')).where.sql).toContain('NOT IN');
    expect(compiler.compile(parseQuery('a OR b')).match).toBe('("a") OR ("b")');
    const mixed = compiler.compile(parseQuery('a OR has:attachment'));
    expect(mixed.match).toBeUndefined();
    expect(mixed.where.sql).toContain(' OR ');
    expect(compiler.compile({ type: 'all' })).toEqual({ match: undefined, where: { sql: '1', params: [] }, matchesAll: true });
  });

  it('addresses and reversed domains are single tokens; person keys carry the message and the roles', () => {
    expect(reverseDomain('mail.example.com')).toBe('com.example.mail.');
    expect(exactToken('a.b-c@x.com')).toBe('a\ue02eb\ue02dc\ue040x\ue02ecom');
    expect(exactToken('müller@x.de')).toBe('müller\ue040x\ue02ede');
    expect(exactToken('"a b"@x')).not.toMatch(/[ "]/);
    const key = personKey(123_456, 5, 7);
    expect(Math.floor(key / 2 ** 24)).toBe(123_456);
    expect(Math.floor(key / 2 ** 16) % 256).toBe(5);
    expect(key % 2 ** 16).toBe(7);
    expect(compiler.scope({ addresses: [], domains: [] })).toEqual({ sql: '0', params: [] });
    expect(compiler.scope(null)).toBeUndefined();
  });
});
