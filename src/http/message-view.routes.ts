/**
 * Routes the web UI's message view needs beyond the JSON API: the body as a
 * sanitised, inert HTML document for a sandboxed iframe (promise 8), and an
 * on-demand integrity check of the stored bytes against their SHA-256
 * (promise 2). Both are scope-checked like every message route (an
 * out-of-scope id answers 404) and audited.
 */
import { Router } from 'express';
import { z } from 'zod';
import type { Services } from '../services.js';
import { CONTENT_ROLES } from '../auth/roles.js';
import { IntegrityError } from '../errors.js';
import { extractBody, viewerCsp, viewerDocument } from '../web/message-html.js';
import { scopeOf } from './search.routes.js';
import type { RouteRegistry } from './route-registry.js';

const idParam = z.object({ id: z.string().regex(/^[0-9a-f]{64}$/, 'a message id is a lower-case SHA-256') });
const htmlQuery = z.object({
  images: z.enum(['0', '1']).default('0').describe('1: let https images load (the per-message "load images" choice). Default: nothing remote loads.'),
});

export function messageViewRouter(s: Services, registry: RouteRegistry): Router {
  const r = Router();

  registry.add(
    r,
    {
      method: 'get',
      path: '/api/messages/:id/html',
      tag: 'messages',
      summary: 'The body as a sanitised HTML document for a sandboxed iframe (scripts, forms, handlers and remote content removed; CSP loads nothing remote unless images=1)',
      params: idParam,
      query: htmlQuery,
      responses: { 200: { description: 'A complete, inert HTML document with its own Content-Security-Policy', contentType: 'text/html' }, 404: 'No such message in your scope' },
      access: CONTENT_ROLES,
      audit: { action: 'message.view_body', target: ({ params }) => params.id, details: ({ query }) => ({ images: query.images === '1' }) },
    },
    async ({ params, query }, req, res) => {
      const doc = await s.search.getMessage(params.id, scopeOf(req));
      const body = await extractBody(await s.store.getMessage(doc.id, { verify: false }));
      const html = viewerDocument(body);
      res.setHeader('Content-Type', 'text/html; charset=utf-8');
      res.setHeader('Content-Security-Policy', viewerCsp(query.images === '1'));
      res.setHeader('X-Content-Type-Options', 'nosniff');
      res.setHeader('Cache-Control', 'private, no-store');
      res.setHeader('Referrer-Policy', 'no-referrer');
      // Framable by the archive's own pages only.
      res.setHeader('X-Frame-Options', 'SAMEORIGIN');
      res.send(html);
    },
  );

  registry.add(
    r,
    {
      method: 'get',
      path: '/api/messages/:id/integrity',
      tag: 'messages',
      summary: 'Re-hash the stored bytes now and compare them with the id (SHA-256)',
      params: idParam,
      responses: { 200: '`{sha256, verified, size, checkedAt}`', 404: 'No such message in your scope' },
      access: CONTENT_ROLES,
      audit: { action: 'message.verify', target: ({ params }) => params.id },
    },
    async ({ params }, req, res) => {
      const doc = await s.search.getMessage(params.id, scopeOf(req));
      let verified = true;
      let size = 0;
      try {
        const stream = await s.store.getMessage(doc.id, { verify: true });
        for await (const c of stream) size += (c as Buffer).length;
      } catch (err) {
        if (!(err instanceof IntegrityError)) throw err;
        s.log.error({ err, sha256: doc.id, alert: 'integrity' }, 'INTEGRITY ALERT: stored bytes do not match their SHA-256');
        verified = false;
      }
      res.locals.auditDetails = { verified };
      res.json({ sha256: doc.id, verified, size, checkedAt: new Date().toISOString() });
    },
  );
  return r;
}
