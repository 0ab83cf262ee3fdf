/**
 * `GET /api/admin/ingest-stats`: messages and bytes archived per hour, day or
 * month (by receive time, UTC), for the Administration page's chart.
 *
 * Derived from the index (`MessageIndex.ingestHistogram`), so it reads the
 * same in both deployments and survives restarts. It counts the whole
 * archive, with no scope: it is an operational figure for admins (the role
 * that sees health and jobs, and no message content), like the document
 * count `/healthz` already gives. No audit record: it reveals no message.
 */
import { Router } from 'express';
import { DateTime } from 'luxon';
import { z } from 'zod';
import type { Services } from '../services.js';
import type { RouteRegistry } from './route-registry.js';
import type { HistogramInterval } from '../ports/message-index.js';
import { HISTOGRAM_INTERVALS, MAX_HISTOGRAM_BUCKETS, addBuckets, ceilToBucket, floorToBucket } from '../../search/index.js';
import { INDEX_JOB } from '../../ingest/index.js';

const ADMIN = ['admin'] as const;

/** Buckets shown when the caller gives no `from`: two days by hour, 30 days by day, a year by month. */
export const DEFAULT_BUCKETS: Record<HistogramInterval, number> = { hour: 48, day: 30, month: 12 };

const isoTime = z
  .string()
  .max(40)
  .refine((s) => DateTime.fromISO(s, { zone: 'utc' }).isValid, 'an ISO-8601 date or time');

const statsQuery = z.object({
  interval: z
    .enum(HISTOGRAM_INTERVALS as [HistogramInterval, ...HistogramInterval[]])
    .default('day')
    .describe('Bucket width: a UTC hour, day or calendar month'),
  from: isoTime
    .optional()
    .describe(`Start (ISO-8601; UTC unless it names a zone), moved back to the start of its bucket. Default: ${DEFAULT_BUCKETS.hour} hours, ${DEFAULT_BUCKETS.day} days or ${DEFAULT_BUCKETS.month} months before \`to\``),
  to: isoTime
    .optional()
    .describe(`End, exclusive, moved forward to the end of its bucket. Default: the end of the current bucket. At most ${MAX_HISTOGRAM_BUCKETS} buckets in all`),
});

/** The range a request asks for, aligned outwards to whole buckets (epoch ms). */
export function statsRange(q: { interval: HistogramInterval; from?: string; to?: string }, now: number): { from: number; to: number } {
  const ms = (s: string) => DateTime.fromISO(s, { zone: 'utc' }).toMillis();
  // The current bucket is included, though not over: `now` itself starts a bucket only at the exact instant.
  const to = ceilToBucket(q.to === undefined ? floorToBucket(now, q.interval) + 1 : ms(q.to), q.interval);
  const from = q.from === undefined ? addBuckets(to, q.interval, -DEFAULT_BUCKETS[q.interval]) : floorToBucket(ms(q.from), q.interval);
  return { from, to };
}

export function ingestStatsRouter(s: Services, registry: RouteRegistry): Router {
  const r = Router();
  registry.add(
    r,
    {
      method: 'get',
      path: '/api/admin/ingest-stats',
      tag: 'admin',
      summary: 'Messages and bytes archived per hour, day or month (by receive time, UTC, the whole archive), with current totals',
      query: statsQuery,
      responses: {
        200:
          '`{interval, from, to, buckets: [{start, messages, bytes}] (every bucket of [from, to), oldest first, empty ones zero), total: {messages, bytes} (of the range), ' +
          'undated (indexed messages without a receive time, in no bucket: run `archive reindex`), archive: {messages} (indexed now), queue: {driver, waiting, active, delayed, failed} of index jobs, or null}`',
        400: `A bad interval or time, \`from\` not before \`to\`, or more than ${MAX_HISTOGRAM_BUCKETS} buckets`,
      },
      access: ADMIN,
    },
    async ({ query }, _req, res) => {
      const range = statsRange(query, Date.now());
      const [h, indexed, queue] = await Promise.all([
        s.index.ingestHistogram({ interval: query.interval, ...range }),
        s.index.count(),
        // Cheap (a few counters) and only informative: a queue that does not answer leaves it out.
        s.queue.counts(INDEX_JOB).then(
          (c) => ({ driver: s.queue.driver, waiting: c.waiting, active: c.active, delayed: c.delayed, failed: c.failed }),
          () => null,
        ),
      ]);
      const iso = (ms: number) => new Date(ms).toISOString();
      res.json({
        interval: h.interval,
        from: iso(h.from),
        to: iso(h.to),
        buckets: h.buckets.map((b) => ({ start: iso(b.start), messages: b.messages, bytes: b.bytes })),
        total: { messages: h.buckets.reduce((n, b) => n + b.messages, 0), bytes: h.buckets.reduce((n, b) => n + b.bytes, 0) },
        undated: h.undated,
        archive: { messages: indexed },
        queue,
      });
    },
  );
  return r;
}
