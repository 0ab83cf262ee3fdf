/**
 * The metadata CSV (RFC 4180, UTF-8 with a byte-order mark so spreadsheets
 * take it as UTF-8). Every cell is quoted. A cell that a spreadsheet would
 * take for a formula (it starts with =, +, -, @, a tab or a CR, or their
 * full-width forms) gets a leading apostrophe, as OWASP recommends: the value
 * shows as text and never runs (promise 8). Line breaks stay inside the
 * quotes, where every CSV reader keeps them.
 */
export const CSV_BOM = '\ufeff';

const FORMULA_START = /^[=+\-@\t\r\uff1d\uff0b\uff0d\uff20]/;

export function csvCell(v: string): string {
  const s = FORMULA_START.test(v) ? `'${v}` : v;
  return `"${s.replace(/"/g, '""')}"`;
}

export function csvRow(values: string[]): string {
  return values.map(csvCell).join(',') + '\r\n';
}
