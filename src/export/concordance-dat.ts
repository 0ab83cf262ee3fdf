/**
 * Concordance DAT load files: UTF-8 (with a byte-order mark), every value
 * quoted with þ (U+00FE), values separated by ASCII 20 (U+0014), records
 * ended by CRLF, and line breaks inside a value written as ® (U+00AE).
 *
 * Field values are hostile (promise 8): a subject may hold þ, the separator,
 * line breaks or NULs. A þ inside a value is doubled (þþ), as a quote inside
 * a CSV cell is, so a reader that honours the quote reads the value back
 * whole; other control characters (the separator among them) become spaces.
 * What cannot be told apart afterwards: a literal ® in a value and a line
 * break (the format has no escape for it).
 */
export const DAT_SEPARATOR = '\u0014';
export const DAT_QUOTE = '\u00fe';
export const DAT_NEWLINE = '\u00ae';
export const DAT_BOM = '\ufeff';

// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/g;

/** One value, made safe for a DAT record (without its quotes). */
export function datValue(v: string): string {
  return v.replace(/\r\n|\r|\n/g, DAT_NEWLINE).replace(CONTROL, ' ').replace(/\u00fe/g, DAT_QUOTE + DAT_QUOTE);
}

/** One record, CRLF-terminated. */
export function datRecord(values: string[]): string {
  return values.map((v) => DAT_QUOTE + datValue(v) + DAT_QUOTE).join(DAT_SEPARATOR) + '\r\n';
}

/**
 * Parses a DAT file back into records (header first). Strict: anything
 * outside the quoting rules above throws, naming the offset. Used by
 * verify-export and tests; a reader for what this module writes.
 */
export function parseDat(text: string): string[][] {
  let i = text.startsWith(DAT_BOM) ? 1 : 0;
  const records: string[][] = [];
  let record: string[] = [];
  while (i < text.length) {
    if (text[i] !== DAT_QUOTE) throw new Error(`DAT: expected þ at offset ${i}`);
    i++;
    let value = '';
    for (;;) {
      const q = text.indexOf(DAT_QUOTE, i);
      if (q < 0) throw new Error(`DAT: unterminated value at offset ${i}`);
      value += text.slice(i, q);
      if (text[q + 1] === DAT_QUOTE) {
        value += DAT_QUOTE;
        i = q + 2;
        continue;
      }
      i = q + 1;
      break;
    }
    record.push(value.replace(/\u00ae/g, '\n'));
    if (text[i] === DAT_SEPARATOR) {
      i++;
    } else if (text.startsWith('\r\n', i)) {
      records.push(record);
      record = [];
      i += 2;
    } else throw new Error(`DAT: expected separator or CRLF at offset ${i}`);
  }
  if (record.length) throw new Error('DAT: last record not terminated');
  return records;
}
