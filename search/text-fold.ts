/**
 * Text folding and tokenisation shared by the query parser and by whatever
 * feeds text into the index.
 *
 * Search results must be identical on SQLite FTS5 and on OpenSearch, and the
 * two engines fold case and accents differently (FTS5 `unicode61` only knows
 * Latin diacritics; OpenSearch `asciifolding` knows others, `icu_folding` more
 * still). So we do not trust either engine's folding: the query side and the
 * index side both run the text through {@link foldText} / {@link tokenizeText}
 * and the engines only ever see text that is already folded.
 */

/**
 * Combining marks we treat as "diacritics" and drop after NFKD: only the
 * generic diacritic blocks, on purpose. Stripping every `\p{M}` would also
 * drop Japanese voicing marks (ガ → カ), Thai vowels and Indic vowel signs,
 * which change the word rather than decorate it.
 */
const DIACRITIC_BLOCKS: readonly (readonly [number, number])[] = [
  [0x0300, 0x036f], // Combining Diacritical Marks
  [0x1ab0, 0x1aff], // Combining Diacritical Marks Extended
  [0x1dc0, 0x1dff], // Combining Diacritical Marks Supplement
  [0x20d0, 0x20ff], // Combining Diacritical Marks for Symbols
  [0xfe20, 0xfe2f], // Combining Half Marks
];
const MARK_RE = /\p{M}/gu;

function dropDiacritic(mark: string): string {
  const cp = mark.codePointAt(0) ?? 0;
  return DIACRITIC_BLOCKS.some(([lo, hi]) => cp >= lo && cp <= hi) ? '' : mark;
}

/**
 * Letters that are "accented" to a reader but have no Unicode decomposition,
 * so NFKD leaves them alone. Mapped the way people type them on an English
 * keyboard. `ς` (final sigma) is here because `toLowerCase` produces it
 * depending on the surrounding letters, which would make a word fold
 * differently alone than inside a sentence.
 */
const LETTER_FOLDS: Record<string, string> = {
  ß: 'ss',
  æ: 'ae',
  œ: 'oe',
  ø: 'o',
  ł: 'l',
  đ: 'd',
  ð: 'd',
  þ: 'th',
  ı: 'i',
  ħ: 'h',
  ŧ: 't',
  ς: 'σ',
};
const LETTER_FOLD_RE = new RegExp(`[${Object.keys(LETTER_FOLDS).join('')}]`, 'g');

/** A word character after folding: any letter, digit or remaining combining mark. */
const TOKEN_RE = /[\p{L}\p{N}\p{M}]+/gu;

/** Han ideographs, Hiragana, Katakana and Hangul: scripts written without spaces between words. */
const CJK_RE = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}]/u;

/**
 * Folds text for matching: Unicode compatibility decomposition (NFKD, so
 * full-width `ＡＢＣ` → `abc` and `ﬁ` → `fi`), removal of diacritics
 * (`Müller` → `muller`), lower-casing, a few letters without a decomposition
 * (`ß` → `ss`, `ø` → `o`, `ł` → `l`), then NFC so that CJK and Hangul come
 * back in their composed form (`ガ` stays `ガ`).
 *
 * Idempotent: `foldText(foldText(s)) === foldText(s)`.
 */
export function foldText(s: string): string {
  return s
    .normalize('NFKD')
    .replace(MARK_RE, dropDiacritic)
    .toLowerCase()
    .replace(LETTER_FOLD_RE, (c) => LETTER_FOLDS[c] ?? c)
    .normalize('NFC');
}

/**
 * Splits text into folded words: maximal runs of letters, digits and
 * combining marks after {@link foldText}. Everything else (spaces,
 * punctuation, `@`, `.`, `-`, `_`, `'`, emoji) separates words, so
 * `e-mail` → `["e", "mail"]` and `alice@example.com` → `["alice", "example", "com"]`.
 *
 * A run of CJK characters is one word (`契約書` → `["契約書"]`); the index
 * matches such words by substring because CJK text has no spaces.
 */
export function tokenizeText(s: string): string[] {
  return foldText(s).match(TOKEN_RE) ?? [];
}

/** True when `s` contains a CJK or Hangul character, i.e. it must be matched by substring, not by word. */
export function hasCjk(s: string): boolean {
  return CJK_RE.test(s);
}
