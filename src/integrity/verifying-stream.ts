import { createHash } from 'node:crypto';
import { Transform, type Readable } from 'node:stream';
import type { Sha256 } from '../domain/types.js';
import { IntegrityError } from '../errors.js';

/**
 * Passes bytes through while hashing them; at the end, errors with
 * IntegrityError if they do not hash to `expected`. The consumer has then
 * already received the bytes, so an HTTP response is aborted (the client sees
 * a truncated transfer, never a clean one) and the caller logs the alert.
 */
export function verifyingStream(source: Readable, expected: Sha256): Readable {
  const hash = createHash('sha256');
  const t = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      cb(null, chunk);
    },
    flush(cb) {
      const actual = hash.digest('hex');
      if (actual !== expected) cb(new IntegrityError(`stored bytes of ${expected} hash to ${actual}`, { expected, actual }));
      else cb();
    },
  });
  source.on('error', (err) => t.destroy(err));
  return source.pipe(t);
}
