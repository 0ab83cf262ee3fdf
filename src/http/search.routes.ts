/**
 * Search and message routes: `/api/search`, `/api/messages/:id` and its raw
 * bytes, attachments and thread. Scope is applied by the search service on
 * every path (promise 7); an out-of-scope id answers 404.
 */
import { pipeline } from 'node:stream/promises';
import { Router, type Request, type Response } from 'express';
import { z } from 'zod';
import type { Services } from '../services.js';
import type { Scope } from '../ports/message-index.js';
import type { IndexedMessage } from '../domain/indexed-message.js';
import { extractAttachment } from '../../ingest/index.js';
import { findHeaderEnd, parseHeaderFields } from '../../ingest/mime/header-block.js';
import { NotFoundError, UnauthorizedError } from '../errors.js';
import { CONTENT_ROLES } from '../auth/roles.js';
import '../auth/request.js';
import type { RouteRegistry } from './route-registry.js';

const searchInput = z.object({
  q: z.string().max(2000).default('').describe('Query in the investigator query language (docs/search.md). Empty: every message in scope.'),
  size: z.coerce.number().int().min(1).max(500).default(50).describe('Hits per page, 1 to 500.'),
  sort: z.enum(['date', 'relevance']).default('date'),
  order: z.enum(['asc', 'desc']).default('desc'),
  cursor: z.string().max(2000).optional().describe('nextCursor of the previous page.'),
  facets: z
    .union([z.boolean(), z.enum(['true', 'false'])])
    .default(true)
    .transform((v) => v === true || v === 'true')
    .describe('Compute facets (senders, recipient domains, years) over all matches.'),
});

const idParam = z.object({ id: z.string().regex(/^[0-9a-f]{64}$/, 'a message id is a lower-case SHA-256') });
const attachmentParam = idParam.extend({ n: z.coerce.number().int().min(0).max(10_000) });

/**
 * The caller's scope, as the authentication middleware resolved it (null =
 * unrestricted). Fail closed: a request that reached a route without it is
 * refused, never treated as unrestricted.
 */
export function scopeOf(req: Request): Scope | null {
  if (!req.user || req.scope === undefined) throw new UnauthorizedError();
  return req.scope;
}

/** Who may read message content. */
const CONTENT = CONTENT_ROLES;
const searchAudit = { action: 'search', details: (q: z.infer<typeof searchInput>) => ({ q: q.q, sort: q.sort, order: q.order, size: q.size, ...(q.cursor ? { page: 'next' } : {}) }) };

/** Bytes of the stored message read to show its header block in the message view. */
const HEADER_VIEW_BYTES = 256 * 1024;

export function searchRouter(s: Services, registry: RouteRegistry): Router {
  const r = Router();
  const runSearch = async (input: z.infer<typeof searchInput>, req: Request, res: Response) => {
    const result = await s.search.search({ q: input.q, size: input.size, sort: input.sort, order: input.order, cursor: input.cursor, facets: input.facets, scope: scopeOf(req) });
    res.locals.auditDetails = { total: result.total };
    return result;
  };

  registry.add(
    r,
    { method: 'get', path: '/api/search', tag: 'search', summary: 'Search archived messages', query: searchInput, responses: { 200: '`{total, hits, facets, nextCursor}`', 400: 'Query syntax error (with position) or bad parameter' }, access: CONTENT, audit: { action: searchAudit.action, details: ({ query }) => searchAudit.details(query) } },
    async ({ query }, req, res) => {
      res.json(await runSearch(query, req, res));
    },
  );
  registry.add(
    r,
    { method: 'post', path: '/api/search', tag: 'search', summary: 'Search archived messages (JSON body)', body: searchInput, responses: { 200: '`{total, hits, facets, nextCursor}`', 400: 'Query syntax error (with position) or bad parameter' }, access: CONTENT, audit: { action: searchAudit.action, details: ({ body }) => searchAudit.details(body) } },
    async ({ body }, req, res) => {
      res.json(await runSearch(body, req, res));
    },
  );

  registry.add(
    r,
    { method: 'get', path: '/api/messages/:id', tag: 'messages', summary: 'One message: headers, envelopes, body text, attachments', params: idParam, responses: { 200: 'The message', 404: 'No such message in your scope' }, access: CONTENT, audit: { action: 'message.view', target: ({ params }) => params.id } },
    async ({ params }, req, res) => {
      const doc = await s.search.getMessage(params.id, scopeOf(req));
      const [envelopes, headers] = await Promise.all([s.store.getEnvelopes(doc.id), readHeaders(s, doc.id)]);
      res.json(messageView(doc, envelopes, headers));
    },
  );

  registry.add(
    r,
    {
      method: 'get',
      path: '/api/messages/:id/raw',
      tag: 'messages',
      summary: 'The original bytes, verified against the SHA-256 while they are sent',
      params: idParam,
      responses: { 200: { description: 'The archived original', contentType: 'message/rfc822' }, 404: 'No such message in your scope', 500: 'Integrity failure: the transfer is aborted and an alert is logged' },
      access: CONTENT,
      audit: { action: 'message.download_raw', target: ({ params }) => params.id },
    },
    async ({ params }, req, res) => {
      const doc = await s.search.getMessage(params.id, scopeOf(req));
      const stream = await s.store.getMessage(doc.id, { verify: true });
      res.setHeader('Content-Type', 'message/rfc822');
      res.setHeader('Content-Length', String(doc.size));
      res.setHeader('Content-Disposition', `attachment; filename="${doc.id}.eml"`);
      res.setHeader('X-Content-SHA256', doc.id);
      try {
        await pipeline(stream, res);
      } catch (err) {
        s.log.error({ err, sha256: doc.id, alert: 'integrity' }, 'INTEGRITY ALERT: stored bytes do not match their SHA-256; download aborted');
        throw err;
      }
    },
  );

  registry.add(
    r,
    {
      method: 'get',
      path: '/api/messages/:id/attachments/:n',
      tag: 'messages',
      summary: 'One attachment, decoded (n is its 0-based position in the message view)',
      params: attachmentParam,
      responses: { 200: { description: 'The attachment bytes', contentType: 'application/octet-stream' }, 404: 'No such message or attachment' },
      access: CONTENT,
      audit: { action: 'message.download_attachment', target: ({ params }) => params.id, details: ({ params }) => ({ attachment: params.n }) },
    },
    async ({ params }, req, res) => {
      const doc = await s.search.getMessage(params.id, scopeOf(req));
      if (params.n >= doc.attachments.length) throw new NotFoundError(`attachment ${params.n} not found`);
      const att = await extractAttachment(await s.store.getMessage(doc.id, { verify: false }), params.n);
      // Attachment content is hostile: always a download, never rendered by the browser.
      res.setHeader('Content-Type', 'application/octet-stream');
      res.setHeader('X-Content-Type-Options', 'nosniff');
      const name = (att.filename ?? `attachment-${params.n}`).replace(/[^\w.\- ]+/g, '_');
      res.setHeader('Content-Disposition', `attachment; filename="${name}"; filename*=UTF-8''${encodeURIComponent(att.filename ?? name)}`);
      await pipeline(att.stream, res);
    },
  );

  registry.add(
    r,
    { method: 'get', path: '/api/messages/:id/thread', tag: 'messages', summary: 'The messages of this message’s thread inside your scope, oldest first', params: idParam, responses: { 200: '`{threadId, messages}`', 404: 'No such message in your scope' }, access: CONTENT, audit: { action: 'message.thread', target: ({ params }) => params.id } },
    async ({ params }, req, res) => {
      const scope = scopeOf(req);
      const doc = await s.search.getMessage(params.id, scope);
      const messages = await s.search.thread(doc.id, scope);
      res.json({
        threadId: doc.threadId,
        messages: messages.map((m) => ({ id: m.id, messageId: m.messageId ?? null, date: new Date(m.date).toISOString(), from: m.from, subject: m.subject, inReplyTo: m.inReplyTo ?? null })),
      });
    },
  );
  return r;
}

async function readHeaders(s: Services, id: string): Promise<{ name: string; value: string }[]> {
  const stream = await s.store.getMessage(id, { verify: false });
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of stream) {
    parts.push(c as Buffer);
    n += (c as Buffer).length;
    if (n >= HEADER_VIEW_BYTES) break;
  }
  stream.destroy();
  const head = Buffer.concat(parts);
  const end = findHeaderEnd(head);
  return parseHeaderFields(end ? head.subarray(0, end.headerLength) : head)
    .slice(0, 500)
    .map((f) => ({ name: f.name, value: f.value }));
}

function messageView(doc: IndexedMessage, envelopes: unknown[], headers: { name: string; value: string }[]) {
  return {
    id: doc.id,
    sha256: doc.id,
    messageId: doc.messageId ?? null,
    date: new Date(doc.date).toISOString(),
    receivedAt: new Date(doc.receivedAt).toISOString(),
    subject: doc.subject,
    from: doc.from,
    sender: doc.sender,
    to: doc.to,
    cc: doc.cc,
    bcc: doc.bcc,
    replyTo: doc.replyTo,
    envelopeRecipients: doc.envelopeRecipients,
    envelopes,
    headers,
    body: doc.body,
    attachments: doc.attachments.map((a, i) => ({ index: i, ...a })),
    threadId: doc.threadId,
    inReplyTo: doc.inReplyTo ?? null,
    references: doc.references,
    size: doc.size,
    hasAttachments: doc.hasAttachments,
    parseError: doc.parseError ?? null,
  };
}
