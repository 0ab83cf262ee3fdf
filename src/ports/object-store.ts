/**
 * The write-once object store port: raw message bytes keyed by their SHA-256,
 * and immutable envelope records beside them. Adapters: `FsObjectStore`
 * (embedded) and `S3ObjectStore` (Object Lock).
 */
import type { Readable } from 'node:stream';
import type { Envelope, Sha256 } from '../domain/types.js';

/**
 * A message spooled to a local file by ingest, already hashed. The store takes
 * ownership of the file: after `putMessage` resolves or rejects, the caller
 * must not use the path again (the store deletes or links it).
 */
/** Seal names: letters, digits, `.`, `_` and `-`, starting with a letter or digit, at most 200 characters. */
export const SEAL_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;

export function assertSealName(name: string): void {
  if (!SEAL_NAME.test(name)) throw new Error(`bad seal name ${JSON.stringify(name).slice(0, 80)}`);
}

export interface SpoolFile {
  path: string;
  sha256: Sha256;
  size: number;
}

export interface PutResult {
  /** False when an object with this hash already existed (a duplicate delivery). */
  created: boolean;
}

export interface StoredObjectInfo {
  sha256: Sha256;
  size: number;
}

/** The retention of one message. */
export interface ObjectRetention {
  /** S3: `COMPLIANCE` or `GOVERNANCE`; fs: `ARCHIVE` (enforced by this archive's code, not the filesystem). */
  mode: string;
  retainUntil: Date;
}

/** What a batch lock change (`setLegalHolds`, `extendRetentions`) could not do. */
export interface LockBatchResult {
  /** Listed messages that are not in the store: nothing was set for them. */
  missing: Sha256[];
}

export interface DeleteResult {
  /** False when the message was already absent. */
  deleted: boolean;
  /** Objects (message and envelope versions, lock records) removed. */
  objects: number;
}

export interface StoreHealth {
  ok: boolean;
  driver: string;
  detail?: string;
}

/** See `ObjectStore.getMessage`. */
export interface GetMessageOptions {
  verify?: boolean;
  recentCopy?: boolean;
}

export interface ObjectStore {
  readonly driver: string;

  /**
   * Durably stores a spooled message under its SHA-256. Resolves only when the
   * bytes are on stable storage (fsync'd, or acknowledged by S3). Never
   * overwrites: if the object exists it is left untouched and `created` is false.
   * Throws StorageUnavailableError when the write cannot be made durable.
   */
  putMessage(spool: SpoolFile): Promise<PutResult>;

  /**
   * Durably stores one envelope record. Envelopes are immutable: an id is
   * written once. Throws StorageUnavailableError on failure.
   */
  putEnvelope(envelope: Envelope): Promise<void>;

  /**
   * Streams a message's bytes. With `verify` (the default) the stream errors
   * with IntegrityError at its end if the bytes do not hash to `sha256`.
   * Throws NotFoundError when absent. `recentCopy`: the bytes may come from
   * a hash-checked local copy of a message this host has just stored (the
   * S3 store's, see local-copies.ts) instead of the store itself; only for
   * the index job, never for fixity checks, exports or downloads, which must
   * read what the store holds.
   */
  getMessage(sha256: Sha256, opts?: GetMessageOptions): Promise<Readable>;

  /** Size in bytes, or undefined when the message is absent. */
  statMessage(sha256: Sha256): Promise<StoredObjectInfo | undefined>;

  /**
   * Every envelope of one message, oldest first. The store's own listing is
   * the truth: what it returns is always what is stored. `known`: envelopes
   * the caller already holds (the index job gets the one its delivery wrote
   * in its payload); an adapter for which a read costs a request may use a
   * known envelope in place of reading it, but only one that is listed for
   * the message and that it can match against the stored bytes (S3: the MD5
   * ETag of the listing). Others are ignored.
   */
  getEnvelopes(sha256: Sha256, known?: Envelope[]): Promise<Envelope[]>;

  /**
   * The ids of a message's stored envelopes, sorted, from the store's listing
   * alone (no envelope is read: one listing on S3). The disposition guard
   * compares them with the indexed document's, so that a delivery the index
   * has not caught up with (its Bcc custodians) cannot slip past a hold.
   */
  envelopeIds(sha256: Sha256): Promise<string[]>;

  /** Every stored message, in no particular order. Streams; never loads the whole listing. */
  listMessages(): AsyncIterable<StoredObjectInfo>;

  /** Every stored envelope, in no particular order. */
  listEnvelopes(): AsyncIterable<Envelope>;

  /**
   * Every message that has envelopes, once each, with their ids (sorted),
   * from the store's listing alone (no envelope is read). Streams.
   */
  listEnvelopeIds(): AsyncIterable<{ sha256: Sha256; ids: string[] }>;

  /**
   * Durably writes a small named record once (a seal of the audit trail:
   * its chain head at a moment, so that a later rewrite of the trail cannot
   * go unnoticed). Write-once like messages: when the name exists it is
   * left untouched and `created` is false. Names match {@link SEAL_NAME}.
   * Throws StorageUnavailableError when the write cannot be made durable.
   */
  putSeal(name: string, bytes: Buffer): Promise<PutResult>;

  /** The bytes of a seal, or undefined when there is none of that name. */
  getSeal(name: string): Promise<Buffer | undefined>;

  /** Names of every seal, in name order. */
  listSeals(): AsyncIterable<string>;

  // --- retention and legal holds (the retention engine's only way to lock or delete) ---

  /**
   * Places (`on` true) or lifts a legal hold on a message. A held message
   * cannot be deleted whatever its retention says. S3: the object's Object
   * Lock legal hold; fs: a lock record beside the object. Throws NotFoundError
   * when the message is absent, StorageUnavailableError when it cannot be set.
   */
  setLegalHold(sha256: Sha256, on: boolean): Promise<void>;

  /**
   * The batch form of `setLegalHold`, for applying a hold to many messages:
   * when it resolves, every listed message that exists is in the requested
   * state on stable storage. Absent messages are not an error: they come
   * back in `missing`. Idempotent. Throws StorageUnavailableError when the batch cannot be
   * recorded; some messages may then be set and some not, and a retry of
   * the whole batch is safe. Pass the messages not known to be in that state
   * already. fs: one transaction (one fsync) per batch; S3: no batch API,
   * one PutObjectLegalHold per message, a bounded number in flight.
   */
  setLegalHolds(sha256s: Sha256[], on: boolean): Promise<LockBatchResult>;

  /**
   * The batch form of `extendRetention`: each message's retain-until moves to
   * its `until` when that is later, and is never shortened. Absent messages
   * come back in `missing`. Failure and cost as `setLegalHolds`.
   */
  extendRetentions(items: { sha256: Sha256; until: Date }[]): Promise<LockBatchResult>;

  /**
   * Whether a message is under a legal hold. Never a guessed false: when the
   * state cannot be read for sure it throws. NotFoundError when absent.
   */
  getLegalHold(sha256: Sha256): Promise<boolean>;

  /**
   * The retention of a message (S3: its Object Lock retention; fs: the
   * recorded one), or undefined when it has none. NotFoundError when absent;
   * StorageUnavailableError when it cannot be read for sure.
   */
  getRetention(sha256: Sha256): Promise<ObjectRetention | undefined>;

  /**
   * Extends a message's retain-until date to `until`. Only ever extends: when
   * `until` is not later than the current date nothing changes and it
   * resolves false; true when the new date was applied. NotFoundError when absent.
   */
  extendRetention(sha256: Sha256, until: Date): Promise<boolean>;

  /**
   * Deletes a message, every stored version of it, its envelopes and its lock
   * records: the disposition's last step. Fail-closed: throws
   * RetentionLockedError, deleting nothing, while the message is under a
   * legal hold or before its retain-until date (by the store's clock), and
   * StorageUnavailableError when its lock state cannot be read. Resolves
   * `{deleted: false}` when the message is already absent (idempotent).
   */
  deleteMessage(sha256: Sha256): Promise<DeleteResult>;

  /** Whether the store can currently write. */
  health(): Promise<StoreHealth>;

  /** Releases resources. */
  close(): Promise<void>;
}
