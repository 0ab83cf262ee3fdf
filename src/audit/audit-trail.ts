/**
 * The audit trail (promise 6): every human action, hash-chained, sealed into
 * the write-once store, verifiable.
 *
 * Records live in the catalog, collection `audit`, id = the sequence number
 * as 12 digits (so id order is chain order). Each holds the hash of the one
 * before (`prevHash`) and its own `hash` = SHA-256 of its canonical JSON
 * without `hash`. The first record's `prevHash` is 64 zeros.
 *
 * Appends are serialised across nodes through one chain-head record
 * (`audit_head/head`: seq, hash, time and the records of the latest append).
 * An append reads the head, builds the next records on it, and replaces the
 * head with an optimistic-concurrency update: of two nodes appending at once
 * one wins, the other re-reads and retries. Only then are the records
 * written under their own ids. The head holds them in between, so a crash
 * after the head update loses nothing: the next append (on any node) writes
 * out whatever the head still holds, and `verify` reads the tail from it.
 * Within one process appends are queued and batched (one head update per
 * batch), so a busy node does not conflict with itself.
 *
 * Sealing copies the head (seq, hash, time) into the object store's
 * write-once seals. A later rewrite of the catalog, however consistent,
 * cannot match a seal it did not write, and `verify` checks every seal.
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { CatalogRecord, CatalogStore, ListOptions } from '../ports/catalog-store.js';
import type { ObjectStore } from '../ports/object-store.js';
import { CatalogConflictError, ServiceUnavailableError } from '../errors.js';
import { canonicalJson, jsonSafe } from './canonical-json.js';

export type AuditOutcome = 'success' | 'failure' | 'denied';

/** What a caller records. */
export interface AuditEvent {
  /** Dotted verb, e.g. `search`, `message.view`, `auth.sign_in`, `user.create`, `export.create`. */
  action: string;
  outcome: AuditOutcome;
  /** Who: a user's e-mail, `cli:<os user>` for the command line, or null when unknown. */
  user?: string | null;
  /** Client IP address (the HTTP peer, or the first untrusted proxy hop). */
  clientAddress?: string | null;
  /** What the action was on: a message id, a user, a token id. */
  target?: string | null;
  /** Anything else worth keeping: the query text, an error code. Kept small. */
  details?: Record<string, unknown>;
}

export interface AuditRecord {
  seq: number;
  /** ISO-8601 UTC. */
  time: string;
  user: string | null;
  clientAddress: string | null;
  action: string;
  target: string | null;
  outcome: AuditOutcome;
  details: Record<string, unknown>;
  prevHash: string;
  hash: string;
}

interface ChainHead {
  seq: number;
  hash: string;
  time: string | null;
  /** The records of the latest append, written out by whoever comes next if their writer died. */
  pending: AuditRecord[];
}

export interface AuditSeal {
  type: 'audit-chain-seal';
  seq: number;
  hash: string;
  time: string | null;
  sealedAt: string;
}

export interface AuditProblem {
  seq: number;
  /** Catalog id of the record (or of where it should be). */
  id: string;
  problem: string;
}

export interface AuditVerifyReport {
  ok: boolean;
  records: number;
  head: { seq: number; hash: string };
  seals: number;
  /** The first bad record, when not ok. */
  firstBad?: AuditProblem;
}

export interface AuditQuery {
  user?: string;
  action?: string;
  outcome?: AuditOutcome;
  target?: string;
  /** ISO-8601 times, inclusive. */
  from?: string;
  to?: string;
  order?: 'asc' | 'desc';
  limit?: number;
  cursor?: string;
}

export const AUDIT_COLLECTION = 'audit';
export const AUDIT_HEAD_COLLECTION = 'audit_head';
const HEAD_ID = 'head';
export const GENESIS_HASH = '0'.repeat(64);

/** Events per append (one head update); bounds the head record's size (a few hundred KiB at most). */
const MAX_BATCH = 100;
/** Head-update attempts before an append gives up: only a storm of nodes appending at once gets near it. */
const MAX_ATTEMPTS = 200;
/** Largest `details` kept, as JSON characters; longer values are cut (a query is at most 2,000). */
const MAX_DETAILS_CHARS = 8192;

export function auditId(seq: number): string {
  return String(seq).padStart(12, '0');
}

export function sealName(seq: number): string {
  return `audit-${auditId(seq)}.json`;
}

/** SHA-256 of a record's canonical JSON without its own `hash`. */
export function hashRecord(r: Omit<AuditRecord, 'hash'> & { hash?: string }): string {
  const { hash: _hash, ...rest } = r;
  return createHash('sha256').update(canonicalJson(rest)).digest('hex');
}

function boundDetails(details: Record<string, unknown> | undefined): Record<string, unknown> {
  const safe = jsonSafe(details ?? {}) ?? {};
  const json = JSON.stringify(safe);
  if (json.length <= MAX_DETAILS_CHARS) return safe;
  return { truncated: true, excerpt: json.slice(0, MAX_DETAILS_CHARS) };
}

export interface AuditTrailOptions {
  catalog: CatalogStore;
  store: ObjectStore;
  log: Logger;
  /** Now, injectable for tests. */
  now?: () => Date;
}

export class AuditTrail {
  private readonly catalog: CatalogStore;
  private readonly store: ObjectStore;
  private readonly log: Logger;
  private readonly now: () => Date;
  private readonly queue: { event: AuditEvent; resolve: (r: AuditRecord) => void; reject: (e: unknown) => void }[] = [];
  private draining: Promise<void> | undefined;
  private sealTimer: NodeJS.Timeout | undefined;

  constructor(opts: AuditTrailOptions) {
    this.catalog = opts.catalog;
    this.store = opts.store;
    this.log = opts.log;
    this.now = opts.now ?? (() => new Date());
  }

  /**
   * Appends one record; resolves when it is durable in the catalog (it is
   * in the chain head; its own record follows at once). Throws
   * ServiceUnavailableError when the catalog cannot take it.
   */
  record(event: AuditEvent): Promise<AuditRecord> {
    return new Promise((resolve, reject) => {
      this.queue.push({ event, resolve, reject });
      this.kick();
    });
  }

  /** Resolves when every record asked for in this process so far is written (or failed). */
  async flush(): Promise<void> {
    while (this.draining) await this.draining;
  }

  private kick(): void {
    if (this.draining) return;
    this.draining = this.drain().finally(() => {
      this.draining = undefined;
      if (this.queue.length) this.kick();
    });
  }

  private async drain(): Promise<void> {
    while (this.queue.length) {
      const batch = this.queue.splice(0, MAX_BATCH);
      try {
        const records = await this.append(batch.map((b) => b.event));
        batch.forEach((b, i) => b.resolve(records[i]));
      } catch (err) {
        this.log.error({ err, alert: 'audit', actions: batch.map((b) => b.event.action) }, 'AUDIT ALERT: could not append to the audit trail');
        for (const b of batch) b.reject(err);
      }
    }
  }

  private async readHead(): Promise<CatalogRecord<ChainHead>> {
    for (;;) {
      const head = await this.catalog.get<ChainHead>(AUDIT_HEAD_COLLECTION, HEAD_ID);
      if (head) return head;
      try {
        return await this.catalog.create<ChainHead>(AUDIT_HEAD_COLLECTION, HEAD_ID, { seq: 0, hash: GENESIS_HASH, time: null, pending: [] });
      } catch (err) {
        if (!(err instanceof CatalogConflictError)) throw err;
      }
    }
  }

  /** Writes out records the head holds (idempotent: an existing id is left alone). */
  private async materialize(records: AuditRecord[]): Promise<void> {
    for (const r of records) {
      try {
        await this.catalog.create(AUDIT_COLLECTION, auditId(r.seq), r);
      } catch (err) {
        if (!(err instanceof CatalogConflictError)) throw err;
      }
    }
  }

  private async append(events: AuditEvent[]): Promise<AuditRecord[]> {
    for (let attempt = 1; ; attempt++) {
      const head = await this.readHead();
      // Whatever the previous appender (maybe a node that died) left only in the head.
      await this.materialize(head.data.pending);
      const records: AuditRecord[] = [];
      let prev = head.data.hash;
      let seq = head.data.seq;
      // Never earlier than the record before: a node's clock behind another's does not reorder times.
      let nowMs = Math.max(this.now().getTime(), head.data.time ? Date.parse(head.data.time) : 0);
      for (const e of events) {
        const base: Omit<AuditRecord, 'hash'> = {
          seq: ++seq,
          time: new Date(nowMs).toISOString(),
          // Bounded: these come from requests (a path parameter that failed validation, a typed e-mail).
          user: e.user?.slice(0, 320) ?? null,
          clientAddress: e.clientAddress?.slice(0, 100) ?? null,
          action: e.action.slice(0, 100),
          target: e.target?.slice(0, 1000) ?? null,
          outcome: e.outcome,
          details: boundDetails(e.details),
          prevHash: prev,
        };
        const rec = { ...base, hash: hashRecord(base) };
        records.push(rec);
        prev = rec.hash;
        nowMs = Math.max(nowMs, this.now().getTime());
      }
      const last = records[records.length - 1];
      try {
        await this.catalog.update<ChainHead>(AUDIT_HEAD_COLLECTION, HEAD_ID, { seq: last.seq, hash: last.hash, time: last.time, pending: records }, head.version);
      } catch (err) {
        if (!(err instanceof CatalogConflictError)) throw err;
        if (attempt >= MAX_ATTEMPTS) throw new ServiceUnavailableError('audit_unavailable', `audit trail: gave up after ${attempt} conflicting appends`);
        // Jittered backoff, growing to ~50 ms: another node is appending right now.
        await new Promise((r) => setTimeout(r, Math.random() * Math.min(50, 2 * attempt)));
        continue;
      }
      await this.materialize(records);
      return records;
    }
  }

  /** The chain head: the last record's seq, hash and time (seq 0 for an empty trail). */
  async head(): Promise<{ seq: number; hash: string; time: string | null }> {
    const h = (await this.catalog.get<ChainHead>(AUDIT_HEAD_COLLECTION, HEAD_ID))?.data;
    return h ? { seq: h.seq, hash: h.hash, time: h.time } : { seq: 0, hash: GENESIS_HASH, time: null };
  }

  /** Records, newest first by default, filtered. Sees every record this process appended before the call. */
  async search(q: AuditQuery = {}): Promise<{ records: AuditRecord[]; nextCursor?: string }> {
    await this.flush();
    const where: Record<string, string> = {};
    if (q.user) where.user = q.user;
    if (q.action) where.action = q.action;
    if (q.outcome) where.outcome = q.outcome;
    if (q.target) where.target = q.target;
    const opts: ListOptions = { where, order: q.order ?? 'desc', limit: q.limit ?? 100, cursor: q.cursor };
    if (q.from || q.to) opts.range = { time: { ...(q.from ? { gte: q.from } : {}), ...(q.to ? { lte: q.to } : {}) } };
    const page = await this.catalog.list<AuditRecord>(AUDIT_COLLECTION, opts);
    return { records: page.records.map((r) => r.data), nextCursor: page.nextCursor };
  }

  /**
   * Seals the current head into the write-once store, unless that head is
   * sealed already. Returns the seal written (or found).
   */
  async seal(): Promise<{ name: string; seal: AuditSeal; created: boolean } | undefined> {
    await this.flush();
    const head = await this.head();
    if (head.seq === 0) return undefined;
    const name = sealName(head.seq);
    const seal: AuditSeal = { type: 'audit-chain-seal', seq: head.seq, hash: head.hash, time: head.time, sealedAt: this.now().toISOString() };
    const { created } = await this.store.putSeal(name, Buffer.from(JSON.stringify(seal)));
    if (created) this.log.info({ seq: head.seq, hash: head.hash, name }, 'audit trail sealed');
    return { name, seal, created };
  }

  /** Seals every `intervalMs` (timer does not keep the process alive). */
  startSealing(intervalMs: number): void {
    if (this.sealTimer || intervalMs <= 0) return;
    this.sealTimer = setInterval(() => {
      this.seal().catch((err: unknown) => this.log.error({ err, alert: 'audit' }, 'could not seal the audit trail; trying again at the next interval'));
    }, intervalMs);
    this.sealTimer.unref();
  }

  /** Stops the timer and seals once more, so a clean shutdown leaves the latest head sealed. */
  async close(): Promise<void> {
    if (this.sealTimer) {
      clearInterval(this.sealTimer);
      this.sealTimer = undefined;
      await this.seal().catch((err: unknown) => this.log.error({ err, alert: 'audit' }, 'could not seal the audit trail at shutdown'));
    } else {
      await this.flush();
    }
  }

  /**
   * Walks the whole trail and checks: ids and sequence numbers run 1, 2, 3…
   * without gaps (a removed record), each record is in its place (reordered
   * records), each hashes to its `hash` (an altered record) and holds the
   * hash of the one before (a chain cut or spliced), the chain ends at the
   * head, and every seal in the write-once store matches the record it names.
   * Reports the first bad record. Streams: memory is one page.
   */
  async verify(): Promise<AuditVerifyReport> {
    await this.flush();
    const headRec = await this.catalog.get<ChainHead>(AUDIT_HEAD_COLLECTION, HEAD_ID);
    const head = headRec?.data ?? { seq: 0, hash: GENESIS_HASH, time: null, pending: [] };
    const seals = new Map<number, { name: string; seal: AuditSeal }>();
    let sealProblem: AuditProblem | undefined;
    for await (const name of this.store.listSeals()) {
      if (!name.startsWith('audit-')) continue;
      const bytes = await this.store.getSeal(name);
      try {
        const seal = JSON.parse(bytes!.toString('utf8')) as AuditSeal;
        if (seal.type !== 'audit-chain-seal' || !Number.isInteger(seal.seq) || typeof seal.hash !== 'string') throw new Error('not a seal');
        seals.set(seal.seq, { name, seal });
      } catch {
        sealProblem ??= { seq: 0, id: name, problem: `seal ${name} is unreadable` };
      }
    }

    let expected = 1;
    let prevHash = GENESIS_HASH;
    let lastGoodSeal = 0;
    let firstBad: AuditProblem | undefined;
    const check = (id: string, r: AuditRecord): AuditProblem | undefined => {
      const seq = expected;
      if (id !== auditId(seq)) return { seq, id: auditId(seq), problem: `record ${seq} is missing (removed?); the next record is ${id}` };
      if (r.seq !== seq) return { seq, id, problem: `record ${seq} is out of place: it holds record ${r.seq} (reordered?)` };
      if (hashRecord(r) !== r.hash) return { seq, id, problem: `record ${seq} was altered: its content does not match its hash` };
      if (r.prevHash !== prevHash) return { seq, id, problem: `record ${seq} does not follow record ${seq - 1}: the chain is broken here (record ${seq - 1} or ${seq} was replaced)` };
      const sealed = seals.get(seq);
      if (sealed) {
        if (sealed.seal.hash !== r.hash) {
          return { seq, id, problem: `record ${seq} differs from seal ${sealed.name}: the trail was rewritten between record ${lastGoodSeal + 1} and ${seq}` };
        }
        lastGoodSeal = seq;
      }
      return undefined;
    };

    let count = 0;
    for await (const rec of this.catalog.scan<AuditRecord>(AUDIT_COLLECTION)) {
      firstBad = check(rec.id, rec.data);
      if (firstBad) break;
      prevHash = rec.data.hash;
      expected++;
      count++;
    }
    // The tail the head holds but nobody has written out yet (its writer died between the two steps).
    if (!firstBad) {
      for (const r of head.pending) {
        if (r.seq < expected) continue;
        firstBad = check(auditId(r.seq), r);
        if (firstBad) break;
        prevHash = r.hash;
        expected++;
        count++;
      }
    }
    const last = expected - 1;
    if (!firstBad && head.seq !== last) {
      firstBad =
        head.seq > last
          ? { seq: last + 1, id: auditId(last + 1), problem: `record ${last + 1} is missing (removed?): the chain head is at ${head.seq} but the records end at ${last}` }
          : { seq: head.seq + 1, id: auditId(head.seq + 1), problem: `record ${head.seq + 1} and later are not in the chain head (the head is at ${head.seq}): added behind the trail's back?` };
    }
    if (!firstBad && head.seq > 0 && head.hash !== prevHash) {
      firstBad = { seq: last, id: auditId(last), problem: `record ${last} does not match the chain head's hash` };
    }
    if (!firstBad) {
      const beyond = [...seals.keys()].filter((s) => s > last).sort((a, b) => a - b)[0];
      if (beyond !== undefined) {
        firstBad = { seq: last + 1, id: auditId(last + 1), problem: `record ${last + 1} is missing (removed?): seal ${seals.get(beyond)!.name} covers the trail up to record ${beyond}` };
      }
    }
    firstBad ??= sealProblem;
    return { ok: !firstBad, records: count, head: { seq: head.seq, hash: head.hash }, seals: seals.size, ...(firstBad ? { firstBad } : {}) };
  }
}
