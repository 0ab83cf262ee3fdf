/**
 * The search and message API over HTTP, on a fixture set delivered through
 * the real SMTP port (journal reports included), with exact expected results.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendRaw } from './helpers/smtp-client.js';
import { startInProcess } from './helpers/archive-process.js';
import { MODES, waitForIndexed } from './helpers/modes.js';
import type { RunningArchive } from '../src/main.js';
import { makeUser, type TestUser } from './helpers/auth.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface Fixture {
  key: string;
  raw: Buffer;
  /** Delivered inside an Exchange journal report with these recipient lines. */
  journal?: string[];
  rcpt?: string[];
}

function mail(headers: Record<string, string>, body: string): Buffer {
  const h = Object.entries(headers).map(([k, v]) => `${k}: ${v}`);
  return Buffer.from([...h, 'MIME-Version: 1.0', ...(headers['Content-Type'] ? [] : ['Content-Type: text/plain; charset=utf-8']), 'Content-Transfer-Encoding: 8bit', '', body, ''].join('\r\n'));
}

function report(original: Buffer, lines: string[], n: number): Buffer {
  const b = `JR-${n}`;
  return Buffer.concat([
    Buffer.from(
      [
        'From: journal@corp.example',
        'To: archive@archive.example',
        `Message-ID: <report-${n}@corp.example>`,
        'X-MS-Journal-Report:',
        `Content-Type: multipart/mixed; boundary="${b}"`,
        '',
        `--${b}`,
        'Content-Type: text/plain',
        '',
        ...lines,
        '',
        `--${b}`,
        'Content-Type: message/rfc822',
        '',
        '',
      ].join('\r\n'),
    ),
    original,
    Buffer.from(`\r\n--${b}--\r\n`),
  ]);
}

const F: Fixture[] = [
  {
    key: 'budget',
    raw: mail({ From: 'Alice Müller <alice@corp.example>', To: 'bob@corp.example', Subject: 'Budget approval for Q3', Date: 'Mon, 01 Jan 2024 09:00:00 +0000', 'Message-ID': '<budget-1@corp.example>' }, 'We need budget approval before Friday. The contract draft is attached later.'),
    journal: ['Sender: alice@corp.example', 'Subject: Budget approval for Q3', 'Message-Id: <budget-1@corp.example>', 'To: bob@corp.example', 'Bcc: secret.carol@corp.example'],
  },
  {
    key: 'reply',
    raw: mail({ From: 'bob@corp.example', To: 'Alice Müller <alice@corp.example>', Subject: 'Re: Budget approval for Q3', Date: 'Tue, 02 Jan 2024 10:00:00 +0000', 'Message-ID': '<budget-2@corp.example>', 'In-Reply-To': '<budget-1@corp.example>', References: '<budget-1@corp.example>' }, 'Approval of the budget is granted. Contracts follow.'),
  },
  {
    key: 'list',
    raw: mail({ From: 'ceo@corp.example', To: 'all-staff@corp.example', Subject: 'Town hall', Date: 'Sun, 31 Dec 2023 23:59:59 +0000', 'Message-ID': '<townhall@corp.example>' }, 'Quarterly town hall on Friday. Café and cake.'),
    journal: ['Sender: ceo@corp.example', 'Subject: Town hall', 'Message-Id: <townhall@corp.example>', 'To: dave@corp.example, Expanded: all-staff@corp.example', 'To: erin@sub.corp.example, Expanded: all-staff@corp.example'],
  },
  {
    key: 'cjk',
    raw: mail({ From: 'li@partner.example.cn', To: 'alice@corp.example', Subject: '合同审批会议记录', Date: 'Thu, 29 Feb 2024 12:00:00 +0000', 'Message-ID': '<cjk@partner.example.cn>' }, '请查看附件中的合同。会议记录如下。'),
  },
  {
    key: 'external',
    raw: mail({ From: 'news@newsletter.example', To: 'alice@corp.example', Subject: 'Weekly digest', Date: 'Fri, 01 Mar 2024 00:00:00 +0000', 'Message-ID': '<digest@newsletter.example>' }, 'Budget tips and approval workflows for everyone.'),
    rcpt: ['alice@corp.example'],
  },
];

for (const { mode, enabled, env } of MODES) {
describe.runIf(enabled)(`search API (${mode})`, () => {
  let archive: RunningArchive & { dataDir: string };
  let base: string;
  let officer: TestUser;
  const ids: Record<string, string> = {};

  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const get = async (path: string): Promise<{ status: number; body: any }> => {
    const r = await officer.fetch(path);
    return { status: r.status, body: r.headers.get('content-type')?.includes('json') ? await r.json() : await r.arrayBuffer() };
  };
  const search = async (q: string, extra = '') => (await get(`/api/search?q=${encodeURIComponent(q)}${extra}`)).body;
  const keysOf = (body: { hits: { id: string }[] }) => body.hits.map((h) => Object.entries(ids).find(([, v]) => v === h.id)?.[0]);

  beforeAll(async () => {
    archive = await startInProcess(await env());
    base = `http://127.0.0.1:${archive.httpPort}`;
    officer = await makeUser(archive.services, base, { roles: ['officer'] });
    let n = 0;
    for (const f of F) {
      const payload = f.journal ? report(f.raw, f.journal, n++) : f.raw;
      const answer = await sendRaw(archive.smtpPort, { from: f.journal ? '' : 'mta@corp.example', to: f.rcpt ?? ['journal@archive.example'] }, payload);
      expect(answer.code).toBe(250);
      ids[f.key] = sha(f.raw);
    }
    await waitForIndexed(archive.services, Object.values(ids));
  });
  afterAll(async () => {
    await archive?.close();
  });

  it('finds a person who was only on Bcc of a journal report', async () => {
    expect(keysOf(await search('participant:secret.carol@corp.example'))).toEqual(['budget']);
    expect(keysOf(await search('bcc:secret.carol@corp.example'))).toEqual(['budget']);
    expect(keysOf(await search('to:secret.carol@corp.example'))).toEqual([]);
  });

  it('finds expanded distribution-list members and the list itself', async () => {
    expect(keysOf(await search('participant:dave@corp.example'))).toEqual(['list']);
    expect(keysOf(await search('to:erin@sub.corp.example'))).toEqual(['list']);
    expect(keysOf(await search('participant:all-staff@corp.example'))).toEqual(['list']);
    expect(keysOf(await search('domain:sub.corp.example'))).toEqual(['list']);
  });

  it('separates phrases from terms, and applies NOT, wildcards and proximity', async () => {
    expect(keysOf(await search('"budget approval"'))).toEqual(['reply', 'budget']);
    expect(keysOf(await search('budget approval'))).toEqual(['external', 'reply', 'budget']);
    expect(keysOf(await search('budget approval -from:news@newsletter.example'))).toEqual(['reply', 'budget']);
    expect(keysOf(await search('contract*'))).toEqual(['reply', 'budget']);
    expect(keysOf(await search('"approval budget"~2'))).toEqual(['external', 'reply', 'budget']);
    expect(keysOf(await search('"budget granted"~1'))).toEqual(['reply']);
    expect(keysOf(await search('"approval granted"~3'))).toEqual([]);
  });

  it('folds diacritics and finds CJK by substring', async () => {
    expect(keysOf(await search('from:muller'))).toEqual(['budget']);
    expect(keysOf(await search('cafe'))).toEqual(['list']);
    expect(keysOf(await search('审批'))).toEqual(['cjk']);
    expect(keysOf(await search('subject:会议'))).toEqual(['cjk']);
  });

  it('uses UTC date boundaries, inclusive as documented', async () => {
    expect(keysOf(await search('date:2023-12-31'))).toEqual(['list']);
    expect(keysOf(await search('date:2024-01-01..2024-02-29'))).toEqual(['cjk', 'reply', 'budget']);
    expect(keysOf(await search('before:2024-01-01'))).toEqual(['list']);
    expect(keysOf(await search('after:2024-03-01'))).toEqual(['external']);
  });

  it('answers a syntax error with 400, its position and reason', async () => {
    const r = await get(`/api/search?q=${encodeURIComponent('budget AND (approval')}`);
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe('query_syntax');
    expect(r.body.error.details.position).toBeTypeOf('number');
    expect(r.body.error.message).toMatch(/position \d+/);
  });

  it('returns hits with snippets and facets, and POST works like GET', async () => {
    const body = await search('budget');
    expect(body.total).toBe(3);
    const hit = body.hits.find((h: { id: string }) => h.id === ids.budget);
    expect(hit).toMatchObject({ id: ids.budget, messageId: 'budget-1@corp.example', subject: 'Budget approval for Q3', hasAttachments: false, date: '2024-01-01T09:00:00.000Z' });
    expect(hit.snippet).toContain('<mark>budget</mark>');
    expect(body.facets.years).toEqual([
      { value: '2024', count: 3 },
    ]);
    expect(body.facets.senders).toEqual([
      { value: 'alice@corp.example', count: 1 },
      { value: 'bob@corp.example', count: 1 },
      { value: 'news@newsletter.example', count: 1 },
    ]);
    const post = (await (await officer.fetch('/api/search', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ q: 'budget' }) })).json()) as { hits: { id: string }[] };
    expect(post.hits.map((h: { id: string }) => h.id)).toEqual(body.hits.map((h: { id: string }) => h.id));
  });

  it('pages with a cursor without skipping or repeating', async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const body = await search('', `&size=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      seen.push(...body.hits.map((h: { id: string }) => h.id));
      cursor = body.nextCursor;
    } while (cursor);
    expect(seen).toHaveLength(F.length);
    expect(new Set(seen).size).toBe(F.length);
  });

  it('shows a message with headers, every envelope, body and thread', async () => {
    const r = await get(`/api/messages/${ids.budget}`);
    expect(r.status).toBe(200);
    expect(r.body.subject).toBe('Budget approval for Q3');
    expect(r.body.envelopes).toHaveLength(1);
    expect(r.body.envelopes[0].journal.format).toBe('exchange2007');
    expect(r.body.envelopeRecipients).toContainEqual({ address: 'secret.carol@corp.example', kind: 'bcc' });
    expect(r.body.headers.find((h: { name: string }) => h.name.toLowerCase() === 'subject').value).toBe('Budget approval for Q3');
    const t = await get(`/api/messages/${ids.reply}/thread`);
    expect(t.body.messages.map((m: { id: string }) => m.id)).toEqual([ids.budget, ids.reply]);
  });

  it('serves the original bytes, verified', async () => {
    const r = await officer.fetch(`/api/messages/${ids.cjk}/raw`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('message/rfc822');
    const bytes = Buffer.from(await r.arrayBuffer());
    expect(sha(bytes)).toBe(ids.cjk);
  });

  it('answers 404 for an unknown id and 400 for a malformed one', async () => {
    expect((await get(`/api/messages/${'0'.repeat(64)}`)).status).toBe(404);
    expect((await get('/api/messages/not-a-hash')).status).toBe(400);
  });

  it('publishes an OpenAPI document listing every route', async () => {
    const r = await get('/api/openapi.json');
    expect(r.body.openapi).toBe('3.0.3');
    expect(Object.keys(r.body.paths)).toEqual(expect.arrayContaining(['/api/search', '/api/messages/{id}', '/api/messages/{id}/raw', '/api/messages/{id}/attachments/{n}', '/api/messages/{id}/thread']));
  });
});
}
