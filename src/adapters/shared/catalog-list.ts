/**
 * The semantics of `CatalogStore.list` in one place: option validation, the
 * cursor format, and an in-memory evaluator (filters, order, keyset paging)
 * for adapters whose backend cannot run the query itself. The SQLite adapter
 * compiles the same rules to SQL; the contract suite holds both to them.
 */
import { ValidationError } from '../../errors.js';
import { COLLECTION_NAME, FIELD_NAME, MAX_BATCH, type CatalogRecord, type CatalogScalar, type CatalogWrite, type ListOptions, type ListPage } from '../../ports/catalog-store.js';

export const DEFAULT_LIMIT = 100;
export const MAX_LIMIT = 10_000;

export interface NormalizedList {
  where: [string, CatalogScalar][];
  range: [string, { gte?: string | number; lte?: string | number }][];
  /** undefined: order by id. */
  orderBy?: string;
  desc: boolean;
  limit: number;
  after?: CursorPosition;
}

/** Where the previous page ended: the sort value (null when missing, or when ordering by id) and the id. */
export interface CursorPosition {
  value: CatalogScalar | null;
  id: string;
}

export function assertCollection(collection: string): void {
  if (!COLLECTION_NAME.test(collection)) throw new ValidationError(`bad catalog collection name "${collection}"`);
}

/** The checks every adapter makes on a `getMany` (ids) or `writeMany` (items) batch. */
export function assertBatch(ids: string[], what: 'getMany' | 'writeMany'): void {
  if (ids.length > MAX_BATCH) throw new ValidationError(`catalog ${what}: at most ${MAX_BATCH} per call, not ${ids.length}`);
  for (const id of ids) if (typeof id !== 'string' || !id) throw new ValidationError(`catalog ${what}: ids are non-empty strings`);
  if (what === 'writeMany' && new Set(ids).size !== ids.length) throw new ValidationError('catalog writeMany: an id may appear once per batch');
}

export function assertWrites(items: CatalogWrite<unknown>[]): void {
  assertBatch(
    items.map((i) => i.id),
    'writeMany',
  );
  for (const i of items) {
    if (i.expectedVersion !== 'create' && !(Number.isInteger(i.expectedVersion) && i.expectedVersion >= 1)) {
      throw new ValidationError(`catalog writeMany: expectedVersion of ${i.id} must be 'create' or a version >= 1`);
    }
  }
}

function assertField(field: string): void {
  if (!FIELD_NAME.test(field)) throw new ValidationError(`bad catalog field name "${field}"`);
}

export function normalizeList(opts: ListOptions = {}): NormalizedList {
  const where = Object.entries(opts.where ?? {});
  for (const [f, v] of where) {
    assertField(f);
    if (!['string', 'number', 'boolean'].includes(typeof v)) throw new ValidationError(`catalog filter ${f}: not a string, number or boolean`);
  }
  const range = Object.entries(opts.range ?? {});
  for (const [f, r] of range) {
    assertField(f);
    for (const b of [r.gte, r.lte]) if (b !== undefined && typeof b !== 'string' && typeof b !== 'number') throw new ValidationError(`catalog range ${f}: bounds are strings or numbers`);
  }
  if (opts.orderBy !== undefined && opts.orderBy !== 'id') assertField(opts.orderBy);
  const limit = opts.limit ?? DEFAULT_LIMIT;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) throw new ValidationError(`catalog list limit must be 1 to ${MAX_LIMIT}`);
  return {
    where,
    range,
    orderBy: opts.orderBy === 'id' ? undefined : opts.orderBy,
    desc: opts.order === 'desc',
    limit,
    after: opts.cursor === undefined ? undefined : decodeCursor(opts.cursor),
  };
}

export function encodeCursor(pos: CursorPosition): string {
  return Buffer.from(JSON.stringify([pos.value, pos.id]), 'utf8').toString('base64url');
}

export function decodeCursor(cursor: string): CursorPosition {
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(v) && v.length === 2 && typeof v[1] === 'string' && (v[0] === null || ['string', 'number', 'boolean'].includes(typeof v[0]))) {
      return { value: v[0] as CatalogScalar | null, id: v[1] };
    }
  } catch {
    // fall through
  }
  throw new ValidationError('invalid cursor');
}

/** A top-level scalar field of a record's data, or null when missing or not a scalar. */
export function fieldOf(data: unknown, field: string): CatalogScalar | null {
  if (data === null || typeof data !== 'object') return null;
  const v = (data as Record<string, unknown>)[field];
  return typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' ? v : null;
}

/** Strings by UTF-8 bytes (as SQLite's BINARY collation and Lucene keywords do), numbers as numbers. */
export function compareScalars(a: CatalogScalar, b: CatalogScalar): number {
  if (typeof a === 'number' && typeof b === 'number') return a < b ? -1 : a > b ? 1 : 0;
  if (typeof a === 'string' && typeof b === 'string') return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
  if (typeof a === 'boolean' && typeof b === 'boolean') return Number(a) - Number(b);
  // Mixed types: numbers, then strings, then booleans (SQLite's order for the first two).
  const rank = (x: CatalogScalar) => (typeof x === 'number' ? 0 : typeof x === 'string' ? 1 : 2);
  return rank(a) - rank(b);
}

export function compareIds(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

function matches(rec: CatalogRecord<unknown>, q: NormalizedList): boolean {
  for (const [f, v] of q.where) {
    const got = fieldOf(rec.data, f);
    if (got === null || typeof got !== typeof v || got !== v) return false;
  }
  for (const [f, r] of q.range) {
    const got = fieldOf(rec.data, f);
    if (got === null) return false;
    for (const [bound, sign] of [
      [r.gte, 1],
      [r.lte, -1],
    ] as const) {
      if (bound === undefined) continue;
      if (typeof got !== typeof bound) return false;
      if (compareScalars(got, bound) * sign < 0) return false;
    }
  }
  return true;
}

/** Sort order of two positions under `q` (missing values last in both directions). */
function comparePositions(a: CursorPosition, b: CursorPosition, q: NormalizedList): number {
  const dir = q.desc ? -1 : 1;
  if (q.orderBy !== undefined) {
    if (a.value === null && b.value !== null) return 1;
    if (a.value !== null && b.value === null) return -1;
    if (a.value !== null && b.value !== null) {
      const c = compareScalars(a.value, b.value);
      if (c !== 0) return c * dir;
    }
  }
  return compareIds(a.id, b.id) * dir;
}

/** The value a record sorts by: a string or number field; anything else (booleans too) counts as missing. */
export function sortValueOf(data: unknown, field: string): string | number | null {
  const v = fieldOf(data, field);
  return typeof v === 'boolean' ? null : v;
}

export function positionOf(rec: CatalogRecord<unknown>, q: NormalizedList): CursorPosition {
  return { value: q.orderBy === undefined ? null : sortValueOf(rec.data, q.orderBy), id: rec.id };
}

/** Runs a normalised list over every record of a collection, in memory. */
export function listInMemory<T>(all: Iterable<CatalogRecord<T>>, q: NormalizedList): ListPage<T> {
  const selected: CatalogRecord<T>[] = [];
  for (const rec of all) {
    if (!matches(rec, q)) continue;
    if (q.after && comparePositions(positionOf(rec, q), q.after, q) <= 0) continue;
    selected.push(rec);
  }
  selected.sort((a, b) => comparePositions(positionOf(a, q), positionOf(b, q), q));
  const records = selected.slice(0, q.limit);
  return pageOf(records, selected.length > q.limit, q);
}

export function pageOf<T>(records: CatalogRecord<T>[], more: boolean, q: NormalizedList): ListPage<T> {
  return more ? { records, nextCursor: encodeCursor(positionOf(records[records.length - 1], q)) } : { records };
}
