/**
 * CSV of audit records for auditors (RFC 4180). A spreadsheet must not run
 * anything from it: every field is quoted, quotes are doubled, and a field
 * that starts with a formula character (`=`, `+`, `-`, `@`, tab, CR) gets a
 * leading apostrophe, as OWASP advises against CSV injection (promise 8).
 */
import type { AuditRecord } from './audit-trail.js';

export const AUDIT_CSV_COLUMNS = ['seq', 'time', 'user', 'clientAddress', 'action', 'target', 'outcome', 'details', 'prevHash', 'hash'] as const;

export function csvField(value: unknown): string {
  let s = value === null || value === undefined ? '' : typeof value === 'string' ? value : typeof value === 'object' ? JSON.stringify(value) : String(value);
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return `"${s.replace(/"/g, '""')}"`;
}

export function csvHeader(): string {
  return `${AUDIT_CSV_COLUMNS.join(',')}\r\n`;
}

export function csvRow(r: AuditRecord): string {
  return `${AUDIT_CSV_COLUMNS.map((c) => csvField(c === 'details' ? (Object.keys(r.details ?? {}).length ? r.details : '') : r[c])).join(',')}\r\n`;
}
