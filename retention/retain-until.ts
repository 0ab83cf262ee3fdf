/**
 * Retain-until computation: pure, UTC, calendar-correct (luxon).
 *
 * A message is kept through the whole UTC day on which its period ends, and
 * may be disposed of from 00:00 UTC of the next day. Months and years are
 * calendar units: 2020-02-29 + 1 year ends on 2021-02-28 (luxon clamps to the
 * month's last day), so it is retained until 2021-03-01T00:00:00Z.
 */
import { DateTime } from 'luxon';
import { FOREVER, type RetentionPeriod } from './types.js';

export function computeRetainUntil(period: RetentionPeriod, basis: { date: number; receivedAt: number }): string {
  if (period.unit === 'forever') return FOREVER;
  const ms = period.from === 'sent' ? basis.date : basis.receivedAt;
  // Days in UTC are all 86,400,000 ms (no DST, and JavaScript time has no
  // leap seconds): plain arithmetic gives luxon's answer at a fraction of its
  // cost, which dominated applying policies in bulk.
  if (period.unit === 'days' && Number.isFinite(ms)) return new Date((Math.floor(ms / DAY_MS) + period.count + 1) * DAY_MS).toISOString();
  const from = DateTime.fromMillis(ms, { zone: 'utc' });
  const end = from.plus({ [period.unit]: period.count }).startOf('day').plus({ days: 1 });
  return end.toJSDate().toISOString();
}

const DAY_MS = 86_400_000;

/** The later of two ISO-8601 UTC dates (string order is time order for these). */
export function later(a: string, b: string): string {
  return a >= b ? a : b;
}

/** Normalises an ISO date to `YYYY-MM-DDTHH:mm:ss.SSSZ`, so string order is time order. */
export function isoUtc(ms: number): string {
  return new Date(ms).toISOString();
}
