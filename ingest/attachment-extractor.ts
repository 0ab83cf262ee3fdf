/**
 * Streams one attachment out of a stored message, decoded, without holding
 * the message or the attachment in memory. Attachments are numbered in the
 * order the parser meets them, the same order as the index document's list.
 */
import { PassThrough, type Readable } from 'node:stream';
import { MailParser } from 'mailparser';
import { NotFoundError } from '../src/errors.js';

export interface ExtractedAttachment {
  contentType: string;
  filename?: string;
  stream: Readable;
}

export function extractAttachment(raw: Readable, n: number): Promise<ExtractedAttachment> {
  return new Promise((resolve, reject) => {
    const parser = new MailParser({ skipHtmlToText: true, skipTextToHtml: true, skipTextLinks: true, skipImageLinks: true });
    let seen = 0;
    let found = false;
    parser.on('data', (data: { type: string; content?: Readable; contentType?: string; filename?: string; release?: () => void }) => {
      if (data.type !== 'attachment' || !data.content) return;
      if (seen++ !== n) {
        data.content.resume();
        data.content.on('end', () => data.release?.());
        return;
      }
      found = true;
      const out = new PassThrough();
      data.content.on('end', () => {
        data.release?.();
        // Nothing after this attachment is needed.
        raw.unpipe(parser);
        raw.destroy();
      });
      data.content.on('error', (e) => out.destroy(e));
      data.content.pipe(out);
      resolve({ contentType: data.contentType ?? 'application/octet-stream', filename: data.filename, stream: out });
    });
    parser.on('end', () => {
      if (!found) reject(new NotFoundError(`attachment ${n} not found`));
    });
    parser.on('error', (e) => (found ? undefined : reject(e)));
    raw.on('error', (e) => (found ? undefined : reject(e)));
    raw.pipe(parser);
  });
}
