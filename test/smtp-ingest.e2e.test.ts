/**
 * End to end over the real SMTP port with real SMTP clients (nodemailer's
 * SMTPConnection, and swaks from Debian): what a sender is told, and what
 * the store then holds, byte for byte.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdir, readFile, rename, rm, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { archivedSha, sendRaw, smtpDialog } from './helpers/smtp-client.js';
import { CORPUS, startInProcess } from './helpers/archive-process.js';
import { listFiles, smtpCanonical, streamToBuffer } from './helpers/mail-files.js';
import type { RunningArchive } from '../src/main.js';
import { MODES } from './helpers/modes.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const run = promisify(execFile);

const ORIGINAL = Buffer.from(
  [
    'From: Alice <alice@example.com>',
    'To: Bob <bob@example.com>',
    'Subject: Quarterly numbers',
    'Message-ID: <q1@example.com>',
    'Date: Tue, 02 Jan 2024 10:00:00 +0000',
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: 8bit',
    '',
    'Budget approval needed. Grüße.',
    '',
  ].join('\r\n'),
);

function journalReport(original: Buffer): Buffer {
  const b = 'JOURNAL-BOUNDARY-1';
  const head = [
    'From: Microsoft Exchange <journal@example.com>',
    'To: archive@archive.example.com',
    'Subject: Quarterly numbers',
    'Message-ID: <report-1@example.com>',
    'X-MS-Journal-Report:',
    'MIME-Version: 1.0',
    `Content-Type: multipart/mixed; boundary="${b}"`,
    '',
    `--${b}`,
    'Content-Type: text/plain; charset=us-ascii',
    '',
    'Sender: alice@example.com',
    'Subject: Quarterly numbers',
    'Message-Id: <q1@example.com>',
    'To: bob@example.com',
    'Bcc: carol@example.com',
    'To: dave@example.com, Expanded: sales@example.com',
    '',
    `--${b}`,
    'Content-Type: message/rfc822',
    'Content-Transfer-Encoding: binary',
    '',
    '',
  ].join('\r\n');
  return Buffer.concat([Buffer.from(head), original, Buffer.from(`\r\n--${b}--\r\n`)]);
}

for (const { mode, enabled, env } of MODES) {
describe.runIf(enabled)(`SMTP journal endpoint (${mode})`, () => {
  let archive: RunningArchive & { dataDir: string };

  beforeAll(async () => {
    archive = await startInProcess({ ...(await env()), ARCHIVE_SMTP_MAX_SIZE: '1MB' });
  });
  afterAll(async () => {
    await archive?.close();
  });

  const stored = async (h: string) => streamToBuffer(await archive.services.store.getMessage(h));

  it('stores the exact bytes and answers 250 with their SHA-256', async () => {
    const answer = await sendRaw(archive.smtpPort, { from: 'alice@example.com', to: ['bob@example.com'] }, ORIGINAL);
    expect(answer.code).toBe(250);
    expect(archivedSha(answer)).toBe(sha(ORIGINAL));
    expect(sha(await stored(sha(ORIGINAL)))).toBe(sha(ORIGINAL));
    const envs = await archive.services.store.getEnvelopes(sha(ORIGINAL));
    expect(envs.at(-1)!.smtp).toMatchObject({ mailFrom: 'alice@example.com', rcptTo: ['bob@example.com'], peer: '127.0.0.1' });
    expect(envs.at(-1)!.recipients).toEqual([{ address: 'bob@example.com', kind: 'recipient' }]);
  });

  it('accepts the null reverse-path MAIL FROM:<> (swaks)', async () => {
    const msg = Buffer.from('From: x@example.com\r\nSubject: null sender\r\nMessage-ID: <ns@example.com>\r\n\r\nbody\r\n');
    const dir = path.join(archive.dataDir, 'swaks');
    await mkdir(dir, { recursive: true });
    const file = path.join(dir, 'ns.eml');
    await writeFile(file, msg);
    const { stdout } = await run('swaks', ['--server', '127.0.0.1', '--port', String(archive.smtpPort), '--from', '<>', '--to', 'journal@archive.example.com', '--data', `@${file}`, '--suppress-data']);
    expect(stdout).toMatch(/-> MAIL FROM:<>/);
    expect(stdout).toMatch(/<- {2}250 2\.6\.0 Archived as [0-9a-f]{64}/);
    const h = /Archived as ([0-9a-f]{64})/.exec(stdout)![1]!;
    const envs = await archive.services.store.getEnvelopes(h);
    expect(envs[0]!.smtp!.mailFrom).toBe('');
  });

  it('unwraps an Exchange journal report: stores the original, the report becomes the envelope', async () => {
    const answer = await sendRaw(archive.smtpPort, { from: '', to: ['journal@archive.example.com'] }, journalReport(ORIGINAL));
    expect(answer.code).toBe(250);
    expect(archivedSha(answer)).toBe(sha(ORIGINAL));
    const envs = await archive.services.store.getEnvelopes(sha(ORIGINAL));
    const env = envs.find((e) => e.journal)!;
    expect(env.journal).toMatchObject({ format: 'exchange2007', sender: 'alice@example.com', messageId: '<q1@example.com>', reportMessageId: '<report-1@example.com>' });
    expect(env.recipients).toEqual([
      { address: 'bob@example.com', kind: 'to' },
      { address: 'carol@example.com', kind: 'bcc' },
      { address: 'dave@example.com', kind: 'to', expandedFrom: 'sales@example.com' },
    ]);
    expect(env.smtp!.mailFrom).toBe('');
  });

  it('refuses an oversized message with 552, announced with SIZE too', async () => {
    const big = Buffer.concat([Buffer.from('Subject: big\r\n\r\n'), Buffer.alloc(2 * 1024 * 1024, 'a\r\n')]);
    const answer = await sendRaw(archive.smtpPort, { from: 'a@example.com', to: ['b@example.com'] }, big);
    expect(answer.code).toBe(552);
    const declared = await smtpDialog(archive.smtpPort, ['EHLO client.example.com', `MAIL FROM:<a@example.com> SIZE=${big.length}`, 'QUIT']);
    expect(declared[2]).toMatch(/^552 /);
    const { stdout } = await run('swaks', ['--server', '127.0.0.1', '--port', String(archive.smtpPort), '--quit-after', 'EHLO']);
    expect(stdout).toMatch(/250[- ]SIZE 1048576/);
    expect(await readdir(path.join(archive.dataDir, 'spool'))).toEqual([]);
  });

  // The S3 case (service stopped) is in resilience.test.ts.
  if (mode === 'embedded') it('answers 451 when the store cannot write, and leaves nothing half-written', async () => {
    const objects = path.join(archive.dataDir, 'store', 'objects');
    const aside = `${objects}.aside`;
    const msg = Buffer.from('Subject: while broken\r\nMessage-ID: <broken@example.com>\r\n\r\nunique body 451\r\n');
    await rename(objects, aside);
    // A file where the directory should be: no write can succeed, even as root.
    await writeFile(objects, 'not a directory');
    try {
      const answer = await sendRaw(archive.smtpPort, { from: 'a@example.com', to: ['b@example.com'] }, msg);
      expect(answer.code).toBe(451);
      expect(await readdir(path.join(archive.dataDir, 'spool'))).toEqual([]);
    } finally {
      await rm(objects);
      await rename(aside, objects);
    }
    expect(await archive.services.store.statMessage(sha(msg))).toBeUndefined();
    const retry = await sendRaw(archive.smtpPort, { from: 'a@example.com', to: ['b@example.com'] }, msg);
    expect(retry.code).toBe(250);
    expect(sha(await stored(sha(msg)))).toBe(sha(msg));
  });

  it('stores the same message once, with one envelope per delivery', async () => {
    const msg = Buffer.from('Subject: twice\r\nMessage-ID: <twice@example.com>\r\n\r\nsplit delivery\r\n');
    const a = await sendRaw(archive.smtpPort, { from: 'a@example.com', to: ['b@example.com'] }, msg);
    const b = await sendRaw(archive.smtpPort, { from: 'a@example.com', to: ['c@example.com'] }, msg);
    expect([a.code, b.code]).toEqual([250, 250]);
    const envs = await archive.services.store.getEnvelopes(sha(msg));
    expect(envs.map((e) => e.smtp!.rcptTo[0]).sort()).toEqual(['b@example.com', 'c@example.com']);
  });

  it('archives every file of the shared corpus byte for byte, without a crash', async () => {
    const files = await listFiles(CORPUS, (f) => !/(LICENSE|README)/.test(f));
    expect(files.length).toBeGreaterThan(100);
    for (const file of files) {
      const raw = await readFile(file);
      if (raw.length > 1024 * 1024) continue; // this server's limit is 1 MB; the corpus test below covers all sizes
      const answer = await sendRaw(archive.smtpPort, { from: 'corpus@example.com', to: ['archive@example.com'] }, raw);
      expect(answer.code, file).toBe(250);
      const expected = smtpCanonical(raw);
      const h = archivedSha(answer)!;
      // A journal report in the corpus would be stored unwrapped; none of these files is one.
      expect(h, file).toBe(sha(expected));
      expect((await stored(h)).equals(expected), file).toBe(true);
    }
  });
});
}

describe('SMTP endpoint with the default size limit', () => {
  it('takes every corpus file, including the large ones', async () => {
    const archive = await startInProcess();
    try {
      const files = await listFiles(CORPUS, (f) => !/(LICENSE|README)/.test(f));
      for (const file of files) {
        const raw = await readFile(file);
        if (raw.length <= 1024 * 1024) continue;
        const answer = await sendRaw(archive.smtpPort, { from: 'corpus@example.com', to: ['archive@example.com'] }, raw);
        expect(answer.code, file).toBe(250);
        expect(archivedSha(answer), file).toBe(sha(smtpCanonical(raw)));
      }
    } finally {
      await archive.close();
    }
  });
});
