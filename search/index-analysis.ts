/**
 * Index-side text analysis, shared by every index backend so that SQLite and
 * OpenSearch see exactly the same tokens (the engines only split on spaces).
 *
 * CJK has no spaces between words, so a CJK run is indexed one character per
 * token; a CJK query word becomes a phrase of its characters, which matches it
 * as a substring, the same way on both engines.
 */
import { foldText, tokenizeText, hasCjk } from './text-fold.js';

const CJK_CHAR_RE = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}]/u;

/** Splits one folded word into index tokens: CJK characters alone, other runs kept together. */
export function splitWord(word: string): string[] {
  if (!hasCjk(word)) return [word];
  const out: string[] = [];
  let run = '';
  for (const ch of word) {
    if (CJK_CHAR_RE.test(ch)) {
      if (run) out.push(run);
      run = '';
      out.push(ch);
    } else run += ch;
  }
  if (run) out.push(run);
  return out;
}

/** The tokens the index stores for a text. */
export function analyze(text: string): string[] {
  const out: string[] = [];
  for (const w of tokenizeText(text)) for (const t of splitWord(w)) out.push(t);
  return out;
}

/** The tokens as one space-joined string, the form both engines index (whitespace tokenizer). */
export function analyzed(text: string): string {
  return analyze(text).join(' ');
}

/**
 * Tokens for a query word (already folded by the parser). One token is a
 * term; several (a CJK word, or `abc契約`) must be matched as a phrase.
 */
export function queryTokens(value: string): string[] {
  return analyze(value);
}

export { foldText };
