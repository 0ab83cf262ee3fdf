/**
 * Writes every attachment of a message to its own file in one streaming
 * pass (decoded, hashed as it passes), for productions that treat
 * attachments as documents of the message's family. Attachments are
 * numbered in the order the parser meets them, as the index document lists
 * them, so each can be checked against the SHA-256 the indexer recorded.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { finished } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { MailParser } from 'mailparser';

export interface SplitAttachment {
  index: number;
  filename?: string;
  contentType: string;
  path: string;
  size: number;
  sha256: string;
  md5: string;
}

/** Bound on one message's split, in ms: a hostile MIME structure cannot hold an export forever. */
const SPLIT_TIMEOUT_MS = 120_000;

export function splitAttachments(raw: Readable, pathOf: (index: number) => string): Promise<SplitAttachment[]> {
  return new Promise((resolve, reject) => {
    const parser = new MailParser({ skipHtmlToText: true, skipTextToHtml: true, skipTextLinks: true, skipImageLinks: true });
    const pending: Promise<SplitAttachment>[] = [];
    let n = 0;
    const timer = setTimeout(() => fail(new Error(`attachment split exceeded ${SPLIT_TIMEOUT_MS} ms`)), SPLIT_TIMEOUT_MS);
    let settled = false;
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      raw.unpipe(parser);
      raw.destroy();
      parser.destroy();
      reject(err);
    };
    parser.on('data', (data: { type: string; content?: Readable; contentType?: string; filename?: string; release?: () => void }) => {
      if (data.type !== 'attachment' || !data.content) return;
      const index = n++;
      const path = pathOf(index);
      const sha = createHash('sha256');
      const md5 = createHash('md5');
      let size = 0;
      const out = createWriteStream(path);
      data.content.on('data', (c: Buffer) => {
        sha.update(c);
        md5.update(c);
        size += c.length;
      });
      data.content.pipe(out);
      pending.push(
        finished(out).then(() => {
          data.release?.();
          return { index, ...(data.filename ? { filename: data.filename } : {}), contentType: (data.contentType ?? 'application/octet-stream').toLowerCase(), path, size, sha256: sha.digest('hex'), md5: md5.digest('hex') };
        }),
      );
    });
    parser.on('end', () => {
      Promise.all(pending).then(
        (atts) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolve(atts);
        },
        (e: Error) => fail(e),
      );
    });
    parser.on('error', (e: Error) => fail(e));
    raw.on('error', (e: Error) => fail(e));
    raw.pipe(parser);
  });
}
