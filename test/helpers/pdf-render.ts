/** Renders PDFs with pdftoppm (Debian poppler-utils) for layout tests. */
import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Renders a PDF to PNG pages (kept in `dir` to look at) and returns, per page, the share of non-white pixels. */
export async function renderPdf(pdf: Buffer, dir: string, name: string): Promise<number[]> {
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, `${name}.pdf`);
  await writeFile(file, pdf);
  await run('pdftoppm', ['-png', '-r', '60', file, path.join(dir, name)]);
  await run('pdftoppm', ['-gray', '-r', '30', file, path.join(dir, `${name}-g`)]);
  const pgms = (await readdir(dir)).filter((f) => f.startsWith(`${name}-g`) && f.endsWith('.pgm')).sort();
  const out: number[] = [];
  for (const f of pgms) {
    const b = await readFile(path.join(dir, f));
    // Binary PGM: "P5\n<w> <h>\n255\n" then one byte per pixel.
    const header = /^P5\s+(\d+)\s+(\d+)\s+(\d+)\s/.exec(b.subarray(0, 40).toString('latin1'))!;
    const pixels = b.subarray(header[0].length);
    let dark = 0;
    for (const p of pixels) if (p < 200) dark++;
    out.push(dark / pixels.length);
  }
  return out;
}

