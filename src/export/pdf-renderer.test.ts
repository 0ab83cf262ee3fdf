import { execFileSync } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BatesPdf, defaultUnicodeFont } from './pdf-renderer.js';

const pdftotextPages = (file: string): string[] => execFileSync('pdftotext', ['-layout', file, '-']).toString('utf8').split('\f').slice(0, -1);

describe('BatesPdf', () => {
  it('stamps every page with the next Bates number, long bodies and slip sheets included', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'pdf-'));
    const file = path.join(dir, 'a.pdf');
    let n = 41;
    const pdf = new BatesPdf(createWriteStream(file), { nextBates: () => `TST${String(n++).padStart(6, '0')}`, creationDate: new Date(0), title: 't', legend: 'CONFIDENTIAL', unicodeFont: defaultUnicodeFont() });
    const body = Array.from({ length: 400 }, (_, i) => `Line ${i} of the body, with some words to wrap around the page.`).join('\n');
    const pages = pdf.renderFamily(
      {
        headers: [
          { label: 'From', value: 'Alice <alice@example.com>' },
          { label: 'Subject', value: 'Quarterly =1+1 þ report' },
        ],
        body,
        attachments: [
          { filename: 'a.docx', contentType: 'application/msword', size: 10, sha256: 'ab'.repeat(32) },
          { filename: 'b.txt', contentType: 'text/plain', size: 3, sha256: 'cd'.repeat(32) },
        ],
      },
      () => 'TST000041',
    );
    const second = pdf.renderFamily({ headers: [{ label: 'Subject', value: '合同 Привет' }], body: 'Кириллица', attachments: [] }, () => 'x');
    await pdf.end();
    expect(pages.children).toEqual([1, 1]);
    expect(pages.parent).toBeGreaterThan(3);
    const texts = pdftotextPages(file);
    expect(texts).toHaveLength(pages.parent + 2 + second.parent);
    texts.forEach((t, i) => {
      expect(t).toContain(`TST${String(41 + i).padStart(6, '0')}`);
      expect(t).toContain('CONFIDENTIAL');
    });
    expect(texts[0]).toContain('From: Alice <alice@example.com>');
    expect(texts.join('')).toContain('Line 399 of the body');
    expect(texts[pages.parent]).toContain('a.docx');
    expect(texts.at(-1)).toContain('Кириллица');
  });
});
