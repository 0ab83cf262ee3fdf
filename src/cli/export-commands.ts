/**
 * `archive export` (start an export and follow it with a progress bar;
 * status, cancel, resume) and `archive verify-export` (check a package
 * offline). With the in-process queue the export runs in this process;
 * with Redis a worker runs it and this command follows its record.
 */
import { createWriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import type { Config } from '../config/config.js';
import type { Logger } from '../logger.js';
import { createServices, type Services } from '../services.js';
import { AppError } from '../errors.js';
import { verifyPackage, zipPackage, ALL_FIELDS, type ExportRecordData, type ExportRequestInput } from '../export/index.js';
import { ProgressLine } from './progress.js';

type Ctx = { config: Config; log: Logger };

export const EXPORT_HELP = `  export --q QUERY --format eml|mbox|pdf|load --out DIR   Export matching mail as a
                        signed package, with a progress bar (see README "Exports");
                        export status|cancel|resume <id>
  verify-export <package-dir-or-zip> [--public-key FILE]  Check a package offline:
                        signature and every file; exit 1 naming what differs`;

const USAGE = `archive export --q QUERY --format eml|mbox|pdf|load --out DIR
    [--bates-prefix P] [--bates-start N] [--bates-padding N] [--volume V]
    [--pdf per-message|combined] [--legend TEXT]
    [--dedup none|global|custodian] [--custodian ADDRESS ...]
    [--field FIELD[=NAME] ...] [--zip FILE] [--no-wait] [--json]
archive export status <id> [--json]
archive export cancel <id>
archive export resume <id>`;

/** Who the command line acts as: the operating-system user. The command line is unrestricted (operator access). */
function cliUser(): { id: string } {
  let name = 'unknown';
  try {
    name = userInfo().username;
  } catch {
    // no passwd entry (containers)
  }
  return { id: `cli:${name}` };
}

export async function exportCommand(args: string[], { config, log }: Ctx): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      q: { type: 'string' },
      format: { type: 'string' },
      out: { type: 'string' },
      'bates-prefix': { type: 'string' },
      'bates-start': { type: 'string' },
      'bates-padding': { type: 'string' },
      volume: { type: 'string' },
      pdf: { type: 'string' },
      legend: { type: 'string' },
      dedup: { type: 'string' },
      custodian: { type: 'string', multiple: true },
      field: { type: 'string', multiple: true },
      zip: { type: 'string' },
      'no-wait': { type: 'boolean' },
      json: { type: 'boolean' },
    },
  });
  const [action, id] = positionals;
  if (action && !['status', 'cancel', 'resume'].includes(action)) {
    console.error(USAGE);
    return 2;
  }
  if (action && !id) {
    console.error(USAGE);
    return 2;
  }
  if (!action && (values.q === undefined || !values.format || !values.out)) {
    console.error(USAGE);
    return 2;
  }
  const services = await createServices(config, log);
  try {
    if (action === 'status') {
      const d = await services.exports.get(id!, 'operator');
      if (values.json) console.log(JSON.stringify(d, null, 2));
      else printStatus(d);
      return 0;
    }
    if (action === 'cancel') {
      const d = await services.exports.cancel(id!, 'operator');
      await services.exports.audit(d, 'export.cancel', 'success', { via: 'cli', by: cliUser().id });
      console.log(d.status === 'cancelled' ? `export ${d.id} cancelled` : `export ${d.id}: cancellation requested; it stops at its next checkpoint`);
      return 0;
    }
    let data: ExportRecordData;
    if (action === 'resume') {
      data = await services.exports.resume(id!);
      await services.exports.audit(data, 'export.resume', 'success', { via: 'cli', by: cliUser().id });
    } else {
      const fields = values.field?.map((f) => {
        const [field, name] = f.split('=', 2);
        if (!(ALL_FIELDS as readonly string[]).includes(field!)) throw new AppError('validation_failed', 400, `unknown field ${field}; one of ${ALL_FIELDS.join(', ')}`);
        return { field: field as (typeof ALL_FIELDS)[number], name: name ?? field! };
      });
      const input: ExportRequestInput = {
        source: { kind: 'query', q: values.q! },
        format: values.format as ExportRequestInput['format'],
        bates: {
          ...(values['bates-prefix'] !== undefined ? { prefix: values['bates-prefix'] } : {}),
          ...(values['bates-start'] !== undefined ? { start: Number(values['bates-start']) } : {}),
          ...(values['bates-padding'] !== undefined ? { padding: Number(values['bates-padding']) } : {}),
        },
        pdf: { ...(values.pdf ? { mode: values.pdf as 'per-message' | 'combined' } : {}), ...(values.legend ? { legend: values.legend } : {}) },
        ...(values.dedup ? { dedup: values.dedup as 'none' | 'global' | 'custodian' } : {}),
        ...(values.custodian ? { custodians: values.custodian } : {}),
        ...(fields ? { fields } : {}),
        ...(values.volume ? { volume: values.volume } : {}),
      };
      data = await services.exports.start(input, cliUser(), null, { packageDir: values.out });
      await services.exports.audit(data, 'export.create', 'success', { via: 'cli', packageDir: data.packageDir });
      if (!values.json) console.error(`export ${data.id} started: ${data.packageDir}`);
    }
    if (values['no-wait']) {
      console.log(values.json ? JSON.stringify({ id: data.id, status: data.status }) : data.id);
      return 0;
    }
    const final = await follow(services, data.id);
    if (final.status === 'done' && values.zip) {
      await pipeline(zipPackage(final.packageDir, { mtime: final.finishedAt ? new Date(final.finishedAt) : undefined }), createWriteStream(values.zip));
      if (!values.json) console.error(`wrote ${values.zip}`);
    }
    if (values.json) console.log(JSON.stringify(final, null, 2));
    else printStatus(final);
    return final.status === 'done' ? 0 : final.status === 'interrupted' ? 130 : 1;
  } finally {
    await services.close();
  }
}

/**
 * Follows an export to its end with a progress bar. With the in-process
 * queue the export runs here; Ctrl-C stops it at its next checkpoint, to be
 * resumed with `archive export resume <id>`.
 */
type Followed = Omit<ExportRecordData, 'status'> & { status: ExportRecordData['status'] | 'interrupted' };

async function follow(services: Services, id: string): Promise<Followed> {
  if (services.queue.driver === 'inline') services.startWorkers();
  const progress = new ProgressLine(process.stderr, 200);
  let interrupted = false;
  const onSigint = () => {
    interrupted = true;
    services.exportJob.stop();
  };
  process.once('SIGINT', onSigint);
  try {
    for (;;) {
      const d = await services.exports.get(id, 'operator');
      if (d.status === 'done' || d.status === 'failed' || d.status === 'cancelled') return d;
      if (interrupted && !d.runner) {
        console.error(`\nexport ${id} interrupted; resume it with: archive export resume ${id}`);
        return { ...d, status: 'interrupted' };
      }
      progress.update(bar(d));
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    process.off('SIGINT', onSigint);
    progress.done();
  }
}

function bar(d: ExportRecordData): string {
  const p = d.progress;
  const frac = p.itemsTotal ? p.itemsDone / p.itemsTotal : 0;
  const width = 30;
  const filled = Math.round(frac * width);
  const phase = p.phase === 'listing' ? `listing… ${p.itemsTotal} matched` : p.phase;
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${(frac * 100).toFixed(0).padStart(3)}%  ${p.itemsDone}/${p.itemsTotal} items  ${p.documents} docs  ${p.pages} pages  ${(p.bytes / 1048576).toFixed(1)} MB  ${phase}`;
}

function printStatus(d: Followed): void {
  console.log(`export   ${d.id}`);
  console.log(`status   ${d.status}${d.cancelRequested && d.status === 'running' ? ' (cancellation requested)' : ''}`);
  console.log(`format   ${d.request.format}   source ${JSON.stringify(d.request.source)}`);
  console.log(`package  ${d.packageDir}`);
  console.log(`progress ${d.progress.itemsDone}/${d.progress.itemsTotal} items, ${d.progress.documents} documents, ${d.progress.pages} pages, ${d.progress.bytes} bytes`);
  if (d.counts) console.log(`counts   ${Object.entries(d.counts).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  if (d.manifestSha256) console.log(`manifest sha256 ${d.manifestSha256}`);
  if (d.error) console.log(`error    ${d.error}`);
}

export async function verifyExportCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { 'public-key': { type: 'string' }, json: { type: 'boolean' } } });
  if (positionals.length !== 1) {
    console.error('archive verify-export <package-dir-or-zip> [--public-key FILE] [--json]');
    return 2;
  }
  const publicKeyPem = values['public-key'] ? await readFile(values['public-key'], 'utf8') : undefined;
  const report = await verifyPackage(positionals[0]!, { publicKeyPem });
  if (values.json) console.log(JSON.stringify(report, null, 2));
  else {
    for (const p of report.problems) {
      const items = p.items?.map((it) => `item ${it.n} (${it.docIds[0] ?? ''}, sha256 ${it.sha256})`).join('; ');
      console.log(`BAD ${p.path ?? ''}${items ? ` [${items}]` : ''}: ${p.problem}`);
    }
    console.log(`signature ${report.signature.valid ? 'valid' : 'INVALID'}, key ${report.signature.fingerprint ?? 'unknown'}${report.signature.trusted === null ? ' (not compared with a trusted key: pass --public-key)' : report.signature.trusted ? ' (the trusted key)' : ' (NOT the trusted key)'}`);
    console.log(`${report.ok ? 'OK' : 'FAILED'}: export ${report.exportId ?? '?'}, ${report.checkedFiles} files checked, ${report.problems.length} problems`);
  }
  return report.ok ? 0 : 1;
}
