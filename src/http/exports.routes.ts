/**
 * Export routes: start an export of a query inside your scope, follow its
 * progress, cancel it, download the finished package as a ZIP; and the
 * public key that signs export manifests. Only officers export (a
 * reviewer may read but not produce). Each user sees only their own
 * exports; someone else's id answers 404. Starting, cancelling and
 * downloading go into the audit trail (the job records how each ended).
 */
import { pipeline } from 'node:stream/promises';
import { Router, type Request } from 'express';
import { z } from 'zod';
import type { Services } from '../services.js';
import type { Role } from '../auth/roles.js';
import { exportRequestSchema, EXPORT_ID, type ExportRecordData, type ExportRequester } from '../export/index.js';
import { UnauthorizedError } from '../errors.js';
import { scopeOf } from './search.routes.js';
import type { RouteRegistry } from './route-registry.js';

const EXPORTERS: readonly Role[] = ['officer'];
const idParam = z.object({ id: z.string().regex(EXPORT_ID, 'an export id (exp-…)') });

/** Who asks: the signed-in user. */
export function requesterOf(req: Request): ExportRequester {
  if (!req.user) throw new UnauthorizedError();
  return { id: req.user.email, ...(req.user.name ? { name: req.user.name } : {}) };
}

/** What the API shows of an export: no server paths, no runner internals. */
export function exportView(d: ExportRecordData) {
  return {
    id: d.id,
    status: d.status,
    format: d.request.format,
    source: d.request.source,
    options: { bates: d.request.bates, pdf: d.request.pdf, dedup: d.request.dedup, custodians: d.request.custodians, volume: d.request.volume, fields: d.request.fields ?? null },
    requestedBy: d.requestedBy,
    createdAt: d.createdAt,
    startedAt: d.startedAt ?? null,
    finishedAt: d.finishedAt ?? null,
    cancelRequested: d.cancelRequested,
    progress: d.progress,
    counts: d.counts ?? null,
    manifestSha256: d.manifestSha256 ?? null,
    error: d.error ?? null,
    download: d.status === 'done' ? `/api/exports/${d.id}/download` : null,
  };
}

export function exportsRouter(s: Services, registry: RouteRegistry): Router {
  const r = Router();

  registry.add(
    r,
    {
      method: 'post',
      path: '/api/exports',
      tag: 'exports',
      summary: 'Start an export of a query (inside your scope) as EML, MBOX, Bates-numbered PDF or a load-file production',
      body: exportRequestSchema,
      responses: { 202: 'The export, queued', 400: 'Bad request or query syntax error' },
      access: EXPORTERS,
      audit: { action: 'export.create', details: ({ body }) => ({ source: body.source, format: body.format, dedup: body.dedup, custodians: body.custodians }) },
    },
    async ({ body }, req, res) => {
      const data = await s.exports.start(body, requesterOf(req), scopeOf(req));
      res.locals.auditDetails = { exportId: data.id, scope: data.scope };
      res.status(202).json(exportView(data));
    },
  );

  registry.add(
    r,
    { method: 'get', path: '/api/exports', tag: 'exports', summary: 'Your exports, newest first', query: z.object({ limit: z.coerce.number().int().min(1).max(500).default(50), cursor: z.string().max(2000).optional() }), responses: { 200: '`{exports, nextCursor}`' }, access: EXPORTERS },
    async ({ query }, req, res) => {
      const page = await s.exports.list(requesterOf(req), query.limit, query.cursor);
      res.json({ exports: page.exports.map(exportView), nextCursor: page.nextCursor ?? null });
    },
  );

  registry.add(
    r,
    { method: 'get', path: '/api/exports/:id', tag: 'exports', summary: 'One export: status and progress (items done/total, documents, pages, bytes)', params: idParam, responses: { 200: 'The export', 404: 'No such export of yours' }, access: EXPORTERS },
    async ({ params }, req, res) => {
      res.json(exportView(await s.exports.get(params.id, requesterOf(req))));
    },
  );

  registry.add(
    r,
    {
      method: 'post',
      path: '/api/exports/:id/cancel',
      tag: 'exports',
      summary: 'Cancel an export (a running one stops at its next checkpoint, within seconds)',
      params: idParam,
      responses: { 202: 'Cancelled, or cancellation requested', 404: 'No such export of yours', 409: 'Already finished' },
      access: EXPORTERS,
      audit: { action: 'export.cancel' },
    },
    async ({ params }, req, res) => {
      res.status(202).json(exportView(await s.exports.cancel(params.id, requesterOf(req))));
    },
  );

  registry.add(
    r,
    {
      method: 'get',
      path: '/api/exports/:id/download',
      tag: 'exports',
      summary: 'The finished package as a ZIP (streamed): files, manifest.json and its Ed25519 signature manifest.sig',
      params: idParam,
      responses: { 200: { description: 'The package', contentType: 'application/zip' }, 404: 'No such export of yours', 409: 'Not finished' },
      access: EXPORTERS,
      audit: { action: 'export.download' },
    },
    async ({ params }, req, res) => {
      const { filename, stream, data } = await s.exports.download(params.id, requesterOf(req));
      res.locals.auditDetails = { manifestSha256: data.manifestSha256 };
      res.setHeader('Content-Type', 'application/zip');
      res.setHeader('Content-Disposition', `attachment; filename="${filename}"`);
      res.setHeader('X-Manifest-SHA256', data.manifestSha256 ?? '');
      await pipeline(stream, res);
    },
  );

  registry.add(
    r,
    { method: 'get', path: '/api/keys/signing', tag: 'exports', summary: 'The Ed25519 public key that signs export manifests, and its fingerprint', responses: { 200: '`{algorithm, publicKey, fingerprint}`' }, access: 'public' },
    async (_i, _req, res) => {
      const key = await s.exports.signingKey();
      res.json({ algorithm: 'Ed25519', publicKey: key.publicKeyPem, fingerprint: key.fingerprint });
    },
  );
  return r;
}
