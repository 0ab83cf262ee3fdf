/**
 * A finished package as one ZIP, streamed (zip-writer.ts): nothing is staged
 * on disk, and memory holds the central directory (about 100 bytes per file)
 * and a bounded read-ahead of small files. ZIP64 past 4 GB.
 *
 * A package of 100,000 EML files is mostly small files, so what limits the
 * ZIP is the latency of opening each one, not bytes: small files are read
 * ahead, a few dozen at a time, while earlier ones are written. The shared
 * files (load files, MBOX, manifest) are deflated; per-item files are stored
 * as they are (deflating each small file costs more time than it saves, and
 * PDFs and most attachments are compressed already); files over 1 MB are
 * streamed and deflated. Entry times are the export's finish time, so a
 * package zips to the same bytes every time.
 */
import { open } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { MANIFEST, SIGNATURE, walkFiles, WORK_DIR } from './package-files.js';
import { ZipWriter } from './zip-writer.js';

const DEFLATE = /^(DATA\/|export\.mbox$|manifest\.)/;
/** Files read ahead of the one being written. Cost: up to this many small files in memory. */
const READ_AHEAD = 32;
/** Files up to this size are read whole (and read ahead); bigger ones are streamed in their turn. */
const SMALL_FILE = 1024 * 1024;

type Loaded = { kind: 'buffer'; data: Buffer } | { kind: 'stream'; file: string };

async function load(file: string): Promise<Loaded> {
  const fh = await open(file, 'r');
  try {
    const { size } = await fh.stat();
    if (size <= SMALL_FILE) return { kind: 'buffer', data: await fh.readFile() };
  } finally {
    await fh.close();
  }
  return { kind: 'stream', file };
}

export function zipPackage(dir: string, opts: { mtime?: Date } = {}): Readable {
  const zip = new ZipWriter(opts.mtime ?? new Date());
  void (async () => {
    try {
      const names: string[] = [MANIFEST, SIGNATURE];
      for await (const f of walkFiles(dir, (rel) => rel === WORK_DIR || rel === MANIFEST || rel === SIGNATURE, '', false)) names.push(f.rel);
      // The manifest and its signature first: a reader can check them before anything else.
      const loading: Promise<Loaded>[] = [];
      const start = (i: number) => {
        if (i < names.length && !loading[i]) {
          loading[i] = load(path.join(dir, names[i]!));
          loading[i]!.catch(() => undefined); // reported when its turn comes
        }
      };
      for (let i = 0; i < names.length; i++) {
        for (let k = i; k < i + READ_AHEAD; k++) start(k);
        const entry = await loading[i]!;
        delete loading[i];
        const name = names[i]!;
        if (entry.kind === 'buffer') await zip.addBuffer(name, entry.data, DEFLATE.test(name));
        else await zip.addStream(name, createReadStream(entry.file));
      }
      await zip.end();
    } catch (err) {
      zip.output.destroy(err as Error);
    }
  })();
  return zip.output;
}
