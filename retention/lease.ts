/**
 * A lease in the catalog: one node at a time runs the disposition engine.
 * The record holds the owner and an expiry; taking or renewing it is an
 * optimistic-concurrency write, so of two nodes racing exactly one wins.
 * A crashed owner's lease expires and another node takes over (and resumes).
 * Expiry uses wall-clock time: it is about processes, not retention dates.
 */
import type { CatalogStore } from '../src/ports/catalog-store.js';
import { CatalogConflictError, NotFoundError } from '../src/errors.js';
import { COLLECTIONS } from './types.js';

interface LeaseData {
  owner: string;
  /** Epoch ms (wall clock). */
  expiresAt: number;
}

export class CatalogLease {
  private version: number | undefined;

  constructor(
    private readonly catalog: CatalogStore,
    private readonly name: string,
    private readonly owner: string,
    /** How long a taken lease lasts without renewal, in ms; a crashed node blocks others this long at most. */
    private readonly ttlMs: number,
  ) {}

  /** Takes the lease when it is free or expired. Resolves false when another live owner holds it. */
  async acquire(): Promise<boolean> {
    const data: LeaseData = { owner: this.owner, expiresAt: Date.now() + this.ttlMs };
    try {
      const cur = await this.catalog.get<LeaseData>(COLLECTIONS.leases, this.name);
      if (!cur) {
        this.version = (await this.catalog.create(COLLECTIONS.leases, this.name, data)).version;
        return true;
      }
      if (cur.data.owner !== this.owner && cur.data.expiresAt > Date.now()) return false;
      this.version = (await this.catalog.update(COLLECTIONS.leases, this.name, data, cur.version)).version;
      return true;
    } catch (err) {
      if (err instanceof CatalogConflictError) return false;
      throw err;
    }
  }

  /** Extends a held lease. Throws when it was lost (expired and taken): the holder must stop. */
  async renew(): Promise<void> {
    if (this.version === undefined) throw new Error('lease not held');
    this.version = (await this.catalog.update(COLLECTIONS.leases, this.name, { owner: this.owner, expiresAt: Date.now() + this.ttlMs }, this.version)).version;
  }

  async release(): Promise<void> {
    if (this.version === undefined) return;
    try {
      await this.catalog.delete(COLLECTIONS.leases, this.name, this.version);
    } catch (err) {
      if (!(err instanceof CatalogConflictError || err instanceof NotFoundError)) throw err;
    } finally {
      this.version = undefined;
    }
  }
}
