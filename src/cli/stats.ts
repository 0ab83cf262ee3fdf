import type { ObjectStore } from '../ports/object-store.js';

export interface ArchiveStats {
  messages: number;
  envelopes: number;
  bytes: number;
}

/** Counts from the object store itself, the source of truth. */
export async function collectStats(store: ObjectStore): Promise<ArchiveStats> {
  const stats: ArchiveStats = { messages: 0, envelopes: 0, bytes: 0 };
  for await (const m of store.listMessages()) {
    stats.messages++;
    stats.bytes += m.size;
  }
  for await (const _e of store.listEnvelopes()) stats.envelopes++;
  return stats;
}
