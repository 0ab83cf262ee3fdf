/**
 * A finished package as one ZIP, streamed (yazl): files are opened one at a
 * time as the archive is written, nothing is staged on disk or held in
 * memory beyond one entry's buffers and the central directory (about 100
 * bytes per file). ZIP64 is used automatically past 4 GB. The big shared
 * files (load files, MBOX, manifest) are deflated; the per-item files are
 * stored as they are: a deflate stream per small file costs more time than
 * it saves bytes (100,000 EML files: 55 s deflated, seconds stored), and
 * PDFs and most attachments are compressed already.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import yazl from 'yazl';
import { MANIFEST, SIGNATURE, walkFiles, WORK_DIR } from './package-files.js';

const DEFLATE = /^(DATA\/|export\.mbox$|manifest\.)/;

export function zipPackage(dir: string): Readable {
  const zip = new yazl.ZipFile();
  const add = (abs: string, rel: string, size: number, mtime: Date) =>
    zip.addReadStreamLazy(rel, { size, mtime, mode: 0o100644, compress: DEFLATE.test(rel) }, (cb) => cb(null, createReadStream(abs)));
  void (async () => {
    try {
      // The manifest and its signature first: a reader can check them before anything else.
      for (const name of [MANIFEST, SIGNATURE]) {
        const st = await stat(path.join(dir, name));
        add(path.join(dir, name), name, st.size, st.mtime);
      }
      for await (const f of walkFiles(dir, (rel) => rel === WORK_DIR || rel === MANIFEST || rel === SIGNATURE)) add(f.abs, f.rel, f.size, f.mtime);
      zip.end();
    } catch (err) {
      (zip.outputStream as Readable).destroy(err as Error);
    }
  })();
  return zip.outputStream as Readable;
}
