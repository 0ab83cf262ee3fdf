/**
 * The one ingest pipeline behind SMTP, import and the API:
 * spool + hash → unwrap a journal report → store raw bytes and the envelope
 * durably → enqueue indexing. It resolves only after both the message and its
 * envelope are durable, which is what lets SMTP answer 250.
 */
import { unlink } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Envelope, EnvelopeRecipient, EnvelopeSource, JournalInfo, SmtpTransaction } from '../src/domain/types.js';
import type { ObjectStore } from '../src/ports/object-store.js';
import type { JobQueue } from '../src/ports/job-queue.js';
import { newEnvelopeId } from '../src/domain/envelope-id.js';
import { spoolStream, type SpooledMessage } from './spool.js';
import { isJournalReportHeader, unwrapJournalReport, type JournalUnwrap } from './journal-report.js';
import { decodedRangeStream } from './range-decoder.js';
import { headerBlockOf, looksLikeNdr } from './header-sniff.js';
import { ENVELOPE_PAYLOAD_MAX_BYTES, INDEX_JOB, indexJobOptions, type IndexJobPayload } from './index-job.js';
import { IndexEnqueueRetry } from './enqueue-retry.js';

export interface IngestContext {
  source: EnvelopeSource;
  smtp?: SmtpTransaction;
  import?: { file: string; index?: number };
  /** Received time; defaults to now. */
  receivedAt?: Date;
}

export interface IngestResult {
  sha256: string;
  envelopeId: string;
  size: number;
  /** False when the message was already stored (another delivery of the same bytes). */
  created: boolean;
  /** True when the message came wrapped in a journal report that was unwrapped. */
  journal: boolean;
  flags: string[];
}

export interface IngestPipelineOptions {
  store: ObjectStore;
  queue: JobQueue;
  log: Logger;
  spoolDir: string;
  /** Largest accepted message in bytes. */
  maxBytes: number;
  /** How often refused index enqueues are tried again, in ms (IndexEnqueueRetry). */
  enqueueRetryMs?: number;
}

export class IngestPipeline {
  private readonly enqueueRetry: IndexEnqueueRetry;

  constructor(private readonly opts: IngestPipelineOptions) {
    this.enqueueRetry = new IndexEnqueueRetry(opts.queue, opts.log, opts.enqueueRetryMs);
  }

  /** Messages whose index job the queue refused, waiting to be enqueued again. */
  get refusedEnqueues(): number {
    return this.enqueueRetry.size;
  }

  /** Stops retrying refused index enqueues (start-up reconciliation covers what is left). */
  close(): void {
    this.enqueueRetry.close();
  }

  /**
   * Archives one message from a stream. Throws MessageTooLargeError over the
   * limit and StorageUnavailableError when the store cannot make it durable;
   * any other error also means nothing was acknowledged.
   */
  async ingest(source: Readable, ctx: IngestContext): Promise<IngestResult> {
    return this.commit(await this.spool(source), ctx);
  }

  /**
   * First half of `ingest`: consume the stream into a hashed spool file. An
   * importer reading an MBOX awaits this, then commits in the background
   * while it reads the next message.
   */
  spool(source: Readable): Promise<SpooledMessage> {
    return spoolStream(source, this.opts.spoolDir, this.opts.maxBytes);
  }

  /** Second half of `ingest`: unwrap, store durably, enqueue. Takes ownership of the spool file. */
  async commit(spooled: SpooledMessage, ctx: IngestContext): Promise<IngestResult> {
    const { spoolDir, maxBytes, log } = this.opts;
    let toStore: SpooledMessage = spooled;
    let unwrapped: JournalUnwrap = { kind: 'not-report' };
    const flags: string[] = [];
    const notes: string[] = [];
    try {
      if (mayBeReport(spooled.head)) {
        unwrapped = await unwrapJournalReport(spooled.path);
        if (unwrapped.kind === 'report') {
          toStore = await spoolStream(
            decodedRangeStream(spooled.path, unwrapped.original, unwrapped.original.transferEncoding),
            spoolDir,
            maxBytes,
          );
          if (toStore.size === 0) {
            await unlink(toStore.path).catch(() => undefined);
            toStore = spooled;
            unwrapped = { kind: 'malformed', format: unwrapped.format, reason: 'attached original message is empty', fields: unwrapped.fields };
          }
        }
        if (unwrapped.kind === 'malformed') {
          flags.push('journal-malformed');
          notes.push(unwrapped.reason);
          log.warn({ reason: unwrapped.reason, sha256: spooled.sha256, source: ctx.source }, 'malformed journal report archived as received');
        }
      }
    } catch (err) {
      // Unwrapping is best effort: the report is then archived as it came.
      flags.push('journal-unwrap-error');
      notes.push((err as Error).message);
      log.warn({ err, sha256: spooled.sha256 }, 'journal report could not be unwrapped; archived as received');
      if (toStore !== spooled) await unlink(toStore.path).catch(() => undefined);
      toStore = spooled;
      unwrapped = { kind: 'not-report' };
    }

    const envelope = this.buildEnvelope(toStore.sha256, ctx, unwrapped, flags, notes);
    try {
      // Both writes run at once (their fsyncs overlap), and both are awaited
      // even when one fails, so no write is still in flight when we answer.
      const [putMsg, putEnv] = await Promise.allSettled([
        this.opts.store.putMessage({ path: toStore.path, sha256: toStore.sha256, size: toStore.size }),
        this.opts.store.putEnvelope(envelope),
      ]);
      if (putMsg.status === 'rejected') throw putMsg.reason;
      if (putEnv.status === 'rejected') throw putEnv.reason;
      const put = putMsg.value;
      log.debug({ sha256: toStore.sha256, envelope: envelope.id, created: put.created, size: toStore.size }, 'stored');
      this.enqueueIndex(toStore.sha256, toStore.size, envelope);
      return {
        sha256: toStore.sha256,
        envelopeId: envelope.id,
        size: toStore.size,
        created: put.created,
        journal: unwrapped.kind === 'report',
        flags,
      };
    } finally {
      // The wrapper of an unwrapped report is not kept: its facts live in the envelope.
      if (toStore !== spooled) await unlink(spooled.path).catch(() => undefined);
    }
  }

  /**
   * Indexing is derived work: if the queue refuses, the message is stored all
   * the same, so this never fails the delivery (a 4xx here would make the
   * sender deliver a duplicate). The job is enqueued again every few seconds
   * until the queue takes it, and start-up reconciliation is the backstop.
   */
  private enqueueIndex(sha256: string, size: number, envelope: Envelope): void {
    const payload: IndexJobPayload = { sha256, size };
    if (Buffer.byteLength(JSON.stringify(envelope), 'utf8') <= ENVELOPE_PAYLOAD_MAX_BYTES) payload.envelope = envelope;
    this.opts.queue.add(INDEX_JOB, payload, indexJobOptions(sha256)).catch((err) => {
      this.opts.log.error({ err, sha256 }, 'index job not enqueued; it is tried again shortly');
      this.enqueueRetry.remember(sha256, size);
    });
  }

  private buildEnvelope(sha256: string, ctx: IngestContext, u: JournalUnwrap, flags: string[], notes: string[]): Envelope {
    const receivedAt = ctx.receivedAt ?? new Date();
    let recipients: EnvelopeRecipient[];
    let journal: JournalInfo | undefined;
    if (u.kind === 'report') {
      recipients = u.fields.recipients;
      journal = {
        format: u.format,
        reportMessageId: u.reportMessageId,
        sender: u.fields.sender,
        onBehalfOf: u.fields.onBehalfOf,
        subject: u.fields.subject,
        messageId: u.fields.messageId,
        viaNdr: u.viaNdr || undefined,
      };
    } else {
      recipients = smtpRecipients(ctx.smtp);
    }
    const env: Envelope = {
      id: newEnvelopeId(receivedAt),
      sha256,
      source: ctx.source,
      receivedAt: receivedAt.toISOString(),
      recipients,
      flags,
    };
    if (journal) env.journal = stripUndefined(journal);
    if (ctx.smtp) env.smtp = ctx.smtp;
    if (ctx.import) env.import = ctx.import;
    if (notes.length) env.notes = notes;
    return env;
  }
}

function smtpRecipients(smtp: SmtpTransaction | undefined): EnvelopeRecipient[] {
  if (!smtp) return [];
  return smtp.rcptTo.map((a) => ({ address: a.toLowerCase(), kind: 'recipient' as const }));
}

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

/**
 * Cheap test on the first bytes: only a message whose header block carries a
 * report marker, or an NDR (which may carry a report), is scanned further.
 * A header block longer than the sniffed head is scanned too, to be safe.
 */
function mayBeReport(head: Buffer): boolean {
  const block = headerBlockOf(head);
  if (!block) return true;
  return isJournalReportHeader(block) !== false || looksLikeNdr(block);
}
