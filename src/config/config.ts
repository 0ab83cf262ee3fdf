/**
 * The archive's one configuration: every setting comes from the environment,
 * is validated here by one zod schema, and is parsed once at start. A bad value
 * stops start-up with a message naming the variable.
 */
import { createPrivateKey } from 'node:crypto';
import path from 'node:path';
import { isIP } from 'node:net';
import os from 'node:os';
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import { parseByteSize } from './byte-size.js';

const port = (dflt: number) => z.coerce.number().int().min(0).max(65535).default(dflt);

const bool = (dflt: boolean) =>
  z
    .enum(['true', 'false', '1', '0', 'yes', 'no'])
    .default(dflt ? 'true' : 'false')
    .transform((v) => v === 'true' || v === '1' || v === 'yes');

const byteSize = (dflt: string) =>
  z
    .string()
    .default(dflt)
    .transform((v, ctx) => {
      const n = parseByteSize(v);
      if (n === undefined || n <= 0) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, message: `not a byte size: "${v}" (e.g. 150MB, 1048576)` });
        return z.NEVER;
      }
      return n;
    });

const cidrList = (dflt: string) =>
  z
    .string()
    .default(dflt)
    .transform((v, ctx) => {
      const items = v
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
      for (const item of items) {
        const [addr, bits, extra] = item.split('/');
        const family = isIP(addr ?? '');
        const max = family === 6 ? 128 : 32;
        const b = bits === undefined ? max : Number(bits);
        if (!family || extra !== undefined || !Number.isInteger(b) || b < 0 || b > max) {
          ctx.addIssue({ code: z.ZodIssueCode.custom, message: `not a CIDR network: "${item}"` });
          return z.NEVER;
        }
      }
      return items;
    });

const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === '' ? undefined : v));

/** Names of settings whose values never appear in output or logs. */
export const SECRET_KEYS = [
  'ARCHIVE_SMTP_AUTH_PASSWORD',
  'ARCHIVE_S3_SECRET_ACCESS_KEY',
  'ARCHIVE_OPENSEARCH_PASSWORD',
  'ARCHIVE_REDIS_URL',
  'ARCHIVE_OIDC_CLIENT_SECRET',
  'ARCHIVE_SIGNING_KEY',
] as const;

/** Trusted reverse proxies for X-Forwarded-For: CIDR networks or Express's names (loopback, linklocal, uniquelocal). */
const trustProxy = z
  .string()
  .default('')
  .transform((v, ctx) => {
    const items = v
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    for (const item of items) {
      if (['loopback', 'linklocal', 'uniquelocal'].includes(item)) continue;
      const [addr, bits, extra] = item.split('/');
      const family = isIP(addr ?? '');
      const max = family === 6 ? 128 : 32;
      const b = bits === undefined ? max : Number(bits);
      if (!family || extra !== undefined || !Number.isInteger(b) || b < 0 || b > max) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, message: `not a CIDR network or loopback|linklocal|uniquelocal: "${item}"` });
        return z.NEVER;
      }
    }
    return items;
  });

/** Roles an OIDC group can grant (src/auth/roles.ts). */
const oidcRole = z.enum(['admin', 'officer', 'reviewer', 'auditor']);

/**
 * ARCHIVE_OIDC_GROUP_MAP: JSON object from a provider group to what it grants,
 * e.g. {"archive-officers-emea": {"roles": ["officer"], "scope": {"domains": ["emea.example.com"]}},
 *       "archive-admins": {"roles": ["admin"], "scope": "all"}}.
 * A user gets the union of the roles and the union of the scopes of their
 * groups; `"scope": "all"` is unrestricted; a group without a scope adds no mail.
 */
export const oidcGroupMapSchema = z.record(
  z.string().min(1),
  z
    .object({
      roles: z.array(oidcRole).default([]),
      scope: z
        .union([
          z.literal('all'),
          z
            .object({
              domains: z.array(z.string()).default([]),
              addresses: z.array(z.string()).default([]),
              groups: z.array(z.string()).default([]),
            })
            .strict(),
        ])
        .optional(),
    })
    .strict(),
);
export type OidcGroupMap = z.infer<typeof oidcGroupMapSchema>;

const jsonGroupMap = z
  .string()
  .default('{}')
  .transform((v, ctx) => {
    let raw: unknown;
    try {
      raw = JSON.parse(v);
    } catch (err) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, message: `not JSON: ${(err as Error).message}` });
      return z.NEVER;
    }
    const r = oidcGroupMapSchema.safeParse(raw);
    if (!r.success) {
      const i = r.error.issues[0]!;
      ctx.addIssue({ code: z.ZodIssueCode.custom, message: `${i.path.join('.') || '(top)'}: ${i.message}` });
      return z.NEVER;
    }
    return r.data;
  });

export const envSchema = z.object({
  /** Where the embedded store, catalog and spool live. */
  ARCHIVE_DATA_DIR: z.string().min(1).default('./data'),
  ARCHIVE_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Human-readable logs; for development only (slower, not machine-parseable). */
  ARCHIVE_LOG_PRETTY: bool(false),
  /** Organisation name printed on reports. */
  ARCHIVE_ORG_NAME: z.string().default('Mail Archive'),

  ARCHIVE_HTTP_HOST: z.string().default('0.0.0.0'),
  ARCHIVE_HTTP_PORT: port(8080),

  ARCHIVE_SMTP_HOST: z.string().default('0.0.0.0'),
  ARCHIVE_SMTP_PORT: port(2525),
  /** Name announced in the SMTP greeting. */
  ARCHIVE_SMTP_HOSTNAME: z.string().default('mail-archive'),
  /** Largest message accepted, announced with SIZE and enforced with 552. Exchange journal reports of large mail need room. */
  ARCHIVE_SMTP_MAX_SIZE: byteSize('150MB'),
  /** Client networks allowed to connect (CIDR, comma-separated). Default: loopback and private networks. */
  ARCHIVE_SMTP_ALLOW_NETWORKS: cidrList('127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7'),
  /** PEM certificate and key files; when both are set, STARTTLS is offered. */
  ARCHIVE_SMTP_TLS_CERT: optionalString,
  ARCHIVE_SMTP_TLS_KEY: optionalString,
  /** When set, SMTP AUTH (PLAIN/LOGIN) is offered and required with these credentials. */
  ARCHIVE_SMTP_AUTH_USER: optionalString,
  ARCHIVE_SMTP_AUTH_PASSWORD: optionalString,
  /** Concurrent SMTP connections; each holds one spool file open at most. */
  ARCHIVE_SMTP_MAX_CLIENTS: z.coerce.number().int().min(1).default(100),

  /** Object store driver: `fs` (embedded, write-once files) or `s3` (S3 with Object Lock). */
  ARCHIVE_STORE: z.enum(['fs', 's3']).default('fs'),
  /** Index and catalog driver: `sqlite` (embedded FTS5) or `opensearch`. */
  ARCHIVE_INDEX: z.enum(['sqlite', 'opensearch']).default('sqlite'),
  /** Background job driver: `inline` (in-process) or `redis` (bull). */
  ARCHIVE_QUEUE: z.enum(['inline', 'redis']).default('inline'),

  ARCHIVE_S3_ENDPOINT: optionalString,
  ARCHIVE_S3_REGION: z.string().default('us-east-1'),
  ARCHIVE_S3_BUCKET: optionalString,
  ARCHIVE_S3_PREFIX: z.string().default(''),
  ARCHIVE_S3_ACCESS_KEY_ID: optionalString,
  ARCHIVE_S3_SECRET_ACCESS_KEY: optionalString,
  ARCHIVE_S3_FORCE_PATH_STYLE: bool(false),
  ARCHIVE_S3_LOCK_MODE: z.enum(['COMPLIANCE', 'GOVERNANCE']).default('COMPLIANCE'),
  /** Retention applied to every new object until a policy sets a longer one (days). */
  ARCHIVE_S3_DEFAULT_RETENTION_DAYS: z.coerce.number().int().min(1).default(2555),
  ARCHIVE_S3_SSE: z.enum(['none', 'AES256', 'aws:kms']).default('none'),
  ARCHIVE_S3_SSE_KMS_KEY_ID: optionalString,

  ARCHIVE_OPENSEARCH_URL: z.string().url().default('http://127.0.0.1:9200'),
  ARCHIVE_OPENSEARCH_USERNAME: optionalString,
  ARCHIVE_OPENSEARCH_PASSWORD: optionalString,
  /** PEM CA bundle for a private CA; verification is never turned off. */
  ARCHIVE_OPENSEARCH_CA: optionalString,
  ARCHIVE_OPENSEARCH_INDEX_PREFIX: z.string().regex(/^[a-z0-9][a-z0-9_-]*$/).default('archive'),

  ARCHIVE_REDIS_URL: z.string().default('redis://127.0.0.1:6379'),
  ARCHIVE_QUEUE_PREFIX: z.string().default('archive'),

  /** Whether `archive serve` also runs the index workers. Turn off when separate `archive worker` processes do all indexing. */
  ARCHIVE_SERVE_WORKERS: bool(true),
  /** Worker threads that parse mail for indexing; 0 parses on the main thread. Each costs ~30 MB. Default: one per core. */
  ARCHIVE_PARSE_THREADS: z.coerce.number().int().min(0).max(64).default(Math.max(1, os.availableParallelism())),
  /*
   * Index jobs in flight per process. A job spends most of its time waiting
   * (store reads, the parse pool, its batch's write), and each index write
   * takes the documents of every job waiting, so more jobs make bigger
   * batches: 4 gave 67 msg/s SMTP-to-searchable on 2 cores, 32 gave 310.
   * Cost: up to this many parsed messages in memory (each bounded by the
   * parser limits; messages over 4 MB are parsed streaming).
   */
  ARCHIVE_INDEX_CONCURRENCY: z.coerce.number().int().min(1).max(256).default(32),
  /*
   * Longest an indexed message waits for companions before its batch is
   * written, in ms (while a write is in flight, messages wait for it anyway).
   * Each write costs a fixed set of round trips whatever its size (on
   * OpenSearch: the bulk, the retention step's policy and hold reads, its
   * catalog read and write: 7 requests), so a longer wait means fewer, bigger
   * writes; its cost is up to this much more "250 to searchable". Default:
   * 50 with SQLite (searchable at once), 200 with OpenSearch (searchable
   * only after its 1 s refresh anyway; at 1,000 messages it made 87 writes
   * instead of 240).
   */
  ARCHIVE_INDEX_BATCH_MS: z.preprocess((v) => (v === '' ? undefined : v), z.coerce.number().int().min(0).max(5000).optional()),

  /** Where export packages are written (default `<ARCHIVE_DATA_DIR>/exports`). In scale-out, a volume every worker and API node shares. */
  ARCHIVE_EXPORT_DIR: optionalString,
  /**
   * The archive's Ed25519 signing key for export manifests, as PKCS#8 PEM (`\n` escapes allowed).
   * Unset in embedded mode: generated on first use under `<ARCHIVE_DATA_DIR>/keys/`. Needed for
   * exports in scale-out (`ARCHIVE_STORE=s3`), where every node must sign with one key: without it
   * exports are refused there, naming this variable.
   */
  ARCHIVE_SIGNING_KEY: optionalString,
  /** Export jobs run at once per process. Each holds one PDF renderer and a few messages in flight; PDF rendering is CPU-bound (about one core per job). */
  ARCHIVE_EXPORT_CONCURRENCY: z.coerce.number().int().min(1).max(16).default(1),
  /** Minutes between scheduled disposition runs; 0 turns the schedule off (`archive dispose` still works). */
  ARCHIVE_DISPOSITION_INTERVAL_MINUTES: z.coerce.number().int().min(0).max(10_080).default(60),
  /** Longest one disposition run works, in seconds; it stops between messages and the next run resumes. */
  ARCHIVE_DISPOSITION_BUDGET_SECONDS: z.coerce.number().int().min(1).max(86_400).default(300),
  /**
   * How long placing a hold through the API waits for it to be applied to the archived mail before
   * answering 202 with its progress (it is in force from the start; the application goes on in the
   * background, and is resumed by the disposition job if the node stops). 0: answer at once.
   */
  ARCHIVE_HOLD_WAIT_SECONDS: z.coerce.number().int().min(0).max(3600).default(10),
  /** Four-eyes mode: every disposition waits for a second person's approval before anything is deleted. */
  ARCHIVE_DISPOSITION_FOUR_EYES: bool(false),
  /**
   * Items between export checkpoints. A checkpoint fsyncs what was written since the last one
   * (a few ms per hundred files); a killed export redoes at most this many items.
   */
  ARCHIVE_EXPORT_CHECKPOINT_ITEMS: z.coerce.number().int().min(1).max(100_000).default(500),
  /** TrueType font for PDF pages whose text is outside Windows-1252 (default: DejaVu Sans when installed). Point it at a CJK font (e.g. Noto Sans CJK) for Asian mail. */
  ARCHIVE_EXPORT_PDF_FONT: optionalString,

  // --- users, sessions, sign-in and audit (src/auth, src/audit) ---
  /** Reverse proxies whose X-Forwarded-For is believed (client addresses in the audit trail and rate limits). Empty: none. */
  ARCHIVE_HTTP_TRUST_PROXY: trustProxy,
  /** Session cookies carry `Secure` (sent over HTTPS only). Turn off only for plain-HTTP development. */
  ARCHIVE_COOKIE_SECURE: bool(true),
  /** A browser session ends this many hours after sign-in, whatever happens. */
  ARCHIVE_SESSION_TTL_HOURS: z.coerce.number().min(0.01).max(720).default(12),
  /** A browser session ends after this many idle minutes. */
  ARCHIVE_SESSION_IDLE_MINUTES: z.coerce.number().min(1).max(10_080).default(60),
  /** Failed sign-ins in a row that lock an account (audited as `auth.lockout`). */
  ARCHIVE_AUTH_LOCKOUT_THRESHOLD: z.coerce.number().int().min(2).max(1000).default(10),
  /** How long a lockout lasts (minutes); an admin can lift it sooner. */
  ARCHIVE_AUTH_LOCKOUT_MINUTES: z.coerce.number().min(0.01).max(100_000).default(15),
  /** Wait after the second failed sign-in in a row (ms); it doubles with each further failure, up to 60 s. */
  ARCHIVE_AUTH_BACKOFF_MS: z.coerce.number().int().min(0).max(60_000).default(1000),
  /** Sign-in requests per client address per minute (each node counts its own). */
  ARCHIVE_RATE_LIMIT_SIGN_IN: z.coerce.number().int().min(1).default(20),
  /** Searches per user per minute (each node counts its own). */
  ARCHIVE_RATE_LIMIT_SEARCH: z.coerce.number().int().min(1).default(300),
  /** Seal the audit trail's chain head into the write-once store this often (minutes); 0: only at shutdown and `archive audit seal`. */
  ARCHIVE_AUDIT_SEAL_MINUTES: z.coerce.number().min(0).max(100_000).default(60),

  /** OpenID Connect issuer URL (discovery at <issuer>/.well-known/openid-configuration). Unset: no single sign-on. */
  ARCHIVE_OIDC_ISSUER: optionalString.pipe(z.string().url().optional()),
  ARCHIVE_OIDC_CLIENT_ID: optionalString,
  ARCHIVE_OIDC_CLIENT_SECRET: optionalString,
  /** The archive's callback URL as registered at the provider: https://<host>/api/auth/oidc/callback. */
  ARCHIVE_OIDC_REDIRECT_URL: optionalString.pipe(z.string().url().optional()),
  ARCHIVE_OIDC_SCOPES: z.string().default('openid email profile groups'),
  /** Claim (ID token or userinfo) holding the user's groups. */
  ARCHIVE_OIDC_GROUPS_CLAIM: z.string().default('groups'),
  ARCHIVE_OIDC_GROUP_MAP: jsonGroupMap,
});

export type Env = z.infer<typeof envSchema>;

/** The effective configuration, resolved from the environment. */
export interface Config extends Env {
  /** Absolute path of ARCHIVE_DATA_DIR. */
  dataDir: string;
}

/**
 * Parses and validates the environment once. Throws ConfigError naming every
 * bad variable.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const input: Record<string, string> = {};
  for (const key of Object.keys(envSchema.shape)) {
    const v = env[key];
    if (v !== undefined) input[key] = v;
  }
  const parsed = envSchema.safeParse(input);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`Invalid configuration:\n${lines.join('\n')}`);
  }
  const cfg = parsed.data;
  const problems: string[] = [];
  if (!!cfg.ARCHIVE_SMTP_TLS_CERT !== !!cfg.ARCHIVE_SMTP_TLS_KEY) {
    problems.push('  ARCHIVE_SMTP_TLS_CERT and ARCHIVE_SMTP_TLS_KEY must be set together');
  }
  if (!!cfg.ARCHIVE_SMTP_AUTH_USER !== !!cfg.ARCHIVE_SMTP_AUTH_PASSWORD) {
    problems.push('  ARCHIVE_SMTP_AUTH_USER and ARCHIVE_SMTP_AUTH_PASSWORD must be set together');
  }
  if (cfg.ARCHIVE_STORE === 's3' && !cfg.ARCHIVE_S3_BUCKET) {
    problems.push('  ARCHIVE_S3_BUCKET: required when ARCHIVE_STORE=s3');
  }
  if (cfg.ARCHIVE_S3_SSE === 'aws:kms' && !cfg.ARCHIVE_S3_SSE_KMS_KEY_ID) {
    problems.push('  ARCHIVE_S3_SSE_KMS_KEY_ID: required when ARCHIVE_S3_SSE=aws:kms');
  }
  if (cfg.ARCHIVE_SIGNING_KEY && !isEd25519Pem(cfg.ARCHIVE_SIGNING_KEY)) {
    problems.push('  ARCHIVE_SIGNING_KEY: not an Ed25519 private key in PKCS#8 PEM');
  }
  if (cfg.ARCHIVE_OIDC_ISSUER && (!cfg.ARCHIVE_OIDC_CLIENT_ID || !cfg.ARCHIVE_OIDC_REDIRECT_URL)) {
    problems.push('  ARCHIVE_OIDC_CLIENT_ID and ARCHIVE_OIDC_REDIRECT_URL: required when ARCHIVE_OIDC_ISSUER is set');
  }
  if (problems.length) throw new ConfigError(`Invalid configuration:\n${problems.join('\n')}`);
  return { ...cfg, dataDir: path.resolve(cfg.ARCHIVE_DATA_DIR) };
}

/** Whether a setting holds an Ed25519 private key (PEM; `\n` escapes as env files write them). */
function isEd25519Pem(v: string): boolean {
  try {
    return createPrivateKey(v.replace(/\\n/g, '\n')).asymmetricKeyType === 'ed25519';
  } catch {
    return false;
  }
}

/** The configuration with secrets replaced, for `archive config` and logs. */
export function redactConfig(cfg: Config): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(envSchema.shape) as (keyof Env)[]) {
    const v = cfg[key];
    out[key] = (SECRET_KEYS as readonly string[]).includes(key) && v !== undefined ? redactValue(key, String(v)) : v;
  }
  out.dataDir = cfg.dataDir;
  return out;
}

function redactValue(key: string, v: string): string {
  // A Redis URL is useful to see, its password is not.
  if (key === 'ARCHIVE_REDIS_URL') {
    try {
      const u = new URL(v);
      if (u.password) u.password = '***';
      return u.toString();
    } catch {
      return '***';
    }
  }
  return '***';
}
