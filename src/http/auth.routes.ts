/**
 * Sign-in and the signed-in user's own settings: password sign-in (with
 * TOTP), single sign-on, sign-out, who am I, password change, TOTP
 * enrolment. The identity layer (src/auth) audits each of these itself.
 */
import { Router, type Request, type Response } from 'express';
import { z } from 'zod';
import type { Services } from '../services.js';
import type { RouteRegistry } from './route-registry.js';
import type { SignInResult } from '../auth/auth-service.js';
import type { Actor } from '../auth/types.js';
import { publicUser } from '../auth/types.js';
import { MAX_PASSWORD_LENGTH } from '../auth/password.js';
import { OIDC_FLOW_TTL_MS } from '../auth/oidc.js';
import { NotFoundError, UnauthorizedError } from '../errors.js';
import { cookieNames, parseCookies, principalOf, sessionCookieOptions } from './auth-middleware.js';

export function actorOf(req: Request): Actor {
  return { user: req.user?.email ?? null, clientAddress: req.ip ?? null };
}

const signInBody = z.object({
  email: z.string().min(1).max(320),
  password: z.string().min(1).max(MAX_PASSWORD_LENGTH),
  totp: z.string().max(16).optional().describe('The 6-digit code, when two-factor sign-in is on.'),
});

export function authRouter(s: Services, registry: RouteRegistry): Router {
  const r = Router();
  const secure = s.config.ARCHIVE_COOKIE_SECURE;
  const names = cookieNames(secure);

  const startSession = (res: Response, result: SignInResult) => {
    const maxAge = result.expiresAt - Date.now();
    res.cookie(names.session, result.sessionToken, sessionCookieOptions(secure, maxAge));
    // Readable by the page's script (not httpOnly): it sends it back as X-CSRF-Token.
    res.cookie(names.csrf, result.csrf, { ...sessionCookieOptions(secure, maxAge), httpOnly: false });
  };
  const endSession = (res: Response) => {
    res.clearCookie(names.session, sessionCookieOptions(secure));
    res.clearCookie(names.csrf, { ...sessionCookieOptions(secure), httpOnly: false });
  };

  registry.add(
    r,
    { method: 'get', path: '/api/auth/providers', tag: 'auth', summary: 'How one can sign in here', access: 'public', responses: { 200: '`{password: true, oidc: {enabled, loginUrl}}`' } },
    (_i, _req, res) => {
      res.json({ password: true, oidc: { enabled: !!s.oidc, loginUrl: s.oidc ? '/api/auth/oidc/login' : null } });
    },
  );

  registry.add(
    r,
    {
      method: 'post',
      path: '/api/auth/sign-in',
      tag: 'auth',
      summary: 'Password sign-in: sets the session cookie and returns the CSRF token',
      access: 'public',
      body: signInBody,
      responses: {
        200: '`{user, csrf, expiresAt}`',
        401: 'Wrong e-mail, password or one-time code (`totp_required` when a code is needed)',
        429: 'Too many failed attempts: wait (Retry-After) or the account is locked',
      },
    },
    async ({ body }, req, res) => {
      const result = await s.auth.signIn(body, actorOf(req));
      startSession(res, result);
      res.json({ user: result.user, csrf: result.csrf, expiresAt: new Date(result.expiresAt).toISOString() });
    },
  );

  registry.add(
    r,
    { method: 'post', path: '/api/auth/sign-out', tag: 'auth', summary: 'Ends the browser session', access: 'authenticated', responses: { 204: 'Signed out' } },
    async (_i, req, res) => {
      await s.auth.signOut(principalOf(req), actorOf(req));
      endSession(res);
      res.status(204).end();
    },
  );

  registry.add(
    r,
    { method: 'get', path: '/api/auth/me', tag: 'auth', summary: 'Who you are: roles, scope, and (for a session) the CSRF token', access: 'authenticated', responses: { 200: '`{user, via, scope, csrf?}`' } },
    async (_i, req, res) => {
      const p = principalOf(req);
      const user = await s.auth.getUser(p.email);
      if (!user) throw new UnauthorizedError();
      res.json({ user: publicUser(user), via: p.via, scope: p.userScope, mustChangePassword: p.mustChangePassword, ...(p.csrf ? { csrf: p.csrf } : {}) });
    },
  );

  registry.add(
    r,
    {
      method: 'post',
      path: '/api/auth/password',
      tag: 'auth',
      summary: 'Choose a new password (required after a one-time password)',
      access: 'authenticated',
      body: z.object({ currentPassword: z.string().min(1).max(MAX_PASSWORD_LENGTH), newPassword: z.string().min(1).max(MAX_PASSWORD_LENGTH) }),
      responses: { 204: 'Changed', 400: 'Too short or unchanged', 401: 'The current password is wrong' },
    },
    async ({ body }, req, res) => {
      await s.auth.changePassword(principalOf(req).email, body.currentPassword, body.newPassword, actorOf(req));
      res.status(204).end();
    },
  );

  registry.add(
    r,
    { method: 'post', path: '/api/auth/totp/setup', tag: 'auth', summary: 'Start two-factor sign-in: a new TOTP secret (confirm it with /api/auth/totp/enable)', access: 'authenticated', responses: { 200: '`{secret, otpauthUri}`' } },
    async (_i, req, res) => {
      res.json(await s.auth.totpSetup(principalOf(req).email, actorOf(req)));
    },
  );
  registry.add(
    r,
    { method: 'post', path: '/api/auth/totp/enable', tag: 'auth', summary: 'Turn two-factor sign-in on with a first code', access: 'authenticated', body: z.object({ code: z.string().min(6).max(16) }), responses: { 204: 'On', 400: 'Wrong code' } },
    async ({ body }, req, res) => {
      await s.auth.totpEnable(principalOf(req).email, body.code, actorOf(req));
      res.status(204).end();
    },
  );
  registry.add(
    r,
    { method: 'post', path: '/api/auth/totp/disable', tag: 'auth', summary: 'Turn two-factor sign-in off (needs the password)', access: 'authenticated', body: z.object({ password: z.string().min(1).max(MAX_PASSWORD_LENGTH) }), responses: { 204: 'Off', 401: 'Wrong password' } },
    async ({ body }, req, res) => {
      await s.auth.totpDisable(principalOf(req).email, body.password, actorOf(req));
      res.status(204).end();
    },
  );

  // ---- single sign-on (OpenID Connect)

  const oidcCookie = { httpOnly: true, secure, sameSite: 'lax' as const, path: '/' };
  registry.add(
    r,
    {
      method: 'get',
      path: '/api/auth/oidc/login',
      tag: 'auth',
      summary: 'Start single sign-on: redirects to the OpenID provider',
      access: 'public',
      query: z.object({ returnTo: z.string().max(2000).optional().describe('Local path to return to after sign-in.') }),
      responses: { 302: 'To the provider', 404: 'Single sign-on is not configured' },
    },
    async ({ query }, _req, res) => {
      if (!s.oidc) throw new NotFoundError('Single sign-on is not configured');
      const { url, state } = await s.oidc.begin(query.returnTo);
      res.cookie(names.oidc, state, { ...oidcCookie, maxAge: OIDC_FLOW_TTL_MS });
      res.redirect(302, url);
    },
  );
  registry.add(
    r,
    {
      method: 'get',
      path: '/api/auth/oidc/callback',
      tag: 'auth',
      summary: 'Single sign-on callback (the redirect URL registered at the provider)',
      access: 'public',
      query: z.record(z.string().max(8192)),
      responses: { 302: 'Signed in: to the page the flow started from', 401: 'The provider’s answer was refused', 403: 'No archive role for your groups' },
    },
    async ({ query }, req, res) => {
      if (!s.oidc) throw new NotFoundError('Single sign-on is not configured');
      const state = parseCookies(req.headers.cookie)[names.oidc];
      res.clearCookie(names.oidc, oidcCookie);
      const { result, returnTo } = await s.oidc.complete(query, state, actorOf(req));
      startSession(res, result);
      res.redirect(302, returnTo);
    },
  );
  return r;
}
