/**
 * `GET /api/admin/ingest-stats` over HTTP, on both deployments: messages
 * ingested through the real pipeline (at chosen receive times, a journal
 * report and a second delivery of the same bytes among them) and through the
 * real SMTP port (now), with exact expected counts and bytes per bucket.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendRaw } from './helpers/smtp-client.js';
import { startInProcess } from './helpers/archive-process.js';
import { MODES, waitForIndexed } from './helpers/modes.js';
import { makeUser, type TestUser } from './helpers/auth.js';
import type { RunningArchive } from '../src/main.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function mail(n: number, body: string): Buffer {
  return Buffer.from(
    [`From: sender${n}@corp.example`, 'To: alice@corp.example', `Subject: Ingest ${n}`, 'Date: Mon, 01 Jan 2024 09:00:00 +0000', `Message-ID: <ingest-${n}@corp.example>`, 'MIME-Version: 1.0', 'Content-Type: text/plain; charset=utf-8', '', body, ''].join('\r\n'),
  );
}

function journalReport(original: Buffer, n: number): Buffer {
  const b = `JR-${n}`;
  const head = ['From: journal@corp.example', 'To: archive@archive.example', `Message-ID: <report-${n}@corp.example>`, 'X-MS-Journal-Report:', `Content-Type: multipart/mixed; boundary="${b}"`, '', `--${b}`, 'Content-Type: text/plain', '', 'Sender: sender@corp.example', `Message-Id: <ingest-${n}@corp.example>`, 'To: alice@corp.example', 'Bcc: carol@corp.example', '', `--${b}`, 'Content-Type: message/rfc822', '', ''].join('\r\n');
  return Buffer.concat([Buffer.from(head), original, Buffer.from(`\r\n--${b}--\r\n`)]);
}

/** Received at fixed times through the pipeline (sizes differ so a wrong sum shows). */
const PAST = [
  { key: 'feb28Last', at: '2024-02-28T23:59:59.999Z', raw: mail(1, 'a'.repeat(100)) },
  { key: 'feb29Midnight', at: '2024-02-29T00:00:00.000Z', raw: mail(2, 'b'.repeat(2000)) },
  { key: 'feb29Noon', at: '2024-02-29T13:30:00.000Z', raw: mail(3, 'c'.repeat(30)) },
  { key: 'mar1Midnight', at: '2024-03-01T00:00:00.000Z', raw: mail(4, 'd'.repeat(400)) },
  // Wrapped in a journal report: the archived message (and its size) is the original inside.
  { key: 'mar2Journal', at: '2024-03-02T10:00:00.000Z', raw: mail(5, 'e'.repeat(5000)), journal: true },
];
/** Delivered over SMTP now: one plain, one journal report. */
const NOW = [
  { key: 'nowPlain', raw: mail(6, 'f'.repeat(77)) },
  { key: 'nowJournal', raw: mail(7, 'g'.repeat(123)), journal: true },
];

const size = (key: string) => [...PAST, ...NOW].find((f) => f.key === key)!.raw.length;

for (const { mode, enabled, env } of MODES) {
  describe.runIf(enabled)(`ingest statistics API (${mode})`, () => {
    let archive: RunningArchive & { dataDir: string };
    let base: string;
    let admin: TestUser;
    let officer: TestUser;
    let auditor: TestUser;

    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const stats = async (qs: string, user = admin): Promise<{ status: number; body: any }> => {
      const r = await user.fetch(`/api/admin/ingest-stats${qs}`);
      return { status: r.status, body: await r.json() };
    };
    const pairs = (body: { buckets: { start: string; messages: number; bytes: number }[] }) => body.buckets.map((b) => [b.start, b.messages, b.bytes]);

    beforeAll(async () => {
      archive = await startInProcess(await env());
      base = `http://127.0.0.1:${archive.httpPort}`;
      admin = await makeUser(archive.services, base, { roles: ['admin'] });
      officer = await makeUser(archive.services, base, { roles: ['officer'] });
      auditor = await makeUser(archive.services, base, { roles: ['auditor'] });
      const ids: string[] = [];
      for (const [i, f] of PAST.entries()) {
        const payload = f.journal ? journalReport(f.raw, 100 + i) : f.raw;
        const r = await archive.services.pipeline.ingest(Readable.from([payload]), { source: 'api', receivedAt: new Date(f.at) });
        expect(r.sha256).toBe(sha(f.raw));
        ids.push(r.sha256);
      }
      // The same bytes delivered again later: still one message, counted when it was first received.
      const again = await archive.services.pipeline.ingest(Readable.from([PAST[0].raw]), { source: 'api', receivedAt: new Date('2024-03-03T12:00:00.000Z') });
      expect(again.created).toBe(false);
      for (const [i, f] of NOW.entries()) {
        const answer = await sendRaw(archive.smtpPort, { from: f.journal ? '' : 'mta@corp.example', to: ['journal@archive.example'] }, f.journal ? journalReport(f.raw, 200 + i) : f.raw);
        expect(answer.code).toBe(250);
        ids.push(sha(f.raw));
      }
      await waitForIndexed(archive.services, ids);
    }, 120_000);
    afterAll(async () => {
      await archive?.close();
    });

    it('by day: exact counts and bytes, a message at 23:59:59.999 and one at midnight on either side, empty days zero', async () => {
      const { status, body } = await stats('?interval=day&from=2024-02-28&to=2024-03-05');
      expect(status).toBe(200);
      expect(body).toMatchObject({ interval: 'day', from: '2024-02-28T00:00:00.000Z', to: '2024-03-05T00:00:00.000Z', undated: 0 });
      expect(pairs(body)).toEqual([
        ['2024-02-28T00:00:00.000Z', 1, size('feb28Last')],
        ['2024-02-29T00:00:00.000Z', 2, size('feb29Midnight') + size('feb29Noon')],
        ['2024-03-01T00:00:00.000Z', 1, size('mar1Midnight')],
        ['2024-03-02T00:00:00.000Z', 1, size('mar2Journal')],
        // The second delivery of feb28Last on 3 March adds no message.
        ['2024-03-03T00:00:00.000Z', 0, 0],
        ['2024-03-04T00:00:00.000Z', 0, 0],
      ]);
      expect(body.total).toEqual({ messages: 5, bytes: PAST.reduce((n, f) => n + f.raw.length, 0) });
      expect(body.archive).toEqual({ messages: 7 });
      expect(body.queue).toEqual({ driver: archive.services.queue.driver, waiting: 0, active: 0, delayed: 0, failed: 0 });
    });

    it('by hour and by month; a bound inside a bucket is widened to the whole bucket', async () => {
      const hours = await stats('?interval=hour&from=2024-02-28T23:10:00Z&to=2024-02-29T00:00:00.001Z');
      expect(hours.body).toMatchObject({ from: '2024-02-28T23:00:00.000Z', to: '2024-02-29T01:00:00.000Z' });
      expect(pairs(hours.body)).toEqual([
        ['2024-02-28T23:00:00.000Z', 1, size('feb28Last')],
        ['2024-02-29T00:00:00.000Z', 1, size('feb29Midnight')],
      ]);
      const months = await stats('?interval=month&from=2024-01-01&to=2024-04-01');
      expect(pairs(months.body)).toEqual([
        ['2024-01-01T00:00:00.000Z', 0, 0],
        ['2024-02-01T00:00:00.000Z', 3, size('feb28Last') + size('feb29Midnight') + size('feb29Noon')],
        ['2024-03-01T00:00:00.000Z', 2, size('mar1Midnight') + size('mar2Journal')],
      ]);
    });

    it('defaults: the last 30 days by day (today included), or the last 48 hours by hour', async () => {
      const now = Date.now();
      const { status, body } = await stats('');
      expect(status).toBe(200);
      expect(body.interval).toBe('day');
      expect(body.buckets).toHaveLength(30);
      const to = Date.parse(body.to);
      expect(to % 86_400_000).toBe(0);
      expect(to).toBeGreaterThan(now);
      expect(to - now).toBeLessThanOrEqual(86_400_000);
      expect(Date.parse(body.from)).toBe(to - 30 * 86_400_000);
      expect(body.total).toEqual({ messages: 2, bytes: size('nowPlain') + size('nowJournal') });
      const hourly = await stats('?interval=hour');
      expect(hourly.body.buckets).toHaveLength(48);
      expect(Date.parse(hourly.body.to) % 3_600_000).toBe(0);
      expect(hourly.body.total).toEqual({ messages: 2, bytes: size('nowPlain') + size('nowJournal') });
      expect(hourly.body.buckets.filter((b: { messages: number }) => b.messages > 0).length).toBeGreaterThanOrEqual(1);
    });

    it('refuses bad input with 400: an unknown interval, a bad time, from after to, more than 1,000 buckets', async () => {
      for (const qs of ['?interval=week', '?from=yesterday', '?interval=day&from=2024-03-05&to=2024-03-01', '?interval=hour&from=2024-01-01&to=2024-03-01']) {
        const { status, body } = await stats(qs);
        expect(status, qs).toBe(400);
        expect(body.error.code, qs).toBe('validation_failed');
      }
      expect((await stats('?interval=hour&from=2024-01-01&to=2024-03-01')).body.error.message).toMatch(/1440 hour buckets; at most 1000/);
      expect((await stats('?interval=hour&from=2024-01-01T00:00:00Z&to=2024-02-11T16:00:00Z')).status).toBe(200); // exactly 1,000
    });

    it('only admins: 403 for an officer and an auditor, 401 without credentials', async () => {
      for (const u of [officer, auditor]) {
        const { status, body } = await stats('?interval=day', u);
        expect(status).toBe(403);
        expect(body.error.code).toBe('forbidden');
      }
      expect((await fetch(`${base}/api/admin/ingest-stats`)).status).toBe(401);
    });

    it('is in the OpenAPI document, admin only, with its parameters', async () => {
      const doc = (await (await fetch(`${base}/api/openapi.json`)).json()) as { paths: Record<string, Record<string, { 'x-roles': string[]; parameters: { name: string; in: string; schema: { enum?: string[] } }[] }>> };
      const op = doc.paths['/api/admin/ingest-stats'].get;
      expect(op['x-roles']).toEqual(['admin']);
      expect(op.parameters.map((p) => `${p.in}:${p.name}`)).toEqual(['query:interval', 'query:from', 'query:to']);
      expect(op.parameters[0].schema.enum).toEqual(['hour', 'day', 'month']);
    });
  });
}
