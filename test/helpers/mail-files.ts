import { readdir } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';

/** Every file below `dir`, sorted, filtered by `keep`. */
export async function listFiles(dir: string, keep: (f: string) => boolean = () => true): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    for (const e of (await readdir(d, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
      const full = path.join(d, e.name);
      if (e.isDirectory()) await walk(full);
      else if (e.isFile() && keep(full)) out.push(full);
    }
  };
  await walk(dir);
  return out;
}

/**
 * The bytes an SMTP client (nodemailer) puts on the wire for a file: every
 * line break (CRLF, bare LF, bare CR) becomes CRLF and the message ends with
 * CRLF. This is what the archive receives, so it is what it must store.
 */
export function smtpCanonical(raw: Buffer): Buffer {
  const s = raw.toString('latin1').replace(/\r\n|\r|\n/g, '\r\n');
  return Buffer.from(s.endsWith('\r\n') ? s : `${s}\r\n`, 'latin1');
}

export async function streamToBuffer(s: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}
