/**
 * Produces one export package: lists the items once (item-list.ts), then
 * produces them in order into the package directory, checkpointing as it
 * goes, then writes and signs the chain-of-custody manifest.
 *
 * Crash-resume. The item list is fixed at the start. Per-item files are
 * written aside, then renamed to names that depend only on the item list
 * (control numbers), so producing an item twice gives the same file.
 * Shared outputs (DAT, CSV, OPT, EDRM XML, MBOX, the journal) only grow;
 * a checkpoint fsyncs them and every file written since the last one, then
 * records their lengths and the next item atomically. A resumed run
 * truncates the shared outputs to the checkpoint, produces again from the
 * next item, and the final sweep removes any file a dead run left that
 * the journal does not name: nothing twice, nothing missing. A combined
 * PDF cannot be truncated and continued, so a resumed run renders the
 * already-produced items into it again (same input, same pages).
 *
 * Memory: a few items in flight (PRODUCE_AHEAD), one PDF page stream, and
 * the de-duplication set while listing; never the list, a message or a file.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, unlink } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { Logger } from 'pino';
import type { ObjectStore } from '../ports/object-store.js';
import type { MessageIndex } from '../ports/message-index.js';
import type { Participant } from '../domain/indexed-message.js';
import { IntegrityError, NotFoundError } from '../errors.js';
import { documentFor } from '../../ingest/index.js';
import { AppendFile } from './append-file.js';
import { MemorySink, writeHashed } from './hashed-file.js';
import { splitAttachments } from './attachment-splitter.js';
import { csvRow, CSV_BOM } from './metadata-csv.js';
import { datRecord, DAT_BOM } from './concordance-dat.js';
import { edrmDocument, edrmHead, edrmRelationship, EDRM_BETWEEN, EDRM_TAIL, type EdrmFile } from './edrm-xml.js';
import { batesNumber, fieldMappingOf, partsOf, type ExportRequest, type FieldName } from './export-request.js';
import type { ExportPhase, ExportProgress, ExportRecordData } from './export-record.js';
import { buildItemList, type DuplicateEntry, type ExportItem, type ItemListResult, type CaseResolver } from './item-list.js';
import { MboxrdEscaper, mboxFromLine } from './mboxrd-escaper.js';
import { optLine } from './opticon-opt.js';
import { hashFile, MANIFEST, readJson, SIGNATURE, syncAll, syncPaths, walkFiles, WORK_DIR, writeJsonAtomic } from './package-files.js';
import { BatesPdf, type PdfFamily } from './pdf-renderer.js';
import { signManifest, type SigningKey } from './signing-key.js';

/**
 * Items produced ahead of the one being committed: their store reads, native
 * writes, fsyncs and attachment splits overlap. Cost: that many items' temp
 * files and body texts (bodies are bounded by the indexer) in flight.
 */
const PRODUCE_AHEAD = 32;
/** A checkpoint also happens after this long (ms) even with fewer items, so progress and cancellation stay prompt on slow items. */
const CHECKPOINT_MS = 5000;
/** File operations (renames, PDF and text writes) of committed items in flight at once. Cost: the bytes of that many PDFs and texts. */
const MAX_BACKGROUND_IO = 32;
/** Characters of a text attachment read into its extracted-text file; beyond this it is produced natively only. */
const MAX_CHILD_TEXT_BYTES = 10 * 1024 * 1024;
/** Families (messages with their attachments) per folder of natives, images and text. */
const FAMILIES_PER_FOLDER = 1000;

export const OUT = {
  dat: 'DATA/export.dat',
  opt: 'DATA/export.opt',
  edrm: 'DATA/export.xml',
  csv: 'DATA/metadata.csv',
  mbox: 'export.mbox',
  combinedPdf: 'IMAGES/production.pdf',
} as const;

const W = {
  items: `${WORK_DIR}/items.ndjson`,
  duplicates: `${WORK_DIR}/duplicates.ndjson`,
  listed: `${WORK_DIR}/items.json`,
  checkpoint: `${WORK_DIR}/checkpoint.json`,
  journal: `${WORK_DIR}/journal.ndjson`,
  relationships: `${WORK_DIR}/relationships.xml.part`,
  tmp: `${WORK_DIR}/tmp`,
} as const;

export interface Checkpoint {
  version: 1;
  /** Items committed: the next item to produce. */
  next: number;
  /** Next control (Bates) number. */
  nextNumber: number;
  documents: number;
  pages: number;
  withdrawn: number;
  /** Bytes of per-item files. */
  fileBytes: number;
  /** Length of each shared output, by package-relative path. */
  outputs: Record<string, number>;
}

export interface JournalFile {
  path: string;
  sha256: string;
  size: number;
}

export interface JournalDoc {
  docId: string;
  endDocId: string;
  kind: 'message' | 'attachment';
  /** SHA-256 of the content: the archived bytes for a message, the decoded attachment for an attachment. */
  sha256: string;
  md5?: string;
  pages: number;
  filename?: string;
  /** Per-document files, hashed as written. */
  files: JournalFile[];
  /** Shared outputs that hold this document (MBOX, combined PDF). */
  shared?: string[];
  note?: string;
}

export interface JournalEntry {
  n: number;
  id: string;
  size: number;
  custodian: string;
  withdrawn?: string;
  docs: JournalDoc[];
}

export type RunDecision = 'continue' | 'cancel' | 'lost';

export interface RunControl {
  /** After each checkpoint and phase change: reports progress, renews the lease, and says whether to go on. */
  report(progress: ExportProgress): Promise<RunDecision>;
}

export interface RunDeps {
  store: ObjectStore;
  index: MessageIndex;
  log: Logger;
  signingKey: () => Promise<SigningKey>;
  orgName: string;
  checkpointItems: number;
  unicodeFont?: string;
  /** Resolves a case's held set (retention); absent: case exports fail. */
  resolveCase?: CaseResolver;
}

export type RunOutcome =
  | { outcome: 'done'; manifestSha256: string; counts: NonNullable<ExportRecordData['counts']> }
  | { outcome: 'cancel' }
  | { outcome: 'lost' };

interface ChildPrep {
  filename: string;
  contentType: string;
  size: number;
  sha256: string;
  md5?: string;
  tmp?: string;
  note?: string;
}

interface Prepared {
  withdrawn?: string;
  native?: { tmp: string; size: number; md5: string };
  md5?: string;
  children: ChildPrep[];
  body?: string;
}

class Stop extends Error {
  constructor(readonly decision: 'cancel' | 'lost') {
    super(decision);
  }
}

export class ExportRun {
  private readonly dir: string;
  private readonly req: ExportRequest;
  private readonly parts: ReturnType<typeof partsOf>;
  private readonly fields: ReturnType<typeof fieldMappingOf>;
  private cp!: Checkpoint;
  private listed!: ItemListResult;
  private outputs = new Map<string, AppendFile>();
  private combined?: BatesPdf;
  /** Per-item files written since the last checkpoint: made durable by the next. */
  private unsynced: string[] = [];
  /** Directories that got files since the last checkpoint: their entries are synced by the next. */
  private readonly renamedDirs = new Set<string>();
  private sinceCheckpoint = 0;
  private lastCheckpoint = Date.now();
  private phase: ExportPhase = 'listing';
  /** Directories known to exist (one mkdir per folder, not per file). */
  private readonly dirs = new Map<string, Promise<void>>();
  private readonly pending = new Set<Promise<void>>();
  private backgroundError: unknown;

  constructor(
    private readonly deps: RunDeps,
    private readonly rec: ExportRecordData,
    private readonly control: RunControl,
  ) {
    this.dir = rec.packageDir;
    this.req = rec.request;
    this.parts = partsOf(rec.request.format);
    this.fields = fieldMappingOf(rec.request);
  }

  private p(rel: string): string {
    return path.join(this.dir, ...rel.split('/'));
  }

  async run(): Promise<RunOutcome> {
    await mkdir(this.p(WORK_DIR), { recursive: true });
    try {
      await this.list();
      await this.produce();
      return await this.finalize();
    } catch (err) {
      if (err instanceof Stop) return { outcome: err.decision };
      throw err;
    } finally {
      await Promise.allSettled(this.pending);
      await this.closeOutputs();
    }
  }

  // ------------------------------------------------------------------ listing

  private async list(): Promise<void> {
    const done = await readJson<ItemListResult>(this.p(W.listed));
    if (done) {
      this.listed = done;
      return;
    }
    await this.report();
    let last = Date.now();
    this.listed = await buildItemList({
      index: this.deps.index,
      scope: this.rec.scope,
      request: this.req,
      resolveCase: this.deps.resolveCase,
      itemsPath: this.p(W.items),
      duplicatesPath: this.p(W.duplicates),
      onProgress: (matched) => {
        if (Date.now() - last > CHECKPOINT_MS) {
          last = Date.now();
          void this.control.report({ ...this.progress(), itemsTotal: matched }).catch(() => undefined);
        }
      },
    });
    await writeJsonAtomic(this.p(W.listed), this.listed);
    this.deps.log.info({ exportId: this.rec.id, ...this.listed }, 'export item list fixed');
  }

  // ---------------------------------------------------------------- producing

  private async produce(): Promise<void> {
    this.phase = 'exporting';
    const saved = await readJson<Checkpoint>(this.p(W.checkpoint));
    this.cp = saved ?? { version: 1, next: 0, nextNumber: this.req.bates.start, documents: 0, pages: 0, withdrawn: 0, fileBytes: 0, outputs: {} };
    if (saved) this.deps.log.info({ exportId: this.rec.id, next: saved.next, total: this.listed.items }, 'export resumes from its checkpoint');
    await rm(this.p(W.tmp), { recursive: true, force: true });
    await mkdir(this.p(W.tmp), { recursive: true });
    await this.openOutputs();
    if (this.combined && this.cp.next > 0) await this.fastForwardCombined();
    await this.report();

    const window: { item: ExportItem; prep: Promise<Prepared> }[] = [];
    const commitHead = async () => {
      const head = window.shift()!;
      await this.commit(head.item, await head.prep);
      this.sinceCheckpoint++;
      if (this.sinceCheckpoint >= this.deps.checkpointItems || Date.now() - this.lastCheckpoint >= CHECKPOINT_MS) await this.checkpoint();
    };
    try {
      for await (const item of this.items(this.cp.next)) {
        const prep = this.prepare(item);
        prep.catch(() => undefined); // awaited in order by commitHead; this only keeps an early rejection from being "unhandled"
        window.push({ item, prep });
        if (window.length >= PRODUCE_AHEAD) await commitHead();
      }
      while (window.length) await commitHead();
    } finally {
      // Let in-flight preparations settle before their temp directory goes.
      await Promise.allSettled(window.map((w) => w.prep));
    }
    await this.checkpoint();
  }

  /** Items of the fixed list from position `from`, streamed. */
  private async *items(from: number): AsyncGenerator<ExportItem> {
    const rl = createInterface({ input: createReadStream(this.p(W.items)), crlfDelay: Infinity });
    let n = 0;
    for await (const line of rl) {
      if (!line) continue;
      if (n++ < from) continue;
      yield JSON.parse(line) as ExportItem;
    }
  }

  private folder(item: ExportItem): string {
    return String(Math.floor(item.n / FAMILIES_PER_FOLDER) + 1).padStart(4, '0');
  }

  /** What can run ahead of the in-order commit: reading and checking the archived bytes, splitting attachments, fetching text. */
  private async prepare(item: ExportItem): Promise<Prepared> {
    const prep: Prepared = { children: [] };
    try {
      if (this.parts.natives) {
        const tmp = this.p(`${W.tmp}/${item.n}.eml`);
        const w = await writeHashed(await this.deps.store.getMessage(item.id, { verify: true }), tmp);
        prep.native = { tmp, size: w.size, md5: w.md5 };
        prep.md5 = w.md5;
      } else if (!this.parts.mbox) {
        // No native here: still read the archived bytes once, to check them against their SHA-256 and give the MD5.
        const md5 = createHash('md5');
        for await (const c of await this.deps.store.getMessage(item.id, { verify: true })) md5.update(c as Buffer);
        prep.md5 = md5.digest('hex');
      }
    } catch (err) {
      if (err instanceof NotFoundError) return { withdrawn: 'no longer in the archive', children: [] };
      throw err;
    }

    if (this.parts.children) {
      prep.children = item.attachments.map((a, i) => ({ filename: a.filename ?? `attachment-${i + 1}`, contentType: a.contentType, size: a.size, sha256: a.sha256 }));
      if (this.parts.natives && item.attachments.length) {
        try {
          // From the native just written and checked, not a second read of the store.
          const source = prep.native ? createReadStream(prep.native.tmp) : await this.deps.store.getMessage(item.id, { verify: true });
          const split = await splitAttachments(source, (k) => this.p(`${W.tmp}/${item.n}-${k}.att`));
          prep.children = split.map((s, i) => {
            const indexed = item.attachments[i];
            return {
              filename: s.filename ?? indexed?.filename ?? `attachment-${i + 1}`,
              contentType: s.contentType,
              size: s.size,
              sha256: s.sha256,
              md5: s.md5,
              tmp: s.path,
              ...(indexed && indexed.sha256 !== s.sha256 ? { note: `differs from the indexed attachment ${indexed.sha256}` } : {}),
            };
          });
        } catch (err) {
          if (err instanceof IntegrityError) throw err;
          // A message whose MIME cannot be split: its attachments are listed (slip sheets) but not produced natively.
          const reason = `not extracted: ${(err as Error).message}`.slice(0, 300);
          prep.children = prep.children.map((c) => ({ ...c, note: reason }));
        }
      }
    }

    if (this.parts.images || this.parts.text) {
      const doc = (await this.deps.index.get(item.id, this.rec.scope)) ?? (await documentFor(this.deps.store, item.id));
      prep.body = doc?.body ?? '';
    }
    return prep;
  }

  /** In item order: numbers, images, renames, load-file rows, the journal. */
  private async commit(item: ExportItem, prep: Prepared): Promise<void> {
    if (prep.withdrawn) {
      this.cp.withdrawn++;
      await this.journal({ n: item.n, id: item.id, size: item.size, custodian: item.custodian, withdrawn: prep.withdrawn, docs: [] });
      this.cp.next = item.n + 1;
      return;
    }
    const folder = this.folder(item);
    const famStart = this.cp.nextNumber;
    const docs: JournalDoc[] = [];
    const parentPages = { n: 1 };
    const childPages: number[] = prep.children.map(() => 1);

    // Numbers: by page when there are images, by document otherwise.
    let imageFile: JournalFile | undefined;
    if (this.parts.images) {
      const family = this.pdfFamily(item, prep, batesNumber(this.req.bates, famStart));
      if (this.combined) {
        const pages = this.combined.renderFamily(family, () => batesNumber(this.req.bates, famStart));
        parentPages.n = pages.parent;
        pages.children.forEach((c, i) => (childPages[i] = c));
      } else {
        // Rendered into memory (a message's PDF is bounded by the indexer's text bound), hashed, then written in the background.
        const sink = new MemorySink();
        const pdf = new BatesPdf(sink, this.pdfOptions());
        const pages = pdf.renderFamily(family, () => batesNumber(this.req.bates, famStart));
        await pdf.end();
        parentPages.n = pages.parent;
        pages.children.forEach((c, i) => (childPages[i] = c));
        const rel = `IMAGES/${folder}/${batesNumber(this.req.bates, famStart)}.pdf`;
        const bytes = sink.bytes();
        imageFile = { path: rel, sha256: createHash('sha256').update(bytes).digest('hex'), size: bytes.length };
        await this.writeLater(rel, bytes);
      }
    } else {
      this.cp.nextNumber += 1 + prep.children.length;
    }
    const parentId = batesNumber(this.req.bates, famStart);
    const parentEnd = batesNumber(this.req.bates, famStart + parentPages.n - 1);
    let cursor = famStart + parentPages.n;

    const parent: JournalDoc = { docId: parentId, endDocId: parentEnd, kind: 'message', sha256: item.id, ...(prep.md5 ? { md5: prep.md5 } : {}), pages: this.parts.images ? parentPages.n : 0, filename: `${parentId}.eml`, files: [] };
    if (prep.native) parent.files.push({ path: `NATIVES/${folder}/${parentId}.eml`, sha256: item.id, size: prep.native.size });
    if (imageFile) parent.files.push(imageFile);
    if (this.combined) parent.shared = [OUT.combinedPdf];
    if (this.parts.mbox) parent.shared = [OUT.mbox];
    docs.push(parent);

    prep.children.forEach((c, i) => {
      const pages = this.parts.images ? childPages[i]! : 1;
      const docId = batesNumber(this.req.bates, cursor);
      const endDocId = batesNumber(this.req.bates, cursor + pages - 1);
      cursor += pages;
      const d: JournalDoc = { docId, endDocId, kind: 'attachment', sha256: c.sha256, ...(c.md5 ? { md5: c.md5 } : {}), pages: this.parts.images ? pages : 0, filename: c.filename, files: [], ...(c.note ? { note: c.note } : {}) };
      if (c.tmp) d.files.push({ path: childNativePath(folder, parentId, i, c), sha256: c.sha256, size: c.size });
      if (imageFile) d.files.push(imageFile);
      if (this.combined) d.shared = [OUT.combinedPdf];
      docs.push(d);
    });

    // Extracted text (of text attachments: read from their temp file, before it moves).
    if (this.parts.text) {
      const parentText = `${headerLines(item).map((h) => `${h.label}: ${h.value}`).join('\n')}\n\n${prep.body ?? ''}\n`;
      parent.files.push(await this.writeText(`TEXT/${folder}/${parentId}.txt`, parentText));
      for (let i = 0; i < prep.children.length; i++) {
        const c = prep.children[i]!;
        const d = docs[i + 1]!;
        if (c.tmp && /^text\//.test(c.contentType)) {
          const content = (await readFile(c.tmp)).subarray(0, MAX_CHILD_TEXT_BYTES).toString('utf8');
          d.files.push(await this.writeText(`TEXT/${folder}/${d.docId}.txt`, c.contentType.includes('html') ? stripTags(content) : content));
        }
      }
    }

    // Natives into place.
    if (prep.native) await this.place(prep.native.tmp, parent.files[0]!.path, { sha256: item.id, size: prep.native.size });
    for (let i = 0; i < prep.children.length; i++) {
      const c = prep.children[i]!;
      const d = docs[i + 1]!;
      if (c.tmp) await this.place(c.tmp, d.files[0]!.path, { sha256: c.sha256, size: c.size });
    }

    // Shared outputs.
    if (this.parts.mbox) await this.appendMbox(item);
    const famBeg = docs[0]!.docId;
    const famEnd = docs[docs.length - 1]!.endDocId;
    for (let i = 0; i < docs.length; i++) {
      const d = docs[i]!;
      const values = this.fieldValues(item, d, famBeg, famEnd, i === 0 ? undefined : parentId);
      await this.out(OUT.csv).write(csvRow(values));
      if (this.parts.dat) await this.out(OUT.dat).write(datRecord(values));
      if (this.parts.opt) {
        const img = this.combined ? OUT.combinedPdf : imageFile!.path;
        const first = Number(d.docId.slice(this.req.bates.prefix.length));
        for (let pg = 0; pg < d.pages; pg++) {
          await this.out(OUT.opt).write(optLine({ bates: batesNumber(this.req.bates, first + pg), volume: this.req.volume, imagePath: img.replace(/\//g, '\\'), ...(pg === 0 ? { documentPages: d.pages } : {}) }));
        }
      }
      if (this.parts.edrm) {
        const files: EdrmFile[] = d.files.map((f) => ({ type: f.path.startsWith('NATIVES/') ? 'Native' : f.path.startsWith('TEXT/') ? 'Text' : 'Image', path: f.path, size: f.size, sha256: f.sha256, ...(f.path.startsWith('NATIVES/') && d.md5 ? { md5: d.md5 } : {}) }));
        await this.out(OUT.edrm).write(
          edrmDocument({
            docId: d.docId,
            docType: d.kind === 'message' ? 'Message' : 'File',
            mimeType: d.kind === 'message' ? 'message/rfc822' : (prep.children[i - 1]?.contentType ?? 'application/octet-stream'),
            tags: this.edrmTags(item, d, values),
            files,
          }),
        );
        if (i > 0) await this.out(W.relationships).write(edrmRelationship(parentId, d.docId));
      }
    }
    this.cp.documents += docs.length;
    if (this.parts.images) {
      this.cp.pages += cursor - famStart;
      this.cp.nextNumber = cursor;
    }
    await this.journal({ n: item.n, id: item.id, size: item.size, custodian: item.custodian, docs });
    this.cp.next = item.n + 1;
  }

  private async appendMbox(item: ExportItem): Promise<void> {
    const mbox = this.out(OUT.mbox);
    await mbox.write(mboxFromLine(item.from[0]?.address ?? '', item.date));
    const raw = await this.deps.store.getMessage(item.id, { verify: true }).catch((err) => {
      throw err instanceof NotFoundError ? new Error(`message ${item.id} vanished while exported`) : err;
    });
    const esc = new MboxrdEscaper();
    raw.on('error', (e) => esc.destroy(e));
    raw.pipe(esc);
    for await (const c of esc) await mbox.write(c as Buffer);
  }

  private pdfOptions() {
    return {
      nextBates: () => batesNumber(this.req.bates, this.cp.nextNumber++),
      legend: this.req.pdf.legend,
      unicodeFont: this.deps.unicodeFont,
      creationDate: new Date(this.rec.createdAt),
      title: `Export ${this.rec.id}`,
    };
  }

  private pdfFamily(item: ExportItem, prep: Prepared, parentId: string): PdfFamily {
    return {
      headers: [...headerLines(item), { label: 'Custodian', value: item.custodian }, { label: 'Archive SHA-256', value: item.id }],
      body: prep.body ?? '',
      attachments: prep.children.map((c, i) => ({ filename: c.filename, contentType: c.contentType, size: c.size, sha256: c.sha256, ...(c.tmp ? { nativePath: childNativePath(this.folder(item), parentId, i, c).replace(/\//g, '\\') } : {}) })),
    };
  }

  private fieldValues(item: ExportItem, d: JournalDoc, famBeg: string, famEnd: string, parentDocId: string | undefined): string[] {
    const isMsg = d.kind === 'message';
    const native = d.files.find((f) => f.path.startsWith('NATIVES/'));
    const text = d.files.find((f) => f.path.startsWith('TEXT/'));
    const date = new Date(item.date);
    const v: Record<FieldName, string> = {
      BEGDOC: d.docId,
      ENDDOC: d.endDocId,
      BEGATTACH: famBeg,
      ENDATTACH: famEnd,
      CUSTODIAN: item.custodian,
      ALLCUSTODIANS: item.custodians.join('; '),
      FROM: isMsg ? people(item.from) : '',
      TO: isMsg ? people(item.to) : '',
      CC: isMsg ? people(item.cc) : '',
      BCC: isMsg ? people(item.bcc) : '',
      SUBJECT: isMsg ? item.subject : '',
      DATESENT: isMsg ? `${p2(date.getUTCMonth() + 1)}/${p2(date.getUTCDate())}/${date.getUTCFullYear()}` : '',
      TIMESENT: isMsg ? `${p2(date.getUTCHours())}:${p2(date.getUTCMinutes())}:${p2(date.getUTCSeconds())}` : '',
      DATETIMESENT: isMsg ? date.toISOString() : '',
      MESSAGEID: isMsg ? (item.messageId ?? '') : '',
      MD5HASH: d.md5 ?? '',
      SHA256HASH: d.sha256,
      NATIVEPATH: native ? native.path.replace(/\//g, '\\') : '',
      TEXTPATH: text ? text.path.replace(/\//g, '\\') : '',
      DOCTYPE: isMsg ? 'Email' : 'Attachment',
      FILENAME: d.filename ?? '',
      FILESIZE: String(isMsg ? item.size : (native?.size ?? item.attachments.find((a) => a.sha256 === d.sha256)?.size ?? '')),
      PAGECOUNT: this.parts.images ? String(d.pages) : '',
      PARENTDOCID: parentDocId ?? '',
      ARCHIVESHA256: item.id,
      PARSEERROR: isMsg ? (item.parseError ?? '') : (d.note ?? ''),
    };
    return this.fields.map((f) => v[f.field]);
  }

  private edrmTags(item: ExportItem, d: JournalDoc, values: string[]): { name: string; type: 'Text' | 'DateTime' | 'Integer'; value: string }[] {
    const tags: { name: string; type: 'Text' | 'DateTime' | 'Integer'; value: string }[] = this.fields.map((f, i) => ({ name: `#${f.name}`, type: 'Text', value: values[i] ?? '' }));
    if (d.kind === 'message') tags.push({ name: '#DateSent', type: 'DateTime', value: new Date(item.date).toISOString() });
    return tags;
  }

  /** Renames a finished temp file into place, in the background; `hash` was taken as it was written (what the file holds). */
  private async place(tmp: string, rel: string, hash: { sha256: string; size: number }): Promise<{ sha256: string; size: number }> {
    const dest = this.p(rel);
    this.renamedDirs.add(path.dirname(dest));
    this.unsynced.push(dest);
    this.cp.fileBytes += hash.size;
    await this.background(
      (async () => {
        await this.mkdirOnce(path.dirname(dest));
        await rename(tmp, dest);
      })(),
    );
    return hash;
  }

  /** Writes a file of the in-order path in the background (fsync'd by the next checkpoint). */
  private async writeLater(rel: string, bytes: Buffer): Promise<void> {
    const dest = this.p(rel);
    this.renamedDirs.add(path.dirname(dest));
    this.unsynced.push(dest);
    this.cp.fileBytes += bytes.length;
    await this.background(
      (async () => {
        await this.mkdirOnce(path.dirname(dest));
        await writeHashed([bytes], dest);
      })(),
    );
  }

  /**
   * File operations of committed items run in the background, at most
   * MAX_BACKGROUND_IO at once (each holds its bytes: a PDF or text); the next
   * checkpoint waits for all of them before it records anything.
   */
  private async background(op: Promise<void>): Promise<void> {
    const tracked: Promise<void> = op
      .catch((err: unknown) => {
        this.backgroundError ??= err;
      })
      .finally(() => this.pending.delete(tracked));
    this.pending.add(tracked);
    if (this.pending.size >= MAX_BACKGROUND_IO) await Promise.race(this.pending);
    if (this.backgroundError) throw this.backgroundError;
  }

  private async drain(): Promise<void> {
    await Promise.all(this.pending);
    if (this.backgroundError) throw this.backgroundError;
  }

  private mkdirOnce(dir: string): Promise<void> {
    let p = this.dirs.get(dir);
    if (!p) {
      p = mkdir(dir, { recursive: true }).then(() => undefined);
      this.dirs.set(dir, p);
    }
    return p;
  }

  private async writeText(rel: string, text: string): Promise<JournalFile> {
    const buf = Buffer.from(text, 'utf8');
    await this.writeLater(rel, buf);
    return { path: rel, sha256: createHash('sha256').update(buf).digest('hex'), size: buf.length };
  }

  private async journal(e: JournalEntry): Promise<void> {
    await this.out(W.journal).write(JSON.stringify(e) + '\n');
  }

  // ------------------------------------------------------------------ outputs

  private out(rel: string): AppendFile {
    const f = this.outputs.get(rel);
    if (!f) throw new Error(`output ${rel} is not open`);
    return f;
  }

  private async openOutputs(): Promise<void> {
    const wanted: [string, string | undefined][] = [
      [W.journal, undefined],
      [OUT.csv, CSV_BOM + csvRow(this.fields.map((f) => f.name))],
    ];
    if (this.parts.dat) wanted.push([OUT.dat, DAT_BOM + datRecord(this.fields.map((f) => f.name))]);
    if (this.parts.opt) wanted.push([OUT.opt, undefined]);
    if (this.parts.edrm) wanted.push([OUT.edrm, edrmHead(`Export ${this.rec.id}`)], [W.relationships, undefined]);
    if (this.parts.mbox) wanted.push([OUT.mbox, undefined]);
    for (const [rel, header] of wanted) {
      const offset = this.cp.outputs[rel] ?? 0;
      const f = await AppendFile.open(this.p(rel), offset);
      this.outputs.set(rel, f);
      if (offset === 0 && header) await f.write(header);
    }
    if (this.parts.images && this.req.pdf.mode === 'combined') {
      await mkdir(path.dirname(this.p(OUT.combinedPdf)), { recursive: true });
      this.combined = new BatesPdf(createWriteStream(this.p(OUT.combinedPdf)), this.pdfOptions());
    }
  }

  /**
   * A resumed combined PDF: renders the items already produced into a fresh
   * file with the Bates numbers they had, checking their page counts against
   * the journal.
   */
  private async fastForwardCombined(): Promise<void> {
    const saved = { ...this.cp };
    this.cp.nextNumber = this.req.bates.start;
    const journal = createInterface({ input: createReadStream(this.p(W.journal), { end: Math.max(0, (this.cp.outputs[W.journal] ?? 0) - 1) }), crlfDelay: Infinity })[Symbol.asyncIterator]();
    for await (const item of this.items(0)) {
      if (item.n >= saved.next) break;
      const line = await journal.next();
      if (line.done) throw new Error('journal shorter than the checkpoint');
      const entry = JSON.parse(line.value) as JournalEntry;
      if (entry.withdrawn) continue;
      const prep: Prepared = { children: entry.docs.slice(1).map((d) => ({ filename: d.filename ?? '', contentType: item.attachments.find((a) => a.sha256 === d.sha256)?.contentType ?? 'application/octet-stream', size: 0, sha256: d.sha256 })) };
      const doc = (await this.deps.index.get(item.id, this.rec.scope)) ?? (await documentFor(this.deps.store, item.id));
      prep.body = doc?.body ?? '';
      const famStart = this.cp.nextNumber;
      const pages = this.combined!.renderFamily(this.pdfFamily(item, prep, batesNumber(this.req.bates, famStart)), () => batesNumber(this.req.bates, famStart));
      const expected = entry.docs.map((d) => d.pages);
      if (pages.parent !== expected[0] || pages.children.some((c, i) => c !== expected[i + 1])) throw new Error(`combined PDF: item ${item.n} renders to different pages than before the crash`);
    }
    if (this.cp.nextNumber !== saved.nextNumber) throw new Error('combined PDF: page numbering differs from the checkpoint');
  }

  private async closeOutputs(): Promise<void> {
    for (const f of this.outputs.values()) await f.close().catch(() => undefined);
    this.outputs.clear();
    if (this.combined) {
      // An unfinished combined PDF is ended so its stream closes; a resumed run writes it anew.
      await this.combined.end().catch(() => undefined);
      this.combined = undefined;
    }
  }

  // -------------------------------------------------------------- checkpoints

  private progress(): ExportProgress {
    let outBytes = 0;
    for (const [rel, f] of this.outputs) if (!rel.startsWith(WORK_DIR)) outBytes += f.offset;
    return {
      phase: this.phase,
      itemsDone: this.cp?.next ?? 0,
      itemsTotal: this.listed?.items ?? 0,
      documents: this.cp?.documents ?? 0,
      pages: this.cp?.pages ?? 0,
      bytes: (this.cp?.fileBytes ?? 0) + outBytes,
    };
  }

  private async report(): Promise<void> {
    const d = await this.control.report(this.progress());
    if (d !== 'continue') throw new Stop(d);
  }

  private async checkpoint(): Promise<void> {
    await this.drain();
    for (const f of this.outputs.values()) await f.sync();
    // Every per-item file since the last checkpoint, and the directory entries of their renames.
    await syncAll(this.dir, this.unsynced, [...this.renamedDirs]);
    this.unsynced = [];
    this.renamedDirs.clear();
    for (const [rel, f] of this.outputs) this.cp.outputs[rel] = f.offset;
    await writeJsonAtomic(this.p(W.checkpoint), this.cp);
    this.sinceCheckpoint = 0;
    this.lastCheckpoint = Date.now();
    await this.report();
  }

  // --------------------------------------------------------------- finalizing

  private async finalize(): Promise<RunOutcome> {
    this.phase = 'finalizing';
    await this.report();
    if (this.parts.edrm) {
      const edrm = this.out(OUT.edrm);
      await edrm.write(EDRM_BETWEEN);
      await this.out(W.relationships).flush();
      for await (const c of createReadStream(this.p(W.relationships))) await edrm.write(c as Buffer);
      await edrm.write(EDRM_TAIL);
    }
    if (this.combined) {
      await this.combined.end();
      this.combined = undefined;
    }
    const shared = [...this.outputs.keys()].filter((rel) => !rel.startsWith(WORK_DIR));
    if (this.parts.images && this.req.pdf.mode === 'combined') shared.push(OUT.combinedPdf);
    for (const f of this.outputs.values()) await f.sync();
    await this.closeOutputs();
    await syncPaths(shared.map((rel) => this.p(rel)));

    // Files listed by the journal, plus the shared outputs; anything else is debris of a dead run.
    const expected = new Set<string>(shared);
    for await (const e of this.journalEntries()) for (const d of e.docs) for (const f of d.files) expected.add(f.path);
    for await (const f of walkFiles(this.dir, (rel) => rel === WORK_DIR || rel === MANIFEST || rel === SIGNATURE, '', false)) {
      if (!expected.has(f.rel)) {
        this.deps.log.warn({ exportId: this.rec.id, file: f.rel }, 'removing a file a crashed run left behind');
        await unlink(f.abs);
      }
    }
    await this.report();

    const sharedHashes = new Map<string, { sha256: string; size: number }>();
    for (const rel of shared.sort()) sharedHashes.set(rel, await hashFile(this.p(rel)));
    return this.writeManifest(sharedHashes);
  }

  private async *journalEntries(): AsyncGenerator<JournalEntry> {
    for await (const line of createInterface({ input: createReadStream(this.p(W.journal)), crlfDelay: Infinity })) if (line) yield JSON.parse(line) as JournalEntry;
  }

  private async writeManifest(sharedHashes: Map<string, { sha256: string; size: number }>): Promise<RunOutcome> {
    const key = await this.deps.signingKey();
    const finishedAt = new Date().toISOString();
    const tmp = this.p(`${WORK_DIR}/${MANIFEST}`);
    const out = await AppendFile.open(tmp, 0);
    const hash = createHash('sha256');
    const w = async (s: string) => {
      hash.update(s);
      await out.write(s);
    };
    let files = 0;
    let bytes = 0;
    let items = 0;
    try {
      const counts = { matched: this.listed.matched, duplicates: this.listed.duplicates, items: this.listed.items, withdrawn: this.cp.withdrawn, documents: this.cp.documents, pages: this.cp.pages };
      for (const v of sharedHashes.values()) {
        files++;
        bytes += v.size;
      }
      for await (const e of this.journalEntries()) for (const d of e.docs) for (const f of d.files) if (!sharedHashes.has(f.path)) {
        files++;
        bytes += f.size;
      }
      const head = {
        format: 'mail-archive-export',
        version: 1,
        export: {
          id: this.rec.id,
          createdAt: this.rec.createdAt,
          finishedAt,
          requestedBy: this.rec.requestedBy,
          scope: this.rec.scope,
          source: this.req.source,
          format: this.req.format,
          options: { bates: this.req.bates, pdf: this.req.pdf, dedup: this.req.dedup, custodians: this.req.custodians, fields: fieldMappingOf(this.req), volume: this.req.volume },
        },
        archive: { organization: this.deps.orgName, signingKeyFingerprint: key.fingerprint },
        counts: { ...counts, files, bytes },
      };
      await w(`{"manifest":${JSON.stringify(head)},\n"items":[\n`);
      let first = true;
      for await (const e of this.journalEntries()) {
        items++;
        const entry = {
          n: e.n,
          sha256: e.id,
          size: e.size,
          custodian: e.custodian,
          ...(e.withdrawn ? { withdrawn: e.withdrawn } : {}),
          docs: e.docs.map((d) => ({ docId: d.docId, endDocId: d.endDocId, kind: d.kind, sha256: d.sha256, ...(d.md5 ? { md5: d.md5 } : {}), pages: d.pages, ...(d.filename ? { filename: d.filename } : {}), files: [...d.files.map((f) => f.path), ...(d.shared ?? [])], ...(d.note ? { note: d.note } : {}) })),
        };
        await w(`${first ? '' : ',\n'}${JSON.stringify(entry)}`);
        first = false;
      }
      await w('\n],\n"duplicates":[\n');
      first = true;
      for await (const line of createInterface({ input: createReadStream(this.p(W.duplicates)), crlfDelay: Infinity })) {
        if (!line) continue;
        const dup = JSON.parse(line) as DuplicateEntry;
        await w(`${first ? '' : ',\n'}${JSON.stringify({ sha256: dup.id, custodian: dup.custodian, duplicateOfItem: dup.duplicateOf })}`);
        first = false;
      }
      await w('\n],\n"files":[\n');
      first = true;
      const all: JournalFile[] = [];
      for (const [p, v] of sharedHashes) all.push({ path: p, ...v });
      for (const f of all) {
        await w(`${first ? '' : ',\n'}${JSON.stringify(f)}`);
        first = false;
      }
      for await (const e of this.journalEntries()) {
        for (const d of e.docs) {
          for (const f of d.files) {
            if (sharedHashes.has(f.path)) continue;
            await w(`${first ? '' : ',\n'}${JSON.stringify({ path: f.path, sha256: f.sha256, size: f.size })}`);
            first = false;
          }
        }
      }
      await w('\n]}\n');
      await out.sync();
    } finally {
      await out.close();
    }
    if (items !== this.listed.items) throw new Error(`journal holds ${items} items, the list ${this.listed.items}`);
    const manifestSha256 = hash.digest('hex');
    const sig = {
      algorithm: 'Ed25519',
      manifest: MANIFEST,
      manifestSha256,
      signedStatement: 'mail-archive export manifest v1\\n<manifestSha256>\\n',
      signature: signManifest(key, manifestSha256),
      publicKey: key.publicKeyPem,
      fingerprint: key.fingerprint,
      signedAt: finishedAt,
    };
    await writeJsonAtomic(this.p(`${WORK_DIR}/${SIGNATURE}`), sig);
    await rename(tmp, this.p(MANIFEST));
    await rename(this.p(`${WORK_DIR}/${SIGNATURE}`), this.p(SIGNATURE));
    await syncPaths([this.p(MANIFEST), this.p(SIGNATURE)]);
    return {
      outcome: 'done',
      manifestSha256,
      counts: { matched: this.listed.matched, duplicates: this.listed.duplicates, items: this.listed.items, withdrawn: this.cp.withdrawn, documents: this.cp.documents, pages: this.cp.pages, files, bytes },
    };
  }
}

function p2(n: number): string {
  return String(n).padStart(2, '0');
}

function people(list: Participant[]): string {
  return list.map((p) => (p.name ? `${p.name} <${p.address}>` : p.address)).join('; ');
}

export function headerLines(item: ExportItem): { label: string; value: string }[] {
  const lines = [
    { label: 'From', value: people(item.from) },
    { label: 'To', value: people(item.to) },
  ];
  if (item.cc.length) lines.push({ label: 'Cc', value: people(item.cc) });
  if (item.bcc.length) lines.push({ label: 'Bcc', value: people(item.bcc) });
  lines.push({ label: 'Date', value: new Date(item.date).toUTCString() }, { label: 'Subject', value: item.subject });
  if (item.messageId) lines.push({ label: 'Message-ID', value: `<${item.messageId}>` });
  if (item.parseError) lines.push({ label: 'Parse error', value: item.parseError });
  return lines;
}

/**
 * Natives of attachments are named after their parent (known before the
 * family is rendered, so the slip sheet can name the file), with the
 * attachment's position: `ARCH0000001-001.docx`.
 */
function childNativePath(folder: string, parentId: string, i: number, c: { filename: string; contentType: string }): string {
  return `NATIVES/${folder}/${parentId}-${String(i + 1).padStart(3, '0')}.${extensionOf(c.filename, c.contentType)}`;
}

const TYPE_EXT: Record<string, string> = { 'text/plain': 'txt', 'text/html': 'html', 'application/pdf': 'pdf', 'message/rfc822': 'eml', 'image/jpeg': 'jpg', 'image/png': 'png' };

/** An extension for a produced native: from the sender's file name when it is plain, never a path the sender controls. */
export function extensionOf(filename: string, contentType: string): string {
  const m = /\.([A-Za-z0-9]{1,10})$/.exec(filename);
  return m ? m[1]!.toLowerCase() : (TYPE_EXT[contentType] ?? 'bin');
}

function stripTags(html: string): string {
  return html.replace(/<[^>]*>/g, ' ').replace(/[ \t]+/g, ' ');
}
