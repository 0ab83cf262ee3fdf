/**
 * The `archive` command line. Each command returns its exit code; output for
 * people goes to stdout, logs go to stderr (so `--json` output stays clean).
 */
import { userInfo } from 'node:os';
import { parseArgs } from 'node:util';
import { loadConfig, redactConfig, type Config } from '../config/config.js';
import { createLogger, type Logger } from '../logger.js';
import { AppError, ConfigError, NotFoundError } from '../errors.js';
import { describeScope } from '../auth/scope.js';
import type { Role } from '../auth/roles.js';
import type { Actor } from '../auth/types.js';
import { startArchive } from '../main.js';
import { createServices } from '../services.js';
import { importPaths, reindexFromStore, INDEX_JOB, failedJobView, type ImportSummary } from '../../ingest/index.js';
import type { IndexedMessage } from '../domain/indexed-message.js';
import { checkFixity } from '../integrity/fixity-check.js';
import { collectStats } from './stats.js';
import { ProgressLine } from './progress.js';
import { exportCommand, verifyExportCommand, EXPORT_HELP } from './export-commands.js';
import { casesCommand, disposeCommand, holdsCommand, policiesCommand, reportsCommand, RETENTION_HELP } from './retention-commands.js';

const HELP = `Usage: archive <command> [options]

Commands:
  serve                 Run the archive: HTTP API and SMTP journal endpoint
  worker                Run background workers only (indexing); for scale-out
  config                Print the effective configuration (secrets redacted)
  import <path>...      Import .eml files, directories of them and MBOX files
                        (--no-index: store only; the server indexes them later)
  reindex               Rebuild the search index from the object store alone,
                        re-applying retention policies and legal holds
  jobs [failed|retry <id>]  Job counts, failed jobs, retry a failed job
  stats [--json]        Message, envelope and byte counts
  verify [--json]       Re-hash every stored object; exit 1 on any mismatch
  users add|list|reset-password|unlock   Users (add prints a one-time password)
  groups list|set|delete                 Custodian groups for scopes
  tokens create|list|revoke              API tokens (create prints the token last)
  audit verify|seal     Verify the audit trail (exit 1 naming the first bad record); seal it now
${EXPORT_HELP}
${RETENTION_HELP}
  help                  This text

Configuration comes from ARCHIVE_* environment variables; see README.md.`;

type Command = (args: string[], ctx: { config: Config; log: Logger }) => Promise<number>;

const commands: Record<string, Command> = {
  export: exportCommand,
  policies: policiesCommand,
  cases: casesCommand,
  holds: holdsCommand,
  dispose: disposeCommand,
  reports: reportsCommand,
  'verify-export': (args) => verifyExportCommand(args),
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
    else for (const [k, v] of Object.entries(redacted)) console.log(`${k}=${v === undefined ? '' : Array.isArray(v) ? v.join(',') : typeof v === 'object' && v !== null ? JSON.stringify(v) : v}`);
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
      // Every rebuilt document goes through the retention engine as at ingest: a message whose
      // retention record was lost gets its retain-until and holds back (idempotent, never shortens).
      const applyRetention = async (docs: IndexedMessage[]) => {
        try {
          await services.retention.applyToDocuments(docs);
        } catch (err) {
          // A message was disposed of (by another node) since it was read: again one by one
          // (idempotent), skipping what is gone.
          if (!(err instanceof NotFoundError)) throw err;
          for (const doc of docs) {
            await services.retention.applyToDocuments([doc]).catch((e: unknown) => {
              if (!(e instanceof NotFoundError)) throw e;
              log.info({ sha256: doc.id }, 'disposed of during the reindex: no retention to apply');
            });
          }
        }
      };
      const report = await reindexFromStore(services.store, services.index, log, (n) => progress.update(`reindexed ${n}`), services.parsePool, applyRetention);
      progress.done();
      if (values.json) console.log(JSON.stringify(report, null, 2));
      else console.log(`reindexed ${report.messages} messages (${report.parseErrors} with parse errors) and re-applied retention policies and legal holds to them in ${report.seconds.toFixed(1)} s; the new index is live`);
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
        const jobs = (await services.queue.failed(queue, 1000)).map(failedJobView);
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

  users: async (args, { config, log }) => {
    const [action, ...rest] = args;
    const { values } = parseArgs({
      args: rest,
      options: {
        email: { type: 'string' },
        name: { type: 'string' },
        role: { type: 'string', multiple: true },
        'scope-domain': { type: 'string', multiple: true },
        'scope-address': { type: 'string', multiple: true },
        'scope-group': { type: 'string', multiple: true },
        json: { type: 'boolean' },
      },
    });
    const usage = () => {
      console.error(
        'archive users add --email E --role R [--role R2] [--name N] [--scope-domain D ...] [--scope-address A ...] [--scope-group G ...]\n' +
          '                   (no --scope-* option: the user sees all mail)\n' +
          'archive users list [--json]\n' +
          'archive users reset-password --email E\n' +
          'archive users unlock --email E',
      );
      return 2;
    };
    if (!action || !['add', 'list', 'reset-password', 'unlock'].includes(action)) return usage();
    if (action !== 'list' && !values.email) return usage();
    const services = await createServices(config, log);
    const actor = cliActor();
    try {
      if (action === 'add') {
        const scoped = values['scope-domain'] || values['scope-address'] || values['scope-group'];
        const scope = scoped ? { domains: values['scope-domain'] ?? [], addresses: values['scope-address'] ?? [], groups: values['scope-group'] ?? [] } : null;
        const { user, password } = await services.auth.createUser({ email: values.email!, name: values.name, roles: (values.role ?? []) as Role[], scope }, actor);
        console.log(`created user ${user.email}`);
        console.log(`roles:  ${user.roles.join(', ')}`);
        console.log(`scope:  ${describeScope(user.scope)}`);
        console.log('one-time password (shown once; it must be changed at the first sign-in):');
        console.log(password);
      } else if (action === 'list') {
        const users = await services.auth.listUsers();
        const rows = await Promise.all(users.map(async (u) => ({ ...u, lock: await services.auth.lockState(u.email) })));
        if (values.json) console.log(JSON.stringify(rows, null, 2));
        else {
          for (const u of rows) {
            const flags = [u.source, u.disabled ? 'DISABLED' : '', u.lock.locked ? `LOCKED until ${u.lock.until}` : '', u.totpEnabled ? 'totp' : '', u.mustChangePassword ? 'must change password' : '']
              .filter(Boolean)
              .join(', ');
            console.log(`${u.email.padEnd(32)} ${u.roles.join(',').padEnd(24)} ${describeScope(u.scope)}  [${flags}]`);
          }
          console.log(`${rows.length} user${rows.length === 1 ? '' : 's'}`);
        }
      } else if (action === 'reset-password') {
        const { password } = await services.auth.resetPassword(values.email!, actor);
        console.log(`new one-time password for ${values.email} (shown once; it must be changed at the next sign-in):`);
        console.log(password);
      } else {
        await services.auth.unlock(values.email!, actor);
        console.log(`unlocked ${values.email}`);
      }
      return 0;
    } catch (err) {
      if (err instanceof AppError && err.status < 500) {
        console.error(`archive users ${action}: ${err.message}`);
        return 1;
      }
      throw err;
    } finally {
      await services.close();
    }
  },

  groups: async (args, { config, log }) => {
    const [action, name, ...rest] = args;
    const { values } = parseArgs({ args: rest, options: { address: { type: 'string', multiple: true }, description: { type: 'string' }, json: { type: 'boolean' } } });
    if (!(action === 'list' || (action === 'set' && name) || (action === 'delete' && name))) {
      console.error('archive groups list | set <name> --address A [--address B ...] [--description D] | delete <name>');
      return 2;
    }
    const services = await createServices(config, log);
    try {
      if (action === 'list') {
        const groups = await services.auth.listGroups();
        if (values.json || name === '--json') console.log(JSON.stringify(groups, null, 2));
        else for (const g of groups) console.log(`${g.name.padEnd(24)} ${g.addresses.length} addresses${g.description ? `  ${g.description}` : ''}`);
      } else if (action === 'set') {
        const g = await services.auth.putGroup(name!, values.address ?? [], values.description, cliActor());
        console.log(`group ${g.name}: ${g.addresses.length} addresses`);
      } else {
        await services.auth.deleteGroup(name!, cliActor());
        console.log(`deleted group ${name}`);
      }
      return 0;
    } catch (err) {
      if (err instanceof AppError && err.status < 500) {
        console.error(`archive groups ${action}: ${err.message}`);
        return 1;
      }
      throw err;
    } finally {
      await services.close();
    }
  },

  tokens: async (args, { config, log }) => {
    const [action, ...rest] = args;
    const { values, positionals } = parseArgs({
      args: rest,
      allowPositionals: true,
      options: { email: { type: 'string' }, 'expires-days': { type: 'string' }, name: { type: 'string' }, json: { type: 'boolean' } },
    });
    const expires = values['expires-days'] === undefined ? undefined : Number(values['expires-days']);
    if (
      !(action === 'create' && values.email && (expires === undefined || (Number.isInteger(expires) && expires > 0))) &&
      !(action === 'revoke' && positionals.length === 1) &&
      action !== 'list'
    ) {
      console.error('archive tokens create --email E [--expires-days N] [--name N]   (prints the token as the last line)\narchive tokens list [--email E] [--json]\narchive tokens revoke <id>');
      return 2;
    }
    const services = await createServices(config, log);
    try {
      if (action === 'create') {
        const { token, record } = await services.auth.createToken({ email: values.email!, name: values.name, expiresDays: expires }, cliActor());
        console.log(`token ${record.id} for ${record.user}, ${record.expiresAt ? `expires ${record.expiresAt}` : 'never expires'} (shown once; store it now):`);
        console.log(token);
      } else if (action === 'list') {
        const tokens = await services.auth.listTokens(values.email?.toLowerCase());
        if (values.json) console.log(JSON.stringify(tokens, null, 2));
        else
          for (const t of tokens) {
            const state = t.revokedAt ? `revoked ${t.revokedAt}` : t.expiresAt && Date.parse(t.expiresAt) <= Date.now() ? `expired ${t.expiresAt}` : t.expiresAt ? `expires ${t.expiresAt}` : 'no expiry';
            console.log(`${t.id}  ${t.user.padEnd(32)} ${t.name.padEnd(20)} ${state}  last used ${t.lastUsedAt ?? 'never'}`);
          }
      } else {
        const t = await services.auth.revokeToken(positionals[0], cliActor());
        console.log(`revoked token ${t.id} of ${t.user}`);
      }
      return 0;
    } catch (err) {
      if (err instanceof AppError && err.status < 500) {
        console.error(`archive tokens ${action}: ${err.message}`);
        return 1;
      }
      throw err;
    } finally {
      await services.close();
    }
  },

  audit: async (args, { config, log }) => {
    const [action, ...rest] = args;
    const { values } = parseArgs({ args: rest, options: { json: { type: 'boolean' } } });
    if (action !== 'verify' && action !== 'seal') {
      console.error('archive audit verify [--json]   check the whole trail; exit 1 naming the first bad record\narchive audit seal              seal the chain head into the write-once store now');
      return 2;
    }
    const services = await createServices(config, log);
    try {
      if (action === 'seal') {
        const sealed = await services.audit.seal();
        console.log(sealed ? `${sealed.created ? 'sealed' : 'already sealed'}: record ${sealed.seal.seq}, hash ${sealed.seal.hash} (${sealed.name})` : 'the audit trail is empty; nothing to seal');
        return 0;
      }
      const report = await services.audit.verify();
      await services.audit.record({ action: 'audit.verify', outcome: 'success', user: cliActor().user, details: { ok: report.ok, records: report.records, ...(report.firstBad ? { firstBad: report.firstBad.seq } : {}) } });
      if (values.json) console.log(JSON.stringify(report, null, 2));
      else if (report.ok) console.log(`audit trail OK: ${report.records} records, head ${report.head.seq} ${report.head.hash}, ${report.seals} seals checked`);
      else console.log(`AUDIT TRAIL DAMAGED at record ${report.firstBad!.seq} (id ${report.firstBad!.id}): ${report.firstBad!.problem}`);
      if (!report.ok) log.error({ firstBad: report.firstBad }, 'audit trail verification failed');
      return report.ok ? 0 : 1;
    } finally {
      await services.close();
    }
  },
};

/** Who acts from the command line, for the audit trail: `cli:<os user>`. */
function cliActor(): Actor {
  let name = 'unknown';
  try {
    name = userInfo().username;
  } catch {
    // no passwd entry (containers): keep "unknown"
  }
  return { user: `cli:${name}`, clientAddress: null };
}

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
