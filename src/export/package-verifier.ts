/**
 * Offline verification of an export package, as a directory or as the ZIP
 * the API serves (`archive verify-export`): the manifest's signature, every
 * file's SHA-256 and size, files missing or added, each native EML against
 * the archived message's SHA-256, and each message inside an MBOX. Any
 * difference names the items it touches. Needs nothing but the package
 * (and, to trust the signer, the archive's published public key).
 */
import { createHash, createPublicKey } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import yauzl from 'yauzl';
import { MANIFEST, SIGNATURE, walkFiles } from './package-files.js';
import { fingerprintOf, verifyManifestSignature } from './signing-key.js';

export interface VerifyProblem {
  path?: string;
  items?: { n: number; sha256: string; docIds: string[] }[];
  problem: string;
}

export interface VerifyReport {
  ok: boolean;
  exportId?: string;
  signature: { valid: boolean; fingerprint?: string; trusted: boolean | null };
  counts?: Record<string, number>;
  checkedFiles: number;
  problems: VerifyProblem[];
}

interface ManifestItem {
  n: number;
  sha256: string;
  size: number;
  withdrawn?: string;
  docs: { docId: string; kind: string; sha256: string; files: string[] }[];
}

interface Manifest {
  manifest: { export: { id: string }; counts: Record<string, number> };
  items: ManifestItem[];
  files: { path: string; sha256: string; size: number }[];
}

interface PackageReader {
  /** Every file, package-relative path → size. */
  files(): Promise<Map<string, number>>;
  open(rel: string): Promise<Readable>;
  close(): Promise<void>;
}

async function dirReader(dir: string): Promise<PackageReader> {
  return {
    async files() {
      const m = new Map<string, number>();
      for await (const f of walkFiles(dir)) m.set(f.rel, f.size);
      return m;
    },
    async open(rel) {
      return createReadStream(`${dir}/${rel}`);
    },
    async close() {},
  };
}

async function zipReader(file: string): Promise<PackageReader> {
  const zip = await new Promise<yauzl.ZipFile>((resolve, reject) => yauzl.open(file, { lazyEntries: true, autoClose: false, strictFileNames: true }, (err, z) => (err ? reject(err) : resolve(z!))));
  const entries = new Map<string, yauzl.Entry>();
  await new Promise<void>((resolve, reject) => {
    zip.on('entry', (e: yauzl.Entry) => {
      if (!e.fileName.endsWith('/')) entries.set(e.fileName, e);
      zip.readEntry();
    });
    zip.once('end', resolve);
    zip.once('error', reject);
    zip.readEntry();
  });
  return {
    async files() {
      return new Map([...entries].map(([k, e]) => [k, e.uncompressedSize]));
    },
    open(rel) {
      const e = entries.get(rel);
      if (!e) return Promise.reject(new Error(`${rel} not in the ZIP`));
      return new Promise((resolve, reject) => zip.openReadStream(e, (err, s) => (err ? reject(err) : resolve(s!))));
    },
    async close() {
      zip.close();
    },
  };
}

async function hashStream(s: Readable): Promise<{ sha256: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const c of s) {
    h.update(c as Buffer);
    size += (c as Buffer).length;
  }
  return { sha256: h.digest('hex'), size };
}

async function readAll(s: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

export async function verifyPackage(target: string, opts: { publicKeyPem?: string } = {}): Promise<VerifyReport> {
  const st = await stat(target);
  const reader = st.isDirectory() ? await dirReader(target) : await zipReader(target);
  const report: VerifyReport = { ok: false, signature: { valid: false, trusted: null }, checkedFiles: 0, problems: [] };
  try {
    await verifyWith(reader, report, opts);
  } finally {
    await reader.close();
  }
  report.ok = report.signature.valid && report.signature.trusted !== false && report.problems.length === 0;
  return report;
}

async function verifyWith(reader: PackageReader, report: VerifyReport, opts: { publicKeyPem?: string }): Promise<void> {
  const present = await reader.files();
  if (!present.has(MANIFEST) || !present.has(SIGNATURE)) {
    report.problems.push({ problem: `no ${MANIFEST} and ${SIGNATURE}: not a complete export package` });
    return;
  }

  // 1. The signature over the manifest.
  let sig: { manifestSha256?: string; signature?: string; publicKey?: string; fingerprint?: string };
  try {
    sig = JSON.parse((await readAll(await reader.open(SIGNATURE))).toString('utf8'));
  } catch {
    report.problems.push({ path: SIGNATURE, problem: 'unreadable signature file' });
    return;
  }
  const manifestBytes = await readAll(await reader.open(MANIFEST));
  const manifestSha256 = createHash('sha256').update(manifestBytes).digest('hex');
  let keyFingerprint: string | undefined;
  try {
    keyFingerprint = fingerprintOf(createPublicKey(sig.publicKey ?? ''));
  } catch {
    report.problems.push({ path: SIGNATURE, problem: 'the signature file holds no usable public key' });
  }
  report.signature.fingerprint = keyFingerprint;
  if (sig.manifestSha256 !== manifestSha256) report.problems.push({ path: MANIFEST, problem: `manifest SHA-256 is ${manifestSha256}, the signature is over ${sig.manifestSha256}` });
  report.signature.valid = !!keyFingerprint && sig.manifestSha256 === manifestSha256 && verifyManifestSignature(sig.publicKey!, manifestSha256, sig.signature ?? '');
  if (!report.signature.valid) report.problems.push({ path: SIGNATURE, problem: 'signature does not verify' });
  if (opts.publicKeyPem) {
    const trustedFp = fingerprintOf(createPublicKey(opts.publicKeyPem));
    report.signature.trusted = trustedFp === keyFingerprint;
    if (!report.signature.trusted) report.problems.push({ path: SIGNATURE, problem: `signed by ${keyFingerprint}, not by the given key ${trustedFp}` });
  }

  // 2. Every file against the manifest.
  let manifest: Manifest;
  try {
    manifest = JSON.parse(manifestBytes.toString('utf8')) as Manifest;
  } catch {
    report.problems.push({ path: MANIFEST, problem: 'manifest is not valid JSON' });
    return;
  }
  report.exportId = manifest.manifest?.export?.id;
  report.counts = manifest.manifest?.counts;
  const byPath = new Map<string, ManifestItem[]>();
  for (const it of manifest.items) for (const d of it.docs) for (const f of d.files) byPath.set(f, [...(byPath.get(f) ?? []), it].filter((x, i, a) => a.indexOf(x) === i));
  const itemsOf = (p: string) => byPath.get(p)?.map((it) => ({ n: it.n, sha256: it.sha256, docIds: it.docs.map((d) => d.docId) }));
  const listed = new Map(manifest.files.map((f) => [f.path, f]));
  for (const f of manifest.files) {
    if (!present.has(f.path)) {
      report.problems.push({ path: f.path, items: itemsOf(f.path), problem: 'missing' });
      continue;
    }
    const h = await hashStream(await reader.open(f.path));
    report.checkedFiles++;
    if (h.sha256 !== f.sha256 || h.size !== f.size) report.problems.push({ path: f.path, items: itemsOf(f.path), problem: `differs: SHA-256 ${h.sha256} (${h.size} bytes), manifest says ${f.sha256} (${f.size} bytes)` });
  }
  for (const p of present.keys()) {
    if (p !== MANIFEST && p !== SIGNATURE && !listed.has(p)) report.problems.push({ path: p, problem: 'not in the manifest' });
  }

  // 3. Natives are the archived originals: the EML of each message hashes to the message's id.
  for (const it of manifest.items) {
    for (const d of it.docs) {
      for (const f of d.files) {
        if (d.kind === 'message' && f.endsWith('.eml') && listed.get(f)?.sha256 !== it.sha256) {
          report.problems.push({ path: f, items: itemsOf(f), problem: `native is not the archived message ${it.sha256}` });
        }
      }
    }
  }

  // 4. Each message inside an MBOX against its item.
  for (const p of new Set(manifest.items.flatMap((it) => it.docs.flatMap((d) => d.files)))) {
    if (!p.endsWith('.mbox') || !present.has(p)) continue;
    const expected = manifest.items.filter((it) => !it.withdrawn && it.docs.some((d) => d.files.includes(p)));
    const checker = new MboxChecker(expected);
    for await (const c of await reader.open(p)) checker.write(c as Buffer);
    for (const problem of checker.end()) {
      const it = problem.item;
      report.problems.push({ path: p, ...(it ? { items: [{ n: it.n, sha256: it.sha256, docIds: it.docs.map((d) => d.docId) }] } : {}), problem: problem.problem });
    }
  }
}

const FROM = Buffer.from('From ');
const LF = 0x0a;
const GT = 0x3e;

/**
 * Reads an mboxrd file back, message by message, and checks each against
 * the item in the same position: un-escaped, its first `size` bytes must
 * hash to the item's SHA-256, and only the separator's line breaks may
 * follow. Streams: never holds a message or a line.
 */
class MboxChecker {
  private idx = -1;
  private hash = createHash('sha256');
  private taken = 0;
  private excess = 0;
  private excessOk = true;
  private junk = 0;
  private atLineStart = true;
  private inFromLine = false;
  private gts = 0;
  private fromMatched = 0;
  private readonly problems: { item?: ManifestItem; problem: string }[] = [];

  constructor(private readonly items: ManifestItem[]) {}

  write(chunk: Buffer): void {
    let i = 0;
    while (i < chunk.length) {
      const c = chunk[i]!;
      if (this.inFromLine) {
        const lf = chunk.indexOf(LF, i);
        if (lf < 0) return;
        this.inFromLine = false;
        this.atLineStart = true;
        i = lf + 1;
        continue;
      }
      if (!this.atLineStart) {
        const lf = chunk.indexOf(LF, i);
        const end = lf < 0 ? chunk.length : lf + 1;
        this.feed(chunk.subarray(i, end));
        if (lf >= 0) this.atLineStart = true;
        i = end;
        continue;
      }
      if (this.fromMatched === 0 && c === GT) {
        this.gts++;
        i++;
        continue;
      }
      if (c === FROM[this.fromMatched]) {
        this.fromMatched++;
        i++;
        if (this.fromMatched === FROM.length) {
          if (this.gts === 0) {
            this.next();
            this.inFromLine = true;
          } else this.feed(Buffer.concat([Buffer.alloc(this.gts - 1, GT), FROM]));
          this.gts = 0;
          this.fromMatched = 0;
          this.atLineStart = false;
        }
        continue;
      }
      this.feedHeld();
      this.atLineStart = false;
    }
  }

  end(): { item?: ManifestItem; problem: string }[] {
    this.feedHeld();
    this.next();
    if (this.junk) this.problems.push({ problem: `${this.junk} bytes before the first message` });
    if (this.idx < this.items.length) for (const it of this.items.slice(this.idx)) this.problems.push({ item: it, problem: 'message missing from the MBOX' });
    return this.problems;
  }

  private feedHeld(): void {
    if (this.gts || this.fromMatched) this.feed(Buffer.concat([Buffer.alloc(this.gts, GT), FROM.subarray(0, this.fromMatched)]));
    this.gts = 0;
    this.fromMatched = 0;
  }

  private feed(b: Buffer): void {
    if (this.idx < 0) {
      this.junk += b.length;
      return;
    }
    const item = this.items[this.idx];
    const room = item ? Math.max(0, item.size - this.taken) : 0;
    const take = Math.min(room, b.length);
    if (take) this.hash.update(b.subarray(0, take));
    this.taken += take;
    for (let k = take; k < b.length; k++) {
      this.excess++;
      if (b[k] !== LF && !(b[k] === 0x0d && b[k + 1] === LF)) this.excessOk = false;
    }
  }

  /** Closes the current message and opens the next. */
  private next(): void {
    if (this.idx >= 0) {
      const item = this.items[this.idx];
      if (!item) this.problems.push({ problem: `message ${this.idx + 1} of the MBOX has no item in the manifest` });
      else {
        const sha = this.hash.digest('hex');
        if (this.taken !== item.size || sha !== item.sha256 || !this.excessOk || this.excess < 1 || this.excess > 2) this.problems.push({ item, problem: 'message in the MBOX differs from the archived original' });
      }
    }
    this.idx++;
    this.hash = createHash('sha256');
    this.taken = 0;
    this.excess = 0;
    this.excessOk = true;
  }
}
