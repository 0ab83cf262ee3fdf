/**
 * The audit trail for auditors: search it, export it as CSV, verify it.
 * Reading the trail is itself recorded in the trail.
 */
import { once } from 'node:events';
import { Router } from 'express';
import { z } from 'zod';
import type { Services } from '../services.js';
import type { RouteRegistry } from './route-registry.js';
import { csvHeader, csvRow } from '../audit/audit-csv.js';
import type { AuditQuery } from '../audit/audit-trail.js';

const AUDITOR = ['auditor'] as const;

const isoTime = z
  .string()
  .max(40)
  .refine((v) => !Number.isNaN(Date.parse(v)), 'an ISO-8601 time')
  .transform((v) => new Date(v).toISOString());

const filters = z.object({
  user: z.string().max(320).optional().describe('Who (e-mail, or cli:<name>)'),
  action: z.string().max(100).optional().describe('e.g. search, message.view, auth.sign_in, auth.lockout, user.create'),
  outcome: z.enum(['success', 'failure', 'denied']).optional(),
  target: z.string().max(400).optional(),
  from: isoTime.optional().describe('Earliest time, inclusive (ISO-8601)'),
  to: isoTime.optional().describe('Latest time, inclusive (ISO-8601)'),
  order: z.enum(['asc', 'desc']).default('desc'),
});

const filterDetails = (q: Record<string, unknown>) => Object.fromEntries(Object.entries(q).filter(([k, v]) => v !== undefined && !['cursor', 'limit'].includes(k)));

/** Records per catalog page while exporting (each page is one catalog call; memory is one page). */
const EXPORT_PAGE = 1000;

export function auditRouter(s: Services, registry: RouteRegistry): Router {
  const r = Router();

  registry.add(
    r,
    {
      method: 'get',
      path: '/api/audit',
      tag: 'audit',
      summary: 'Search the audit trail',
      access: AUDITOR,
      query: filters.extend({ limit: z.coerce.number().int().min(1).max(1000).default(100), cursor: z.string().max(2000).optional() }),
      responses: { 200: '`{records, nextCursor}`' },
      audit: { action: 'audit.search', details: ({ query }) => filterDetails(query) },
    },
    async ({ query }, _req, res) => {
      const page = await s.audit.search(query as AuditQuery);
      res.json({ records: page.records, nextCursor: page.nextCursor ?? null });
    },
  );

  registry.add(
    r,
    {
      method: 'get',
      path: '/api/audit/export.csv',
      tag: 'audit',
      summary: 'The matching audit records as CSV (formula-safe)',
      access: AUDITOR,
      query: filters,
      responses: { 200: { description: 'CSV, one record per line', contentType: 'text/csv' } },
      audit: { action: 'audit.export', details: ({ query }) => filterDetails(query) },
    },
    async ({ query }, _req, res) => {
      res.setHeader('Content-Type', 'text/csv; charset=utf-8');
      res.setHeader('Content-Disposition', `attachment; filename="audit-${new Date().toISOString().slice(0, 10)}.csv"`);
      res.write(csvHeader());
      let cursor: string | undefined;
      let rows = 0;
      do {
        const page = await s.audit.search({ ...(query as AuditQuery), limit: EXPORT_PAGE, cursor });
        // Backpressure: a slow client holds at most one page in memory.
        if (!res.write(page.records.map(csvRow).join(''))) await once(res, 'drain');
        rows += page.records.length;
        cursor = page.nextCursor;
      } while (cursor);
      res.locals.auditDetails = { rows };
      res.end();
    },
  );

  registry.add(
    r,
    { method: 'get', path: '/api/audit/verify', tag: 'audit', summary: 'Verify the whole trail: chain, order, seals; names the first bad record', access: AUDITOR, responses: { 200: '`{ok, records, head, seals, firstBad?}`' }, audit: { action: 'audit.verify' } },
    async (_i, _req, res) => {
      const report = await s.audit.verify();
      res.locals.auditDetails = { ok: report.ok, records: report.records, ...(report.firstBad ? { firstBad: report.firstBad.seq } : {}) };
      res.json(report);
    },
  );

  registry.add(
    r,
    { method: 'get', path: '/api/audit/head', tag: 'audit', summary: 'The chain head: the last record’s sequence number, hash and time', access: AUDITOR, responses: { 200: '`{seq, hash, time}`' } },
    async (_i, _req, res) => {
      res.json(await s.audit.head());
    },
  );
  return r;
}
