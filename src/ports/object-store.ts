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

export interface StoreHealth {
  ok: boolean;
  driver: string;
  detail?: string;
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
   * Throws NotFoundError when absent.
   */
  getMessage(sha256: Sha256, opts?: { verify?: boolean }): Promise<Readable>;

  /** Size in bytes, or undefined when the message is absent. */
  statMessage(sha256: Sha256): Promise<StoredObjectInfo | undefined>;

  /** Every envelope of one message, oldest first. */
  getEnvelopes(sha256: Sha256): Promise<Envelope[]>;

  /** Every stored message, in no particular order. Streams; never loads the whole listing. */
  listMessages(): AsyncIterable<StoredObjectInfo>;

  /** Every stored envelope, in no particular order. */
  listEnvelopes(): AsyncIterable<Envelope>;

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

  /** Whether the store can currently write. */
  health(): Promise<StoreHealth>;

  /** Releases resources. */
  close(): Promise<void>;
}
