/**
 * Canonical JSON for hashing: object keys sorted (by UTF-16 code units, as
 * JavaScript sorts), no whitespace, `undefined` members left out. Two equal
 * values always give the same bytes, whichever order their keys were built in
 * and whatever store they went through.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    const s = JSON.stringify(value);
    return s === undefined ? 'null' : s;
  }
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v === undefined ? null : v)).join(',')}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj)
    .filter((k) => obj[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`;
}

/** A value as it will look after a JSON round trip (dates to strings, NaN to null, undefined dropped). */
export function jsonSafe<T>(value: T): T {
  return value === undefined ? value : (JSON.parse(JSON.stringify(value)) as T);
}
