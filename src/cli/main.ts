/**
 * The `archive` command line. Each command returns its exit code; output for
 * people goes to stdout, logs go to stderr (so `--json` output stays clean).
 */
import { parseArgs } from 'node:util';
import { loadConfig, redactConfig, type Config } from '../config/config.js';
import { createLogger, type Logger } from '../logger.js';
import { ConfigError } from '../errors.js';
import { startArchive } from '../main.js';
import { createServices } from '../services.js';
import { importPaths, reindexFromStore, INDEX_JOB, type ImportSummary } from '../../ingest/index.js';
import { checkFixity } from '../integrity/fixity-check.js';
import { collectStats } from './stats.js';
import { ProgressLine } from './progress.js';

const HELP = `Usage: archive <command> [options]

Commands:
  serve                 Run the archive: HTTP API and SMTP journal endpoint
  worker                Run background workers only (indexing); for scale-out
  config                Print the effective configuration (secrets redacted)
  import <path>...      Import .eml files, directories of them and MBOX files
                        (--no-index: store only; the server indexes them later)
  reindex               Rebuild the search index from the object store alone
  jobs [failed|retry <id>]  Job counts, failed jobs, retry a failed job
  stats [--json]        Message, envelope and byte counts
  verify [--json]       Re-hash every stored object; exit 1 on any mismatch
  help                  This text

Configuration comes from ARCHIVE_* environment variables; see README.md.`;

type Command = (args: string[], ctx: { config: Config; log: Logger }) => Promise<number>;

const commands: Record<string, Command> = {
  serve: async (_args, { config, log }) => {
    const archive = await startArchive(config, log);
    await untilSignal(log);
    await archive.close();
    return 0;
  },

  config: async (args, { config }) => {
    const { values } = parseArgs({ args, options: { json: { type: 'boolean' } } });
    const redacted = redactConfig(config);
    if (values.json) console.log(JSON.stringify(redacted, null, 2));
    else for (const [k, v] of Object.entries(redacted)) console.log(`${k}=${v === undefined ? '' : Array.isArray(v) ? v.join(',') : v}`);
    return 0;
  },

  import: async (args, { config, log }) => {
    const { positionals, values } = parseArgs({
      args,
      allowPositionals: true,
      options: { json: { type: 'boolean' }, concurrency: { type: 'string' }, 'no-index': { type: 'boolean' } },
    });
    if (!positionals.length) {
      console.error('archive import: give one or more files or directories');
      return 2;
    }
    const services = await createServices(config, log);
    // With the in-process queue, this process indexes what it imports (and
    // waits for it); with Redis, the workers do.
    const indexHere = !values['no-index'] && services.queue.driver === 'inline';
    if (indexHere) services.startWorkers();
    const progress = new ProgressLine(process.stderr);
    let summary: ImportSummary;
    try {
      summary = await importPaths(services.pipeline, positionals, {
        concurrency: values.concurrency ? Number(values.concurrency) : undefined,
        onProgress: (s) => progress.update(`imported ${s.imported}  duplicates ${s.duplicates}  failed ${s.failed}  ${(s.bytes / 1048576).toFixed(1)} MB`),
      });
      if (indexHere) {
        progress.update('indexing…');
        await services.queue.whenIdle(INDEX_JOB, 24 * 3600 * 1000);
      }
    } finally {
      progress.done();
      await services.close();
    }
    if (values.json) console.log(JSON.stringify(summary, null, 2));
    else printImportSummary(summary);
    return summary.failed ? 1 : 0;
  },

  worker: async (_args, { config, log }) => {
    const services = await createServices(config, log);
    services.startWorkers();
    log.info({ queue: services.queue.driver, concurrency: config.ARCHIVE_INDEX_CONCURRENCY }, 'worker running');
    await untilSignal(log);
    await services.close();
    return 0;
  },

  reindex: async (args, { config, log }) => {
    const { values } = parseArgs({ args, options: { json: { type: 'boolean' } } });
    const services = await createServices(config, log);
    const progress = new ProgressLine(process.stderr);
    try {
      const report = await reindexFromStore(services.store, services.index, log, (n) => progress.update(`reindexed ${n}`), services.parsePool);
      progress.done();
      if (values.json) console.log(JSON.stringify(report, null, 2));
      else console.log(`reindexed ${report.messages} messages (${report.parseErrors} with parse errors) in ${report.seconds.toFixed(1)} s; the new index is live`);
      return 0;
    } catch (err) {
      progress.done();
      const report = (err as { report?: { failed: { sha256: string; reason: string }[] } }).report;
      for (const f of report?.failed ?? []) console.log(`failed: ${f.sha256}: ${f.reason}`);
      console.error(`archive reindex: ${(err as Error).message}`);
      return 1;
    } finally {
      await services.close();
    }
  },

  jobs: async (args, { config, log }) => {
    const { positionals, values } = parseArgs({ args, allowPositionals: true, options: { json: { type: 'boolean' }, queue: { type: 'string', default: INDEX_JOB } } });
    const services = await createServices(config, log);
    try {
      const [action = 'counts', id] = positionals;
      const queue = values.queue!;
      if (action === 'counts') {
        const c = await services.queue.counts(queue);
        console.log(values.json ? JSON.stringify(c) : Object.entries(c).map(([k, v]) => `${k.padEnd(10)} ${v}`).join('\n'));
      } else if (action === 'failed') {
        const jobs = await services.queue.failed(queue, 1000);
        if (values.json) console.log(JSON.stringify(jobs, null, 2));
        else for (const j of jobs) console.log(`${j.id}  attempts ${j.attempts}  ${new Date(j.timestamp).toISOString()}  ${j.failedReason ?? ''}`);
      } else if (action === 'retry' && id) {
        await services.queue.retry(queue, id);
        console.log(`retrying ${id}`);
      } else {
        console.error('archive jobs: counts | failed | retry <id>  [--queue NAME]');
        return 2;
      }
      return 0;
    } finally {
      await services.close();
    }
  },

  stats: async (args, { config, log }) => {
    const { values } = parseArgs({ args, options: { json: { type: 'boolean' } } });
    const services = await createServices(config, log);
    try {
      const stats = await collectStats(services.store);
      if (values.json) console.log(JSON.stringify(stats));
      else {
        console.log(`messages   ${stats.messages}`);
        console.log(`envelopes  ${stats.envelopes}`);
        console.log(`bytes      ${stats.bytes}`);
      }
      return 0;
    } finally {
      await services.close();
    }
  },

  verify: async (args, { config, log }) => {
    const { values } = parseArgs({ args, options: { json: { type: 'boolean' } } });
    const services = await createServices(config, log);
    const progress = new ProgressLine(process.stderr);
    try {
      const report = await checkFixity(services.store, (r) => progress.update(`checked ${r.checked}  ${(r.bytes / 1048576).toFixed(1)} MB  problems ${r.problems.length}`));
      progress.done();
      if (values.json) console.log(JSON.stringify(report, null, 2));
      else {
        for (const p of report.problems) console.log(`MISMATCH ${p.sha256}: ${p.problem}`);
        console.log(`verified ${report.checked} objects, ${report.bytes} bytes: ${report.ok} ok, ${report.problems.length} bad`);
      }
      if (report.problems.length) log.error({ problems: report.problems.length }, 'fixity check found damaged objects');
      return report.problems.length ? 1 : 0;
    } finally {
      await services.close();
    }
  },
};

/** Resolves at SIGTERM or SIGINT, for a graceful shutdown. */
function untilSignal(log: Logger): Promise<void> {
  return new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info({ signal }, 'shutting down');
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}

function printImportSummary(s: ImportSummary): void {
  for (const f of s.failures) console.log(`failed: ${f.item}: ${f.reason}`);
  if (s.failed > s.failures.length) console.log(`failed: ... and ${s.failed - s.failures.length} more`);
  for (const f of s.skippedFiles) console.log(`skipped (not mail): ${f}`);
  console.log(
    `imported ${s.imported}, duplicates ${s.duplicates}, failed ${s.failed}, skipped ${s.skipped}` +
      ` (${s.journalReports} journal reports unwrapped, ${(s.bytes / 1048576).toFixed(1)} MB in ${s.seconds.toFixed(1)} s)`,
  );
}

export async function main(argv: string[]): Promise<number> {
  const [name = 'help', ...args] = argv;
  if (name === 'help' || name === '--help' || name === '-h') {
    console.log(HELP);
    return 0;
  }
  const command = commands[name];
  if (!command) {
    console.error(`archive: unknown command "${name}"\n\n${HELP}`);
    return 2;
  }
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`archive: ${err.message}`);
      return 78; // EX_CONFIG
    }
    throw err;
  }
  const log = createLogger({ level: config.ARCHIVE_LOG_LEVEL, pretty: config.ARCHIVE_LOG_PRETTY });
  try {
    return await command(args, { config, log });
  } catch (err) {
    log.error({ err }, `${name} failed`);
    console.error(`archive ${name}: ${(err as Error).message}`);
    return 1;
  } finally {
    log.flush();
  }
}
