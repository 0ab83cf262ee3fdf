/**
 * Background job visibility: counts and failed jobs per queue, and retrying a
 * failed job. The same operations are in the CLI (`archive jobs`).
 */
import { Router } from 'express';
import { z } from 'zod';
import type { Services } from '../services.js';
import type { RouteRegistry } from './route-registry.js';
import { INDEX_JOB, failedJobView } from '../../ingest/index.js';
import { EXPORT_JOB } from '../export/index.js';

const QUEUES = [INDEX_JOB, EXPORT_JOB] as const;
const queueParam = z.object({ queue: z.enum(QUEUES) });
const ADMIN = ['admin'] as const;

export function jobsRouter(s: Services, registry: RouteRegistry): Router {
  const r = Router();
  registry.add(r, { method: 'get', path: '/api/jobs', tag: 'jobs', summary: 'Job counts per queue', responses: { 200: '`{queues: {name: counts}}`' }, access: ADMIN }, async (_i, _req, res) => {
    const queues: Record<string, unknown> = {};
    for (const q of QUEUES) queues[q] = await s.queue.counts(q);
    res.json({ driver: s.queue.driver, queues });
  });
  registry.add(
    r,
    { method: 'get', path: '/api/jobs/:queue/failed', tag: 'jobs', summary: 'Failed jobs of a queue, newest first', params: queueParam, query: z.object({ limit: z.coerce.number().int().min(1).max(1000).default(100) }), responses: { 200: '`{jobs}`' }, access: ADMIN },
    async ({ params, query }, _req, res) => {
      res.json({ jobs: (await s.queue.failed(params.queue, query.limit)).map(failedJobView) });
    },
  );
  registry.add(
    r,
    { method: 'post', path: '/api/jobs/:queue/failed/:id/retry', tag: 'jobs', summary: 'Retry one failed job', params: queueParam.extend({ id: z.string().min(1).max(200) }), responses: { 202: 'Queued again', 404: 'No such failed job' }, access: ADMIN, audit: { action: 'job.retry', target: ({ params }) => `${params.queue}/${params.id}` } },
    async ({ params }, _req, res) => {
      await s.queue.retry(params.queue, params.id);
      res.status(202).json({ retried: params.id });
    },
  );
  return r;
}
