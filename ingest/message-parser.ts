/**
 * Parses one raw message into what the index needs, streaming (mailparser's
 * MailParser, never simpleParser, so a 100 MB attachment is hashed as it
 * passes and never held), bounded in time and memory. Mail is hostile input:
 * whatever goes wrong, the result is a document flagged `parseError` with
 * whatever headers could be read, never an exception.
 */
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { MailParser, type AddressObject, type EmailAddress, type HeaderValue } from 'mailparser';
import type { IndexedAttachment, IndexedMessage, Participant } from '../src/domain/indexed-message.js';
import { MAX_INDEXED_TEXT } from '../src/domain/indexed-message.js';
import { findHeaderEnd, parseHeaderFields } from './mime/header-block.js';

/**
 * What the parser reads from the bytes alone: the document's fields that do
 * not depend on envelopes or storage, plus the Date header when it is valid.
 */
export interface ParsedMessage
  extends Pick<IndexedMessage, 'messageId' | 'from' | 'sender' | 'to' | 'cc' | 'bcc' | 'replyTo' | 'subject' | 'body' | 'attachments' | 'attachmentText' | 'inReplyTo' | 'references' | 'parseError'> {
  /** Epoch ms from the Date header, when present and valid. */
  date?: number;
}

export interface ParseLimits {
  /** Wall-clock budget for one message, in ms. A parse that overruns is abandoned and flagged. */
  timeoutMs: number;
  /** Depth of nested message/rfc822 attachments whose text is extracted. */
  maxDepth: number;
  /** Characters of body and of attachment text kept. */
  maxText: number;
}

export const DEFAULT_PARSE_LIMITS: ParseLimits = { timeoutMs: 30_000, maxDepth: 5, maxText: MAX_INDEXED_TEXT };

/** Bytes of a text-like attachment collected for text extraction; beyond this it is only hashed. */
const MAX_TEXT_ATTACHMENT_BYTES = 4 * 1024 * 1024;

/** The first bytes kept for the fallback header read when mailparser fails. */
const FALLBACK_HEAD_BYTES = 256 * 1024;

const TEXT_LIKE = /^(text\/|message\/rfc822$|message\/global$|application\/(xhtml\+xml|xml|json)$)/i;

function participants(v: HeaderValue | undefined): Participant[] {
  if (!v || typeof v !== 'object') return [];
  const objs: AddressObject[] = Array.isArray(v) ? (v as AddressObject[]) : [v as AddressObject];
  const out: Participant[] = [];
  const visit = (a: EmailAddress) => {
    if (a.group) for (const g of a.group) visit(g);
    else {
      const address = (a.address ?? '').trim().toLowerCase();
      const name = a.name?.trim();
      if (address || name) out.push(name ? { address, name } : { address });
    }
  };
  for (const o of objs) for (const a of o?.value ?? []) visit(a);
  return out;
}

function stripAngles(s: string): string {
  return s.trim().replace(/^<+/, '').replace(/>+$/, '').trim();
}

function idList(v: HeaderValue | undefined): string[] {
  if (!v) return [];
  const raw = Array.isArray(v) ? v.join(' ') : String(v);
  return (raw.match(/<[^<>\s]+>/g) ?? raw.split(/\s+/)).map(stripAngles).filter(Boolean);
}

function clip(s: string, max: number): string {
  return s.length > max ? s.slice(0, max) : s;
}

/**
 * Tees a stream: keeps the first `max` bytes for the fallback while it
 * flows on to the parser.
 */
function headKeeper(max: number): { keep: (c: Buffer) => void; head: () => Buffer } {
  const parts: Buffer[] = [];
  let n = 0;
  return {
    keep(c) {
      if (n >= max) return;
      parts.push(c.subarray(0, max - n));
      n += Math.min(c.length, max - n);
    },
    head: () => Buffer.concat(parts),
  };
}

export async function parseMessage(raw: Readable, limits: ParseLimits = DEFAULT_PARSE_LIMITS, depth = 0): Promise<ParsedMessage> {
  const head = headKeeper(FALLBACK_HEAD_BYTES);
  const result: ParsedMessage = { from: [], sender: [], to: [], cc: [], bcc: [], replyTo: [], subject: '', body: '', attachments: [], attachmentText: '', references: [] };
  const nested: Buffer[] = [];
  let attText = '';
  const parser = new MailParser({ skipHtmlToText: true, skipTextToHtml: true, skipTextLinks: true, skipImageLinks: true, maxHtmlLengthToParse: 2 * 1024 * 1024 });

  const work = new Promise<void>((resolve, reject) => {
    const pending: Promise<void>[] = [];
    parser.on('headers', (h: Map<string, HeaderValue>) => {
      const mid = h.get('message-id');
      // Whitespace cannot be part of a Message-ID (RFC 5322 3.6.4); it is
      // folding debris, and users paste ids without it.
      if (typeof mid === 'string' && stripAngles(mid)) result.messageId = stripAngles(mid).replace(/\s+/g, '');
      const d = h.get('date');
      if (d instanceof Date && !Number.isNaN(d.getTime())) result.date = d.getTime();
      result.from = participants(h.get('from'));
      result.sender = participants(h.get('sender'));
      result.to = participants(h.get('to'));
      result.cc = participants(h.get('cc'));
      result.bcc = participants(h.get('bcc'));
      result.replyTo = participants(h.get('reply-to'));
      const subj = h.get('subject');
      result.subject = typeof subj === 'string' ? clip(subj, 10_000) : '';
      result.inReplyTo = idList(h.get('in-reply-to'))[0];
      result.references = idList(h.get('references')).slice(0, 500);
    });
    parser.on('data', (data: { type: string; text?: string; html?: string | false; content?: Readable; contentType?: string; filename?: string; release?: () => void }) => {
      if (data.type === 'text') {
        const text = data.text || (typeof data.html === 'string' ? htmlToText(data.html) : '');
        result.body = clip(text ?? '', limits.maxText);
        return;
      }
      if (data.type !== 'attachment' || !data.content) return;
      const contentType = (data.contentType ?? 'application/octet-stream').toLowerCase();
      const textLike = TEXT_LIKE.test(contentType);
      const hash = createHash('sha256');
      const chunks: Buffer[] = [];
      let size = 0;
      pending.push(
        new Promise<void>((res) => {
          data.content!.on('data', (c: Buffer) => {
            hash.update(c);
            size += c.length;
            if (textLike && size <= MAX_TEXT_ATTACHMENT_BYTES) chunks.push(c);
          });
          data.content!.on('end', () => {
            const att: IndexedAttachment = { contentType, size, sha256: hash.digest('hex') };
            if (data.filename) att.filename = clip(data.filename, 1000);
            result.attachments.push(att);
            if (textLike && chunks.length) {
              const buf = Buffer.concat(chunks);
              if (/^message\//.test(contentType)) nested.push(buf);
              else if (attText.length < limits.maxText) attText += `\n${contentType.includes('html') ? htmlToText(buf.toString('utf8')) : buf.toString('utf8')}`;
            }
            data.release?.();
            res();
          });
          data.content!.on('error', () => {
            data.release?.();
            res();
          });
        }),
      );
    });
    parser.on('end', () => void Promise.all(pending).then(() => resolve(), reject));
    parser.on('error', reject);
  });

  raw.on('data', (c: Buffer) => head.keep(c));
  raw.on('error', (e) => parser.destroy(e));
  raw.pipe(parser);

  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`parse exceeded ${limits.timeoutMs} ms`)), limits.timeoutMs);
  });
  try {
    await Promise.race([work, timeout]);
  } catch (err) {
    raw.unpipe(parser);
    raw.destroy();
    parser.destroy();
    return fallback(head.head(), (err as Error).message, result);
  } finally {
    clearTimeout(timer);
  }

  // Nested messages (forwarded as attachments): their text is searchable too, to a bounded depth.
  if (depth < limits.maxDepth) {
    for (const buf of nested) {
      if (attText.length >= limits.maxText) break;
      const { Readable } = await import('node:stream');
      const inner = await parseMessage(Readable.from([buf]), { ...limits, timeoutMs: Math.max(1000, limits.timeoutMs / 2) }, depth + 1);
      attText += `\n${inner.subject}\n${inner.from.map((p) => `${p.name ?? ''} ${p.address}`).join(' ')}\n${inner.body}\n${inner.attachmentText}`;
    }
  }
  result.attachmentText = clip(attText.trim(), limits.maxText);
  return result;
}

/** When mailparser gives up, read the headers we can with our own tolerant header parser. */
export function headerOnlyParse(head: Buffer, reason: string): ParsedMessage {
  return fallback(head, reason, { from: [], sender: [], to: [], cc: [], bcc: [], replyTo: [], subject: '', body: '', attachments: [], attachmentText: '', references: [] });
}

function fallback(head: Buffer, reason: string, partial: ParsedMessage): ParsedMessage {
  const end = findHeaderEnd(head);
  const block = end ? head.subarray(0, end.headerLength) : head;
  const fields = parseHeaderFields(block);
  const get = (n: string) => fields.find((f) => f.name === n)?.value;
  const addr = (v: string | undefined): Participant[] =>
    (v?.match(/[^\s<>,;"']+@[^\s<>,;"']+/g) ?? []).map((a) => ({ address: a.toLowerCase() }));
  const date = get('date') ? Date.parse(get('date')!) : NaN;
  return {
    ...partial,
    messageId: partial.messageId ?? (get('message-id') ? stripAngles(get('message-id')!).replace(/\s+/g, '') || undefined : undefined),
    date: partial.date ?? (Number.isNaN(date) ? undefined : date),
    from: partial.from.length ? partial.from : addr(get('from')),
    to: partial.to.length ? partial.to : addr(get('to')),
    cc: partial.cc.length ? partial.cc : addr(get('cc')),
    subject: partial.subject || clip(get('subject') ?? '', 10_000),
    parseError: reason,
  };
}

/**
 * HTML to searchable text: one linear pass (no backtracking regex, so a
 * hostile page cannot make it quadratic). Tags go, script and style content
 * goes, block ends become line breaks, common entities are decoded.
 */
export function htmlToText(html: string): string {
  const src = html.length > 4 * 1024 * 1024 ? html.slice(0, 4 * 1024 * 1024) : html;
  const out: string[] = [];
  let skipUntil: string | undefined;
  let i = 0;
  while (i < src.length) {
    const lt = src.indexOf('<', i);
    const textEnd = lt < 0 ? src.length : lt;
    if (!skipUntil && textEnd > i) out.push(decodeEntities(src.slice(i, textEnd)));
    if (lt < 0) break;
    const gt = src.indexOf('>', lt + 1);
    if (gt < 0) break;
    const tag = /^<\s*(\/?)\s*([a-zA-Z0-9]+)/.exec(src.slice(lt, Math.min(gt + 1, lt + 40)));
    const name = tag?.[2]?.toLowerCase();
    const closing = tag?.[1] === '/';
    if (skipUntil) {
      if (closing && name === skipUntil) skipUntil = undefined;
    } else if (!closing && (name === 'script' || name === 'style' || name === 'head')) {
      skipUntil = name;
    } else if (name && /^(br|p|div|tr|li|h[1-6]|table|blockquote)$/.test(name)) {
      out.push('\n');
    } else out.push(' ');
    i = gt + 1;
  }
  return out.join('').replace(/[ \t]+/g, ' ');
}

const ENTITIES: Record<string, string> = { nbsp: ' ', amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

function decodeEntities(s: string): string {
  if (!s.includes('&')) return s;
  return s.replace(/&(#x[0-9a-f]{1,6}|#[0-9]{1,7}|[a-z]{2,8});/gi, (m, e: string) => {
    if (e[0] === '#') {
      const cp = e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
      return cp > 0 && cp <= 0x10ffff ? String.fromCodePoint(cp) : m;
    }
    return ENTITIES[e.toLowerCase()] ?? m;
  });
}
