import { execFileSync } from 'node:child_process';
import { randomBytes, createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { ZipWriter } from './zip-writer.js';

describe('ZipWriter', () => {
  it('writes stored, deflated and streamed entries that Python’s zipfile reads and checks', async () => {
    const file = path.join(await mkdtemp(path.join(os.tmpdir(), 'zipw-')), 'a.zip');
    const big = randomBytes(3 * 1024 * 1024);
    const zip = new ZipWriter(new Date('2024-05-06T07:08:10Z'));
    const done = pipeline(zip.output, createWriteStream(file));
    await zip.addBuffer('stored/é.txt', Buffer.from('hello'), false);
    await zip.addBuffer('deflated.txt', Buffer.from('x'.repeat(10_000)), true);
    await zip.addStream('big.bin', Readable.from([big.subarray(0, 1_000_000), big.subarray(1_000_000)]));
    await zip.end();
    await done;
    const out = JSON.parse(
      execFileSync('python3', ['-c', 'import sys,zipfile,json,hashlib\nz=zipfile.ZipFile(sys.argv[1])\nassert z.testzip() is None\nprint(json.dumps([[i.filename, i.file_size, hashlib.sha256(z.read(i)).hexdigest(), list(i.date_time)] for i in z.infolist()]))', file]).toString(),
    ) as [string, number, string, number[]][];
    expect(out).toEqual([
      ['stored/é.txt', 5, createHash('sha256').update('hello').digest('hex'), [2024, 5, 6, 7, 8, 10]],
      ['deflated.txt', 10_000, createHash('sha256').update('x'.repeat(10_000)).digest('hex'), [2024, 5, 6, 7, 8, 10]],
      ['big.bin', big.length, createHash('sha256').update(big).digest('hex'), [2024, 5, 6, 7, 8, 10]],
    ]);
  });
});
