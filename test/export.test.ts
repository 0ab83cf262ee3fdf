/**
 * Exports end to end, through the HTTP API of a real in-process archive:
 * every format read back by readers nobody here wrote (Python's mailbox,
 * csv, zipfile and XML parsers, poppler's pdftotext), Bates numbering,
 * families, de-duplication, scope, hostile fields, the signed manifest and
 * offline verification (the built CLI) with tampering, and cancellation.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdir, readFile, writeFile, mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, startInProcess, testEnv } from './helpers/archive-process.js';
import { makeUser, type TestUser } from './helpers/auth.js';
import { exportFixtures, ingestFixtures, HOSTILE_SUBJECT_DECODED, type ExportFixture } from './helpers/export-fixtures.js';
import { parseDat } from '../src/export/concordance-dat.js';
import { parseOpt } from '../src/export/opticon-opt.js';
import { unescapeMboxrd } from '../src/export/mboxrd-escaper.js';
import { STANDARD_FIELDS } from '../src/export/export-request.js';
import type { RunningArchive } from '../src/main.js';
import { MODES } from './helpers/modes.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const py = (script: string, ...args: string[]) => execFileSync('python3', ['-c', script, ...args], { maxBuffer: 64 * 1024 * 1024 }).toString('utf8');

interface ExportView {
  id: string;
  status: string;
  counts: Record<string, number> | null;
  error: string | null;
  progress: { itemsDone: number; itemsTotal: number };
}

interface Manifest {
  manifest: { counts: Record<string, number>; export: { requestedBy: { id: string }; source: { q: string } } };
  items: { n: number; sha256: string; custodian: string; docs: { docId: string; endDocId: string; kind: string; sha256: string; pages: number; files: string[] }[] }[];
  duplicates: { sha256: string; duplicateOfItem: number }[];
  files: { path: string; sha256: string; size: number }[];
}

describe.each(MODES.filter((m) => m.enabled))('exports ($mode)', ({ env }) => {
  let archive: RunningArchive & { dataDir: string };
  let modeEnv: Record<string, string>;
  let base: string;
  let officer: TestUser;
  let scoped: TestUser;
  let reviewer: TestUser;
  let fixtures: ExportFixture[];
  const byKey = (k: string) => fixtures.find((f) => f.key === k)!;
  const exportDir = (id: string) => path.join(archive.dataDir, 'exports', id);

  async function runExport(user: TestUser, body: Record<string, unknown>): Promise<{ view: ExportView; dir: string; manifest: Manifest }> {
    const r = await user.fetch('/api/exports', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect(r.status, await r.clone().text()).toBe(202);
    const started = (await r.json()) as ExportView;
    const deadline = Date.now() + 60_000;
    for (;;) {
      const view = (await (await user.fetch(`/api/exports/${started.id}`)).json()) as ExportView;
      if (view.status === 'done') {
        const dir = exportDir(view.id);
        return { view, dir, manifest: JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8')) as Manifest };
      }
      if (view.status === 'failed' || view.status === 'cancelled' || Date.now() > deadline) throw new Error(`export ${view.status}: ${view.error}`);
      await new Promise((res) => setTimeout(res, 50));
    }
  }

  beforeAll(async () => {
    modeEnv = await env();
    archive = await startInProcess(modeEnv);
    base = `http://127.0.0.1:${archive.httpPort}`;
    fixtures = exportFixtures();
    await ingestFixtures(archive, fixtures);
    officer = await makeUser(archive.services, base, { roles: ['officer'] });
    scoped = await makeUser(archive.services, base, { roles: ['officer'], scope: { domains: ['corp.example'] } });
    reviewer = await makeUser(archive.services, base, { roles: ['reviewer'] });
  });
  afterAll(async () => {
    await archive?.close();
  });

  it('exports native EML files byte for byte, in a ZIP that Python reads', async () => {
    const { view, dir, manifest } = await runExport(officer, { source: { kind: 'query', q: '' }, format: 'eml' });
    expect(view.counts).toMatchObject({ matched: fixtures.length, items: fixtures.length, duplicates: 0, withdrawn: 0 });
    expect(manifest.items.map((i) => i.sha256).sort()).toEqual(fixtures.map((f) => f.sha256).sort());
    for (const item of manifest.items) {
      const native = item.docs[0]!.files.find((f) => f.endsWith('.eml'))!;
      expect(sha(await readFile(path.join(dir, native)))).toBe(item.sha256);
      expect((await readFile(path.join(dir, native))).equals(fixtures.find((f) => f.sha256 === item.sha256)!.raw)).toBe(true);
    }
    // Date order, and control numbers in that order.
    expect(manifest.items.map((i) => i.docs[0]!.docId)).toEqual(manifest.items.map((_, n) => `ARCH${String(n + 1).padStart(7, '0')}`));

    const zip = await officer.fetch(`/api/exports/${view.id}/download`);
    expect(zip.status).toBe(200);
    expect(zip.headers.get('content-type')).toBe('application/zip');
    const zipFile = path.join(await mkdtemp(path.join(os.tmpdir(), 'zip-')), 'p.zip');
    await writeFile(zipFile, Buffer.from(await zip.arrayBuffer()));
    const listing = JSON.parse(py('import sys,zipfile,json,hashlib\nz=zipfile.ZipFile(sys.argv[1])\nprint(json.dumps({n.filename: hashlib.sha256(z.read(n)).hexdigest() for n in z.infolist()}))', zipFile)) as Record<string, string>;
    expect(Object.keys(listing).slice(0, 2)).toEqual(['manifest.json', 'manifest.sig']);
    for (const f of manifest.files) expect(listing[f.path]).toBe(f.sha256);
    expect(Object.keys(listing)).toHaveLength(manifest.files.length + 2);
    const verified = await runCli(['verify-export', zipFile], testEnv(archive.dataDir, modeEnv));
    expect(verified.stdout).toContain('OK');
    expect(verified.code).toBe(0);
  });

  it('writes an mboxrd file that Python’s mailbox module reads with the right count and bodies', async () => {
    const { dir, manifest } = await runExport(officer, { source: { kind: 'query', q: '' }, format: 'mbox' });
    const out = JSON.parse(
      py(
        'import sys,mailbox,json,base64\nm=mailbox.mbox(sys.argv[1])\ndef body(msg):\n  for p in msg.walk():\n    if p.get_content_type()=="text/plain" and not p.is_multipart(): return p.get_payload(decode=True).decode("utf-8","replace")\n  return ""\nprint(json.dumps([{"raw": base64.b64encode(m.get_bytes(k)).decode(), "subject": str(m[k]["subject"] or ""), "body": body(m[k])} for k in m.keys()]))',
        path.join(dir, 'export.mbox'),
      ),
    ) as { raw: string; subject: string; body: string }[];
    expect(out).toHaveLength(fixtures.length);
    out.forEach((m, i) => {
      const original = fixtures.find((f) => f.sha256 === manifest.items[i]!.sha256)!;
      // Python does not undo mboxrd quoting; undone, the bytes are the original's (the separator's line break aside).
      const back = unescapeMboxrd(Buffer.from(m.raw, 'base64').toString('latin1'));
      expect(back.startsWith(original.raw.toString('latin1'))).toBe(true);
      expect(back.length - original.raw.length).toBeLessThanOrEqual(1);
    });
    const budget = out.find((m) => m.subject === 'Budget approval for Q3')!;
    expect(budget.body).toContain('We need budget approval before Friday.');
    expect(budget.body).toContain('>From the desk of Alice'); // escaped in the file: never a message separator
    const raw = await readFile(path.join(dir, 'export.mbox'), 'latin1');
    expect(raw).toContain('\n>From the desk of Alice');
    expect(raw).toContain('\n>>From an escaped line already.');
    const verified = await runCli(['verify-export', dir], testEnv(archive.dataDir, modeEnv));
    expect(verified.code, verified.stdout).toBe(0);
  });

  it('produces load files that parse back: DAT, OPT, EDRM XML, CSV, text, families and contiguous Bates numbers', async () => {
    const { dir, manifest } = await runExport(officer, { source: { kind: 'query', q: '' }, format: 'load', bates: { prefix: 'ACME', start: 100, padding: 5 }, pdf: { legend: 'CONFIDENTIAL' } });

    // Bates: one per page, over every page of every PDF, contiguous and unique.
    const pdfs = (await readdir(path.join(dir, 'IMAGES', '0001'))).sort();
    const stamps: string[] = [];
    for (const pdf of pdfs) {
      const pages = execFileSync('pdftotext', ['-layout', path.join(dir, 'IMAGES', '0001', pdf), '-']).toString('utf8').split('\f').slice(0, -1);
      for (const page of pages) {
        // The stamp is the last thing on a page (a slip sheet also names its parent's number).
        const found = page.match(/ACME\d{5}/g) ?? [];
        expect(found.length, page).toBeGreaterThan(0);
        stamps.push(found.at(-1)!);
        expect(page).toContain('CONFIDENTIAL');
      }
    }
    expect(new Set(stamps).size).toBe(stamps.length);
    expect(stamps).toEqual(stamps.map((_, i) => `ACME${String(100 + i).padStart(5, '0')}`));
    const budgetItem = manifest.items.find((i) => i.sha256 === byKey('budget').sha256)!;
    const budgetPdf = execFileSync('pdftotext', ['-layout', path.join(dir, budgetItem.docs[0]!.files.find((f) => f.endsWith('.pdf'))!), '-']).toString('utf8');
    expect(budgetPdf).toMatch(/From: +Alice Adams <alice@corp\.example>/);
    expect(budgetPdf).toMatch(/Subject: +Budget approval for Q3/);
    expect(budgetPdf).toContain('We need budget approval before Friday.');
    const cjkItem = manifest.items.find((i) => i.sha256 === byKey('cjk').sha256)!;
    expect(execFileSync('pdftotext', [path.join(dir, cjkItem.docs[0]!.files.find((f) => f.endsWith('.pdf'))!), '-']).toString('utf8')).toContain('Кириллица');

    // OPT: every page, the same numbers, a document break per document.
    const opt = parseOpt(await readFile(path.join(dir, 'DATA/export.opt'), 'utf8'));
    expect(opt.map((l) => l.bates)).toEqual(stamps);
    expect(opt.filter((l) => l.docBreak)).toHaveLength(manifest.manifest.counts.documents!);
    for (const l of opt) expect(l.imagePath).toMatch(/^IMAGES\\0001\\ACME\d{5}\.pdf$/);

    // DAT: header, one record per document, fields right.
    const dat = parseDat(await readFile(path.join(dir, 'DATA/export.dat'), 'utf8'));
    expect(dat[0]).toEqual([...STANDARD_FIELDS]);
    const rows = dat.slice(1).map((r) => Object.fromEntries(STANDARD_FIELDS.map((f, i) => [f, r[i]!])));
    expect(rows).toHaveLength(manifest.manifest.counts.documents!);
    for (const r of rows) expect(Object.keys(r)).toHaveLength(16);
    const budgetRow = rows.find((r) => r.SHA256HASH === byKey('budget').sha256)!;
    expect(budgetRow).toMatchObject({ FROM: 'Alice Adams <alice@corp.example>', TO: 'bob@corp.example', SUBJECT: 'Budget approval for Q3', DATESENT: '01/01/2024', MESSAGEID: 'budget-1@corp.example', MD5HASH: createHash('md5').update(byKey('budget').raw).digest('hex') });
    expect(await readFile(path.join(dir, budgetRow.NATIVEPATH!.replace(/\\/g, '/')))).toEqual(byKey('budget').raw);
    expect(await readFile(path.join(dir, budgetRow.TEXTPATH!.replace(/\\/g, '/')), 'utf8')).toContain('We need budget approval before Friday.');

    // The family: the message and its two attachments, BEGATTACH..ENDATTACH spanning all three.
    const contract = rows.find((r) => r.SHA256HASH === byKey('contract').sha256)!;
    const family = rows.filter((r) => r.BEGATTACH === contract.BEGDOC);
    expect(family).toHaveLength(3);
    expect(family.every((r) => r.ENDATTACH === family[2]!.ENDDOC)).toBe(true);
    expect(family.map((r) => r.BEGDOC)).toEqual([contract.BEGDOC, ...[1, 2].map((k) => `ACME${String(Number(contract.BEGDOC!.slice(4)) + k).padStart(5, '0')}`)]);
    const notes = family[1]!;
    expect((await readFile(path.join(dir, notes.NATIVEPATH!.replace(/\\/g, '/')), 'utf8')).trim()).toBe('Notes: the indemnity clause needs work.');
    expect(await readFile(path.join(dir, notes.TEXTPATH!.replace(/\\/g, '/')), 'utf8')).toContain('indemnity clause');
    const binary = family[2]!;
    expect(binary.NATIVEPATH).toMatch(/^NATIVES\\0001\\ACME\d{5}-002\.docx$/); // never the sender's path
    expect(sha(await readFile(path.join(dir, binary.NATIVEPATH!.replace(/\\/g, '/'))))).toBe(binary.SHA256HASH);

    // Hostile header fields come back whole (line breaks as the format writes them), without breaking the record.
    const hostile = rows.find((r) => r.SHA256HASH === byKey('hostile').sha256)!;
    // eslint-disable-next-line no-control-regex -- the separator itself
    expect(hostile.SUBJECT).toBe(HOSTILE_SUBJECT_DECODED.replace(/\r\n/g, '\n').replace(/\u0014/g, ' ').replace(/®/g, '\n'));
    expect(hostile.FROM).toContain('@SUM(1+1)*cmd');
    expect(hostile.MESSAGEID).toBe('hostile-"1"@corp.example');

    // EDRM XML: well-formed for a parser nobody here wrote, one Document per document, the attachment relationships.
    const edrm = JSON.parse(py('import sys,json,xml.etree.ElementTree as E\nr=E.parse(sys.argv[1]).getroot()\nd=r.findall("./Batch/Documents/Document")\nrel=r.findall("./Batch/Relationships/Relationship")\nprint(json.dumps({"docs":[x.get("DocID") for x in d],"rels":[[x.get("ParentDocID"),x.get("ChildDocID")] for x in rel],"subjects":[t.get("TagValue") for t in r.iter("Tag") if t.get("TagName")=="#SUBJECT"]}))', path.join(dir, 'DATA/export.xml'))) as { docs: string[]; rels: string[][]; subjects: string[] };
    expect(edrm.docs).toEqual(rows.map((r) => r.BEGDOC));
    expect(edrm.rels).toEqual([
      [contract.BEGDOC, family[1]!.BEGDOC],
      [contract.BEGDOC, family[2]!.BEGDOC],
    ]);
    // XML 1.0 cannot carry U+0014: it becomes U+FFFD; line breaks are kept as character references.
    // eslint-disable-next-line no-control-regex -- the separator itself
    expect(edrm.subjects).toContain(HOSTILE_SUBJECT_DECODED.replace(/\u0014/g, '\ufffd'));

    // CSV: Python's csv reads the same rows; cells a spreadsheet would run are neutralised.
    const csv = JSON.parse(py('import sys,csv,json\nprint(json.dumps(list(csv.reader(open(sys.argv[1], encoding="utf-8-sig", newline="")))))', path.join(dir, 'DATA/metadata.csv'))) as string[][];
    expect(csv[0]).toEqual([...STANDARD_FIELDS]);
    expect(csv).toHaveLength(rows.length + 1);
    const hostileCsv = csv.find((r) => r[13] === byKey('hostile').sha256)!;
    expect(hostileCsv[9]).toBe(`'${HOSTILE_SUBJECT_DECODED}`);
    expect(hostileCsv[5]!.startsWith("'@SUM")).toBe(true);
    for (const row of csv) for (const cell of row) expect(cell).not.toMatch(/^[=+\-@\t\r]/);

    const verified = await runCli(['verify-export', dir], testEnv(archive.dataDir, modeEnv));
    expect(verified.code, verified.stdout).toBe(0);
  });

  it('renders one combined PDF with the same numbering', async () => {
    const { dir, manifest } = await runExport(officer, { source: { kind: 'query', q: '' }, format: 'pdf', pdf: { mode: 'combined' }, bates: { prefix: 'CMB', start: 1, padding: 6 } });
    const pages = execFileSync('pdftotext', [path.join(dir, 'IMAGES/production.pdf'), '-']).toString('utf8').split('\f').slice(0, -1);
    expect(pages.map((p) => p.match(/CMB\d{6}/g)!.at(-1))).toEqual(pages.map((_, i) => `CMB${String(i + 1).padStart(6, '0')}`));
    expect(pages.length).toBe(manifest.manifest.counts.pages);
    const opt = parseOpt(await readFile(path.join(dir, 'DATA/export.opt'), 'utf8'));
    expect(opt).toHaveLength(pages.length);
    expect(new Set(opt.map((l) => l.imagePath))).toEqual(new Set(['IMAGES\\production.pdf']));
  });

  it('de-duplicates globally or per custodian, never splitting a family', async () => {
    const global = await runExport(officer, { source: { kind: 'query', q: '' }, format: 'eml', dedup: 'global' });
    expect(global.view.counts).toMatchObject({ matched: fixtures.length, items: fixtures.length - 1, duplicates: 1 });
    expect(global.manifest.duplicates).toEqual([{ sha256: expect.any(String), custodian: 'alice@corp.example', duplicateOfItem: 0 }]);
    expect([byKey('budget').sha256, byKey('budget-copy').sha256]).toContain(global.manifest.duplicates[0]!.sha256);

    const perCustodian = await runExport(officer, { source: { kind: 'query', q: 'subject:budget OR subject:contract' }, format: 'load', dedup: 'custodian', custodians: ['alice@corp.example', 'bob@corp.example'] });
    // budget (+ its copy, suppressed) and contract, each once for alice and once for bob.
    expect(perCustodian.view.counts).toMatchObject({ matched: 3, items: 4, duplicates: 2 });
    expect(perCustodian.manifest.items.map((i) => i.custodian).sort()).toEqual(['alice@corp.example', 'alice@corp.example', 'bob@corp.example', 'bob@corp.example']);
    const contractCopies = perCustodian.manifest.items.filter((i) => i.sha256 === byKey('contract').sha256);
    expect(contractCopies.map((c) => c.docs.length)).toEqual([3, 3]);
  });

  it("exports a case's held set: exactly the messages its active holds cover", async () => {
    const actor = { user: 'officer@corp.example', scope: null };
    const c = await archive.services.retention.createCase({ name: 'Matter 42', matterNumber: 'M-42', custodians: ['alice@corp.example'] }, actor);
    const unheld = await officer.fetch('/api/exports', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ source: { kind: 'case', caseId: c.id }, format: 'eml' }) });
    expect(unheld.status).toBe(400);
    await archive.services.retention.createHold({ caseId: c.id, name: 'custodian hold', custodians: ['alice@corp.example'] }, actor);
    const { manifest } = await runExport(officer, { source: { kind: 'case', caseId: c.id }, format: 'eml' });
    const held = await archive.services.search.search({ q: 'participant:alice@corp.example', size: 500, sort: 'date', order: 'desc', facets: false });
    expect(held.total).toBeGreaterThan(0);
    expect(held.total).toBeLessThan(fixtures.length);
    expect(manifest.items.map((i) => i.sha256).sort()).toEqual(held.hits.map((h) => h.id).sort());
    const unknown = await officer.fetch('/api/exports', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ source: { kind: 'case', caseId: 'no-such-case' }, format: 'eml' }) });
    expect(unknown.status).toBe(404);
  });

  it('exports only what the requester may see, and only officers export', async () => {
    const { manifest } = await runExport(scoped, { source: { kind: 'query', q: '' }, format: 'eml' });
    expect(manifest.items.map((i) => i.sha256)).not.toContain(byKey('outside').sha256);
    expect(manifest.items).toHaveLength(fixtures.length - 1);
    expect(manifest.manifest.export.requestedBy.id).toBe(scoped.email);
    // Someone else's export is not there for them.
    const mine = (await (await scoped.fetch('/api/exports')).json()) as { exports: { id: string }[] };
    const theirs = (await (await officer.fetch('/api/exports')).json()) as { exports: { id: string }[] };
    expect(mine.exports).toHaveLength(1);
    expect((await scoped.fetch(`/api/exports/${theirs.exports[0]!.id}`)).status).toBe(404);
    expect((await scoped.fetch(`/api/exports/${theirs.exports[0]!.id}/download`)).status).toBe(404);
    expect((await reviewer.fetch('/api/exports', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ source: { kind: 'query', q: '' }, format: 'eml' }) })).status).toBe(403);
    const bad = await officer.fetch('/api/exports', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ source: { kind: 'query', q: 'budget AND (' }, format: 'eml' }) });
    expect(bad.status).toBe(400);
  });

  it('signs the manifest with the published key, and verify-export names a tampered item', async () => {
    const { dir, manifest } = await runExport(officer, { source: { kind: 'query', q: '' }, format: 'load' });
    const key = (await (await fetch(`${base}/api/keys/signing`)).json()) as { publicKey: string; fingerprint: string };
    const sig = JSON.parse(await readFile(path.join(dir, 'manifest.sig'), 'utf8')) as { fingerprint: string; manifestSha256: string };
    expect(sig.fingerprint).toBe(key.fingerprint);
    expect(sig.manifestSha256).toBe(sha(await readFile(path.join(dir, 'manifest.json'))));
    const keyFile = path.join(dir, '..', 'trusted.pem');
    await writeFile(keyFile, key.publicKey);
    const env = testEnv(archive.dataDir, modeEnv);
    const ok = await runCli(['verify-export', dir, '--public-key', keyFile], env);
    expect(ok.code, ok.stdout).toBe(0);
    expect(ok.stdout).toContain('(the trusted key)');

    // One changed byte in one native.
    const victim = manifest.items.find((i) => i.sha256 === byKey('contract').sha256)!;
    const native = path.join(dir, victim.docs[0]!.files.find((f) => f.endsWith('.eml'))!);
    const bytes = await readFile(native);
    bytes[100] = bytes[100]! ^ 0x01;
    await writeFile(native, bytes);
    const bad = await runCli(['verify-export', dir], env);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toContain(victim.docs[0]!.docId);
    expect(bad.stdout).toContain(victim.sha256);
    expect(bad.stdout).toMatch(/FAILED/);
    bytes[100] = bytes[100]! ^ 0x01;
    await writeFile(native, bytes);

    // One changed byte in the manifest: the signature no longer holds.
    const m = await readFile(path.join(dir, 'manifest.json'));
    const i = m.indexOf('"custodian":"') + 13;
    m[i] = m[i]! ^ 0x01;
    await writeFile(path.join(dir, 'manifest.json'), m);
    const forged = await runCli(['verify-export', dir], env);
    expect(forged.code).toBe(1);
    expect(forged.stdout).toContain('signature INVALID');
  });

  it('names the item whose message changed inside an MBOX', async () => {
    const { dir, manifest } = await runExport(officer, { source: { kind: 'query', q: '' }, format: 'mbox' });
    const file = path.join(dir, 'export.mbox');
    const text = await readFile(file, 'latin1');
    const at = text.indexOf('indemnity'); // not in any message: pick the contract body instead
    const pos = at >= 0 ? at : text.indexOf('Please review the contract');
    const buf = Buffer.from(text, 'latin1');
    buf[pos] = buf[pos]! ^ 0x20;
    await writeFile(file, buf);
    const r = await runCli(['verify-export', dir], testEnv(archive.dataDir, modeEnv));
    expect(r.code).toBe(1);
    const victim = manifest.items.find((i) => i.sha256 === byKey('contract').sha256)!;
    expect(r.stdout).toContain(`item ${victim.n} (${victim.docs[0]!.docId}`);
    expect(r.stdout).toContain('message in the MBOX differs');
  });

  it('cancels a queued export', async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'archive-test-'));
    const idle = await startInProcess({ ...(await env()), ARCHIVE_SERVE_WORKERS: 'false' }, dataDir);
    try {
      const d = await idle.services.exports.start({ source: { kind: 'query', q: '' }, format: 'eml' }, { id: 'someone' }, null);
      const c = await idle.services.exports.cancel(d.id, { id: 'someone' });
      expect(c.status).toBe('cancelled');
      idle.services.startWorkers();
      await idle.services.queue.whenIdle('export', 10_000);
      expect((await idle.services.exports.get(d.id, 'operator')).status).toBe('cancelled');
      await expect(idle.services.exports.cancel(d.id, { id: 'other' })).rejects.toThrow(/not found/);
    } finally {
      await idle.close();
    }
  });
});
