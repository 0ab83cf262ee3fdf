/**
 * A small production set for export tests: plain and multipart mail, a
 * journaled duplicate, hostile header fields, non-Latin text, a body with
 * mbox `From ` lines, a message without a final line break, and one
 * message outside the corp.example scope.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { waitForIndexed } from './modes.js';
import type { RunningArchive } from '../../src/main.js';

export interface ExportFixture {
  key: string;
  raw: Buffer;
  sha256: string;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function mail(headers: [string, string][], body: string, opts: { finalNewline?: boolean } = {}): Buffer {
  const h = headers.map(([k, v]) => `${k}: ${v}`);
  const text = [...h, '', body].join('\r\n');
  return Buffer.from(opts.finalNewline === false ? text : `${text}\r\n`, 'utf8');
}

const plain: [string, string][] = [
  ['MIME-Version', '1.0'],
  ['Content-Type', 'text/plain; charset=utf-8'],
  ['Content-Transfer-Encoding', '8bit'],
];

export const HOSTILE_SUBJECT_DECODED = '=HYPERLINK("http://evil.example","x")\u0014þ split þ® line1\r\nline2';

export function exportFixtures(): ExportFixture[] {
  const boundary = 'b0undary';
  const attachments = Buffer.from(
    [
      'From: Alice Adams <alice@corp.example>',
      'To: Bob Brown <bob@corp.example>',
      'Cc: carol@corp.example',
      'Subject: Contract draft attached',
      'Date: Tue, 02 Jan 2024 10:00:00 +0000',
      'Message-ID: <contract-1@corp.example>',
      'MIME-Version: 1.0',
      `Content-Type: multipart/mixed; boundary="${boundary}"`,
      '',
      `--${boundary}`,
      'Content-Type: text/plain; charset=utf-8',
      '',
      'Please review the contract draft and the notes.',
      `--${boundary}`,
      'Content-Type: text/plain; charset=utf-8; name="notes.txt"',
      'Content-Disposition: attachment; filename="notes.txt"',
      '',
      'Notes: the indemnity clause needs work.',
      `--${boundary}`,
      'Content-Type: application/octet-stream; name="../../etc/passwd.docx"',
      'Content-Disposition: attachment; filename="../../etc/passwd.docx"',
      'Content-Transfer-Encoding: base64',
      '',
      Buffer.from(Array.from({ length: 3000 }, (_, i) => i % 251)).toString('base64').replace(/.{76}/g, '$&\r\n'),
      `--${boundary}--`,
      '',
    ].join('\r\n'),
  );
  const list: Omit<ExportFixture, 'sha256'>[] = [
    {
      key: 'budget',
      raw: mail(
        [['From', 'Alice Adams <alice@corp.example>'], ['To', 'bob@corp.example'], ['Subject', 'Budget approval for Q3'], ['Date', 'Mon, 01 Jan 2024 09:00:00 +0000'], ['Message-ID', '<budget-1@corp.example>'], ...plain],
        'We need budget approval before Friday.\r\nFrom the desk of Alice: this line starts with From.\r\n>From an escaped line already.\r\nRegards',
      ),
    },
    { key: 'contract', raw: attachments },
    {
      // The same message as journaled by a second server: other bytes, same identity.
      key: 'budget-copy',
      raw: mail(
        [['Received', 'from mx2.corp.example by archive; Mon, 01 Jan 2024 09:00:05 +0000'], ['From', 'Alice Adams <alice@corp.example>'], ['To', 'bob@corp.example'], ['Subject', 'Budget approval for Q3'], ['Date', 'Mon, 01 Jan 2024 09:00:00 +0000'], ['Message-ID', '<budget-1@corp.example>'], ...plain],
        'We need budget approval before Friday.\r\nFrom the desk of Alice: this line starts with From.\r\n>From an escaped line already.\r\nRegards',
      ),
    },
    {
      key: 'hostile',
      raw: mail(
        [
          ['From', '"@SUM(1+1)*cmd|\' /C calc\'!A0" <mallory@corp.example>'],
          ['To', '"+cmd" <bob@corp.example>, "-2+3" <dave@corp.example>'],
          ['Cc', '"\tTabbed" <erin@corp.example>'],
          ['Subject', `=?utf-8?B?${Buffer.from(HOSTILE_SUBJECT_DECODED).toString('base64')}?=`],
          ['Date', 'Wed, 03 Jan 2024 12:00:00 +0000'],
          ['Message-ID', '<hostile-"1"@corp.example>'],
          ...plain,
        ],
        'Body with a field separator \u0014, a thorn þ, a registered sign ® and a <script>alert(1)</script>.',
      ),
    },
    {
      key: 'cjk',
      raw: mail([['From', 'li@corp.example'], ['To', 'alice@corp.example'], ['Subject', '合同审批会议记录 Привет'], ['Date', 'Thu, 04 Jan 2024 12:00:00 +0000'], ['Message-ID', '<cjk@corp.example>'], ...plain], '请查看附件中的合同。Кириллица тоже.'),
    },
    {
      key: 'no-newline',
      raw: mail([['From', 'bob@corp.example'], ['To', 'alice@corp.example'], ['Subject', 'No final line break'], ['Date', 'Fri, 05 Jan 2024 12:00:00 +0000'], ['Message-ID', '<nonl@corp.example>'], ...plain], 'Last line without a break', { finalNewline: false }),
    },
    {
      key: 'outside',
      raw: mail([['From', 'news@newsletter.example'], ['To', 'someone@other.example'], ['Subject', 'Outside the scope'], ['Date', 'Sat, 06 Jan 2024 12:00:00 +0000'], ['Message-ID', '<outside@newsletter.example>'], ...plain], 'Nobody at corp.example is on this one.'),
    },
  ];
  return list.map((f) => ({ ...f, sha256: sha(f.raw) }));
}

/** Delivers the fixtures through the real ingest pipeline and waits until they are indexed. */
export async function ingestFixtures(archive: RunningArchive, fixtures: ExportFixture[]): Promise<void> {
  const ids: string[] = [];
  for (const f of fixtures) ids.push((await archive.services.pipeline.ingest(Readable.from([f.raw]), { source: 'api' })).sha256);
  await waitForIndexed(archive.services, ids);
}
