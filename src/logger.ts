/**
 * Structured logs (pino), object first: `log.info({sha256}, 'stored')`.
 * Secrets are redacted by path; pretty output only when asked for (development).
 */
import { pino, destination, stdTimeFunctions, type Logger } from 'pino';

export type { Logger };

const REDACT = [
  'password',
  '*.password',
  'token',
  '*.token',
  'authorization',
  '*.authorization',
  'req.headers.authorization',
  'req.headers.cookie',
  '*.secret',
  'req.headers["x-csrf-token"]',
  'headers.authorization',
  'headers.cookie',
  'cookie',
  '*.cookie',
  'passwordHash',
  '*.passwordHash',
  'newPassword',
  '*.newPassword',
  'currentPassword',
  '*.currentPassword',
  'totpSecret',
  '*.totpSecret',
  'clientSecret',
  '*.clientSecret',
  'config.ARCHIVE_SMTP_AUTH_PASSWORD',
  'config.ARCHIVE_S3_SECRET_ACCESS_KEY',
  'config.ARCHIVE_OPENSEARCH_PASSWORD',
  'config.ARCHIVE_OIDC_CLIENT_SECRET',
  'config.ARCHIVE_REDIS_URL',
];

/** Paths of log objects whose values are replaced with `***` (exported for the test that checks them). */
export const REDACTED_PATHS: readonly string[] = REDACT;

export function createLogger(opts: { level?: string; pretty?: boolean; name?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  return pino({
    name: opts.name ?? 'archive',
    level: opts.level ?? 'info',
    redact: { paths: REDACT, censor: '***' },
    base: { pid: process.pid },
    timestamp: stdTimeFunctions.isoTime,
    ...(opts.pretty ? { transport: { target: 'pino-pretty', options: { destination: 2 } } } : {}),
  }, opts.pretty ? undefined : (opts.destination ?? destination({ dest: 2, sync: false })));
}
