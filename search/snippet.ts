/**
 * Snippets with highlights, made in our code from the stored text, so both
 * index engines give the same snippet. The output is HTML: the text is
 * escaped and only `<mark>` tags are added, so a UI may insert it as is.
 */
import { foldText } from './text-fold.js';
import type { QueryNode } from './query-ast.js';

/** Characters of context around the first hit. */
const WINDOW = 160;

/** Words a query looks for in text fields (terms, phrase words, prefixes), for highlighting. */
export function highlightTerms(node: QueryNode): { words: string[]; prefixes: string[] } {
  const words: string[] = [];
  const prefixes: string[] = [];
  const visit = (n: QueryNode, negated: boolean) => {
    switch (n.type) {
      case 'and':
      case 'or':
        n.children.forEach((c) => visit(c, negated));
        break;
      case 'not':
        visit(n.child, !negated);
        break;
      case 'term':
        if (!negated && ['any', 'body', 'subject', 'attachment'].includes(n.field)) (n.prefix ? prefixes : words).push(n.value);
        break;
      case 'phrase':
        if (!negated && ['any', 'body', 'subject'].includes(n.field)) words.push(...n.terms);
        break;
      default:
        break;
    }
  };
  visit(node, false);
  return { words, prefixes };
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

const WORD_RE = /[\p{L}\p{N}\p{M}]+/gu;

/**
 * A window of `text` around the first word matching the query, with every
 * matching word in the window wrapped in `<mark>`. Without a match, the start
 * of the text.
 */
export function makeSnippet(text: string, query: QueryNode): string {
  const { words, prefixes } = highlightTerms(query);
  const wordSet = new Set(words.map(foldText));
  const matches = (w: string) => {
    const f = foldText(w);
    if (wordSet.has(f)) return true;
    if (prefixes.some((p) => f.startsWith(p))) return true;
    // CJK: the query word is a substring of a run of CJK text.
    return words.some((q) => q.length > 0 && /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}]/u.test(q) && f.includes(q));
  };
  const flat = text.replace(/\s+/g, ' ').trim();
  let first = -1;
  if (wordSet.size || prefixes.length) {
    for (const m of flat.matchAll(WORD_RE)) {
      if (matches(m[0])) {
        first = m.index!;
        break;
      }
      if (m.index! > 2_000_000) break;
    }
  }
  const start = first < 0 ? 0 : Math.max(0, first - WINDOW / 2);
  const slice = flat.slice(start, start + WINDOW * 1.5);
  let out = '';
  let last = 0;
  if (first >= 0) {
    for (const m of slice.matchAll(WORD_RE)) {
      if (!matches(m[0])) continue;
      out += escapeHtml(slice.slice(last, m.index)) + `<mark>${escapeHtml(m[0])}</mark>`;
      last = m.index! + m[0].length;
    }
  }
  out += escapeHtml(slice.slice(last));
  return (start > 0 ? '…' : '') + out + (start + slice.length < flat.length ? '…' : '');
}
