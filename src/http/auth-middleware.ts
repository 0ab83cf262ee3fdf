/**
 * Authentication of API requests, before any route runs: a Bearer token
 * (API clients) or the session cookie (browsers). Default deny: every
 * `/api/*` request needs one, except the routes declared `access: 'public'`.
 * It sets `req.user` and `req.scope`; the routes' role guards come from
 * their declarations (route-registry.ts).
 *
 * CSRF: a request authenticated by the session cookie that changes state
 * (any method but GET, HEAD, OPTIONS) must echo the session's CSRF token in
 * `X-CSRF-Token` (the token is returned at sign-in, by `GET /api/auth/me`
 * and in the `archive_csrf` cookie). A cross-site page can make the browser
 * send the cookie but cannot read the token. Bearer requests carry no
 * ambient credential and need no CSRF token.
 */
import { timingSafeEqual } from 'node:crypto';
import type { CookieOptions, NextFunction, Request, RequestHandler, Response } from 'express';
import type { AuthService } from '../auth/auth-service.js';
import type { Principal } from '../auth/types.js';
import '../auth/request.js';
import { AppError, UnauthorizedError } from '../errors.js';

export interface CookieNames {
  session: string;
  csrf: string;
  oidc: string;
}

/** `__Host-` cookies are bound to this exact origin (Secure, Path=/, no Domain): only with Secure cookies. */
export function cookieNames(secure: boolean): CookieNames {
  const p = secure ? '__Host-' : '';
  return { session: `${p}archive_session`, csrf: `${p}archive_csrf`, oidc: `${p}archive_oidc` };
}

export function parseCookies(header: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!header) return out;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const name = part.slice(0, eq).trim();
    let value = part.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    if (!name || name in out) continue;
    try {
      out[name] = decodeURIComponent(value);
    } catch {
      out[name] = value;
    }
  }
  return out;
}

export function sessionCookieOptions(secure: boolean, maxAgeMs?: number): CookieOptions {
  return { httpOnly: true, secure, sameSite: 'lax', path: '/', ...(maxAgeMs !== undefined ? { maxAge: maxAgeMs } : {}) };
}

/** Routes a user who must change a one-time password may still call. */
const PASSWORD_CHANGE_ALLOWED = new Set(['/api/auth/me', '/api/auth/password', '/api/auth/sign-out']);

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

function sameToken(a: string | undefined, b: string | undefined): boolean {
  if (!a || !b || a.length !== b.length) return false;
  return timingSafeEqual(Buffer.from(a), Buffer.from(b));
}

export function authenticate(auth: AuthService, opts: { cookieSecure: boolean; isPublic: (method: string, path: string) => boolean }): RequestHandler {
  const names = cookieNames(opts.cookieSecure);
  return (req: Request, res: Response, next: NextFunction) => {
    if (!req.path.startsWith('/api/') || opts.isPublic(req.method, req.path)) {
      next();
      return;
    }
    void (async () => {
      let principal: Principal;
      const header = req.headers.authorization;
      if (header !== undefined) {
        const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
        if (!m) throw new UnauthorizedError('Use Authorization: Bearer <token>');
        principal = await auth.authenticateToken(m[1]);
      } else {
        const cookie = parseCookies(req.headers.cookie)[names.session];
        if (!cookie) throw new UnauthorizedError();
        principal = await auth.authenticateSession(cookie);
        if (!SAFE_METHODS.has(req.method) && !sameToken(req.get('x-csrf-token'), principal.csrf)) {
          throw new AppError('csrf_failed', 403, 'Missing or wrong X-CSRF-Token header');
        }
      }
      if (principal.mustChangePassword && !PASSWORD_CHANGE_ALLOWED.has(req.path)) {
        throw new AppError('password_change_required', 403, 'Choose a new password first (POST /api/auth/password)');
      }
      req.user = principal;
      req.scope = principal.scope;
    })().then(
      () => next(),
      (err: unknown) => {
        if (err instanceof UnauthorizedError) res.setHeader('WWW-Authenticate', 'Bearer realm="archive"');
        next(err);
      },
    );
  };
}

/** The signed-in principal of a route that requires one (the middleware guarantees it). */
export function principalOf(req: Request): Principal {
  if (!req.user) throw new UnauthorizedError();
  return req.user;
}
