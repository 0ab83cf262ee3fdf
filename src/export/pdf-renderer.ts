/**
 * Renders messages to Bates-stamped PDF pages with pdfkit: headers, body
 * text and the attachment list, then one slip sheet per attachment (the
 * attachment is its own document in the production). Every page gets the
 * next Bates number, stamped as the page is added, so nothing buffers pages:
 * one PDF per message, or one combined PDF streamed over a whole production.
 *
 * Text only: HTML was already turned into text by the indexer and nothing
 * in a message can add links, scripts or images to a page (promise 8).
 * Fonts: Helvetica for text that Windows-1252 covers (fast: no embedding);
 * a TrueType font (ARCHIVE_EXPORT_PDF_FONT, else DejaVu Sans when
 * installed) for a message with other characters. Embedding costs about
 * 20 ms per PDF, so only messages that need it pay.
 */
import { existsSync } from 'node:fs';
import type { Writable } from 'node:stream';
import PDFDocument from 'pdfkit';

export interface PdfHeaderLine {
  label: string;
  value: string;
}

export interface PdfAttachment {
  filename: string;
  contentType: string;
  size: number;
  sha256: string;
  /** Where the native is in the package, when it is produced natively. */
  nativePath?: string;
}

export interface PdfFamily {
  headers: PdfHeaderLine[];
  body: string;
  attachments: PdfAttachment[];
}

export interface FamilyPages {
  /** Pages of the message itself. */
  parent: number;
  /** One slip sheet per attachment. */
  children: number[];
}

export interface BatesPdfOptions {
  /** Called once per page, in order: the number to stamp on it. */
  nextBates: () => string;
  /** Endorsement at the bottom left of every page. */
  legend?: string;
  /** TrueType font file for non-Windows-1252 text. */
  unicodeFont?: string;
  /** Fixed, so the same input renders to the same bytes (a resumed combined PDF). */
  creationDate: Date;
  title: string;
}

const DEFAULT_UNICODE_FONTS = ['/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf', '/usr/share/fonts/dejavu/DejaVuSans.ttf', '/usr/share/fonts/TTF/DejaVuSans.ttf'];

export function defaultUnicodeFont(configured?: string): string | undefined {
  if (configured) return configured;
  return DEFAULT_UNICODE_FONTS.find((f) => existsSync(f));
}

/** Characters the standard PDF fonts encode (WinAnsiEncoding). */
const WIN_ANSI = /^[\n\x20-\x7e\xa0-\xff€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ]*$/;
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f]/g;

/** Text as a PDF page can show it: controls gone, tabs as spaces, CRLF as LF. */
function clean(s: string): string {
  return s.replace(/\r\n?/g, '\n').replace(/\t/g, '    ').replace(CONTROL, ' ');
}

const PAGE = { size: 'LETTER' as const, margins: { top: 54, left: 54, right: 54, bottom: 72 } };
const FONT_SIZE = 9.5;
const STAMP_SIZE = 9;

type Doc = PDFKit.PDFDocument & { _font?: unknown; _fontSize?: number };

interface AfmMetrics {
  attributes: unknown;
  glyphWidths: unknown;
  boundingBoxes: unknown;
  kernPairs: unknown;
}

let afmCacheInstalled = false;

/**
 * pdfkit parses the metrics file of a standard font (about 100 KB of text,
 * some 2 ms) for every document that uses it: with one PDF per message that
 * is most of the rendering time. The parsed metrics are plain read-only maps,
 * so they are parsed once per process and shared. pdfkit does not export
 * its AFM parser; it is reached through the first document's font object.
 * If pdfkit changes shape, this does nothing and rendering is only slower.
 */
function installAfmCache(doc: Doc): void {
  if (afmCacheInstalled) return;
  afmCacheInstalled = true;
  const afm = (doc as unknown as { _font?: { font?: object } })._font?.font;
  const proto = afm ? (Object.getPrototypeOf(afm) as { parse?: (this: AfmMetrics, contents: string) => void }) : undefined;
  if (!proto || typeof proto.parse !== 'function') return;
  const parse = proto.parse;
  const cache = new Map<string, AfmMetrics>();
  proto.parse = function (this: AfmMetrics, contents: string) {
    const hit = cache.get(contents);
    if (hit) {
      this.attributes = hit.attributes;
      this.glyphWidths = hit.glyphWidths;
      this.boundingBoxes = hit.boundingBoxes;
      this.kernPairs = hit.kernPairs;
      return;
    }
    parse.call(this, contents);
    cache.set(contents, { attributes: this.attributes, glyphWidths: this.glyphWidths, boundingBoxes: this.boundingBoxes, kernPairs: this.kernPairs });
  };
}

export class BatesPdf {
  private readonly doc: Doc;
  private readonly finished: Promise<void>;
  private unicodeRegistered = false;
  private regular = 'Helvetica';
  private bold = 'Helvetica-Bold';
  private pages = 0;

  constructor(
    out: Writable,
    private readonly opts: BatesPdfOptions,
  ) {
    this.doc = new PDFDocument({ autoFirstPage: false, size: PAGE.size, margins: PAGE.margins, compress: true, info: { Title: opts.title, Creator: 'mail-archive export', CreationDate: opts.creationDate, ModDate: opts.creationDate } }) as Doc;
    this.finished = new Promise<void>((resolve, reject) => {
      out.once('finish', resolve);
      out.once('close', resolve);
      out.once('error', reject);
      this.doc.once('error', reject);
    });
    this.doc.pipe(out);
    installAfmCache(this.doc);
    this.doc.on('pageAdded', () => this.stamp());
  }

  get pageCount(): number {
    return this.pages;
  }

  /** Renders one message and its attachment slip sheets; returns the pages of each. */
  renderFamily(f: PdfFamily, parentDocId: () => string): FamilyPages {
    const all = [f.body, ...f.headers.map((h) => h.value), ...f.attachments.map((a) => a.filename)].join('\n');
    this.chooseFonts(WIN_ANSI.test(all));
    const start = this.pages;
    const doc = this.doc;
    doc.addPage();
    const parentId = parentDocId();
    const width = doc.page.width - PAGE.margins.left - PAGE.margins.right;
    doc.fontSize(FONT_SIZE);
    for (const h of f.headers) {
      doc.font(this.bold).text(`${h.label}: `, { continued: true, width }).font(this.regular).text(this.fit(h.value) || ' ', { width });
    }
    if (f.attachments.length) {
      doc.font(this.bold).text(`Attachments (${f.attachments.length}):`, { width });
      f.attachments.forEach((a, i) => {
        doc.font(this.regular).text(`  ${i + 1}. ${this.fit(a.filename)}  (${this.fit(a.contentType)}, ${a.size} bytes)`, { width });
      });
    }
    const y = doc.y + 4;
    doc.moveTo(PAGE.margins.left, y).lineTo(PAGE.margins.left + width, y).lineWidth(0.5).stroke();
    doc.y = y + 8;
    doc.x = PAGE.margins.left;
    const body = this.fit(f.body);
    doc.font(this.regular).fontSize(FONT_SIZE).text(body.length ? body : '(no body text)', { width });
    const parent = this.pages - start;

    const children: number[] = [];
    f.attachments.forEach((a, i) => {
      const before = this.pages;
      doc.addPage();
      doc.font(this.bold).fontSize(16).text('ATTACHMENT', { width, align: 'center' });
      doc.moveDown();
      doc.fontSize(FONT_SIZE + 1);
      const lines: PdfHeaderLine[] = [
        { label: 'Attachment', value: `${i + 1} of ${f.attachments.length} of ${parentId}` },
        { label: 'File name', value: a.filename },
        { label: 'Type', value: a.contentType },
        { label: 'Size', value: `${a.size} bytes` },
        { label: 'SHA-256', value: a.sha256 },
        { label: 'Native', value: a.nativePath ?? 'not produced natively in this production' },
      ];
      for (const l of lines) doc.font(this.bold).text(`${l.label}: `, { continued: true, width }).font(this.regular).text(this.fit(l.value) || ' ', { width });
      children.push(this.pages - before);
    });
    return { parent, children };
  }

  /** Ends the document and resolves when its bytes are all written. */
  async end(): Promise<void> {
    this.doc.end();
    await this.finished;
  }

  private chooseFonts(winAnsi: boolean): void {
    if (winAnsi || !this.opts.unicodeFont) {
      this.regular = 'Helvetica';
      this.bold = 'Helvetica-Bold';
      return;
    }
    if (!this.unicodeRegistered) {
      this.doc.registerFont('Unicode', this.opts.unicodeFont);
      this.unicodeRegistered = true;
    }
    this.regular = 'Unicode';
    // One face: a bold TrueType face would be a second embedding per PDF.
    this.bold = 'Unicode';
  }

  /** Without a Unicode font, characters Helvetica cannot show become `?` instead of garbage. */
  private fit(s: string): string {
    const c = clean(s);
    if (this.regular !== 'Helvetica') return c;
    return WIN_ANSI.test(c) ? c : c.replace(/[^\n\x20-\x7e\xa0-\xff€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ]/gu, '?');
  }

  /** Stamps the page just added, leaving the text flow where it was. */
  private stamp(): void {
    const doc = this.doc;
    const bates = this.opts.nextBates();
    this.pages++;
    const { x, y } = doc;
    const font = doc._font;
    const size = doc._fontSize;
    const w = doc.page.width - PAGE.margins.left - PAGE.margins.right;
    const by = doc.page.height - PAGE.margins.bottom + 24;
    // Page margins are zeroed while stamping so the stamp below the bottom margin does not start a new page.
    const margins = doc.page.margins;
    doc.page.margins = { top: 0, left: 0, right: 0, bottom: 0 };
    doc.font('Helvetica-Bold').fontSize(STAMP_SIZE).text(bates, PAGE.margins.left, by, { width: w, align: 'right', lineBreak: false });
    if (this.opts.legend) doc.font('Helvetica').text(clean(this.opts.legend).replace(/[^\x20-\x7e]/g, '?'), PAGE.margins.left, by, { width: w / 2, align: 'left', lineBreak: false });
    doc.page.margins = margins;
    (doc as unknown as { _font: unknown })._font = font;
    doc.fontSize(size ?? FONT_SIZE);
    doc.x = x;
    doc.y = y;
  }
}
