/**
 * Composition root for the server process: HTTP and SMTP in one process,
 * sharing one set of services.
 */
import type { Server } from 'node:http';
import type { Logger } from 'pino';
import type { Config } from './config/config.js';
import { createServices, type Services } from './services.js';
import { createHttpApp } from './http/app.js';
import { SmtpJournalServer, reconcileIndex } from '../ingest/index.js';

export interface RunningArchive {
  services: Services;
  httpPort: number;
  smtpPort: number;
  close(): Promise<void>;
}

export async function startArchive(config: Config, log: Logger): Promise<RunningArchive> {
  const services = await createServices(config, log);
  // This process indexes too, unless told not to: with Redis it then shares
  // the work with any `archive worker` processes. With the in-process queue
  // and workers off, messages are indexed by the next start's reconciliation.
  if (config.ARCHIVE_SERVE_WORKERS) services.startWorkers();
  // Seal the audit trail's chain head into the write-once store periodically (and at close).
  services.audit.startSealing(config.ARCHIVE_AUDIT_SEAL_MINUTES * 60_000);
  // Expired sessions, abandoned sign-on attempts and old sign-in throttles go hourly (a scan of each).
  const sweeper = setInterval(() => {
    services.auth.sweepExpired().catch((err: unknown) => log.warn({ err }, 'could not sweep expired sessions; trying again in an hour'));
  }, 3_600_000);
  sweeper.unref();
  const app = createHttpApp(services);
  const http: Server = await new Promise((resolve, reject) => {
    const srv = app.listen(config.ARCHIVE_HTTP_PORT, config.ARCHIVE_HTTP_HOST, (err?: Error) => (err ? reject(err) : resolve(srv)));
  });
  const addr = http.address();
  const httpPort = typeof addr === 'object' && addr ? addr.port : config.ARCHIVE_HTTP_PORT;
  log.info({ host: config.ARCHIVE_HTTP_HOST, port: httpPort }, 'HTTP listening');

  const smtp = new SmtpJournalServer({
    host: config.ARCHIVE_SMTP_HOST,
    port: config.ARCHIVE_SMTP_PORT,
    hostname: config.ARCHIVE_SMTP_HOSTNAME,
    maxBytes: config.ARCHIVE_SMTP_MAX_SIZE,
    allowNetworks: config.ARCHIVE_SMTP_ALLOW_NETWORKS,
    tlsCert: config.ARCHIVE_SMTP_TLS_CERT,
    tlsKey: config.ARCHIVE_SMTP_TLS_KEY,
    authUser: config.ARCHIVE_SMTP_AUTH_USER,
    authPassword: config.ARCHIVE_SMTP_AUTH_PASSWORD,
    maxClients: config.ARCHIVE_SMTP_MAX_CLIENTS,
    pipeline: services.pipeline,
    log,
  });
  let smtpPort: number;
  try {
    smtpPort = await smtp.listen();
  } catch (err) {
    http.close();
    await services.close();
    throw err;
  }

  // Stored but unindexed messages (a crash, a lost in-memory job) are found
  // and queued, in the background: start-up does not wait for it.
  void reconcileIndex(services.store, services.index, services.queue, log.child({ component: 'reconcile' })).catch((err) =>
    log.error({ err }, 'index reconciliation failed; it runs again at the next start'),
  );
  // Exports a crash interrupted resume from their checkpoints (the in-process queue forgot their jobs).
  void services.exports.resumeUnfinished().catch((err) => log.error({ err }, 'could not resume unfinished exports; `archive export resume <id>` does it by hand'));

  return {
    services,
    httpPort,
    smtpPort,
    async close() {
      clearInterval(sweeper);
      await smtp.close();
      await new Promise<void>((resolve) => {
        http.close(() => resolve());
        http.closeAllConnections();
      });
      await services.close();
    },
  };
}
