/**
 * The HTTP application: health, the API and its OpenAPI document, on one port.
 *
 * Order matters: security headers first, then authentication (default deny
 * for every `/api/*` path but the routes declared public), then body
 * parsing (so an unauthenticated client cannot make us parse a body of a
 * route it may not call), then rate limits, then the routes.
 */
import express, { type Express, type Request, type RequestHandler } from 'express';
import helmet from 'helmet';
import { ipKeyGenerator, rateLimit } from 'express-rate-limit';
import type { Services } from '../services.js';
import { TooManyRequestsError } from '../errors.js';
import { errorHandler } from './error-handler.js';
import { healthRouter } from './health.routes.js';
import { searchRouter } from './search.routes.js';
import { jobsRouter } from './jobs.routes.js';
import { ingestStatsRouter } from './ingest-stats.routes.js';
import { authRouter } from './auth.routes.js';
import { usersRouter } from './users.routes.js';
import { auditRouter } from './audit.routes.js';
import { exportsRouter } from './exports.routes.js';
import { retentionRouter } from './retention.routes.js';
import { messageViewRouter } from './message-view.routes.js';
import { webRouter } from './web.routes.js';
import { authenticate } from './auth-middleware.js';
import { RouteRegistry } from './route-registry.js';

/** Largest JSON request body, in bytes. Queries are at most 2,000 characters; nothing legitimate is bigger. */
const JSON_LIMIT = '256kb';

/** Paths outside the registry that need no credentials. */
const OPEN_PATHS = new Set(['/api/openapi.json']);

/**
 * A per-node, in-memory rate limit over one minute. Each node counts its
 * own clients (behind a load balancer the effective limit is nodes × limit);
 * the per-account sign-in backoff and lockout, which are in the catalog, are
 * what holds cluster-wide.
 */
function perMinute(limit: number, what: string, key: (req: Request) => string): RequestHandler {
  return rateLimit({
    windowMs: 60_000,
    limit,
    standardHeaders: 'draft-7',
    legacyHeaders: false,
    keyGenerator: key,
    // X-Forwarded-For is trusted only as ARCHIVE_HTTP_TRUST_PROXY says; the library need not warn about it.
    validate: { xForwardedForHeader: false },
    handler: (req, _res, next) => {
      const reset = (req as Request & { rateLimit?: { resetTime?: Date } }).rateLimit?.resetTime;
      next(new TooManyRequestsError(`Too many ${what}; slow down`, reset ? Math.max(1, Math.ceil((reset.getTime() - Date.now()) / 1000)) : 60));
    },
  });
}

const clientKey = (req: Request) => ipKeyGenerator(req.ip ?? 'unknown');

export function createHttpApp(services: Services): Express & { registry: RouteRegistry } {
  const { config } = services;
  const log = services.log.child({ component: 'http' });
  const app = express();
  const registry = new RouteRegistry({ audit: services.audit, log });
  app.disable('x-powered-by');
  app.set('trust proxy', config.ARCHIVE_HTTP_TRUST_PROXY.length ? config.ARCHIVE_HTTP_TRUST_PROXY : false);
  app.set('query parser', 'simple');
  app.use(
    helmet({
      // An API: nothing it answers is a page that loads anything. (The web UI sets its own policy.)
      contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"], baseUri: ["'none'"], formAction: ["'none'"] } },
      crossOriginResourcePolicy: { policy: 'same-origin' },
      referrerPolicy: { policy: 'no-referrer' },
      // HSTS only means something over HTTPS, which is what secure cookies assume.
      strictTransportSecurity: config.ARCHIVE_COOKIE_SECURE,
    }),
  );
  app.use(healthRouter(services));
  app.use(authenticate(services.auth, { cookieSecure: config.ARCHIVE_COOKIE_SECURE, isPublic: (method, path) => OPEN_PATHS.has(path) || registry.isPublic(method, path) }));
  app.use(express.json({ limit: JSON_LIMIT }));
  app.use(['/api/auth/sign-in', '/api/auth/oidc'], perMinute(config.ARCHIVE_RATE_LIMIT_SIGN_IN, 'sign-in attempts', clientKey));
  app.use('/api/search', perMinute(config.ARCHIVE_RATE_LIMIT_SEARCH, 'searches', (req) => (req.user ? `user:${req.user.email}` : clientKey(req))));
  app.use(authRouter(services, registry));
  app.use(searchRouter(services, registry));
  app.use(jobsRouter(services, registry));
  app.use(ingestStatsRouter(services, registry));
  app.use(usersRouter(services, registry));
  app.use(auditRouter(services, registry));
  app.use(exportsRouter(services, registry));
  app.use(retentionRouter(services, registry));
  app.use(messageViewRouter(services, registry));
  const openApi = registry.openApi({
    title: 'Mail archive API',
    version: '0.1.0',
    description:
      'Search, read and download archived mail. Every call needs `Authorization: Bearer <token>` or a session cookie (then also `X-CSRF-Token` on state-changing calls), except sign-in. ' +
      'Errors are `{error: {code, message}}`. Query language: docs/search.md.',
  });
  app.get('/api/openapi.json', (_req, res) => {
    res.json(openApi);
  });
  // The web UI (pages outside /api; no credentials needed to load the page itself, only its API calls).
  app.use(webRouter());
  app.use((_req, res) => {
    res.status(404).json({ error: { code: 'not_found', message: 'No such route' } });
  });
  app.use(errorHandler(log));
  return Object.assign(app, { registry });
}
