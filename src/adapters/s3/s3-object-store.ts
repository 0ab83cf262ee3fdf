/**
 * The scale-out object store: S3 with Object Lock (AWS S3, MinIO on premises).
 *
 * Layout under `s3://<bucket>/<prefix>`:
 *   messages/<sha256>                      raw message bytes
 *   envelopes/<sha256>/<envelopeId>.json   one immutable record per delivery
 *   seals/<name>                           audit-trail seals, written once
 *
 * Every object is written with the configured lock mode and a retain-until
 * date `defaultRetentionDays` ahead; the bucket must have versioning and
 * Object Lock enabled (checked by `init`). Writes are never overwrites: each
 * carries `If-None-Match: *`, so S3 refuses a key that exists and two writers
 * racing on one key cannot both win (a HEAD first only for multipart uploads,
 * where re-sending a duplicate's bytes would cost more, and on endpoints
 * without conditional writes). Uploads carry the SHA-256 the ingest already computed, so S3
 * refuses bytes that do not match their key.
 *
 * Local copies (`localCopyDir`, see local-copies.ts): the spool file of a
 * message this store has just created is kept for a short while, so that an
 * index job on this host reads it from disk (checked against its hash)
 * instead of with a GET. Only reads that ask for it (`recentCopy`, the index
 * job) use a copy: a fixity check, an export or a download always reads S3.
 *
 * Retention is only ever extended by this code (`extendRetention` reads the
 * current date first and never sends an earlier one); legal holds are read
 * with the explicit API so that a missing permission fails closed.
 *
 * IAM permissions needed on `<bucket>/<prefix>*`: s3:PutObject, s3:GetObject,
 * s3:GetObjectVersion, s3:PutObjectRetention, s3:GetObjectRetention,
 * s3:PutObjectLegalHold, s3:GetObjectLegalHold, and for disposition
 * s3:DeleteObjectVersion; on the bucket: s3:ListBucket, s3:ListBucketVersions,
 * s3:GetBucketVersioning, s3:GetBucketObjectLockConfiguration. Never
 * s3:BypassGovernanceRetention: a deletion only ever happens once no version
 * is locked, and S3 itself refuses any other.
 */
import { createReadStream } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Logger } from 'pino';
import {
  GetBucketVersioningCommand,
  GetObjectCommand,
  GetObjectLegalHoldCommand,
  GetObjectLockConfigurationCommand,
  GetObjectRetentionCommand,
  DeleteObjectCommand,
  ListObjectVersionsCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  PutObjectLegalHoldCommand,
  PutObjectRetentionCommand,
  S3Client,
  type HeadObjectCommandOutput,
  type PutObjectCommandInput,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { Config } from '../../config/config.js';
import type { Envelope, Sha256 } from '../../domain/types.js';
import { ConfigError, NotFoundError, RetentionLockedError, StorageUnavailableError } from '../../errors.js';
import { assertSha256, isSha256 } from '../../integrity/sha256.js';
import { verifyingStream } from '../../integrity/verifying-stream.js';
import { LocalCopies } from './local-copies.js';
import { groupEnvelopeIds } from '../shared/group-envelope-ids.js';
import { SEAL_NAME, assertSealName, type DeleteResult, type GetMessageOptions, type LockBatchResult, type ObjectStore, type PutResult, type SpoolFile, type StoreHealth, type StoredObjectInfo } from '../../ports/object-store.js';

export type S3LockMode = 'COMPLIANCE' | 'GOVERNANCE';
export type S3Sse = 'none' | 'AES256' | 'aws:kms';

/** Where to read how to create a suitable bucket; named in init's errors. */
const BUCKET_DOC = 'infra/aws-s3-bucket.md';

const MiB = 1024 * 1024;
const DAY_MS = 24 * 60 * 60 * 1000;

export interface S3ObjectStoreOptions {
  /** Custom endpoint (MinIO, moto); omit for AWS. TLS is always verified. */
  endpoint?: string;
  region: string;
  bucket: string;
  /** Key prefix inside the bucket; a trailing `/` is added when missing. */
  prefix: string;
  /** Static credentials; omit to use the default chain (environment, instance or pod role). */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /** Path-style URLs (`endpoint/bucket/key`); MinIO and moto need it. */
  forcePathStyle: boolean;
  /** Lock mode of new objects. COMPLIANCE: nobody, not even root, can shorten or delete before retain-until. */
  lockMode: S3LockMode;
  /** Retention of every new object (days), until a policy extends it. */
  defaultRetentionDays: number;
  sse: S3Sse;
  /** KMS key for `sse: 'aws:kms'`; omit for the bucket's default key. */
  kmsKeyId?: string;
  log: Logger;
  /**
   * Send `If-None-Match: *` on writes so a racing writer cannot overwrite
   * (AWS, MinIO and moto honour it). Default true. When an endpoint answers
   * 501 NotImplemented the store turns it off by itself and keeps the HEAD
   * check, which leaves a small race window (two identical copies become two
   * locked versions: wasteful, never a loss).
   */
  conditionalWrites?: boolean;
  /**
   * Messages at or above this size (bytes) go up as multipart uploads; below
   * it, one streamed PutObject. Default 64 MiB. A single PutObject cannot be
   * retried by the SDK (its body is a stream), so this store retries it itself.
   */
  multipartThreshold?: number;
  /**
   * Multipart part size (bytes), min 5 MiB. Default 16 MiB. lib-storage
   * buffers each part in memory: one upload holds up to
   * (queueSize + 1) × partSize, i.e. 48 MiB with the defaults, per
   * concurrent large message.
   */
  partSize?: number;
  /** Parts uploaded at once per multipart upload. Default 2: enough to keep a link busy, bounded memory (see partSize). */
  queueSize?: number;
  /** Keys per ListObjectsV2 page (1..1000). Default 1000, the S3 maximum: one request per 1000 objects. */
  listPageSize?: number;
  /** Attempts for a single streamed PutObject (each re-opens the spool file). Default 3. */
  putAttempts?: number;
  /** Now, injectable for tests. */
  clock?: () => Date;
  /** A ready-made client (tests wrap one to record calls); `close()` destroys it. */
  client?: S3Client;
  /**
   * Where to keep local copies of messages this store has just created
   * (see local-copies.ts): the index job then reads a new message from there
   * instead of with a GET. On the spool directory's filesystem (the spool
   * file is renamed there). Omit to read every message from S3.
   */
  localCopyDir?: string;
}

/** Object Lock retention of one object version. */
export interface S3Retention {
  mode: S3LockMode;
  retainUntil: Date;
}

/** The lock state of the current version, as a HEAD reports it. */
interface HeadLock {
  versionId?: string;
  mode?: S3LockMode;
  retainUntil?: Date;
}

/** Envelope records fetched at once while listing; each is a small GET. */
const ENVELOPE_FETCH_CONCURRENCY = 8;

/**
 * Messages whose lock (legal hold, retention) a batch changes at once: S3 has
 * no batch API for either, so each message is a HEAD plus, when its state is
 * not already as asked, one PutObjectLegalHold or PutObjectRetention. 16 in
 * flight keep AWS busy without tripping its per-prefix request rates (3,500
 * writes/s); against a slow endpoint (moto: ~150 requests/s) the endpoint is the limit.
 */
const LOCK_BATCH_CONCURRENCY = 16;

export class S3ObjectStore implements ObjectStore {
  readonly driver = 's3';
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly log: Logger;
  private readonly lockMode: S3LockMode;
  private readonly retentionDays: number;
  private readonly sseParams: Pick<PutObjectCommandInput, 'ServerSideEncryption' | 'SSEKMSKeyId'>;
  private conditionalWrites: boolean;
  private readonly multipartThreshold: number;
  private readonly partSize: number;
  private readonly queueSize: number;
  private readonly listPageSize: number;
  private readonly putAttempts: number;
  private readonly clock: () => Date;
  private readonly where: string;
  private readonly localCopies: LocalCopies | undefined;

  constructor(opts: S3ObjectStoreOptions) {
    if (!Number.isInteger(opts.defaultRetentionDays) || opts.defaultRetentionDays < 1) {
      throw new ConfigError(`ARCHIVE_S3_DEFAULT_RETENTION_DAYS: must be a whole number of days >= 1, got ${opts.defaultRetentionDays}`);
    }
    this.bucket = opts.bucket;
    this.prefix = normalizePrefix(opts.prefix);
    this.log = opts.log;
    this.lockMode = opts.lockMode;
    this.retentionDays = opts.defaultRetentionDays;
    this.sseParams =
      opts.sse === 'none' ? {} : opts.sse === 'AES256' ? { ServerSideEncryption: 'AES256' } : { ServerSideEncryption: 'aws:kms', SSEKMSKeyId: opts.kmsKeyId };
    this.conditionalWrites = opts.conditionalWrites ?? true;
    this.multipartThreshold = opts.multipartThreshold ?? 64 * MiB;
    this.partSize = Math.max(opts.partSize ?? 16 * MiB, 5 * MiB);
    this.queueSize = opts.queueSize ?? 2;
    this.listPageSize = Math.min(Math.max(opts.listPageSize ?? 1000, 1), 1000);
    this.putAttempts = Math.max(opts.putAttempts ?? 3, 1);
    this.clock = opts.clock ?? (() => new Date());
    this.where = `s3://${this.bucket}/${this.prefix}${opts.endpoint ? ` at ${opts.endpoint}` : ''}`;
    this.localCopies = opts.localCopyDir ? new LocalCopies({ dir: opts.localCopyDir, log: opts.log }) : undefined;
    this.client =
      opts.client ??
      new S3Client({
        endpoint: opts.endpoint,
        region: opts.region,
        forcePathStyle: opts.forcePathStyle,
        credentials: opts.credentials,
        // The SDK's default (WHEN_SUPPORTED) adds a CRC32 to every request and,
        // for stream bodies without a checksum, switches to aws-chunked
        // encoding with a trailer, which some S3-compatible servers reject.
        // We send our own SHA-256 (the object's key) on every upload and
        // verify every read with verifyingStream, so the SDK's CRC would only
        // cost another pass over the bytes. Measured against moto 5.2.1: both
        // settings work there (moto accepts the aws-chunked trailer).
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
        // Attempts per request (SDK standard retry: jittered exponential
        // backoff from 100 ms, so 3 attempts add well under a second of
        // waiting). Bounds how long an SMTP transaction waits on a sick S3
        // before it answers 451 and the sender retries.
        maxAttempts: 3,
        requestHandler: {
          // ms to open a TCP/TLS connection; an unreachable endpoint fails fast.
          connectionTimeout: 5_000,
          // ms a socket may sit idle mid-request or mid-download before it is
          // dropped; a slow export reader that pauses longer loses its stream.
          socketTimeout: 120_000,
        },
        logger: sdkLogger(opts.log),
      });
  }

  /** Builds the store from the validated configuration (ARCHIVE_S3_*); `localCopyDir`: see the option. */
  static fromConfig(config: Config, log: Logger, localCopyDir?: string): S3ObjectStore {
    if (!config.ARCHIVE_S3_BUCKET) throw new ConfigError('ARCHIVE_S3_BUCKET: required when ARCHIVE_STORE=s3');
    const id = config.ARCHIVE_S3_ACCESS_KEY_ID;
    const secret = config.ARCHIVE_S3_SECRET_ACCESS_KEY;
    if (!!id !== !!secret) {
      throw new ConfigError('ARCHIVE_S3_ACCESS_KEY_ID and ARCHIVE_S3_SECRET_ACCESS_KEY must be set together (or both left unset to use the default credential chain)');
    }
    return new S3ObjectStore({
      endpoint: config.ARCHIVE_S3_ENDPOINT,
      region: config.ARCHIVE_S3_REGION,
      bucket: config.ARCHIVE_S3_BUCKET,
      prefix: config.ARCHIVE_S3_PREFIX,
      credentials: id && secret ? { accessKeyId: id, secretAccessKey: secret } : undefined,
      forcePathStyle: config.ARCHIVE_S3_FORCE_PATH_STYLE,
      lockMode: config.ARCHIVE_S3_LOCK_MODE,
      defaultRetentionDays: config.ARCHIVE_S3_DEFAULT_RETENTION_DAYS,
      sse: config.ARCHIVE_S3_SSE,
      kmsKeyId: config.ARCHIVE_S3_SSE_KMS_KEY_ID,
      log: log.child({ component: 'store', driver: 's3' }),
      localCopyDir,
    });
  }

  /**
   * Checks that the bucket exists and is reachable with these credentials,
   * and that it has Object Lock (hence versioning) enabled. Throws ConfigError
   * saying what is wrong and how to fix it; StorageUnavailableError when the
   * endpoint cannot be reached at all.
   */
  async init(): Promise<void> {
    const b = this.bucket;
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: b }));
    } catch (err) {
      const status = httpStatus(err);
      if (status === 404) {
        throw new ConfigError(
          `ARCHIVE_S3_BUCKET: bucket "${b}" does not exist${this.endpointNote()}: create it with Object Lock enabled ` +
            `(aws s3api create-bucket --bucket ${b} --object-lock-enabled-for-bucket); see ${BUCKET_DOC}`,
        );
      }
      if (status === 403 || status === 401) {
        throw new ConfigError(
          `ARCHIVE_S3_BUCKET: access to bucket "${b}" denied${this.endpointNote()}: check ARCHIVE_S3_ACCESS_KEY_ID / ARCHIVE_S3_SECRET_ACCESS_KEY ` +
            `(or the instance role) and that the policy grants s3:ListBucket on it; see ${BUCKET_DOC}`,
        );
      }
      if (status === 301) {
        throw new ConfigError(`ARCHIVE_S3_REGION: bucket "${b}" is not in region ${await this.client.config.region()}: set ARCHIVE_S3_REGION to the bucket's region`);
      }
      throw new StorageUnavailableError(`cannot reach ${this.where} (ARCHIVE_S3_ENDPOINT): ${describe(err)}`, { cause: err });
    }

    let lockEnabled = false;
    try {
      const lock = await this.client.send(new GetObjectLockConfigurationCommand({ Bucket: b }));
      lockEnabled = lock.ObjectLockConfiguration?.ObjectLockEnabled === 'Enabled';
      const rule = lock.ObjectLockConfiguration?.Rule?.DefaultRetention;
      if (rule) this.log.info({ bucket: b, defaultRetention: rule }, 'bucket has a default retention rule; every object also gets its own retention');
    } catch (err) {
      if (errorName(err) !== 'ObjectLockConfigurationNotFoundError') {
        if (httpStatus(err) === 403) {
          throw new ConfigError(`ARCHIVE_S3_BUCKET: cannot read the Object Lock configuration of bucket "${b}": grant s3:GetBucketObjectLockConfiguration; see ${BUCKET_DOC}`);
        }
        throw new StorageUnavailableError(`cannot read the Object Lock configuration of ${this.where}: ${describe(err)}`, { cause: err });
      }
    }
    if (!lockEnabled) {
      throw new ConfigError(
        `ARCHIVE_S3_BUCKET: bucket "${b}" has no Object Lock: create it with Object Lock enabled ` +
          `(aws s3api create-bucket --bucket ${b} --object-lock-enabled-for-bucket), or enable it on the versioned bucket ` +
          `(aws s3api put-object-lock-configuration --bucket ${b} --object-lock-configuration ObjectLockEnabled=Enabled); see ${BUCKET_DOC}`,
      );
    }

    let versioning: string | undefined;
    try {
      versioning = (await this.client.send(new GetBucketVersioningCommand({ Bucket: b }))).Status;
    } catch (err) {
      if (httpStatus(err) === 403) {
        throw new ConfigError(`ARCHIVE_S3_BUCKET: cannot read the versioning state of bucket "${b}": grant s3:GetBucketVersioning; see ${BUCKET_DOC}`);
      }
      throw new StorageUnavailableError(`cannot read the versioning state of ${this.where}: ${describe(err)}`, { cause: err });
    }
    if (versioning !== 'Enabled') {
      throw new ConfigError(
        `ARCHIVE_S3_BUCKET: bucket "${b}" has versioning ${versioning ?? 'never enabled'}, but Object Lock needs it Enabled: ` +
          `aws s3api put-bucket-versioning --bucket ${b} --versioning-configuration Status=Enabled; see ${BUCKET_DOC}`,
      );
    }
    await this.localCopies?.init();
    this.log.info({ bucket: b, prefix: this.prefix, lockMode: this.lockMode, retentionDays: this.retentionDays }, 'S3 object store ready');
  }

  messageKey(sha256: Sha256): string {
    assertSha256(sha256);
    return `${this.prefix}messages/${sha256}`;
  }

  envelopeKey(sha256: Sha256, envelopeId: string): string {
    assertSha256(sha256);
    assertEnvelopeId(envelopeId);
    return `${this.prefix}envelopes/${sha256}/${envelopeId}.json`;
  }

  async putMessage(spool: SpoolFile): Promise<PutResult> {
    assertSha256(spool.sha256);
    const key = this.messageKey(spool.sha256);
    let kept = false;
    try {
      const multipart = spool.size >= this.multipartThreshold;
      // A duplicate is refused by If-None-Match without a HEAD first (one
      // request per message saved); a HEAD still comes first where sending the
      // bytes of a duplicate would cost more than the request (multipart), or
      // where the endpoint does not implement If-None-Match.
      if ((multipart || !this.conditionalWrites) && (await this.exists(key))) return { created: false };
      const until = this.defaultRetainUntil();
      const created = multipart ? await this.uploadMultipart(spool, key, until) : await this.putSingle(spool, key, until);
      if (created) {
        this.log.debug({ sha256: spool.sha256, size: spool.size }, 'stored');
        // Only an object this PUT created (fresh lock, so not deletable for a day) gets a local copy.
        kept = (await this.localCopies?.keep(spool.path, spool.sha256, spool.size)) ?? false;
      }
      return { created };
    } catch (err) {
      throw new StorageUnavailableError(`could not store message ${spool.sha256} in ${this.where}: ${describe(err)}`, { cause: err });
    } finally {
      if (!kept) await unlink(spool.path).catch(() => undefined);
    }
  }

  /**
   * One streamed PutObject. S3 checks the bytes against ChecksumSHA256 (the
   * key) and rejects a mismatch. The SDK cannot retry a stream body, so we
   * retry here with a fresh read of the spool file.
   */
  private async putSingle(spool: SpoolFile, key: string, until: Date): Promise<boolean> {
    const checksum = Buffer.from(spool.sha256, 'hex').toString('base64');
    for (let attempt = 1; ; attempt++) {
      const body = createReadStream(spool.path, { highWaterMark: 256 * 1024 });
      try {
        return await this.conditionalPut(spool.sha256, {
          Bucket: this.bucket,
          Key: key,
          Body: body,
          ContentLength: spool.size,
          ContentType: 'message/rfc822',
          ChecksumAlgorithm: 'SHA256',
          ChecksumSHA256: checksum,
        }, until);
      } catch (err) {
        if (attempt >= this.putAttempts || !isRetryable(err)) throw err;
        this.log.warn({ sha256: spool.sha256, attempt, err: describe(err) }, 'S3 put failed; retrying');
        await sleep(200 * 4 ** (attempt - 1));
      } finally {
        body.destroy();
      }
    }
  }

  /**
   * A multipart upload (lib-storage). Each part carries its own SHA-256,
   * which S3 checks; the whole file is re-hashed on the way through and the
   * upload is aborted (never completed) if it does not match the key.
   */
  private async uploadMultipart(spool: SpoolFile, key: string, until: Date): Promise<boolean> {
    try {
      return await this.uploadMultipartOnce(spool, key, until);
    } catch (err) {
      if (!(this.conditionalWrites && isNotImplemented(err))) throw err;
      this.conditionalWrites = false;
      this.log.warn({ sha256: spool.sha256, err: describe(err) }, 'endpoint does not implement If-None-Match; relying on HEAD before each write');
      return this.uploadMultipartOnce(spool, key, until);
    }
  }

  private async uploadMultipartOnce(spool: SpoolFile, key: string, until: Date): Promise<boolean> {
    const source = createReadStream(spool.path, { highWaterMark: 1 * MiB });
    const upload = new Upload({
      client: this.client,
      partSize: this.partSize,
      queueSize: this.queueSize,
      leavePartsOnError: false,
      params: {
        Bucket: this.bucket,
        Key: key,
        Body: verifyingStream(source, spool.sha256),
        ContentLength: spool.size,
        ContentType: 'message/rfc822',
        ChecksumAlgorithm: 'SHA256',
        ...this.lockParams(until),
        ...this.sseParams,
        ...(this.conditionalWrites ? { IfNoneMatch: '*' } : {}),
      },
    });
    let versionId: string | undefined;
    try {
      versionId = (await upload.done()).VersionId;
    } catch (err) {
      if (isPreconditionFailed(err)) return false;
      throw err;
    } finally {
      source.destroy();
    }
    // Some endpoints (moto) ignore the lock headers of CreateMultipartUpload.
    // An unlocked message is a broken promise, so check and, when missing,
    // apply the retention now (only ever extending, as everywhere).
    const lock = await this.headLock(key, versionId);
    // 1 s of slack: an endpoint may keep the date to the second.
    if (!lock.retainUntil || lock.retainUntil.getTime() < until.getTime() - 1_000) {
      this.log.warn({ sha256: spool.sha256, versionId }, 'endpoint did not apply Object Lock to a multipart upload; applying retention now');
      await this.sendRetention(key, lock.versionId ?? versionId, lock.mode ?? this.lockMode, until, lock.retainUntil);
    }
    return true;
  }

  /**
   * PutObject with the lock, SSE and If-None-Match settings. Resolves false
   * when the key already exists (412). Turns If-None-Match off for good when
   * the endpoint does not implement it.
   */
  private async conditionalPut(what: string, input: PutObjectCommandInput, until: Date): Promise<boolean> {
    const full: PutObjectCommandInput = { ...input, ...this.lockParams(until), ...this.sseParams };
    if (this.conditionalWrites) full.IfNoneMatch = '*';
    try {
      await this.client.send(new PutObjectCommand(full));
      return true;
    } catch (err) {
      if (isPreconditionFailed(err)) return false;
      if (this.conditionalWrites && isNotImplemented(err)) {
        this.conditionalWrites = false;
        this.log.warn({ what, err: describe(err) }, 'endpoint does not implement If-None-Match on PutObject; relying on HEAD before each write');
        // Only safe to resend a body that can be re-read; a stream is retried by the caller.
        if (Buffer.isBuffer(input.Body) || typeof input.Body === 'string') return this.conditionalPut(what, input, until);
        throw Object.assign(new Error('If-None-Match not implemented; retry without it'), { retryable: true, cause: err });
      }
      throw err;
    }
  }

  async putEnvelope(envelope: Envelope): Promise<void> {
    assertSha256(envelope.sha256);
    if (!/^[0-9A-Za-z-]+$/.test(envelope.id)) throw new Error(`bad envelope id ${envelope.id}`);
    const key = this.envelopeKey(envelope.sha256, envelope.id);
    try {
      // Envelope ids are unique; If-None-Match alone refuses a second write.
      if (!this.conditionalWrites && (await this.exists(key))) throw new Error(`envelope ${envelope.id} already exists`);
      const body = Buffer.from(JSON.stringify(envelope), 'utf8');
      const created = await this.conditionalPut(`envelope ${envelope.id}`, {
        Bucket: this.bucket,
        Key: key,
        Body: body,
        ContentLength: body.length,
        ContentType: 'application/json',
        ChecksumAlgorithm: 'SHA256',
        ChecksumSHA256: createHash('sha256').update(body).digest('base64'),
      }, this.defaultRetainUntil());
      if (!created) throw new Error(`envelope ${envelope.id} already exists`);
    } catch (err) {
      throw new StorageUnavailableError(`could not store envelope ${envelope.id}: ${describe(err)}`, { cause: err });
    }
  }

  sealKey(name: string): string {
    assertSealName(name);
    return `${this.prefix}seals/${name}`;
  }

  async putSeal(name: string, bytes: Buffer): Promise<PutResult> {
    const key = this.sealKey(name);
    try {
      if (await this.exists(key)) return { created: false };
      const created = await this.conditionalPut(`seal ${name}`, {
        Bucket: this.bucket,
        Key: key,
        Body: bytes,
        ContentLength: bytes.length,
        ContentType: 'application/json',
        ChecksumAlgorithm: 'SHA256',
        ChecksumSHA256: createHash('sha256').update(bytes).digest('base64'),
      }, this.defaultRetainUntil());
      return { created };
    } catch (err) {
      throw new StorageUnavailableError(`could not store seal ${name} in ${this.where}: ${describe(err)}`, { cause: err });
    }
  }

  async getSeal(name: string): Promise<Buffer | undefined> {
    const key = this.sealKey(name);
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      if (!res.Body) throw new Error('empty body');
      return Buffer.from(await res.Body.transformToByteArray());
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw unavailable(`could not read seal ${name} from ${this.where}`, err);
    }
  }

  async *listSeals(): AsyncIterable<string> {
    const base = `${this.prefix}seals/`;
    for await (const page of this.listPages(base)) {
      for (const o of page) {
        const name = o.key.slice(base.length);
        if (SEAL_NAME.test(name)) yield name;
      }
    }
  }

  async getMessage(sha256: Sha256, opts: GetMessageOptions = {}): Promise<Readable> {
    const key = this.messageKey(sha256);
    // For the index job only: a fresh local copy of a message this host just stored, already checked against its hash.
    const local = opts.recentCopy ? await this.localCopies?.read(sha256) : undefined;
    if (local) return Readable.from([local], { objectMode: false });
    let body: Readable;
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      // In Node the SDK's Body is an http.IncomingMessage (a Readable).
      body = res.Body as Readable;
    } catch (err) {
      if (isNotFound(err)) throw new NotFoundError(`message ${sha256} not found`);
      throw new StorageUnavailableError(`could not read message ${sha256} from ${this.where}: ${describe(err)}`, { cause: err });
    }
    return opts.verify === false ? body : verifyingStream(body, sha256);
  }

  async statMessage(sha256: Sha256): Promise<StoredObjectInfo | undefined> {
    const key = this.messageKey(sha256);
    let head: HeadObjectCommandOutput | undefined;
    try {
      head = await this.head(key);
    } catch (err) {
      // Never "absent" because S3 could not be asked.
      throw unavailable(`could not stat message ${sha256} in ${this.where}`, err);
    }
    return head ? { sha256, size: head.ContentLength ?? 0 } : undefined;
  }

  /**
   * One listing, then one GET per envelope, except for a `known` envelope
   * whose bytes match the listed object: its JSON (as putEnvelope writes it)
   * must hash to the object's ETag, the MD5 of the body for a single PUT
   * without SSE-KMS. Under SSE-KMS (ETag not an MD5), or when a known
   * envelope differs in any byte, the envelope is read. The index job passes
   * the envelope of the delivery that enqueued it, which saves one request
   * per message.
   */
  /** A message's envelope objects, sorted by key. */
  private async listEnvelopeObjects(sha256: Sha256): Promise<{ key: string; etag?: string }[]> {
    assertSha256(sha256);
    const listed: { key: string; etag?: string }[] = [];
    for await (const page of this.listPages(`${this.prefix}envelopes/${sha256}/`)) {
      for (const o of page) if (o.key.endsWith('.json')) listed.push(o);
    }
    return listed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async envelopeIds(sha256: Sha256): Promise<string[]> {
    const base = `${this.prefix}envelopes/${sha256}/`;
    return (await this.listEnvelopeObjects(sha256)).map((o) => o.key.slice(base.length, -'.json'.length));
  }

  async getEnvelopes(sha256: Sha256, known: Envelope[] = []): Promise<Envelope[]> {
    const listed = await this.listEnvelopeObjects(sha256);
    const byKey = new Map<string, Envelope>();
    for (const env of known) {
      if (env?.sha256 !== sha256 || typeof env.id !== 'string' || !/^[0-9A-Za-z-]+$/.test(env.id)) continue;
      byKey.set(this.envelopeKey(sha256, env.id), env);
    }
    return mapLimit(listed, ENVELOPE_FETCH_CONCURRENCY, async (o) => {
      const env = byKey.get(o.key);
      if (env && o.etag && o.etag === createHash('md5').update(JSON.stringify(env), 'utf8').digest('hex')) return env;
      return this.readEnvelope(o.key);
    });
  }

  async *listMessages(): AsyncIterable<StoredObjectInfo> {
    const base = `${this.prefix}messages/`;
    for await (const page of this.listPages(base)) {
      for (const o of page) {
        const name = o.key.slice(base.length);
        if (isSha256(name)) yield { sha256: name, size: o.size };
      }
    }
  }

  async *listEnvelopes(): AsyncIterable<Envelope> {
    for await (const page of this.listPages(`${this.prefix}envelopes/`)) {
      const keys = page.filter((o) => o.key.endsWith('.json')).map((o) => o.key);
      // One page (<= listPageSize records of a few KiB) at a time: bounded memory.
      yield* await mapLimit(keys, ENVELOPE_FETCH_CONCURRENCY, (k) => this.readEnvelope(k));
    }
  }

  listEnvelopeIds(): AsyncIterable<{ sha256: Sha256; ids: string[] }> {
    const base = `${this.prefix}envelopes/`;
    const pages = this.listPages(base);
    return groupEnvelopeIds(
      (async function* () {
        for await (const page of pages) {
          for (const o of page) {
            const m = /^([0-9a-f]{64})\/([0-9A-Za-z-]+)\.json$/.exec(o.key.slice(base.length));
            if (m) yield { sha256: m[1], id: m[2] };
          }
        }
      })(),
    );
  }

  async health(): Promise<StoreHealth> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
      return { ok: true, driver: this.driver, detail: this.where };
    } catch (err) {
      return { ok: false, driver: this.driver, detail: `${this.where}: ${describe(err)}` };
    }
  }

  async close(): Promise<void> {
    this.localCopies?.close();
    this.client.destroy();
  }

  // --- Object Lock: retention and legal holds (to join the port with the retention work) ---

  /**
   * Places (`on` true) or lifts a legal hold on the current version of a
   * message. A held object cannot be deleted whatever its retention says.
   * Throws NotFoundError when the message is absent, StorageUnavailableError
   * when S3 refuses or cannot be reached.
   */
  async setLegalHold(sha256: Sha256, on: boolean): Promise<void> {
    const changed = await this.putLegalHold(sha256, on);
    if (changed) this.log.info({ sha256, legalHold: on }, 'legal hold set');
  }

  /**
   * The batch form: one PutObjectLegalHold per message (on its current
   * version), at most LOCK_BATCH_CONCURRENCY in flight; absent messages are
   * reported. No HEAD first: callers pass the messages whose flag they know
   * is not yet as asked (the retention engine: those its catalog does not
   * record as held), so a read to skip the already-set ones would cost a
   * request per message to save one now and then; sending the flag again is
   * harmless.
   */
  async setLegalHolds(sha256s: Sha256[], on: boolean): Promise<LockBatchResult> {
    const missing: Sha256[] = [];
    let changed = 0;
    const status = on ? 'ON' : 'OFF';
    await mapLimit([...new Set(sha256s)], LOCK_BATCH_CONCURRENCY, async (sha256) => {
      const key = this.messageKey(sha256);
      try {
        await this.client.send(new PutObjectLegalHoldCommand({ Bucket: this.bucket, Key: key, LegalHold: { Status: status } }));
        changed++;
      } catch (err) {
        // Some endpoints (moto) answer 500, not 404, for an absent key: a HEAD tells absent from failed.
        if (isNotFound(err) || !(await this.exists(key).catch(() => true))) missing.push(sha256);
        else throw new StorageUnavailableError(`could not set the legal hold of ${sha256}: ${describe(err)}`, { cause: err });
      }
    });
    if (changed) this.log.info({ messages: changed, legalHold: on }, 'legal holds set');
    return { missing };
  }

  /**
   * Sets the legal hold of the current version of a message unless its HEAD
   * already shows it so (S3 only shows the flag to callers allowed to read
   * it; without the header the flag is always sent). True when it was sent.
   */
  private async putLegalHold(sha256: Sha256, on: boolean): Promise<boolean> {
    const key = this.messageKey(sha256);
    const status = on ? 'ON' : 'OFF';
    try {
      // Pin the version the HEAD saw (and get a clean 404 for an absent message).
      const h = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      if (h.ObjectLockLegalHoldStatus === status) return false;
      await this.client.send(new PutObjectLegalHoldCommand({ Bucket: this.bucket, Key: key, VersionId: h.VersionId, LegalHold: { Status: status } }));
      this.log.debug({ sha256, versionId: h.VersionId, legalHold: on }, 'legal hold sent');
      return true;
    } catch (err) {
      if (isNotFound(err)) throw new NotFoundError(`message ${sha256} not found`);
      throw new StorageUnavailableError(`could not set the legal hold of ${sha256}: ${describe(err)}`, { cause: err });
    }
  }

  /**
   * Whether the current version of a message is under a legal hold. Reads the
   * explicit legal-hold API, not HEAD headers (which S3 silently omits without
   * s3:GetObjectLegalHold), so a missing permission throws instead of
   * answering false. Throws NotFoundError when the message is absent.
   */
  async getLegalHold(sha256: Sha256): Promise<boolean> {
    const key = this.messageKey(sha256);
    try {
      const res = await this.client.send(new GetObjectLegalHoldCommand({ Bucket: this.bucket, Key: key }));
      return res.LegalHold?.Status === 'ON';
    } catch (err) {
      // S3 and MinIO answer this for an object that never had a hold set.
      if (errorName(err) === 'NoSuchObjectLockConfiguration') return false;
      if (isNotFound(err)) throw new NotFoundError(`message ${sha256} not found`);
      throw new StorageUnavailableError(`could not read the legal hold of ${sha256}: ${describe(err)}`, { cause: err });
    }
  }

  /**
   * The Object Lock retention of the current version of a message, or
   * undefined when it has none. Throws NotFoundError when the message is
   * absent, and StorageUnavailableError when the retention cannot be read
   * for sure (never a guessed "none").
   */
  async getRetention(sha256: Sha256): Promise<S3Retention | undefined> {
    return (await this.readRetention(sha256)).current;
  }

  /**
   * Extends the retention of the current version of a message to `until`.
   * Only ever extends: when `until` is not later than the current
   * retain-until date it sends nothing and resolves false. Keeps the
   * object's lock mode (the configured mode if it had none). Resolves true
   * when the new date was applied. Throws NotFoundError when the message is
   * absent. (Read-then-write: callers serialise extensions of one message,
   * e.g. under the retention engine's lock; S3 itself refuses to shorten.)
   */
  async extendRetention(sha256: Sha256, until: Date): Promise<boolean> {
    if (!(until instanceof Date) || Number.isNaN(until.getTime())) throw new Error('extendRetention: until must be a valid Date');
    const { key, lock, current } = await this.readRetention(sha256);
    if (current && until.getTime() <= current.retainUntil.getTime()) return false;
    try {
      await this.sendRetention(key, lock.versionId, current?.mode ?? this.lockMode, until, current?.retainUntil);
    } catch (err) {
      throw unavailable(`could not extend the retention of ${sha256}`, err);
    }
    this.log.info({ sha256, from: current?.retainUntil.toISOString(), until: until.toISOString() }, 'retention extended');
    return true;
  }

  /**
   * The batch form: `extendRetention` per message (HEAD, and
   * PutObjectRetention only when the date moves later), at most
   * LOCK_BATCH_CONCURRENCY in flight. A message listed twice gets the later
   * date, once (extensions of one message must not race). Absent messages are reported.
   */
  async extendRetentions(items: { sha256: Sha256; until: Date }[]): Promise<LockBatchResult> {
    const latest = new Map<Sha256, Date>();
    for (const { sha256, until } of items) {
      if (!(until instanceof Date) || Number.isNaN(until.getTime())) throw new Error('extendRetention: until must be a valid Date');
      const had = latest.get(sha256);
      if (!had || until.getTime() > had.getTime()) latest.set(sha256, until);
    }
    const missing: Sha256[] = [];
    await mapLimit([...latest], LOCK_BATCH_CONCURRENCY, async ([sha256, until]) => {
      try {
        await this.extendRetention(sha256, until);
      } catch (err) {
        if (err instanceof NotFoundError) missing.push(sha256);
        else throw err;
      }
    });
    return { missing };
  }

  /**
   * Deletes every version (and delete marker) of a message and of its
   * envelopes, but only once nothing locks any of them: each version's legal
   * hold and retention are read first (explicit APIs, so a missing permission
   * fails closed), and one locked version refuses the whole deletion with
   * RetentionLockedError before anything is deleted. S3 itself refuses to
   * delete a locked version, as a second guard.
   */
  async deleteMessage(sha256: Sha256): Promise<DeleteResult> {
    const msgKey = this.messageKey(sha256);
    type V = { key: string; versionId: string; marker: boolean };
    const versions: V[] = [];
    try {
      for (const prefix of [msgKey, `${this.prefix}envelopes/${sha256}/`]) {
        let keyMarker: string | undefined;
        let versionMarker: string | undefined;
        do {
          const res = await this.client.send(
            new ListObjectVersionsCommand({ Bucket: this.bucket, Prefix: prefix, KeyMarker: keyMarker, VersionIdMarker: versionMarker, MaxKeys: this.listPageSize }),
          );
          for (const v of res.Versions ?? []) if (v.Key && v.VersionId && (prefix !== msgKey || v.Key === msgKey)) versions.push({ key: v.Key, versionId: v.VersionId, marker: false });
          for (const v of res.DeleteMarkers ?? []) if (v.Key && v.VersionId && (prefix !== msgKey || v.Key === msgKey)) versions.push({ key: v.Key, versionId: v.VersionId, marker: true });
          keyMarker = res.IsTruncated ? res.NextKeyMarker : undefined;
          versionMarker = res.IsTruncated ? res.NextVersionIdMarker : undefined;
        } while (keyMarker);
      }
    } catch (err) {
      throw unavailable(`could not list the versions of ${sha256}`, err);
    }
    const now = this.clock().getTime();
    for (const v of versions) {
      if (v.marker) continue;
      let held: boolean;
      let until: Date | undefined;
      try {
        held = await this.client
          .send(new GetObjectLegalHoldCommand({ Bucket: this.bucket, Key: v.key, VersionId: v.versionId }))
          .then((r) => r.LegalHold?.Status === 'ON', (err: unknown) => {
            if (errorName(err) === 'NoSuchObjectLockConfiguration') return false;
            throw err;
          });
        until = (await this.confirmedRetention(v.key, await this.headLock(v.key, v.versionId)))?.retainUntil;
      } catch (err) {
        throw unavailable(`could not read the lock state of ${v.key} (version ${v.versionId})`, err);
      }
      if (held) throw new RetentionLockedError(`${v.key} (version ${v.versionId}) is under a legal hold`);
      if (until && until.getTime() > now) throw new RetentionLockedError(`${v.key} (version ${v.versionId}) is retained until ${until.toISOString()}`);
    }
    // No read may be served from a local copy once deletion starts.
    await this.localCopies?.drop(sha256);
    // The message first, its envelopes after: a retry after a partial failure finishes the rest.
    versions.sort((a, b) => Number(b.key === msgKey) - Number(a.key === msgKey));
    for (const v of versions) {
      try {
        await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: v.key, VersionId: v.versionId }));
      } catch (err) {
        if (httpStatus(err) === 403) throw new RetentionLockedError(`S3 refused to delete ${v.key} (version ${v.versionId}): ${describe(err)}`);
        throw unavailable(`could not delete ${v.key} (version ${v.versionId})`, err);
      }
    }
    const deleted = versions.some((v) => v.key === msgKey && !v.marker);
    if (versions.length) this.log.info({ sha256, versions: versions.length }, 'message deleted (disposition)');
    return { deleted, objects: versions.length };
  }

  /** Key, current version and confirmed retention of a message. */
  private async readRetention(sha256: Sha256): Promise<{ key: string; lock: HeadLock; current: S3Retention | undefined }> {
    const key = this.messageKey(sha256);
    let lock: HeadLock;
    try {
      lock = await this.headLock(key);
    } catch (err) {
      if (isNotFound(err)) throw new NotFoundError(`message ${sha256} not found`);
      throw unavailable(`could not read the retention of ${sha256}`, err);
    }
    return { key, lock, current: await this.confirmedRetention(key, lock) };
  }

  /**
   * The one place that sends PutObjectRetention. Refuses, before any request,
   * to send a date not later than the known current one.
   */
  private async sendRetention(key: string, versionId: string | undefined, mode: S3LockMode, until: Date, current: Date | undefined): Promise<void> {
    if (current && until.getTime() <= current.getTime()) {
      throw new Error(`refusing to send retain-until ${until.toISOString()}: not later than the current ${current.toISOString()}`);
    }
    await this.client.send(
      new PutObjectRetentionCommand({ Bucket: this.bucket, Key: key, VersionId: versionId, Retention: { Mode: mode, RetainUntilDate: until } }),
    );
  }

  /**
   * The retention of the version `lock` describes. HEAD reports it when the
   * caller may read it; when HEAD shows none, GetObjectRetention tells
   * "none" apart from "not allowed to see" (S3 hides the HEAD headers without
   * s3:GetObjectRetention). Anything unclear throws.
   */
  private async confirmedRetention(key: string, lock: HeadLock): Promise<S3Retention | undefined> {
    if (lock.mode && lock.retainUntil) return { mode: lock.mode, retainUntil: lock.retainUntil };
    try {
      const res = await this.client.send(new GetObjectRetentionCommand({ Bucket: this.bucket, Key: key, VersionId: lock.versionId }));
      const r = res.Retention;
      if (r?.Mode && r.RetainUntilDate) return { mode: r.Mode, retainUntil: new Date(r.RetainUntilDate) };
      if (r === undefined) throw new Error('GetObjectRetention answered without a Retention element');
      return undefined;
    } catch (err) {
      if (errorName(err) === 'NoSuchObjectLockConfiguration') return undefined;
      throw unavailable(`could not confirm the retention of ${key}`, err);
    }
  }

  // --- helpers ---

  private lockParams(until: Date): Pick<PutObjectCommandInput, 'ObjectLockMode' | 'ObjectLockRetainUntilDate'> {
    return { ObjectLockMode: this.lockMode, ObjectLockRetainUntilDate: until };
  }

  private defaultRetainUntil(): Date {
    return new Date(this.clock().getTime() + this.retentionDays * DAY_MS);
  }

  private endpointNote(): string {
    return this.where.includes(' at ') ? ` at ${this.where.split(' at ')[1]}` : '';
  }

  /** HEAD of a key; undefined when absent. Other errors propagate. */
  private async head(key: string, versionId?: string): Promise<HeadObjectCommandOutput | undefined> {
    try {
      return await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key, VersionId: versionId }));
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  private async exists(key: string): Promise<boolean> {
    return (await this.head(key)) !== undefined;
  }

  /** Version id and lock state of the current (or given) version. Throws a 404-shaped error when absent. */
  private async headLock(key: string, versionId?: string): Promise<HeadLock> {
    const h = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key, VersionId: versionId }));
    return {
      versionId: h.VersionId,
      mode: h.ObjectLockMode,
      retainUntil: h.ObjectLockRetainUntilDate ? new Date(h.ObjectLockRetainUntilDate) : undefined,
    };
  }

  private async readEnvelope(key: string): Promise<Envelope> {
    let text: string;
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      if (!res.Body) throw new Error('empty body');
      text = await res.Body.transformToString('utf8');
    } catch (err) {
      throw unavailable(`could not read envelope ${key} from ${this.where}`, err);
    }
    return JSON.parse(text) as Envelope;
  }

  /** ListObjectsV2 pages under a prefix, one request per page. */
  private async *listPages(prefix: string): AsyncIterable<{ key: string; size: number; etag?: string }[]> {
    let token: string | undefined;
    do {
      let res;
      try {
        res = await this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token, MaxKeys: this.listPageSize }),
        );
      } catch (err) {
        throw unavailable(`could not list ${prefix} in ${this.where}`, err);
      }
      yield (res.Contents ?? [])
        .filter((o) => o.Key !== undefined)
        // ETag without its quotes: the body's MD5 in hex for a single PUT (not under SSE-KMS).
        .map((o) => ({ key: o.Key as string, size: o.Size ?? 0, etag: o.ETag?.replace(/"/g, '').toLowerCase() }));
      token = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (token);
  }
}

function normalizePrefix(prefix: string): string {
  const p = prefix.replace(/^\/+/, '');
  return p === '' || p.endsWith('/') ? p : `${p}/`;
}

function assertEnvelopeId(id: string): void {
  if (!/^[0-9A-Za-z-]+$/.test(id)) throw new Error(`bad envelope id ${JSON.stringify(id).slice(0, 80)}`);
}

interface SdkErrorShape {
  name?: string;
  code?: string;
  retryable?: boolean;
  $metadata?: { httpStatusCode?: number };
  $retryable?: unknown;
}

function httpStatus(err: unknown): number | undefined {
  return (err as SdkErrorShape | undefined)?.$metadata?.httpStatusCode;
}

function errorName(err: unknown): string | undefined {
  return (err as SdkErrorShape | undefined)?.name;
}

function isNotFound(err: unknown): boolean {
  const name = errorName(err);
  if (name === 'NoSuchBucket') return false;
  return name === 'NoSuchKey' || name === 'NotFound' || name === 'NoSuchVersion' || httpStatus(err) === 404;
}

function isPreconditionFailed(err: unknown): boolean {
  return httpStatus(err) === 412 || errorName(err) === 'PreconditionFailed';
}

/** The endpoint does not implement a header we sent (If-None-Match on older S3-compatibles). */
function isNotImplemented(err: unknown): boolean {
  return httpStatus(err) === 501 || errorName(err) === 'NotImplemented';
}

/** Network failures (no HTTP status), throttling and 5xx are worth another try; other 4xx are not. */
function isRetryable(err: unknown): boolean {
  const e = err as SdkErrorShape;
  if (e?.retryable) return true;
  const status = httpStatus(err);
  return status === undefined || status >= 500 || status === 429 || status === 408;
}

function unavailable(what: string, err: unknown): Error {
  if (err instanceof NotFoundError || err instanceof StorageUnavailableError) return err;
  return new StorageUnavailableError(`${what}: ${describe(err)}`, { cause: err });
}

/** A short, useful description of an SDK or network error. */
function describe(err: unknown): string {
  const e = err as (SdkErrorShape & { message?: string; errors?: unknown[] }) | undefined;
  if (!e) return String(err);
  const status = httpStatus(err);
  // Node's AggregateError (ECONNREFUSED on both IPv4 and IPv6) has an empty message.
  const msg = e.message || (e.code ?? '') || (Array.isArray(e.errors) ? e.errors.map((x) => (x as Error).message).join('; ') : '');
  return [e.name, status ? `HTTP ${status}` : undefined, msg].filter(Boolean).join(': ');
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Maps with at most `limit` calls in flight; results keep the input order. */
async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/**
 * Routes the SDK's own log lines into ours instead of the console. The SDK
 * logs every failed command at error level, including the expected 404 of the
 * HEAD before each write, so its errors go to debug; this store logs the
 * failures that matter itself.
 */
function sdkLogger(log: Logger) {
  return {
    trace: () => undefined,
    debug: () => undefined,
    info: () => undefined,
    // "non-retryable streaming request" accompanies every failed streamed put,
    // including the benign 412 of a lost race; this store retries and logs itself.
    warn: (...args: unknown[]) =>
      String(args[0]).includes('non-retryable streaming request') ? log.debug({ sdk: sdkDetail(args) }, 'AWS SDK') : log.warn({ sdk: sdkDetail(args) }, 'AWS SDK warning'),
    error: (...args: unknown[]) => log.debug({ sdk: sdkDetail(args) }, 'AWS SDK command failed'),
  };
}

/** SDK log arguments as loggable values: strings kept, errors reduced to name and message. */
function sdkDetail(args: unknown[]): unknown {
  const parts = args.map((a) => (a instanceof Error ? describe(a) : a));
  return parts.length === 1 ? parts[0] : parts;
}
