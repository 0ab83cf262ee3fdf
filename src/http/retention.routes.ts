/**
 * Retention API: policies (admin), cases and legal holds (officers, within
 * their scope), disposition (admin runs it; approvals in four-eyes mode) and
 * the auditors' reports as JSON, CSV or PDF. Every change goes into the audit
 * trail twice over: the route's record (who, from where, outcome) and the
 * retention engine's own (what changed).
 */
import { Router, type Request, type Response } from 'express';
import { z } from 'zod';
import { DateTime } from 'luxon';
import type { Services } from '../services.js';
import type { Role } from '../auth/roles.js';
import { UnauthorizedError } from '../errors.js';
import type { PolicyInput, RetentionActor } from '../../retention/index.js';
import { checkFixity } from '../integrity/fixity-check.js';
import { loadSigningKey } from '../export/signing-key.js';
import {
  certificateCsv,
  certificatePdf,
  holdReportCsv,
  holdReportPdf,
  retentionReportCsv,
  retentionReportPdf,
  signCertificate,
} from '../reports/retention-reports.js';
import { scopeOf } from './search.routes.js';
import type { RouteRegistry } from './route-registry.js';

const ADMIN: readonly Role[] = ['admin'];
const OFFICER: readonly Role[] = ['officer'];
const READERS: readonly Role[] = ['admin', 'officer', 'auditor'];
const AUDITORS: readonly Role[] = ['auditor', 'admin'];

const address = z.string().trim().min(1).max(320);
export const policyInputSchema = z.object({
  name: z.string().trim().min(1).max(200),
  description: z.string().max(2000).optional(),
  matcher: z
    .object({
      senders: z.array(address).max(1000).optional(),
      recipients: z.array(address).max(1000).optional(),
      envelopeRecipients: z.array(address).max(1000).optional(),
      custodians: z.array(address).max(1000).optional(),
      hasAttachment: z.boolean().optional(),
      query: z.string().max(2000).optional(),
    })
    .default({}),
  period: z.object({
    unit: z.enum(['days', 'months', 'years', 'forever']),
    count: z.number().int().min(0).max(100_000).default(0),
    from: z.enum(['sent', 'received']).default('received'),
  }),
  action: z.enum(['delete', 'review']).default('delete'),
});
const idParam = z.object({ id: z.string().min(1).max(100) });
const isoDate = z.string().refine((s) => DateTime.fromISO(s, { zone: 'utc' }).isValid, 'an ISO-8601 date');
const periodQuery = z.object({
  from: isoDate.optional().describe('Start (ISO-8601, UTC), default 30 days ago'),
  to: isoDate.optional().describe('End (ISO-8601, UTC), default now'),
  format: z.enum(['json', 'csv', 'pdf']).default('json'),
});

export function actorOf(req: Request): RetentionActor {
  if (!req.user) throw new UnauthorizedError();
  return { user: req.user.email, clientAddress: req.ip ?? null, scope: scopeOf(req) };
}

export function periodOf(q: { from?: string; to?: string }): { from: string; to: string } {
  const to = q.to ? DateTime.fromISO(q.to, { zone: 'utc' }) : DateTime.utc();
  const from = q.from ? DateTime.fromISO(q.from, { zone: 'utc' }) : to.minus({ days: 30 });
  // A bare date as the end means the whole of that day.
  const end = q.to && /^\d{4}-\d{2}-\d{2}$/.test(q.to) ? to.endOf('day') : to;
  return { from: from.toJSDate().toISOString(), to: end.toJSDate().toISOString() };
}

function send(res: Response, format: 'json' | 'csv' | 'pdf', name: string, json: unknown, csv: () => string, pdf: () => Promise<Buffer>): Promise<void> | void {
  if (format === 'json') {
    res.json(json);
    return;
  }
  if (format === 'csv') {
    res.setHeader('Content-Type', 'text/csv; charset=utf-8');
    res.setHeader('Content-Disposition', `attachment; filename="${name}.csv"`);
    res.send(csv());
    return;
  }
  return pdf().then((b) => {
    res.setHeader('Content-Type', 'application/pdf');
    res.setHeader('Content-Disposition', `attachment; filename="${name}.pdf"`);
    res.send(b);
  });
}

export function retentionRouter(s: Services, registry: RouteRegistry): Router {
  const r = Router();
  const meta = { organisation: s.config.ARCHIVE_ORG_NAME };

  // --- policies
  registry.add(r, { method: 'get', path: '/api/retention/policies', tag: 'retention', summary: 'Retention policies (current versions)', responses: { 200: '`{policies}`' }, access: READERS }, async (_i, _req, res) => {
    res.json({ policies: await s.retention.listPolicies() });
  });
  registry.add(
    r,
    { method: 'get', path: '/api/retention/policies/:id', tag: 'retention', summary: 'One policy with every version', params: idParam, responses: { 200: '`{policy, versions}`', 404: 'No such policy' }, access: READERS },
    async ({ params }, _req, res) => {
      res.json({ policy: await s.retention.getPolicy(params.id), versions: await s.retention.policyVersions(params.id) });
    },
  );
  registry.add(
    r,
    { method: 'post', path: '/api/retention/policies/simulate', tag: 'retention', summary: 'What a new policy, or a new version of one, would do: counts per outcome; saves nothing', body: z.object({ id: z.string().optional(), policy: policyInputSchema }), responses: { 200: 'Counts per outcome' }, access: ADMIN, audit: { action: 'retention.policy.simulate', target: ({ body }) => body.id ?? null } },
    async ({ body }, _req, res) => {
      res.json(await s.retention.simulate(body.policy as PolicyInput, body.id));
    },
  );
  registry.add(
    r,
    { method: 'post', path: '/api/retention/policies', tag: 'retention', summary: 'Create a policy (applied to matching messages at once)', body: policyInputSchema, responses: { 201: 'The policy' }, access: ADMIN, audit: { action: 'retention.policy.create', details: ({ body }) => ({ name: body.name }) } },
    async ({ body }, req, res) => {
      res.status(201).json(await s.retention.createPolicy(body as PolicyInput, actorOf(req)));
    },
  );
  registry.add(
    r,
    { method: 'put', path: '/api/retention/policies/:id', tag: 'retention', summary: 'Save a new version of a policy; recomputes retain-until (never shortens an applied date)', params: idParam, body: policyInputSchema.extend({ expectedVersion: z.number().int().min(1).optional() }), responses: { 200: 'The new version', 409: 'Changed by someone else' }, access: ADMIN, audit: { action: 'retention.policy.update' } },
    async ({ params, body }, req, res) => {
      const { expectedVersion, ...input } = body;
      res.json(await s.retention.updatePolicy(params.id, input as PolicyInput, actorOf(req), expectedVersion));
    },
  );
  registry.add(
    r,
    { method: 'delete', path: '/api/retention/policies/:id', tag: 'retention', summary: 'Delete a policy that governs no message', params: idParam, responses: { 204: 'Deleted', 409: 'It governs messages' }, access: ADMIN, audit: { action: 'retention.policy.delete' } },
    async ({ params }, req, res) => {
      await s.retention.deletePolicy(params.id, actorOf(req));
      res.status(204).end();
    },
  );
  registry.add(
    r,
    { method: 'get', path: '/api/retention/messages/:id', tag: 'retention', summary: "A message's retention state: policy, retain-until, holds", params: z.object({ id: z.string().regex(/^[0-9a-f]{64}$/) }), responses: { 200: 'Retention state', 404: 'Unknown' }, access: READERS },
    async ({ params }, _req, res) => {
      const m = await s.retention.getMessageRetention(params.id);
      if (!m) {
        res.status(404).json({ error: { code: 'not_found', message: 'No retention record for this message' } });
        return;
      }
      res.json(m);
    },
  );

  // --- cases and holds
  registry.add(r, { method: 'get', path: '/api/cases', tag: 'holds', summary: 'Cases', responses: { 200: '`{cases}`' }, access: READERS }, async (_i, _req, res) => {
    res.json({ cases: await s.retention.listCases() });
  });
  registry.add(
    r,
    { method: 'post', path: '/api/cases', tag: 'holds', summary: 'Open a case', body: z.object({ name: z.string().trim().min(1).max(200), matterNumber: z.string().trim().min(1).max(100), description: z.string().max(5000).optional(), custodians: z.array(address).max(10_000).default([]) }), responses: { 201: 'The case' }, access: OFFICER, audit: { action: 'retention.case.create', details: ({ body }) => ({ matterNumber: body.matterNumber }) } },
    async ({ body }, req, res) => {
      res.status(201).json(await s.retention.createCase(body, actorOf(req)));
    },
  );
  registry.add(
    r,
    { method: 'get', path: '/api/cases/:id', tag: 'holds', summary: 'A case with its holds', params: idParam, responses: { 200: '`{case, holds}`', 404: 'No such case' }, access: READERS },
    async ({ params }, _req, res) => {
      res.json({ case: await s.retention.getCase(params.id), holds: await s.retention.listHolds(params.id) });
    },
  );
  registry.add(
    r,
    {
      method: 'post',
      path: '/api/cases/:id/holds',
      tag: 'holds',
      summary: "Place a legal hold: custodians' mail and/or a query, optional date range; existing and future messages, within your scope",
      params: idParam,
      body: z.object({ name: z.string().trim().min(1).max(200), custodians: z.array(address).max(10_000).optional(), query: z.string().max(2000).optional(), dateFrom: z.string().regex(/^\d{4}-\d{2}-\d{2}$/).optional(), dateTo: z.string().regex(/^\d{4}-\d{2}-\d{2}$/).optional() }),
      responses: {
        201: 'The hold, applied: `messageCount` messages are held. With `applyPending` and `lastApplyError` when applying it to the archived mail failed (storage or index down): it is placed and protects that mail, and the disposition job resumes the application',
        202: 'The hold, placed and in force, still being applied to the archived mail after `ARCHIVE_HOLD_WAIT_SECONDS` (`applyPending`; `messageCount` so far): the application goes on in the background (GET /api/holds shows its progress)',
      },
      access: OFFICER,
      audit: { action: 'retention.hold.create', details: ({ body }) => ({ custodians: body.custodians, query: body.query }) },
    },
    async ({ params, body }, req, res) => {
      const hold = await s.retention.createHold({ ...body, caseId: params.id }, actorOf(req), { waitMs: s.config.ARCHIVE_HOLD_WAIT_SECONDS * 1000 });
      res.status(hold.applyPending && !hold.lastApplyError ? 202 : 201).json(hold);
    },
  );
  registry.add(r, { method: 'get', path: '/api/holds', tag: 'holds', summary: 'Legal holds', responses: { 200: '`{holds}`' }, access: READERS }, async (_i, _req, res) => {
    res.json({ holds: await s.retention.listHolds() });
  });
  registry.add(
    r,
    { method: 'post', path: '/api/holds/:id/release', tag: 'holds', summary: 'Release a hold (a reason is required); flags are cleared only where no other hold covers', params: idParam, body: z.object({ reason: z.string().trim().min(1).max(2000) }), responses: { 200: '`{released, stillHeld, pending}`: pending messages (a legal-hold flag the storage would not clear) stay held and are retried by the disposition job' }, access: OFFICER, audit: { action: 'retention.hold.release', details: ({ body }) => ({ reason: body.reason }) } },
    async ({ params, body }, req, res) => {
      res.json(await s.retention.releaseHold(params.id, body.reason, actorOf(req)));
    },
  );

  // --- disposition
  registry.add(
    r,
    { method: 'post', path: '/api/retention/dispose', tag: 'retention', summary: 'Run the disposition engine now (dryRun: list what would go)', body: z.object({ dryRun: z.boolean().default(false) }), responses: { 200: 'The run report' }, access: ADMIN, audit: { action: 'retention.dispose.run', details: ({ body }) => ({ dryRun: body.dryRun }) } },
    async ({ body }, req, res) => {
      res.json(await s.disposition.run({ dryRun: body.dryRun, actor: actorOf(req) }));
    },
  );
  registry.add(r, { method: 'get', path: '/api/retention/dispositions/pending', tag: 'retention', summary: 'Dispositions waiting for approval (four-eyes, review policies)', responses: { 200: '`{pending}`' }, access: ['admin', 'officer', 'auditor'] }, async (_i, _req, res) => {
    res.json({ pending: await s.disposition.pending() });
  });
  registry.add(
    r,
    { method: 'post', path: '/api/retention/dispositions/approve', tag: 'retention', summary: 'Approve proposed dispositions (not your own proposals)', body: z.object({ sha256: z.array(z.string().regex(/^[0-9a-f]{64}$/)).min(1).max(10_000) }), responses: { 200: '`{approved, waiting}`' }, access: ['admin', 'officer'], audit: { action: 'retention.disposition.approve', details: ({ body }) => ({ messages: body.sha256.length }) } },
    async ({ body }, req, res) => {
      res.json(await s.disposition.approve(body.sha256, actorOf(req)));
    },
  );

  // --- reports
  registry.add(
    r,
    { method: 'get', path: '/api/reports/retention', tag: 'reports', summary: 'Retention report (JSON, CSV or PDF); fixity=true re-hashes the store first', query: periodQuery.extend({ fixity: z.enum(['true', 'false']).default('false') }), responses: { 200: 'The report' }, access: AUDITORS, audit: { action: 'report.retention', details: ({ query }) => ({ format: query.format }) } },
    async ({ query }, _req, res) => {
      const data = await s.retentionReports.retention(periodOf(query));
      if (query.fixity === 'true') {
        const f = await checkFixity(s.store);
        data.fixity = { checked: f.checked, ok: f.ok, problems: f.problems.length, bytes: f.bytes, startedAt: f.startedAt, finishedAt: f.finishedAt };
      }
      await send(res, query.format, 'retention-report', data, () => retentionReportCsv(data), () => retentionReportPdf(data, meta));
    },
  );
  registry.add(
    r,
    { method: 'get', path: '/api/reports/certificate', tag: 'reports', summary: 'Signed disposition certificate for a period (JSON, CSV item list, or PDF)', query: periodQuery, responses: { 200: 'The certificate' }, access: AUDITORS, audit: { action: 'report.certificate', details: ({ query }) => ({ format: query.format }) } },
    async ({ query }, _req, res) => {
      const data = await s.retentionReports.certificate(periodOf(query));
      const cert = signCertificate(data, meta, await loadSigningKey(s.config));
      await send(res, query.format, 'disposition-certificate', { certificate: cert, items: data.items }, () => certificateCsv(data), () => certificatePdf(data, cert, meta));
    },
  );
  registry.add(
    r,
    { method: 'get', path: '/api/reports/holds/:id', tag: 'reports', summary: 'Legal hold report of a case (JSON, CSV or PDF)', params: idParam, query: z.object({ format: z.enum(['json', 'csv', 'pdf']).default('json') }), responses: { 200: 'The report', 404: 'No such case' }, access: ['auditor', 'officer'], audit: { action: 'report.holds' } },
    async ({ params, query }, _req, res) => {
      const data = await s.retentionReports.holdReport(params.id);
      await send(res, query.format, `hold-report-${data.kase.matterNumber.replace(/[^A-Za-z0-9._-]/g, '_')}`, data, () => holdReportCsv(data), () => holdReportPdf(data, meta));
    },
  );
  return r;
}
