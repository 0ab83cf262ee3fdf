/**
 * The Opticon OPT image cross-reference: one line per page,
 * `page Bates,volume,image path,document break,folder break,box break,pages`.
 * Pages are PDF pages here: every page of a document names the PDF file
 * that holds it, the first page of each document carries `Y` and the
 * document's page count. Control numbers, volume and paths are built from
 * restricted characters (see export-request.ts), so no value holds a comma.
 */
export interface OptPage {
  bates: string;
  volume: string;
  /** Package-relative path with backslashes, as review platforms expect. */
  imagePath: string;
  /** Set on the first page of a document: its page count. */
  documentPages?: number;
}

export function optLine(p: OptPage): string {
  return `${p.bates},${p.volume},${p.imagePath},${p.documentPages ? 'Y' : ''},,,${p.documentPages ?? ''}\r\n`;
}

export interface ParsedOptLine {
  bates: string;
  volume: string;
  imagePath: string;
  docBreak: boolean;
  pages?: number;
}

export function parseOpt(text: string): ParsedOptLine[] {
  return text
    .split('\r\n')
    .filter((l) => l.length)
    .map((l, n) => {
      const f = l.split(',');
      if (f.length !== 7) throw new Error(`OPT line ${n + 1}: ${f.length} fields, expected 7`);
      return { bates: f[0]!, volume: f[1]!, imagePath: f[2]!, docBreak: f[3] === 'Y', ...(f[6] ? { pages: Number(f[6]) } : {}) };
    });
}
