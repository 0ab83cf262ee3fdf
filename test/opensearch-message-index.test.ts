/**
 * The OpenSearch message index beyond the shared contract
 * (test/message-index.contract.test.ts): mappings as code and init
 * idempotence, bulk backpressure and 429 retries, the alias swap of a
 * rebuild, outages, TLS options, the catalog store's optimistic concurrency,
 * and proximity matching checked against SQLite FTS5 NEAR itself.
 *
 * Runs against the node in ARCHIVE_TEST_OPENSEARCH_URL (`infra/opensearch.sh
 * start`: http://127.0.0.1:9200). Every run uses its own index prefix and
 * deletes its indices and templates afterwards. Without the variable the
 * OpenSearch part is skipped loudly, or fails under CI=true; the pure unit
 * tests run regardless.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { Readable } from 'node:stream';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import Database from 'better-sqlite3';
import { Client, errors as osErrors } from '@opensearch-project/opensearch';
import { pino, type Logger } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IndexedMessage } from '../src/domain/indexed-message.js';
import { ConfigError, ServiceUnavailableError } from '../src/errors.js';
import type { QueryNode } from '../search/query-ast.js';
import { parseQuery } from '../search/query-parser.js';
import { analyzed } from '../search/index-analysis.js';
import {
  MAPPING_PROPERTIES,
  MAPPING_VERSION,
  MAX_TOKEN_CHARS,
  diffMappings,
  domainsWithParents,
  indexBody,
  toIndexDocument,
  yearString,
} from '../search/opensearch/opensearch-mappings.js';
import { MATCH_NONE, compileQuery, scopeFilter } from '../search/opensearch/opensearch-query-compiler.js';
import { OpenSearchMessageIndex, clientOptionsFromConfig, type OpenSearchMessageIndexOptions } from '../search/opensearch/opensearch-message-index.js';
import { CatalogConflictError, OpenSearchCatalogStore } from '../search/opensearch/opensearch-catalog-store.js';
import { SqliteMessageIndex } from '../search/sqlite/sqlite-message-index.js';
import type { MessageIndex, SearchPage } from '../src/ports/message-index.js';
import type { Envelope } from '../src/domain/types.js';
import { parseMessage } from '../ingest/message-parser.js';
import { buildIndexedMessage } from '../ingest/index-document.js';
import { asSmtpMessage, loadSpamAssassin } from '../bench/bench-util.js';

const url = process.env.ARCHIVE_TEST_OPENSEARCH_URL;
const silent = pino({ level: 'silent' });
const runId = `t${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
let prefixSeq = 0;
const nextPrefix = () => `${runId}-${++prefixSeq}`;

const H = (n: number | string) => String(n).padStart(64, '0');
const DAY = 86_400_000;
const T0 = Date.UTC(2021, 0, 1);

function msg(over: Partial<IndexedMessage> & { id: string }): IndexedMessage {
  return {
    date: T0,
    receivedAt: T0,
    from: [{ address: 'alice@example.com', name: 'Alice Smith' }],
    sender: [],
    to: [{ address: 'bob@example.org' }],
    cc: [],
    bcc: [],
    replyTo: [],
    envelopeRecipients: [],
    envelopeSenders: [],
    subject: 'hello',
    body: '',
    attachments: [],
    attachmentText: '',
    references: [],
    threadId: over.id,
    size: 1000,
    hasAttachments: false,
    envelopeIds: [],
    ...over,
  };
}

/** A logger that records what it is given, to check what init says it changed. */
function recordingLogger(): { log: Logger; lines: { level: number; msg: string; obj: Record<string, unknown> }[] } {
  const lines: { level: number; msg: string; obj: Record<string, unknown> }[] = [];
  const log = pino(
    { level: 'debug' },
    {
      write(s: string) {
        const o = JSON.parse(s) as Record<string, unknown>;
        lines.push({ level: o.level as number, msg: o.msg as string, obj: o });
      },
    },
  );
  return { log, lines };
}

// ---------------------------------------------------------------- pure units

describe('OpenSearch client options: TLS verification is never disabled', () => {
  const base = { ARCHIVE_OPENSEARCH_URL: 'https://search.internal:9200', ARCHIVE_OPENSEARCH_USERNAME: undefined, ARCHIVE_OPENSEARCH_PASSWORD: undefined, ARCHIVE_OPENSEARCH_CA: undefined };

  it('verifies certificates in every configuration', () => {
    const variants = [
      base,
      { ...base, ARCHIVE_OPENSEARCH_URL: 'http://127.0.0.1:9200' },
      { ...base, ARCHIVE_OPENSEARCH_USERNAME: 'archive', ARCHIVE_OPENSEARCH_PASSWORD: 's3cret' },
      { ...base, ARCHIVE_OPENSEARCH_CA: '/etc/archive/ca.pem' },
    ];
    for (const v of variants) {
      const opts = clientOptionsFromConfig(v, () => Buffer.from('-----BEGIN CERTIFICATE-----\n'));
      expect(opts.ssl?.rejectUnauthorized).toBe(true);
      expect(JSON.stringify(opts)).not.toMatch(/"rejectUnauthorized":false|checkServerIdentity/);
    }
  });

  it('adds a private CA and basic auth when configured', () => {
    const ca = Buffer.from('-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    const opts = clientOptionsFromConfig({ ...base, ARCHIVE_OPENSEARCH_CA: '/ca.pem', ARCHIVE_OPENSEARCH_USERNAME: 'u', ARCHIVE_OPENSEARCH_PASSWORD: 'p' }, (p) => {
      expect(p).toBe('/ca.pem');
      return ca;
    });
    expect(opts.ssl).toEqual({ rejectUnauthorized: true, ca });
    expect(opts.auth).toEqual({ username: 'u', password: 'p' });
    expect(clientOptionsFromConfig(base).auth).toBeUndefined();
  });

  it('an unreadable CA file or half of the credentials stops start-up, naming the variable', () => {
    expect(() => clientOptionsFromConfig({ ...base, ARCHIVE_OPENSEARCH_CA: '/nonexistent/ca.pem' })).toThrow(ConfigError);
    expect(() => clientOptionsFromConfig({ ...base, ARCHIVE_OPENSEARCH_CA: '/nonexistent/ca.pem' })).toThrow(/ARCHIVE_OPENSEARCH_CA/);
    expect(() => clientOptionsFromConfig({ ...base, ARCHIVE_OPENSEARCH_USERNAME: 'u' })).toThrow(/ARCHIVE_OPENSEARCH_PASSWORD/);
  });

  it('no OpenSearch source file turns verification off', () => {
    const dir = path.resolve('search/opensearch');
    for (const f of readdirSync(dir)) {
      const src = readFileSync(path.join(dir, f), 'utf8');
      expect(src, f).not.toMatch(/rejectUnauthorized\s*:\s*false|NODE_TLS_REJECT_UNAUTHORIZED/);
    }
  });
});

describe('OpenSearch mappings and documents', () => {
  it('mapping: strict, whitespace analyzer without filters, one shard, versioned', () => {
    const body = indexBody();
    const settings = body.settings.index;
    expect(settings.number_of_shards).toBe(1);
    expect(JSON.stringify(settings.analysis)).toContain('"type":"whitespace"');
    expect(JSON.stringify(settings.analysis)).toContain('"filter":[]');
    expect(body.mappings.dynamic).toBe('strict');
    expect((body.mappings._meta as { mappingVersion: number }).mappingVersion).toBe(MAPPING_VERSION);
    expect(MAPPING_PROPERTIES.msg).toEqual({ type: 'object', enabled: false });
    for (const f of ['id', 'messageId', 'threadId', 'from_a', 'participant_d', 'facet_domain']) expect(MAPPING_PROPERTIES[f].type).toBe('keyword');
    expect(MAPPING_PROPERTIES.year.type).toBe('integer');
  });

  it('diffMappings: added fields vs changed ones', () => {
    const current = { ...MAPPING_PROPERTIES } as Record<string, unknown>;
    delete current.facet_domain;
    current.year = { type: 'keyword' };
    expect(diffMappings(current)).toEqual({ added: ['facet_domain'], changed: ['year'] });
    expect(diffMappings(MAPPING_PROPERTIES)).toEqual({ added: [], changed: [] });
  });

  it('domains count for their parents down to two labels', () => {
    expect(domainsWithParents('a@mail.x.com')).toEqual(['mail.x.com', 'x.com']);
    expect(domainsWithParents('a@X.COM')).toEqual(['x.com']);
    expect(domainsWithParents('a@localhost')).toEqual(['localhost']);
    expect(domainsWithParents('nobody')).toEqual([]);
    expect(domainsWithParents('')).toEqual([]);
  });

  it('documents: people per field, exact addresses, facet domains, year', () => {
    const d = toIndexDocument(
      msg({
        id: H(1),
        from: [{ address: 'alice@mail.example.com', name: 'Alice Smith' }],
        to: [{ address: 'bob@example.org', name: 'Bob' }],
        cc: [{ address: 'carol@sub.example.net' }],
        envelopeRecipients: [
          { address: 'dave@example.org', kind: 'bcc' },
          { address: 'erin@corp.example', kind: 'recipient', expandedFrom: 'list@corp.example' },
        ],
        envelopeSenders: ['journal@example.com'],
        date: Date.UTC(1999, 11, 31, 23, 59),
      }),
      123,
    );
    expect(d.from_w).toEqual(['alice smith alice mail example com']);
    expect(d.bcc_a).toEqual(['dave@example.org']);
    expect(d.participant_a).toEqual(['alice@mail.example.com', 'bob@example.org', 'carol@sub.example.net', 'dave@example.org', 'erin@corp.example', 'list@corp.example', 'journal@example.com']);
    expect(d.from_d).toEqual(['mail.example.com', 'example.com']);
    expect(d.facet_domain).toEqual(['example.org', 'sub.example.net', 'corp.example']);
    expect(d.year).toBe(1999);
    expect([yearString(999), yearString(2024), yearString(-44)]).toEqual(['0999', '2024', '-0044']);
    expect(d.indexedAt).toBe(123);
  });

  it('over-long tokens are cut, never split into two positions', () => {
    const long = 'x'.repeat(MAX_TOKEN_CHARS + 50);
    const d = toIndexDocument(msg({ id: H(2), body: `before ${long} after` }), 0);
    expect(d.body_t.split(' ').map((t) => t.length)).toEqual([6, MAX_TOKEN_CHARS, 5]);
  });
});

describe('OpenSearch query compiler', () => {
  const near = (q: string) => JSON.stringify(compileQuery(parseQuery(q)));

  it('proximity: span_near, any order, slop = N - k + 2', () => {
    expect(compileQuery(parseQuery('body:"a b"~3'))).toEqual({
      span_near: { clauses: [{ span_term: { body_t: 'a' } }, { span_term: { body_t: 'b' } }], slop: 3, in_order: false },
    });
    expect(near('body:"a b c"~3')).toContain('"slop":2');
    expect(near('body:"a b c d"~2')).toContain('"slop":0');
    expect(compileQuery(parseQuery('body:"a b c d e"~2'))).toEqual(MATCH_NONE);
    // A repeated word adds nothing under FTS5 NEAR: k counts distinct words.
    expect(near('body:"a b a"~1')).toContain('"slop":1');
  });

  it('CJK words are exact phrases of their characters; a CJK prefix ends in span_multi', () => {
    expect(compileQuery(parseQuery('subject:契約'))).toEqual({ match_phrase: { subject_t: { query: '契 約', slop: 0 } } });
    expect(near('subject:契約ab*')).toContain('span_multi');
    expect(compileQuery({ type: 'term', field: 'subject', value: 'ab', prefix: true })).toEqual({ prefix: { subject_t: { value: 'ab' } } });
  });

  it('scope: null is unrestricted, empty sees nothing, values normalised', () => {
    expect(scopeFilter(null)).toBeUndefined();
    expect(scopeFilter({ addresses: [], domains: [] })).toEqual(MATCH_NONE);
    expect(scopeFilter({ addresses: [' '], domains: ['.'] })).toEqual(MATCH_NONE);
    expect(scopeFilter({ addresses: ['A@X.com'], domains: ['@Example.COM.'] })).toEqual({
      bool: { should: [{ terms: { participant_a: ['a@x.com'] } }, { terms: { participant_d: ['example.com'] } }], minimum_should_match: 1 },
    });
  });
});

// ---------------------------------------------------------------- against OpenSearch

/** A TCP port on which nothing listens. */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

type RequestParams = { method: string; path: string; querystring?: Record<string, unknown>; body?: unknown; bulkBody?: unknown };
type RequestFn = (params: RequestParams, options?: unknown, cb?: unknown) => unknown;
type ApiResult = { body: unknown; statusCode: number | null; headers: unknown; meta: unknown; warnings: unknown };

/**
 * Intercepts the client's `_bulk` requests (promise style, as the adapter makes
 * them): `handler` sees each and decides to pass it on (`send()`), change the
 * answer, or throw instead.
 */
function interceptBulk(client: Client, handler: (n: number, params: RequestParams, send: () => Promise<ApiResult>) => Promise<ApiResult>): void {
  const transport = client.transport as unknown as { request: RequestFn };
  const orig = transport.request.bind(transport);
  let n = 0;
  transport.request = (params, options, cb) => {
    if (cb !== undefined || !params.path.endsWith('/_bulk')) return orig(params, options, cb);
    return handler(++n, params, () => Promise.resolve(orig(params, options) as Promise<ApiResult>));
  };
}

function tooManyRequests(): InstanceType<typeof osErrors.ResponseError> {
  return new osErrors.ResponseError({
    body: { error: { type: 'es_rejected_execution_exception', reason: 'rejected execution (queue capacity 1)' }, status: 429 },
    statusCode: 429,
    headers: {},
    warnings: null,
    meta: {} as never,
  });
}

if (!url) {
  const msgText =
    'ARCHIVE_TEST_OPENSEARCH_URL is not set: the OpenSearch message index tests did NOT run. ' +
    'Start a node with `bash infra/opensearch.sh start` and export ARCHIVE_TEST_OPENSEARCH_URL=http://127.0.0.1:9200';
  if (process.env.CI === 'true') {
    describe('OpenSearchMessageIndex', () => {
      it('needs OpenSearch in CI', () => {
        throw new Error(msgText);
      });
    });
  } else {
    console.warn(`\n${'!'.repeat(100)}\n!! SKIPPED: ${msgText}\n${'!'.repeat(100)}\n`);
    describe.skip('OpenSearchMessageIndex (no ARCHIVE_TEST_OPENSEARCH_URL)', () => {
      it('skipped', () => undefined);
    });
  }
} else {
  const admin = new Client({ node: url });
  const indexes: OpenSearchMessageIndex[] = [];

  function newClient(): Client {
    return new Client({ node: url });
  }

  function makeIndex(over: Partial<OpenSearchMessageIndexOptions> = {}): OpenSearchMessageIndex {
    const ix = new OpenSearchMessageIndex({ client: newClient(), indexPrefix: nextPrefix(), log: silent, retry: { baseDelayMs: 5, maxDelayMs: 50 }, ...over });
    indexes.push(ix);
    return ix;
  }

  async function aliasTargets(alias: string): Promise<string[]> {
    const r = await admin.indices.getAlias({ name: alias });
    return Object.keys(r.body as object).sort();
  }

  async function concreteIndices(pattern: string): Promise<string[]> {
    const r = await admin.indices.get({ index: pattern });
    return Object.keys(r.body as object).sort();
  }

  afterAll(async () => {
    for (const ix of indexes) await ix.close().catch(() => undefined);
    await admin.indices.delete({ index: `${runId}-*`, expand_wildcards: 'all' }).catch(() => undefined);
    const t = await admin.indices.getIndexTemplate({ name: `${runId}-*` }).catch(() => undefined);
    for (const it of (t?.body.index_templates ?? []) as { name: string }[]) await admin.indices.deleteIndexTemplate({ name: it.name }).catch(() => undefined);
    await admin.close();
  });

  describe('OpenSearchMessageIndex: init', () => {
    it('creates template, versioned index and alias; a second init changes nothing', async () => {
      const { log, lines } = recordingLogger();
      const ix = makeIndex({ log });
      await ix.init();
      const targets = await aliasTargets(ix.alias);
      expect(targets).toHaveLength(1);
      expect(targets[0]).toMatch(new RegExp(`^${ix.alias}-v${MAPPING_VERSION}-\\d{17}$`));
      const info = lines.filter((l) => l.level >= 30).map((l) => l.msg);
      expect(info).toEqual(['created index template', 'created message deletion records index', 'created message index']);

      const mapping = (await admin.indices.getMapping({ index: targets[0] })).body as Record<string, { mappings: { dynamic: string; _meta: { mappingVersion: number } } }>;
      expect(mapping[targets[0]].mappings.dynamic).toBe('strict');
      expect(mapping[targets[0]].mappings._meta.mappingVersion).toBe(MAPPING_VERSION);
      const settings = (await admin.indices.getSettings({ index: targets[0] })).body as Record<string, { settings: { index: { number_of_shards: string } } }>;
      expect(settings[targets[0]].settings.index.number_of_shards).toBe('1');

      lines.length = 0;
      await ix.init();
      await ix.init();
      expect(lines.filter((l) => l.level >= 30)).toEqual([]);
      expect(await aliasTargets(ix.alias)).toEqual(targets);
      expect((await ix.health()).ok).toBe(true);
    });

    it('nodes starting at once end with one index behind the alias', async () => {
      const first = makeIndex();
      const prefix = first.alias.replace(/-messages$/, '');
      const others = [1, 2, 3, 4, 5].map(() => makeIndex({ indexPrefix: prefix }));
      await Promise.all([first, ...others].map((ix) => ix.init()));
      expect(await aliasTargets(first.alias)).toHaveLength(1);
      expect(await concreteIndices(first.indexPattern)).toHaveLength(1);
    });

    it('an older index gets added fields with put_mapping, and says so', async () => {
      const ix = makeIndex();
      const old = `${ix.alias}-v0-20200101000000000`;
      const props = { ...MAPPING_PROPERTIES };
      delete props.facet_domain;
      const body = indexBody();
      await admin.indices.create({
        index: old,
        body: { settings: body.settings, mappings: { ...body.mappings, _meta: { mappingVersion: 0 }, properties: props }, aliases: { [ix.alias]: {} } } as never,
      });
      const { log, lines } = recordingLogger();
      const ix2 = makeIndex({ indexPrefix: ix.alias.replace(/-messages$/, ''), log });
      await ix2.init();
      const changed = lines.find((l) => l.msg.startsWith('message index mapping updated'));
      expect(changed?.obj).toMatchObject({ index: old, from: 0, to: MAPPING_VERSION, added: ['facet_domain'] });
      const mapping = (await admin.indices.getMapping({ index: old })).body as Record<string, { mappings: { _meta: { mappingVersion: number }; properties: Record<string, unknown> } }>;
      expect(mapping[old].mappings.properties.facet_domain).toEqual({ type: 'keyword' });
      expect(mapping[old].mappings._meta.mappingVersion).toBe(MAPPING_VERSION);
      expect(await aliasTargets(ix.alias)).toEqual([old]);
    });

    it('a v1 index (no receivedAt) gets the field in place; its older documents count as undated in ingest statistics until reindex', async () => {
      const ix = makeIndex();
      const old = `${ix.alias}-v1-20200101000000000`;
      const props = { ...MAPPING_PROPERTIES };
      delete props.receivedAt;
      const body = indexBody();
      await admin.indices.create({
        index: old,
        body: { settings: body.settings, mappings: { ...body.mappings, _meta: { mappingVersion: 1 }, properties: props }, aliases: { [ix.alias]: {} } } as never,
      });
      // A document as a v1 node wrote it.
      const legacy = msg({ id: H(0x71), receivedAt: Date.parse('2024-03-01T10:00:00Z'), size: 50 });
      const { receivedAt: _dropped, ...v1doc } = toIndexDocument(legacy, 0);
      await admin.index({ index: old, id: legacy.id, body: v1doc as never, refresh: true });
      const { log, lines } = recordingLogger();
      const ix2 = makeIndex({ indexPrefix: ix.alias.replace(/-messages$/, ''), log });
      await ix2.init();
      expect(lines.find((l) => l.msg.startsWith('message index mapping updated'))?.obj).toMatchObject({ index: old, from: 1, to: MAPPING_VERSION, added: ['receivedAt'] });
      await ix2.upsert([msg({ id: H(0x72), receivedAt: Date.parse('2024-03-01T11:00:00Z'), size: 70 })]);
      await ix2.refresh();
      const h = await ix2.ingestHistogram({ interval: 'day', from: Date.parse('2024-03-01T00:00:00Z'), to: Date.parse('2024-03-02T00:00:00Z') });
      expect(h.buckets).toEqual([{ start: Date.parse('2024-03-01T00:00:00Z'), messages: 1, bytes: 70 }]);
      expect(h.undated).toBe(1);
    });

    it('an incompatible older index is left alone, with a warning and health saying to reindex', async () => {
      const ix = makeIndex();
      const old = `${ix.alias}-v0-20200101000000000`;
      const body = indexBody();
      await admin.indices.create({
        index: old,
        body: {
          settings: body.settings,
          mappings: { ...body.mappings, _meta: { mappingVersion: 0 }, properties: { ...MAPPING_PROPERTIES, year: { type: 'keyword' } } },
          aliases: { [ix.alias]: {} },
        } as never,
      });
      const { log, lines } = recordingLogger();
      const ix2 = makeIndex({ indexPrefix: ix.alias.replace(/-messages$/, ''), log });
      await ix2.init();
      expect(lines.find((l) => l.level === 40 && /reindex/.test(l.msg))?.obj).toMatchObject({ changed: ['year'] });
      expect((await ix2.health()).detail).toMatch(/archive reindex/);
    });

    it('refuses a concrete index squatting on the alias name', async () => {
      const ix = makeIndex();
      await admin.indices.create({ index: ix.alias });
      await expect(ix.init()).rejects.toThrow(/expects an alias/);
    });
  });

  describe('OpenSearchMessageIndex: writes', () => {
    it('chunks big batches (docs and bytes) and never waits for a refresh', async () => {
      const ix = makeIndex({ bulkMaxDocs: 3, bulkMaxBytes: 64 * 1024 });
      await ix.init();
      const seen: { docs: number; refresh: unknown; bytes: number }[] = [];
      interceptBulk(ix.openSearchClient, async (_n, params, send) => {
        const body = String(params.bulkBody);
        seen.push({ docs: body.split('\n').filter(Boolean).length / 2, refresh: params.querystring?.refresh, bytes: Buffer.byteLength(body) });
        return send();
      });
      const docs = Array.from({ length: 10 }, (_, i) => msg({ id: H(i + 1), body: i === 4 ? 'big '.repeat(40_000) : `doc ${i}` }));
      await ix.upsert(docs);
      await ix.refresh();
      expect(seen.map((s) => s.docs)).toEqual([3, 1, 1, 3, 2]);
      expect(seen.map((s) => s.refresh)).toEqual([false, false, false, false, false]);
      // Visible at once, without an explicit refresh.
      expect(await ix.count()).toBe(10);
      expect((await ix.search({ query: parseQuery('doc'), sort: 'date', order: 'asc', size: 50 })).total).toBe(9);
    });

    it('retries a bulk request rejected with 429, with backoff', async () => {
      const ix = makeIndex();
      await ix.init();
      const times: number[] = [];
      interceptBulk(ix.openSearchClient, async (n, _p, send) => {
        times.push(Date.now());
        if (n <= 2) throw tooManyRequests();
        return send();
      });
      await ix.upsert([msg({ id: H(1) }), msg({ id: H(2) })]);
      await ix.refresh();
      expect(times).toHaveLength(3);
      expect(await ix.existing([H(1), H(2), H(3)])).toEqual(new Set([H(1), H(2)]));
    });

    it('re-sends only the items rejected with 429', async () => {
      const ix = makeIndex();
      await ix.init();
      const sentIds: string[][] = [];
      interceptBulk(ix.openSearchClient, async (n, params, send) => {
        const lines = String(params.bulkBody).split('\n').filter(Boolean);
        // New documents go as `create` (conditional on none being stored), replacements as `index`.
        sentIds.push(lines.filter((_, i) => i % 2 === 0).map((l) => Object.values(JSON.parse(l) as Record<string, { _id: string }>)[0]._id));
        const res = await send();
        if (n === 1) {
          // Items 2 and 4 "rejected": OpenSearch did not index them.
          const body = res.body as { errors: boolean; items: Record<string, { _id: string; status: number; error?: unknown }>[] };
          body.errors = true;
          for (const i of [1, 3]) {
            const [action, item] = Object.entries(body.items[i])[0];
            body.items[i] = { [action]: { _id: item._id, status: 429, error: { type: 'es_rejected_execution_exception', reason: 'queue full' } } };
          }
        }
        return res;
      });
      await ix.upsert([1, 2, 3, 4, 5].map((i) => msg({ id: H(i) })));
      await ix.refresh();
      expect(sentIds.slice(0, 2)).toEqual([[1, 2, 3, 4, 5].map(H), [H(2), H(4)]]);
      // The faked rejections were in truth indexed, so the re-sent `create`s conflict, and a third round,
      // having read them back, replaces them conditionally: still only those two.
      expect(sentIds.slice(2)).toEqual([[H(2), H(4)]]);
      expect(await ix.count()).toBe(5);
    });

    it('gives up with ServiceUnavailableError when 429s persist', async () => {
      const ix = makeIndex({ retry: { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 2 } });
      await ix.init();
      let calls = 0;
      interceptBulk(ix.openSearchClient, async () => {
        calls++;
        throw tooManyRequests();
      });
      await expect(ix.upsert([msg({ id: H(1) })])).rejects.toBeInstanceOf(ServiceUnavailableError);
      expect(calls).toBe(3);
    });

    it('many parallel upserts all land (real backpressure path)', async () => {
      const ix = makeIndex();
      await ix.init();
      await Promise.all(Array.from({ length: 20 }, (_, b) => ix.upsert(Array.from({ length: 50 }, (_, i) => msg({ id: H(b * 1000 + i + 1), body: `batch ${b}` })))));
      await ix.refresh();
      expect(await ix.count()).toBe(1000);
    });

    it('OpenSearch down: ServiceUnavailableError, and health says not ok', async () => {
      const port = await closedPort();
      const ix = makeIndex({ client: new Client({ node: `http://127.0.0.1:${port}`, maxRetries: 0 }) });
      await expect(ix.init()).rejects.toBeInstanceOf(ServiceUnavailableError);
      await expect(ix.upsert([msg({ id: H(1) })])).rejects.toBeInstanceOf(ServiceUnavailableError);
      await expect(ix.search({ query: { type: 'all' }, sort: 'date', order: 'asc', size: 1 })).rejects.toBeInstanceOf(ServiceUnavailableError);
      const h = await ix.health();
      expect(h.ok).toBe(false);
      expect(h.driver).toBe('opensearch');
    });

    it('delete ignores absent ids; upsert replaces by id', async () => {
      const ix = makeIndex();
      await ix.init();
      await ix.upsert([msg({ id: H(1), subject: 'first' }), msg({ id: H(2) })]);
      await ix.refresh();
      await ix.upsert([msg({ id: H(1), subject: 'second' })]);
      await ix.refresh();
      expect((await ix.get(H(1)))?.subject).toBe('second');
      await ix.delete([H(2), H(99)]);
      expect(await ix.count()).toBe(1);
      expect(await ix.get(H(2))).toBeUndefined();
    });
  });

  describe('OpenSearchMessageIndex: search details', () => {
    it('totals and facets are over the whole match set on every page', async () => {
      const ix = makeIndex();
      await ix.init();
      const docs = Array.from({ length: 25 }, (_, i) =>
        msg({ id: H(i + 1), date: T0 + (i % 5) * 400 * DAY, from: [{ address: `s${i % 3}@example.com` }], to: [{ address: `r@d${i % 4}.example` }] }),
      );
      await ix.upsert(docs);
      await ix.refresh();
      const req = { query: { type: 'all' } as QueryNode, sort: 'date' as const, order: 'desc' as const, size: 10, facets: true };
      const p1 = await ix.search(req);
      const p2 = await ix.search({ ...req, cursor: p1.nextCursor });
      const p3 = await ix.search({ ...req, cursor: p2.nextCursor });
      expect([p1.total, p2.total, p3.total]).toEqual([25, 25, 25]);
      expect(p2.facets).toEqual(p1.facets);
      expect(p3.facets).toEqual(p1.facets);
      expect(p3.nextCursor).toBeUndefined();
      expect(p1.facets?.senders).toEqual([
        { value: 's0@example.com', count: 9 },
        { value: 's1@example.com', count: 8 },
        { value: 's2@example.com', count: 8 },
      ]);
      expect(p1.facets?.years.map((y) => y.value)).toEqual(['2021', '2022', '2023', '2024', '2025'].sort());
      const ids = [...p1.hits, ...p2.hits, ...p3.hits].map((h) => h.id);
      const expected = [...docs].sort((a, b) => b.date - a.date || (a.id < b.id ? 1 : -1)).map((d) => d.id);
      expect(ids).toEqual(expected);
      await expect(ix.search({ ...req, cursor: 'garbage' })).rejects.toThrow(/cursor/);
      await expect(ix.search({ ...req, order: 'asc', cursor: p1.nextCursor })).rejects.toThrow(/cursor/);
    });

    it('a phrase never spans two people of an address field', async () => {
      const ix = makeIndex();
      await ix.init();
      await ix.upsert([
        msg({ id: H(1), to: [{ address: 'x@a.com', name: 'Jane Alice' }, { address: 'y@b.com', name: 'Smith Jones' }] }),
        msg({ id: H(2), to: [{ address: 'z@c.com', name: 'Alice Smith' }] }),
      ]);
      await ix.refresh();
      const ids = async (q: string) => (await ix.search({ query: parseQuery(q), sort: 'date', order: 'asc', size: 10 })).hits.map((h) => h.id);
      expect(await ids('to:"alice smith"')).toEqual([H(2)]);
      expect(await ids('to:"alice smith"~100')).toEqual([H(2)]);
      expect(await ids('to:"jane jones"~5')).toEqual([]);
      expect(await ids('to:"x jones"~100')).toEqual([]);
      // Words of different people still match together outside a phrase.
      expect(await ids('to:alice to:jones')).toEqual([H(1)]);
    });

    it('proximity matches SQLite FTS5 NEAR exactly, on random text (words and CJK words)', async () => {
      const ix = makeIndex();
      await ix.init();
      const db = new Database(':memory:');
      db.exec(`CREATE VIRTUAL TABLE t USING fts5(body_t, tokenize = 'ascii')`);
      // Few distinct tokens, so that words repeat and overlap; CJK characters make multi-token words.
      const vocab = ['a', 'b', 'c', '契', '約', '書'];
      let seed = 42;
      const rnd = (n: number) => {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        return seed % n;
      };
      const docs: IndexedMessage[] = [];
      const insert = db.prepare('INSERT INTO t(rowid, body_t) VALUES (?, ?)');
      for (let i = 1; i <= 300; i++) {
        const words = Array.from({ length: 1 + rnd(12) }, () => vocab[rnd(vocab.length)]);
        const body = words.join(' ');
        docs.push(msg({ id: H(i), body }));
        insert.run(i, analyzed(body));
      }
      await ix.upsert(docs);
      await ix.refresh();
      const cjk = ['契約', '約書', '書契', '契約書'];
      const queries: { q: string; fts: string }[] = [];
      for (let i = 0; i < 120; i++) {
        const k = 2 + rnd(3);
        const terms = Array.from({ length: k }, () => (rnd(3) === 0 ? cjk[rnd(cjk.length)] : ['a', 'b', 'c', '契'][rnd(4)]));
        const n = 1 + rnd(5);
        queries.push({
          q: `body:"${terms.join(' ')}"~${n}`,
          fts: `NEAR(${terms.map((t) => `"${analyzed(t)}"`).join(' ')}, ${n})`,
        });
      }
      const select = db.prepare('SELECT rowid FROM t WHERE t MATCH ? ORDER BY rowid');
      const mismatches: string[] = [];
      for (const { q, fts } of queries) {
        const want = (select.all(fts) as { rowid: number }[]).map((r) => H(r.rowid));
        const page = await ix.search({ query: parseQuery(q), sort: 'date', order: 'asc', size: 500 });
        const got = page.hits.map((h) => h.id).sort();
        if (JSON.stringify(got) !== JSON.stringify(want)) mismatches.push(`${q}: fts5 ${want.length}, opensearch ${got.length}`);
      }
      db.close();
      expect(mismatches).toEqual([]);
    }, 120_000);
  });

  describe('OpenSearch and SQLite agree on real mail', () => {
    let os_: OpenSearchMessageIndex;
    let sqlite: SqliteMessageIndex;
    let dir: string;
    const docs: IndexedMessage[] = [];

    /** mulberry32: a small seeded PRNG, so the generated queries are the same on every run. */
    function prng(seed: number): (n: number) => number {
      let a = seed >>> 0;
      return (n: number) => {
        a = (a + 0x6d2b79f5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
      };
    }

    beforeAll(async () => {
      // The SpamAssassin corpus (real mail, written by others), parsed by the ingest parser, with a
      // journal-like envelope: To recipients, a Bcc-only recipient on some, an envelope sender.
      const seen = new Set<string>();
      const raws = await loadSpamAssassin();
      for (const raw0 of raws) {
        const raw = asSmtpMessage(raw0);
        const id = sha256(raw);
        if (seen.has(id)) continue;
        seen.add(id);
        const parsed = await parseMessage(Readable.from([raw]));
        const n = seen.size;
        const env: Envelope = {
          id: `20240101T000000000Z-${id.slice(0, 8)}`,
          sha256: id,
          source: 'import',
          receivedAt: new Date(Date.UTC(2024, 0, 1) + n * 1000).toISOString(),
          recipients: [
            ...parsed.to.filter((p) => p.address).map((p) => ({ address: p.address, kind: 'to' as const })),
            ...(n % 7 === 0 ? [{ address: `hidden${n % 3}@partner.net`, kind: 'bcc' as const }] : []),
            ...(n % 11 === 0 ? [{ address: `member${n % 5}@example.com`, kind: 'recipient' as const, expandedFrom: 'all@example.com' }] : []),
          ],
          flags: [],
          smtp: { peer: '127.0.0.1', mailFrom: n % 2 ? `bounce${n % 13}@lists.example.org` : '', rcptTo: [] },
        };
        docs.push(buildIndexedMessage(id, raw.length, parsed, [env]));
      }
      dir = await mkdtemp(path.join(os.tmpdir(), 'archive-os-vs-sqlite-'));
      sqlite = new SqliteMessageIndex(path.join(dir, 'catalog.sqlite'), silent);
      await sqlite.init();
      os_ = makeIndex();
      await os_.init();
      for (let i = 0; i < docs.length; i += 1000) {
        await sqlite.upsert(docs.slice(i, i + 1000));
        await os_.upsert(docs.slice(i, i + 1000));
        await os_.refresh();
      }
    }, 600_000);

    afterAll(async () => {
      await sqlite?.close();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    function sha256(b: Buffer): string {
      return createHash('sha256').update(b).digest('hex');
    }

    /** Queries drawn from the documents themselves: words, prefixes, phrases, proximity, addresses, domains, ids, dates, sizes, and mixes. */
    function queries(): string[] {
      const r = prng(20240229);
      const pick = <T,>(xs: T[]): T => xs[r(xs.length)];
      const tokensOf = (d: IndexedMessage) => analyzed(`${d.subject} ${d.body}`).split(' ').filter(Boolean);
      const withText = docs.filter((d) => tokensOf(d).length > 5);
      const out: string[] = [];
      for (let i = 0; i < 60; i++) out.push(pick(['', 'subject:', 'body:'])  + pick(tokensOf(pick(withText))));
      for (let i = 0; i < 30; i++) {
        const t = pick(tokensOf(pick(withText)));
        if ([...t].length >= 3) out.push(`${t.slice(0, 2 + r(Math.max(1, t.length - 2)))}*`);
      }
      for (let i = 0; i < 60; i++) {
        const toks = tokensOf(pick(withText));
        const k = 2 + r(2);
        const at = r(Math.max(1, toks.length - 8));
        const window = toks.slice(at, at + 8);
        if (i % 3 === 0) out.push(`"${window.slice(0, k).join(' ')}"`);
        else {
          const chosen = Array.from({ length: k }, () => pick(window));
          out.push(`${pick(['', 'body:'])}"${chosen.join(' ')}"~${1 + r(8)}`);
        }
      }
      const people = docs.flatMap((d) => [...d.from, ...d.to, ...d.cc]).filter((p) => /^[^\s()"<>*]+@[^\s()"<>*]+$/.test(p.address));
      for (let i = 0; i < 20; i++) out.push(`${pick(['from', 'to', 'participant'])}:${pick(people).address}`);
      for (let i = 0; i < 15; i++) {
        const a = pick(people).address;
        out.push(`${pick(['from', 'to', 'participant'])}:${a.slice(0, a.indexOf('@') + 2)}*`);
      }
      for (let i = 0; i < 30; i++) {
        const labels = pick(people).address.split('@')[1].split('.');
        const parent = labels.slice(r(Math.max(1, labels.length - 1))).join('.');
        out.push(`${pick(['domain:', 'from:@', 'to:@', 'cc:@'])}${parent}`);
      }
      const named = docs.flatMap((d) => [...d.from, ...d.to]).filter((p) => p.name && analyzed(p.name).split(' ').length >= 2);
      for (let i = 0; i < 20; i++) {
        const words = analyzed(pick(named).name ?? '').split(' ');
        out.push(i % 2 ? `${pick(['from', 'to', 'participant'])}:${pick(words)}` : `from:"${words.slice(0, 2).join(' ')}"${i % 4 === 0 ? '~1' : ''}`);
      }
      out.push('bcc:@partner.net', 'bcc:hidden1@partner.net', 'to:all@example.com', 'participant:all@example.com', 'participant:@lists.example.org', 'has:attachment', '-has:attachment');
      for (let i = 0; i < 10; i++) {
        const m = pick(docs).messageId;
        if (m && !/[\s"()]/.test(m)) out.push(`messageid:<${m}>`);
      }
      for (let y = 1997; y <= 2003; y++) out.push(`date:${y}`, `before:${y}-06-15`, `date:${y}-0${1 + r(9)}`);
      out.push('size:<2KB', 'size:2KB..5KB', 'size:>20KB', 'size:>=1MB');
      const simple = out.slice();
      for (let i = 0; i < 40; i++) {
        const a = pick(simple);
        const b = pick(simple);
        out.push(pick([`${a} ${b}`, `${a} OR ${b}`, `${a} -${b}`, `(${a} OR ${b}) -has:attachment`, `-(${a})`]));
      }
      return out;
    }

    function summary(p: SearchPage): unknown {
      return { total: p.total, ids: p.hits.map((h) => h.id), facets: p.facets, more: p.nextCursor !== undefined };
    }

    it('indexed the same documents', async () => {
      expect(docs.length).toBeGreaterThan(5000);
      expect(await os_.count()).toBe(docs.length);
      expect(await sqlite.count()).toBe(docs.length);
    });

    it('the same ids, order, totals and facets for ~350 generated queries, both orders, with and without a scope', async () => {
      const scopes = [null, { addresses: ['hidden1@partner.net', 'member2@example.com'], domains: ['spamassassin.taint.org', 'example.com'] }];
      const mismatches: string[] = [];
      let checked = 0;
      let nonEmpty = 0;
      for (const q of queries()) {
        let query: QueryNode;
        try {
          query = parseQuery(q);
        } catch {
          continue;
        }
        for (const scope of scopes) {
          for (const order of ['desc', 'asc'] as const) {
            const req = { query, scope, sort: 'date' as const, order, size: 200, facets: order === 'desc' };
            const [a, b] = await Promise.all([sqlite.search(req), os_.search(req)]);
            checked++;
            if (a.total > 0) nonEmpty++;
            if (JSON.stringify(summary(a)) !== JSON.stringify(summary(b))) mismatches.push(`${q} [${order}${scope ? ', scoped' : ''}]: sqlite ${a.total}, opensearch ${b.total}`);
          }
        }
      }
      expect(mismatches).toEqual([]);
      expect(checked).toBeGreaterThan(1000);
      expect(nonEmpty).toBeGreaterThan(checked / 2);
    }, 600_000);

    it('paging deep through everything gives the same sequence', async () => {
      const walk = async (ix: MessageIndex) => {
        const ids: string[] = [];
        let cursor: string | undefined;
        do {
          const p = await ix.search({ query: { type: 'all' }, sort: 'date', order: 'desc', size: 500, ...(cursor ? { cursor } : {}) });
          ids.push(...p.hits.map((h) => h.id));
          cursor = p.nextCursor;
        } while (cursor);
        return ids;
      };
      const [a, b] = await Promise.all([walk(sqlite), walk(os_)]);
      expect(a).toHaveLength(docs.length);
      expect(b).toEqual(a);
    }, 120_000);
  });

  describe('OpenSearchMessageIndex: rebuild', () => {
    it('builds beside the live index, swaps the alias on commit, and drops the old one', async () => {
      const ix = makeIndex();
      await ix.init();
      const [live] = await aliasTargets(ix.alias);
      await ix.upsert([msg({ id: H(1) }), msg({ id: H(2) }), msg({ id: H(3) })]);
      await ix.refresh();
      const rebuild = await ix.beginRebuild();
      await rebuild.upsert([msg({ id: H(1), subject: 'rebuilt' }), msg({ id: H(2), subject: 'rebuilt' })]);
      // Meanwhile searches (and another node's writes) still use the live index.
      expect(await ix.count()).toBe(3);
      expect((await ix.get(H(1)))?.subject).toBe('hello');
      await ix.upsert([msg({ id: H(4), subject: 'new mail during the rebuild' })]);
      await ix.refresh();
      const [, building] = await concreteIndices(ix.indexPattern);
      expect(building).toBeDefined();
      expect(await aliasTargets(ix.alias)).toEqual([live]);

      await rebuild.commit();
      const [now] = await aliasTargets(ix.alias);
      expect(now).toBe(building);
      expect(await concreteIndices(ix.indexPattern)).toEqual([building]);
      // H(3) was not rebuilt (gone from the store): gone; H(4) arrived during the rebuild: carried over.
      expect([...(await ix.existing([H(1), H(2), H(3), H(4)]))].sort()).toEqual([H(1), H(2), H(4)]);
      expect((await ix.get(H(1)))?.subject).toBe('rebuilt');
      expect((await ix.search({ query: parseQuery('subject:rebuilt'), sort: 'date', order: 'asc', size: 10 })).total).toBe(2);
      await expect(rebuild.commit()).rejects.toThrow(/already been committed/);
    });

    it('deletions made while a rebuild runs are not revived by its commit; a message indexed again after deletion stays', async () => {
      const ix = makeIndex();
      await ix.init();
      await ix.upsert([msg({ id: H(1) }), msg({ id: H(2) }), msg({ id: H(3) })]);
      await ix.refresh();
      const rebuild = await ix.beginRebuild();
      // The rebuild read all three from the store before another node disposed of H(1) and H(3) ...
      await rebuild.upsert([msg({ id: H(1) }), msg({ id: H(2) }), msg({ id: H(3) })]);
      await ix.delete([H(1), H(3)]);
      // ... and H(3) came back (a restore) before the commit.
      await ix.upsert([msg({ id: H(3), subject: 'restored' })]);
      await ix.refresh();
      await rebuild.commit();
      expect([...(await ix.existing([H(1), H(2), H(3)]))].sort()).toEqual([H(2), H(3)]);
      expect((await ix.get(H(3)))?.subject).toBe('restored');
      expect(await ix.count()).toBe(2);
    });

    it('a second rebuild supersedes an unfinished one, whose writes and commit then fail', async () => {
      const a = makeIndex();
      await a.init();
      const b = makeIndex({ indexPrefix: a.alias.replace(/-messages$/, '') });
      await b.init();
      await a.upsert([msg({ id: H(1) })]);
      await a.refresh();
      const first = await a.beginRebuild();
      await first.upsert([msg({ id: H(2) })]);
      const second = await b.beginRebuild();
      await second.upsert([msg({ id: H(3) })]);
      await expect(first.commit()).rejects.toBeInstanceOf(ServiceUnavailableError);
      await expect(first.upsert([msg({ id: H(2) })])).rejects.toThrow(/replaced|already/);
      expect(await a.count()).toBe(1);
      await second.commit();
      expect([...(await a.existing([H(1), H(2), H(3)]))]).toEqual([H(3)]);
      expect(await concreteIndices(a.indexPattern)).toHaveLength(1);
      // Nothing was auto-created by the superseded rebuild's writes.
      expect((await admin.indices.get({ index: `${a.alias}*` })).body).not.toHaveProperty(a.alias);
    });

    it('abort drops the new index and leaves the live one untouched', async () => {
      const ix = makeIndex();
      await ix.init();
      const [live] = await aliasTargets(ix.alias);
      await ix.upsert([msg({ id: H(1) })]);
      await ix.refresh();
      const rebuild = await ix.beginRebuild();
      await rebuild.upsert([msg({ id: H(2) })]);
      expect(await concreteIndices(ix.indexPattern)).toHaveLength(2);
      await rebuild.abort();
      expect(await concreteIndices(ix.indexPattern)).toEqual([live]);
      expect(await aliasTargets(ix.alias)).toEqual([live]);
      expect([...(await ix.existing([H(1), H(2)]))]).toEqual([H(1)]);
    });
  });

  describe('OpenSearchCatalogStore: optimistic concurrency', () => {
    function store(waitForRefresh = true): OpenSearchCatalogStore {
      return new OpenSearchCatalogStore({ client: admin, indexPrefix: nextPrefix(), log: silent, waitForRefresh });
    }

    it('detects a concurrent update: the second writer of one version gets CatalogConflictError', async () => {
      const s = store();
      const v1 = await s.put('holds', 'h1', { name: 'Case 1', custodians: ['a@x.com'] }, 'absent');
      const readByA = await s.get<{ name: string; custodians: string[] }>('holds', 'h1');
      const readByB = await s.get<{ name: string; custodians: string[] }>('holds', 'h1');
      expect(readByA?.version).toEqual(v1);
      const v2 = await s.put('holds', 'h1', { ...readByA!.doc, custodians: [...readByA!.doc.custodians, 'b@x.com'] }, readByA!.version);
      expect(v2.seqNo).toBeGreaterThan(v1.seqNo);
      const lost = s.put('holds', 'h1', { ...readByB!.doc, name: 'Renamed' }, readByB!.version);
      await expect(lost).rejects.toBeInstanceOf(CatalogConflictError);
      await expect(lost).rejects.toMatchObject({ code: 'conflict', status: 409 });
      expect((await s.get<{ custodians: string[] }>('holds', 'h1'))?.doc.custodians).toEqual(['a@x.com', 'b@x.com']);
      // Create-only and version-checked delete conflict too.
      await expect(s.put('holds', 'h1', {}, 'absent')).rejects.toBeInstanceOf(CatalogConflictError);
      await expect(s.delete('holds', 'h1', v1)).rejects.toBeInstanceOf(CatalogConflictError);
      expect(await s.delete('holds', 'h1', v2)).toBe(true);
      expect(await s.get('holds', 'h1')).toBeUndefined();
      expect(await s.delete('holds', 'h1')).toBe(false);
    });

    it('parallel read-modify-write loops lose no update', async () => {
      // No wait for refresh: get() is real-time, and 20 writers × retries would each wait up to 1 s.
      const s = store(false);
      await s.put('counters', 'c', { n: 0 });
      let conflicts = 0;
      const increment = async () => {
        for (;;) {
          const cur = (await s.get<{ n: number }>('counters', 'c'))!;
          try {
            await s.put('counters', 'c', { n: cur.doc.n + 1 }, cur.version);
            return;
          } catch (err) {
            if (!(err instanceof CatalogConflictError)) throw err;
            conflicts++;
          }
        }
      };
      await Promise.all(Array.from({ length: 20 }, increment));
      expect((await s.get<{ n: number }>('counters', 'c'))?.doc.n).toBe(20);
      expect(conflicts).toBeGreaterThan(0);
      await admin.indices.refresh({ index: s.indexOf('counters') });
      const all = [];
      for await (const r of s.list('counters')) all.push(r.id);
      expect(all).toEqual(['c']);
    });
  });
}
