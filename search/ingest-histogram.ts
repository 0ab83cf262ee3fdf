/**
 * The bucket arithmetic of `MessageIndex.ingestHistogram`, shared by both
 * adapters (so their buckets cannot disagree) and by the API (which aligns a
 * caller's range to whole buckets before asking).
 *
 * Buckets are UTC hours, UTC days or UTC calendar months. Epoch milliseconds
 * have no leap seconds and UTC no daylight saving, so an hour is always
 * 3,600,000 ms and a day 86,400,000 ms; months vary and are computed by the
 * calendar.
 */
import type { IndexedMessage } from '../src/domain/indexed-message.js';
import { ValidationError } from '../src/errors.js';
import type { HistogramInterval, IngestHistogramRequest } from '../src/ports/message-index.js';

export const HISTOGRAM_INTERVALS: readonly HistogramInterval[] = ['hour', 'day', 'month'];

/**
 * Most buckets one request may ask for. Cost: SQLite runs one indexed range
 * count per bucket (a few µs each), OpenSearch returns one aggregation bucket
 * each; 1,000 also keeps a chart readable (41 days by hour, 2.7 years by day).
 */
export const MAX_HISTOGRAM_BUCKETS = 1000;

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;

/** Largest |epoch ms| a JavaScript Date holds (±100,000,000 days). */
const MAX_TIME = 8.64e15;

/** Epoch ms of the first instant of a UTC month (any year; Date.UTC would read years 0–99 as 1900–1999). */
function monthStart(year: number, month: number): number {
  const d = new Date(0);
  d.setUTCFullYear(year, month, 1);
  return d.getTime();
}

/** Months since year 0 of the UTC month holding `ms`. */
function monthIndex(ms: number): number {
  const d = new Date(ms);
  return d.getUTCFullYear() * 12 + d.getUTCMonth();
}

function fromMonthIndex(i: number): number {
  return monthStart(Math.floor(i / 12), ((i % 12) + 12) % 12);
}

function checkInterval(interval: unknown): asserts interval is HistogramInterval {
  if (!HISTOGRAM_INTERVALS.includes(interval as HistogramInterval)) {
    throw new ValidationError(`unknown interval '${String(interval)}': use ${HISTOGRAM_INTERVALS.join(', ')}`);
  }
}

function checkTime(ms: unknown, what: string): asserts ms is number {
  if (typeof ms !== 'number' || !Number.isInteger(ms) || Math.abs(ms) > MAX_TIME) throw new ValidationError(`${what} must be a time (integer epoch milliseconds)`, { [what]: ms });
}

/** The start of the bucket that holds `ms`. */
export function floorToBucket(ms: number, interval: HistogramInterval): number {
  checkInterval(interval);
  if (interval === 'hour') return Math.floor(ms / HOUR_MS) * HOUR_MS;
  if (interval === 'day') return Math.floor(ms / DAY_MS) * DAY_MS;
  return fromMonthIndex(monthIndex(ms));
}

/** `ms` when it starts a bucket, else the start of the next bucket. */
export function ceilToBucket(ms: number, interval: HistogramInterval): number {
  const floor = floorToBucket(ms, interval);
  return floor === ms ? ms : addBuckets(floor, interval, 1);
}

/** The bucket start `n` buckets after (or, negative, before) the bucket start `start`. */
export function addBuckets(start: number, interval: HistogramInterval, n: number): number {
  checkInterval(interval);
  if (interval === 'hour') return start + n * HOUR_MS;
  if (interval === 'day') return start + n * DAY_MS;
  return fromMonthIndex(monthIndex(start) + n);
}

/** How many buckets lie between two bucket starts. */
function bucketsBetween(from: number, to: number, interval: HistogramInterval): number {
  if (interval === 'hour') return (to - from) / HOUR_MS;
  if (interval === 'day') return (to - from) / DAY_MS;
  return monthIndex(to) - monthIndex(from);
}

/**
 * Validates a histogram request and returns the start of every bucket of
 * [from, to), oldest first. Throws ValidationError for an unknown interval,
 * a bound that is not a bucket start, an empty range, or more than
 * MAX_HISTOGRAM_BUCKETS buckets.
 */
export function bucketStarts(req: IngestHistogramRequest): number[] {
  checkInterval(req.interval);
  checkTime(req.from, 'from');
  checkTime(req.to, 'to');
  for (const [what, ms] of [
    ['from', req.from],
    ['to', req.to],
  ] as const) {
    if (floorToBucket(ms, req.interval) !== ms) {
      throw new ValidationError(`${what} (${new Date(ms).toISOString()}) is not the start of a UTC ${req.interval}`, { [what]: ms, interval: req.interval });
    }
  }
  if (req.to <= req.from) throw new ValidationError('to must be after from', { from: req.from, to: req.to });
  const n = bucketsBetween(req.from, req.to, req.interval);
  if (n > MAX_HISTOGRAM_BUCKETS) {
    throw new ValidationError(`that range has ${n} ${req.interval} buckets; at most ${MAX_HISTOGRAM_BUCKETS} are allowed: narrow the range or use a longer interval`, {
      buckets: n,
      max: MAX_HISTOGRAM_BUCKETS,
    });
  }
  const starts: number[] = [];
  for (let i = 0; i < n; i++) starts.push(addBuckets(req.from, req.interval, i));
  return starts;
}

/**
 * The receive time an index keeps for a message: whole epoch ms, or
 * undefined (counted as `undated`) when the document has none a Date can hold.
 */
export function indexedReceivedAt(m: Pick<IndexedMessage, 'receivedAt'>): number | undefined {
  const t = m.receivedAt;
  return typeof t === 'number' && Number.isFinite(t) && Math.abs(t) <= MAX_TIME ? Math.trunc(t) : undefined;
}
