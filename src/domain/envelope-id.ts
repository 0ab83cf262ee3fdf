import { randomBytes } from 'node:crypto';

/**
 * Envelope ids sort by receive time: `20261126T205222123Z-9f8e7d6c5b4a3921`.
 * The random part makes two deliveries in the same millisecond distinct.
 */
export function newEnvelopeId(at: Date = new Date()): string {
  const stamp = at.toISOString().replace(/[-:.]/g, '');
  return `${stamp}-${randomBytes(8).toString('hex')}`;
}
