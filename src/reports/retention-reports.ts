/**
 * The auditors' retention reports as PDF (pdfkit), CSV and JSON: the
 * retention report, the signed disposition certificate and the legal hold
 * report of a case. The data comes from retention/report-data.ts; this file
 * only lays it out and signs.
 *
 * Layout: a title page (organisation, title, period, generation time in
 * UTC), then sections with tables whose header row repeats on every page
 * they break onto (a row never splits), and a footer on every page with the
 * organisation, the generation time and "Page n of N".
 *
 * The certificate is signed with the archive's Ed25519 key (the export
 * signing key, src/export/signing-key.ts) over a domain-separated statement
 * of the SHA-256 of its canonical JSON (without the signature).
 */
import { createHash, createPublicKey, sign, verify } from 'node:crypto';
import { existsSync } from 'node:fs';
import PDFDocument from 'pdfkit';
import type { CertificateData, HoldReportData, RetentionReportData, PolicyVersionCount } from '../../retention/index.js';
import { canonicalJson } from '../audit/canonical-json.js';
import { CSV_BOM, csvRow } from '../export/metadata-csv.js';
import type { SigningKey } from '../export/signing-key.js';

export interface ReportMeta {
  organisation: string;
}

// ------------------------------------------------------------ certificate signing

export interface SignedCertificate {
  type: 'disposition-certificate';
  version: 1;
  organisation: string;
  generatedAt: string;
  period: { from: string; to: string };
  count: number;
  bytes: number;
  perPolicyVersion: PolicyVersionCount[];
  /** SHA-256 over certificateLines(disposition records of the period): recompute it from the records to check. */
  itemsDigest: string;
  itemsDigestAlgorithm: 'sha256 over tab-separated lines: sha256, messageId, date, policyId, policyVersion, retainUntil, disposedAt, approver; sorted by record id';
  signature: { algorithm: 'Ed25519'; publicKeyFingerprint: string; publicKeyPem: string; statementSha256: string; value: string };
}

function statement(sha: string): Buffer {
  return Buffer.from(`mail-archive disposition certificate v1\n${sha}\n`);
}

export function signCertificate(data: CertificateData, meta: ReportMeta, key: SigningKey): SignedCertificate {
  const body = {
    type: 'disposition-certificate' as const,
    version: 1 as const,
    organisation: meta.organisation,
    generatedAt: data.generatedAt,
    period: data.period,
    count: data.count,
    bytes: data.items.reduce((n, d) => n + d.size, 0),
    perPolicyVersion: data.perPolicyVersion,
    itemsDigest: data.digest,
    itemsDigestAlgorithm: 'sha256 over tab-separated lines: sha256, messageId, date, policyId, policyVersion, retainUntil, disposedAt, approver; sorted by record id' as const,
  };
  const sha = createHash('sha256').update(canonicalJson(body)).digest('hex');
  return {
    ...body,
    signature: { algorithm: 'Ed25519', publicKeyFingerprint: key.fingerprint, publicKeyPem: key.publicKeyPem, statementSha256: sha, value: sign(null, statement(sha), key.privateKey).toString('base64') },
  };
}

/** Checks a certificate's signature against a public key (PEM). */
export function verifyCertificate(cert: SignedCertificate, publicKeyPem: string): boolean {
  const { signature, ...body } = cert;
  const sha = createHash('sha256').update(canonicalJson(body)).digest('hex');
  if (sha !== signature.statementSha256) return false;
  try {
    return verify(null, statement(sha), createPublicKey(publicKeyPem), Buffer.from(signature.value, 'base64'));
  } catch {
    return false;
  }
}

// ------------------------------------------------------------ CSV

export function retentionReportCsv(d: RetentionReportData): string {
  let out = CSV_BOM + csvRow(['section', 'key', 'name', 'version', 'messages', 'bytes', 'detail']);
  for (const p of d.policies) {
    out += csvRow(['policy', p.policy.id, p.policy.name, String(p.policy.version), String(p.messages), String(p.bytes), `${periodText(p.policy.period)}; then ${p.policy.action}`]);
    for (const v of p.versions) out += csvRow(['policy-version', v.id, v.name, String(v.version), '', '', `${periodText(v.period)}; then ${v.action}; saved ${v.updatedAt} by ${v.updatedBy}`]);
  }
  for (const u of d.upcoming) out += csvRow(['expiring', u.month, '', '', String(u.messages), String(u.bytes), '']);
  for (const h of d.holds) out += csvRow(['hold', h.hold.id, h.hold.name, '', String(h.messages), '', `${h.caseName}; ${h.hold.status}${h.hold.releaseReason ? `; released: ${h.hold.releaseReason}` : ''}`]);
  for (const p of d.dispositions.perPolicyVersion) out += csvRow(['disposed', `${p.policyId}@${p.policyVersion}`, p.policyName, String(p.policyVersion), String(p.count), String(p.bytes), `${d.period.from} to ${d.period.to}`]);
  for (const k of d.keptLonger) out += csvRow(['kept-longer', k.sha256, k.policyId, String(k.policyVersion), '', '', `kept until ${k.retainUntil}; policy gives ${k.policyRetainUntil}`]);
  if (d.immutability) out += csvRow(['immutability', '', '', '', '', '', d.immutability]);
  if (d.fixity) out += csvRow(['fixity', '', '', '', String(d.fixity.checked), String(d.fixity.bytes), `${d.fixity.ok} ok, ${d.fixity.problems} problems`]);
  return out;
}

export function certificateCsv(d: CertificateData): string {
  let out = CSV_BOM + csvRow(['id', 'sha256', 'messageId', 'date', 'size', 'policyId', 'policyName', 'policyVersion', 'retainUntil', 'disposedAt', 'approver']);
  for (const i of d.items) out += csvRow([i.id, i.sha256, i.messageId ?? '', i.date, String(i.size), i.policyId, i.policyName, String(i.policyVersion), i.retainUntil, i.disposedAt, i.approver]);
  return out;
}

export function holdReportCsv(d: HoldReportData): string {
  let out = CSV_BOM + csvRow(['caseId', 'matterNumber', 'holdId', 'holdStatus', 'sha256', 'messageId', 'date', 'size']);
  for (const h of d.holds) for (const m of h.messages) out += csvRow([d.kase.id, d.kase.matterNumber, h.hold.id, h.hold.status, m.sha256, m.messageId ?? '', m.date, String(m.size)]);
  return out;
}

// ------------------------------------------------------------ PDF

/** Rows of one table drawn in a PDF at most (the CSV always has every row). */
const MAX_PDF_ROWS = 5000;
const UNICODE_FONT = ['/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf', '/usr/share/fonts/dejavu/DejaVuSans.ttf'].find((f) => existsSync(f));
const UNICODE_BOLD = ['/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf', '/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf'].find((f) => existsSync(f));

interface Column {
  header: string;
  width: number;
  align?: 'left' | 'right';
}

class ReportPdf {
  readonly doc: PDFKit.PDFDocument;
  private readonly chunks: Buffer[] = [];
  private readonly done: Promise<Buffer>;
  private readonly regular: string;
  private readonly bold: string;

  constructor(private readonly meta: ReportMeta & { title: string; subtitle: string; generatedAt: string }) {
    this.doc = new PDFDocument({ size: 'A4', margins: { top: 60, bottom: 60, left: 50, right: 50 }, bufferPages: true, info: { Title: meta.title, Author: meta.organisation, Creator: 'mail-archive' } });
    if (UNICODE_FONT && UNICODE_BOLD) {
      this.doc.registerFont('R', UNICODE_FONT);
      this.doc.registerFont('B', UNICODE_BOLD);
      this.regular = 'R';
      this.bold = 'B';
    } else {
      this.regular = 'Helvetica';
      this.bold = 'Helvetica-Bold';
    }
    this.done = new Promise((resolve, reject) => {
      this.doc.on('data', (c: Buffer) => this.chunks.push(c));
      this.doc.on('end', () => resolve(Buffer.concat(this.chunks)));
      this.doc.on('error', reject);
    });
    this.titlePage();
  }

  private get width(): number {
    return this.doc.page.width - this.doc.page.margins.left - this.doc.page.margins.right;
  }

  private titlePage(): void {
    const d = this.doc;
    d.rect(0, 0, d.page.width, 8).fill('#1f3a5f');
    d.fillColor('#1f3a5f').font(this.bold).fontSize(14).text(this.meta.organisation, 50, 160, { width: this.width });
    d.moveDown(2).fillColor('#111').font(this.bold).fontSize(28).text(this.meta.title, { width: this.width });
    d.moveDown(0.5).font(this.regular).fontSize(13).fillColor('#333').text(this.meta.subtitle, { width: this.width });
    d.moveDown(3).fontSize(10).fillColor('#555').text(`Generated ${this.meta.generatedAt.replace('T', ' ').replace(/\.\d+Z$/, ' UTC').replace(/Z$/, ' UTC')}`);
    d.text('Generated by the archive from its catalog; every figure can be re-derived from the disposition records and the audit trail.', { width: this.width });
    d.addPage();
  }

  heading(text: string): void {
    this.ensure(60);
    this.doc.moveDown(0.8).font(this.bold).fontSize(14).fillColor('#1f3a5f').text(text, this.doc.page.margins.left, this.doc.y, { width: this.width });
    this.doc.moveDown(0.3).fillColor('#111');
  }

  para(text: string): void {
    this.ensure(30);
    this.doc.font(this.regular).fontSize(9.5).fillColor('#222').text(text, this.doc.page.margins.left, this.doc.y, { width: this.width });
    this.doc.moveDown(0.4);
  }

  keyValues(rows: [string, string][]): void {
    this.table([{ header: 'Item', width: 0.35 }, { header: 'Value', width: 0.65 }], rows, { noHeader: true });
  }

  private ensure(h: number): boolean {
    if (this.doc.y + h > this.doc.page.height - this.doc.page.margins.bottom) {
      this.doc.addPage();
      return true;
    }
    return false;
  }

  /** A table: widths are fractions of the text width; the header repeats after each page break; rows never split. */
  table(cols: Column[], rows: string[][], opts: { noHeader?: boolean; total?: number; fontSize?: number } = {}): void {
    const size = opts.fontSize ?? 8.5;
    const d = this.doc;
    const x0 = d.page.margins.left;
    const widths = cols.map((c) => c.width * this.width);
    const pad = 3;
    const drawHeader = () => {
      if (opts.noHeader) return;
      const h = 16;
      d.rect(x0, d.y, this.width, h).fill('#1f3a5f');
      let x = x0;
      d.font(this.bold).fontSize(8.5).fillColor('#fff');
      const y = d.y;
      cols.forEach((c, i) => {
        d.text(c.header, x + pad, y + 4, { width: widths[i] - 2 * pad, align: c.align ?? 'left', lineBreak: false, ellipsis: true });
        x += widths[i];
      });
      d.y = y + h;
    };
    this.ensure(40);
    drawHeader();
    const shown = rows.slice(0, MAX_PDF_ROWS);
    shown.forEach((row, r) => {
      d.font(this.regular).fontSize(size);
      const h = Math.max(14, ...row.map((cell, i) => d.heightOfString(cell, { width: widths[i] - 2 * pad }) + 2 * pad));
      if (this.ensure(h)) {
        drawHeader();
        d.font(this.regular).fontSize(size);
      }
      const y = d.y;
      if (r % 2 === 1) d.rect(x0, y, this.width, h).fill('#eef2f7');
      let x = x0;
      d.fillColor('#111');
      row.forEach((cell, i) => {
        d.text(cell, x + pad, y + pad, { width: widths[i] - 2 * pad, align: cols[i].align ?? 'left' });
        x += widths[i];
      });
      d.moveTo(x0, y + h).lineTo(x0 + this.width, y + h).lineWidth(0.3).strokeColor('#c8d0da').stroke();
      d.y = y + h;
    });
    if (!rows.length) this.para('(none)');
    if (rows.length > shown.length || (opts.total ?? 0) > rows.length) this.para(`${(opts.total ?? rows.length) - shown.length} more rows are in the CSV version of this report.`);
    d.x = x0;
    d.moveDown(0.6);
  }

  /** Footers on every page, then the bytes. */
  async finish(): Promise<Buffer> {
    const d = this.doc;
    const range = d.bufferedPageRange();
    for (let i = range.start; i < range.start + range.count; i++) {
      d.switchToPage(i);
      const bottom = d.page.margins.bottom;
      d.page.margins.bottom = 0;
      const y = d.page.height - 40;
      d.font(this.regular).fontSize(8).fillColor('#666');
      d.text(`${this.meta.organisation} · ${this.meta.title}`, 50, y, { width: 300, lineBreak: false });
      d.text(`Generated ${this.meta.generatedAt.slice(0, 19).replace('T', ' ')} UTC · Page ${i + 1} of ${range.count}`, d.page.width - 300, y, { width: 250, align: 'right', lineBreak: false });
      d.page.margins.bottom = bottom;
    }
    d.end();
    return this.done;
  }
}

function periodText(p: { unit: string; count: number; from: string }): string {
  return p.unit === 'forever' ? 'forever' : `${p.count} ${p.unit} from ${p.from === 'sent' ? 'sent date' : 'receipt'}`;
}

function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const u = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${u[i]}`;
}

const day = (iso: string) => (iso.startsWith('9999') ? 'forever' : iso.slice(0, 10));
const fmt = (n: number) => n.toLocaleString('en-US');

function matcherText(m: Record<string, unknown>): string {
  const parts = Object.entries(m)
    .filter(([, v]) => v !== undefined && !(Array.isArray(v) && !v.length))
    .map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(', ') : String(v)}`);
  return parts.length ? parts.join('; ') : 'all messages (default)';
}

export async function retentionReportPdf(d: RetentionReportData, meta: ReportMeta): Promise<Buffer> {
  const pdf = new ReportPdf({ ...meta, title: 'Retention report', subtitle: `Period ${day(d.period.from)} to ${day(d.period.to)}`, generatedAt: d.generatedAt });
  pdf.heading('Summary');
  pdf.keyValues([
    ['Messages under retention', fmt(d.totals.messages)],
    ['Bytes under retention', bytes(d.totals.bytes)],
    ['Messages under legal hold', fmt(d.totals.held)],
    ['Messages kept forever', fmt(d.totals.forever)],
    ['Dispositions awaiting approval', fmt(d.totals.awaitingApproval)],
    ['Messages disposed of in the period', `${fmt(d.dispositions.count)} (${bytes(d.dispositions.bytes)})`],
    ...(d.immutability ? [['Immutability', d.immutability] as [string, string]] : []),
    ['Fixity', d.fixity ? `${fmt(d.fixity.checked)} objects re-hashed (${bytes(d.fixity.bytes)}), ${fmt(d.fixity.ok)} intact, ${fmt(d.fixity.problems)} problems; ${d.fixity.finishedAt.slice(0, 19)} UTC` : 'not run for this report'],
  ]);
  pdf.heading('Policies');
  pdf.table(
    [{ header: 'Policy', width: 0.2 }, { header: 'Ver.', width: 0.06, align: 'right' }, { header: 'Matches', width: 0.28 }, { header: 'Period / end', width: 0.22 }, { header: 'Messages', width: 0.11, align: 'right' }, { header: 'Bytes', width: 0.13, align: 'right' }],
    d.policies.map((p) => [p.policy.name, String(p.policy.version), matcherText(p.policy.matcher as Record<string, unknown>), `${periodText(p.policy.period)}; then ${p.policy.action}`, fmt(p.messages), bytes(p.bytes)]),
  );
  pdf.heading('Policy versions');
  pdf.table(
    [{ header: 'Policy', width: 0.22 }, { header: 'Ver.', width: 0.06, align: 'right' }, { header: 'Period / end', width: 0.3 }, { header: 'Saved (UTC)', width: 0.2 }, { header: 'By', width: 0.22 }],
    d.policies.flatMap((p) => p.versions.map((v) => [v.name, String(v.version), `${periodText(v.period)}; then ${v.action}`, v.updatedAt.slice(0, 19).replace('T', ' '), v.updatedBy])),
  );
  pdf.heading('Upcoming expirations (next 12 months, not held)');
  pdf.table([{ header: 'Month', width: 0.4 }, { header: 'Messages', width: 0.3, align: 'right' }, { header: 'Bytes', width: 0.3, align: 'right' }], d.upcoming.map((u) => [u.month, fmt(u.messages), bytes(u.bytes)]));
  pdf.heading('Legal holds');
  pdf.table(
    [{ header: 'Hold', width: 0.22 }, { header: 'Case', width: 0.22 }, { header: 'Status', width: 0.26 }, { header: 'Placed (UTC)', width: 0.16 }, { header: 'Messages', width: 0.14, align: 'right' }],
    d.holds.map((h) => [h.hold.name, h.caseName, h.hold.status === 'released' ? `released ${day(h.hold.releasedAt ?? '')}: ${h.hold.releaseReason ?? ''}` : 'active', day(h.hold.createdAt), fmt(h.messages)]),
  );
  pdf.heading('Dispositions in the period, per policy version');
  pdf.table(
    [{ header: 'Policy', width: 0.4 }, { header: 'Version', width: 0.15, align: 'right' }, { header: 'Messages', width: 0.2, align: 'right' }, { header: 'Bytes', width: 0.25, align: 'right' }],
    d.dispositions.perPolicyVersion.map((p) => [p.policyName, String(p.policyVersion), fmt(p.count), bytes(p.bytes)]),
  );
  pdf.heading('Messages kept longer than their current policy');
  pdf.para('An applied retain-until date is never shortened. These messages keep an earlier, longer date although their policy now gives a shorter one.');
  pdf.table(
    [{ header: 'SHA-256', width: 0.46 }, { header: 'Policy', width: 0.18 }, { header: 'Kept until', width: 0.18 }, { header: 'Policy gives', width: 0.18 }],
    d.keptLonger.map((k) => [k.sha256, `${k.policyId}@${k.policyVersion}`, day(k.retainUntil), day(k.policyRetainUntil)]),
  );
  return pdf.finish();
}

export async function certificatePdf(d: CertificateData, cert: SignedCertificate, meta: ReportMeta): Promise<Buffer> {
  const pdf = new ReportPdf({ ...meta, title: 'Certificate of disposition', subtitle: `Dispositions from ${d.period.from.slice(0, 19)} to ${d.period.to.slice(0, 19)} UTC`, generatedAt: d.generatedAt });
  pdf.heading('Statement');
  pdf.para(
    `${meta.organisation} certifies that the ${fmt(d.count)} messages listed below were deleted by the archive's disposition engine in the period, each after its retention period ended, while no legal hold covered it, and that an immutable disposition record was written for each.`,
  );
  pdf.keyValues([
    ['Messages disposed of', fmt(d.count)],
    ['Digest of the disposed items (SHA-256)', d.digest],
    ['Digest method', cert.itemsDigestAlgorithm],
    ['Signature algorithm', 'Ed25519 over the SHA-256 of the canonical JSON certificate'],
    ['Signed statement (SHA-256)', cert.signature.statementSha256],
    ['Signing key fingerprint', cert.signature.publicKeyFingerprint],
    ['Signature (base64)', cert.signature.value],
  ]);
  pdf.heading('Counts per policy version');
  pdf.table(
    [{ header: 'Policy', width: 0.4 }, { header: 'Version', width: 0.15, align: 'right' }, { header: 'Messages', width: 0.2, align: 'right' }, { header: 'Bytes', width: 0.25, align: 'right' }],
    d.perPolicyVersion.map((p) => [p.policyName, String(p.policyVersion), fmt(p.count), bytes(p.bytes)]),
  );
  pdf.heading('Disposed items');
  pdf.table(
    [{ header: 'SHA-256 / Message-ID', width: 0.38 }, { header: 'Date', width: 0.11 }, { header: 'Policy', width: 0.14 }, { header: 'Kept until', width: 0.11 }, { header: 'Disposed', width: 0.11 }, { header: 'Approver', width: 0.15 }],
    d.items.map((i) => [`${i.sha256}\n${i.messageId ?? ''}`, day(i.date), `${i.policyName} v${i.policyVersion}`, day(i.retainUntil), day(i.disposedAt), i.approver]),
    { fontSize: 7 },
  );
  pdf.heading('Public key');
  pdf.para(cert.signature.publicKeyPem);
  return pdf.finish();
}

export async function holdReportPdf(d: HoldReportData, meta: ReportMeta): Promise<Buffer> {
  const pdf = new ReportPdf({ ...meta, title: 'Legal hold report', subtitle: `${d.kase.name} (matter ${d.kase.matterNumber})`, generatedAt: d.generatedAt });
  pdf.heading('Case');
  pdf.keyValues([
    ['Name', d.kase.name],
    ['Matter number', d.kase.matterNumber],
    ['Description', d.kase.description ?? ''],
    ['Custodians', d.kase.custodians.join(', ') || '(none)'],
    ['Opened', `${d.kase.createdAt.slice(0, 19).replace('T', ' ')} UTC by ${d.kase.createdBy}`],
  ]);
  pdf.heading('Holds');
  pdf.table(
    [{ header: 'Hold', width: 0.18 }, { header: 'Covers', width: 0.34 }, { header: 'Placed', width: 0.16 }, { header: 'Status', width: 0.22 }, { header: 'Messages', width: 0.1, align: 'right' }],
    d.holds.map((h) => [
      h.hold.name,
      [h.hold.custodians?.length ? `custodians: ${h.hold.custodians.join(', ')}` : '', h.hold.query ? `query: ${h.hold.query}` : '', h.hold.dateFrom || h.hold.dateTo ? `dates: ${h.hold.dateFrom ?? '…'} to ${h.hold.dateTo ?? '…'}` : ''].filter(Boolean).join('\n'),
      `${day(h.hold.createdAt)} by ${h.hold.createdBy}`,
      h.hold.status === 'released' ? `released ${day(h.hold.releasedAt ?? '')} by ${h.hold.releasedBy ?? ''}: ${h.hold.releaseReason ?? ''}` : 'active',
      fmt(h.messages.length),
    ]),
  );
  for (const h of d.holds) {
    pdf.heading(`Messages held by "${h.hold.name}"`);
    pdf.table([{ header: 'SHA-256 / Message-ID', width: 0.6 }, { header: 'Date (UTC)', width: 0.25 }, { header: 'Size', width: 0.15, align: 'right' }], h.messages.map((m) => [`${m.sha256}\n${m.messageId ?? ''}`, m.date.slice(0, 19).replace('T', ' '), bytes(m.size)]));
  }
  return pdf.finish();
}
