import { createHash } from 'node:crypto';
import type { Sha256 } from '../domain/types.js';

const SHA256_RE = /^[0-9a-f]{64}$/;

export function isSha256(s: string): s is Sha256 {
  return SHA256_RE.test(s);
}

/** Guards every path and key built from an id, so an id can never walk the filesystem or the bucket. */
export function assertSha256(s: string): asserts s is Sha256 {
  if (!SHA256_RE.test(s)) throw new Error(`not a SHA-256: ${JSON.stringify(s).slice(0, 80)}`);
}

export function sha256Hex(data: Buffer | string): Sha256 {
  return createHash('sha256').update(data).digest('hex');
}
