/**
 * The HTML body of a message, made inert for the viewer (promise 8). Mail is
 * attacker-controlled: the HTML part is extracted (streaming, bounded in
 * size and time), sanitised here on the server with an allow-list, and then
 * served with a Content-Security-Policy that loads nothing remote by
 * default; the web UI shows it inside `<iframe sandbox>` with no
 * permissions. Three layers, each sufficient against scripts on its own:
 * sanitising, the CSP (`default-src 'none'` and a `sandbox` directive) and
 * the iframe sandbox.
 */
import type { Readable } from 'node:stream';
import { MailParser } from 'mailparser';
import sanitizeHtml from 'sanitize-html';

/** Characters of HTML kept for the viewer (about 4 MB); beyond that the view is cut and says so. */
export const MAX_VIEW_HTML = 4 * 1024 * 1024;
/** Wall-clock budget for extracting the body, in ms; a parse that overruns gives the text fallback. */
export const EXTRACT_TIMEOUT_MS = 20_000;

export interface ExtractedBody {
  html?: string;
  text?: string;
  truncated: boolean;
}

/** The first text/html body (or the text body) of a raw message. Attachments are drained, never held. */
export async function extractBody(raw: Readable, timeoutMs = EXTRACT_TIMEOUT_MS): Promise<ExtractedBody> {
  const parser = new MailParser({ skipHtmlToText: true, skipTextToHtml: true, skipTextLinks: true, skipImageLinks: true, maxHtmlLengthToParse: MAX_VIEW_HTML });
  const out: ExtractedBody = { truncated: false };
  const work = new Promise<void>((resolve, reject) => {
    parser.on('data', (data: { type: string; text?: string; html?: string | false; content?: Readable; release?: () => void }) => {
      if (data.type === 'text') {
        if (typeof data.html === 'string' && data.html) out.html = data.html;
        if (data.text) out.text = data.text;
        return;
      }
      // Attachments: read and drop, so the parser can go on.
      data.content?.on('end', () => data.release?.());
      data.content?.on('error', () => data.release?.());
      data.content?.resume();
    });
    parser.on('end', () => resolve());
    parser.on('error', reject);
  });
  raw.on('error', (e) => parser.destroy(e));
  raw.pipe(parser);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`body extraction exceeded ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    await Promise.race([work, timeout]);
  } catch {
    raw.unpipe(parser);
    raw.destroy();
    parser.destroy();
  } finally {
    clearTimeout(timer);
  }
  for (const k of ['html', 'text'] as const) {
    const v = out[k];
    if (v && v.length > MAX_VIEW_HTML) {
      out[k] = v.slice(0, MAX_VIEW_HTML);
      out.truncated = true;
    }
  }
  return out;
}

/** CSS that could fetch something or run something: any url(), image-set, @import, expressions, bindings, escapes. */
const DANGEROUS_CSS = /url\s*\(|image-set|image\s*\(|@import|expression\s*\(|behavior\s*:|-moz-binding|javascript:|\\/i;

/** Keeps the harmless declarations of a style attribute. */
export function cleanStyle(style: string): string {
  return style
    .split(';')
    .map((d) => d.trim())
    .filter((d) => d && /^[-a-z]+\s*:/i.test(d) && !DANGEROUS_CSS.test(d) && !/position\s*:\s*(fixed|absolute|sticky)/i.test(d))
    .join('; ');
}

function cleanStyleAttr(attribs: Record<string, string>): Record<string, string> {
  if (attribs.style === undefined) return attribs;
  const { style, ...rest } = attribs;
  const s = cleanStyle(style);
  return s ? { ...rest, style: s } : rest;
}

const SANITIZE: sanitizeHtml.IOptions = {
  allowedTags: [
    ...sanitizeHtml.defaults.allowedTags.filter((t) => t !== 'a'),
    'a', 'img', 'font', 'center', 'span', 'div', 'table', 'thead', 'tbody', 'tfoot', 'tr', 'td', 'th', 'caption', 'col', 'colgroup', 'u', 's', 'strike', 'small', 'big', 'sub', 'sup',
  ],
  // Inert attributes only: no event handlers, no form or frame attributes, no ids/classes (no CSS hooks).
  allowedAttributes: {
    '*': ['style', 'align', 'valign', 'width', 'height', 'bgcolor', 'color', 'dir', 'lang', 'title', 'colspan', 'rowspan', 'border', 'cellpadding', 'cellspacing'],
    a: ['title'],
    img: ['src', 'alt', 'width', 'height'],
    font: ['face', 'size', 'color'],
  },
  // Remote http images are dropped outright; https ones stay in the markup and the CSP decides whether they load.
  allowedSchemes: [],
  allowedSchemesByTag: { img: ['https', 'data', 'cid'] },
  allowedSchemesAppliedToAttributes: ['src', 'href', 'cite'],
  allowProtocolRelative: false,
  disallowedTagsMode: 'discard',
  // style, script, textarea, noscript, title: their content goes with them.
  nonTextTags: ['style', 'script', 'textarea', 'option', 'noscript', 'title', 'template', 'object', 'embed', 'iframe', 'svg', 'math'],
  parseStyleAttributes: false,
  transformTags: {
    // Links do not navigate from the viewer: the target is shown as a tooltip instead.
    // Only https, cid and image data: a relative src would hit the archive itself.
    img: (_tag, attribs) => {
      const { src, ...rest } = attribs;
      const keep = src && /^(https:\/\/|cid:|data:image\/(png|gif|jpe?g|webp);)/i.test(src.trim());
      return { tagName: 'img', attribs: cleanStyleAttr(keep ? { ...rest, src: src.trim() } : rest) };
    },
    a: (_tag, attribs) => {
      const href = (attribs.href ?? '').trim();
      const shown = /^(https?:|mailto:)/i.test(href) ? href.slice(0, 500) : href ? '(a link of an unsafe kind, removed)' : '';
      const out: Record<string, string> = shown ? { title: `Link, not followed in the archive viewer: ${shown}` } : {};
      return { tagName: 'a', attribs: out };
    },
    '*': (tag, attribs) => ({ tagName: tag, attribs: cleanStyleAttr(attribs) }),
  },
};

/** Sanitised HTML fragment: no scripts, handlers, forms, frames, meta, links, or CSS that fetches. */
export function sanitizeMailHtml(html: string): string {
  return sanitizeHtml(html, SANITIZE);
}

/** Counts remote images the sanitised HTML would load when allowed. */
export function countRemoteImages(clean: string): number {
  return (clean.match(/<img\b[^>]*\bsrc="https:/gi) ?? []).length;
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** The Content-Security-Policy of the viewer document: nothing remote unless images were asked for (then https images only). */
export function viewerCsp(loadImages: boolean): string {
  return [
    "default-src 'none'",
    `img-src data: cid:${loadImages ? ' https:' : ''}`,
    "style-src 'unsafe-inline'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'self'",
    'sandbox',
  ].join('; ');
}

/** A complete HTML document for the sandboxed viewer iframe. */
export function viewerDocument(body: ExtractedBody): string {
  let content: string;
  if (body.html) content = sanitizeMailHtml(body.html);
  else if (body.text) content = `<pre class="plain">${escapeHtml(body.text)}</pre>`;
  else content = '<p class="empty">This message has no body text.</p>';
  const note = body.truncated ? '<p class="note">The body is longer than the viewer shows; download the original for all of it.</p>' : '';
  return (
    '<!doctype html><html><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">' +
    '<style>body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1b1f24;margin:12px;word-wrap:break-word}' +
    'pre.plain{white-space:pre-wrap;font:13px/1.45 ui-monospace,Menlo,Consolas,monospace}img{max-width:100%}.note,.empty{color:#666;font-style:italic}</style>' +
    `</head><body>${note}${content}</body></html>`
  );
}
