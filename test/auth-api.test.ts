/**
 * Users, roles, sign-in, sessions, tokens and hardening, through the real
 * HTTP API of a running archive:
 * - every route of the registry answers 401 without credentials (the list
 *   comes from the registry itself, so a new route cannot escape it);
 * - roles guard every route (an auditor sees no content);
 * - password sign-in, one-time passwords, session cookies, CSRF, sign-out;
 * - TOTP; API tokens (hashed, expiring, revocable);
 * - brute force: failures are slowed, then the account locks, and the
 *   lockout is in the audit trail;
 * - helmet headers, body limits, no stack traces, rate limits.
 *
 * On both deployments: users, tokens, sessions, throttles and the audit
 * trail live in the catalog (SQLite, or OpenSearch in scale-out).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startInProcess } from './helpers/archive-process.js';
import { dropModeIndices, MODES } from './helpers/modes.js';
import { makeUser, TEST_ACTOR, type TestUser } from './helpers/auth.js';
import type { RunningArchive } from '../src/main.js';
import { totp } from '../src/auth/totp.js';
import { SESSIONS, TOKENS, type SessionRecord, type TokenRecord } from '../src/auth/types.js';

type Archive = RunningArchive & { dataDir: string };

/** Routes that answer without credentials. Adding one is a deliberate act: list it here. */
const PUBLIC_ROUTES = new Set([
  'get /api/auth/providers',
  'post /api/auth/sign-in',
  'get /api/auth/oidc/login',
  'get /api/auth/oidc/callback',
  // The public half of the export-manifest signing key (exports).
  'get /api/keys/signing',
]);

/** A concrete path for a declared route: parameters filled with plausible values. */
function concretePath(path: string): string {
  return path
    .replace(':id', 'a'.repeat(64))
    .replace(':n', '0')
    .replace(':queue', 'index-message')
    .replace(':email', 'someone@example.com')
    .replace(':name', 'group')
    .replace(/:[A-Za-z]+/g, 'x');
}

function cookieJar() {
  const jar = new Map<string, string>();
  return {
    take(res: Response) {
      for (const c of res.headers.getSetCookie()) {
        const [pair] = c.split(';');
        const eq = pair.indexOf('=');
        const name = pair.slice(0, eq);
        const value = pair.slice(eq + 1);
        if (value === '' || /expires=Thu, 01 Jan 1970/i.test(c)) jar.delete(name);
        else jar.set(name, value);
      }
    },
    header: () => [...jar].map(([k, v]) => `${k}=${v}`).join('; '),
    get: (name: string) => jar.get(name),
  };
}

describe.each(MODES.filter((m) => m.enabled))('authentication and roles ($mode)', ({ mode, env }) => {
  let archive: Archive;
  let modeEnv: Record<string, string>;
  let base: string;
  // The sign-in backoff after the 2nd failure. Scale-out answers slower (each failure writes a throttle
  // and audit records to OpenSearch, ~5-10× the SQLite time on a loaded machine), so it gets a longer one:
  // "right away" must stay well inside it.
  const backoffMs = mode === 'embedded' ? 300 : 1000;
  let admin: TestUser;
  let officer: TestUser;
  let reviewer: TestUser;
  let auditor: TestUser;
  let auditorOfficer: TestUser;

  beforeAll(async () => {
    modeEnv = await env();
    archive = await startInProcess({ ...modeEnv, ARCHIVE_COOKIE_SECURE: 'false', ARCHIVE_RATE_LIMIT_SIGN_IN: '1000', ARCHIVE_AUTH_BACKOFF_MS: String(backoffMs), ARCHIVE_AUTH_LOCKOUT_THRESHOLD: '5', ARCHIVE_AUTH_LOCKOUT_MINUTES: '1' });
    base = `http://127.0.0.1:${archive.httpPort}`;
    admin = await makeUser(archive.services, base, { roles: ['admin'] });
    officer = await makeUser(archive.services, base, { roles: ['officer'] });
    reviewer = await makeUser(archive.services, base, { roles: ['reviewer'] });
    auditor = await makeUser(archive.services, base, { roles: ['auditor'] });
    auditorOfficer = await makeUser(archive.services, base, { roles: ['auditor', 'officer'] });
    expect(archive.services.catalog.driver).toBe(mode === 'embedded' ? 'sqlite' : 'opensearch');
  });
  afterAll(async () => {
    await archive?.close();
    await dropModeIndices(modeEnv);
  });

  it('there are no default credentials: a fresh archive has no users and refuses the usual guesses', async () => {
    // A fresh deployment: its own data directory, and in scale-out its own bucket and index prefix.
    const freshEnv = await env();
    const fresh = await startInProcess({ ...freshEnv, ARCHIVE_COOKIE_SECURE: 'false' });
    try {
      expect(await fresh.services.auth.listUsers()).toEqual([]);
      for (const [email, password] of [
        ['admin', 'admin'],
        ['admin@localhost', 'admin'],
        ['root@localhost', 'password'],
      ]) {
        const r = await fetch(`http://127.0.0.1:${fresh.httpPort}/api/auth/sign-in`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email, password }) });
        expect(r.status).toBe(401);
      }
    } finally {
      await fresh.close();
      await dropModeIndices(freshEnv);
    }
  });

  it('every endpoint without credentials answers 401 (the list comes from the route registry)', async () => {
    // The registry of an app built by the same code as the running one.
    const { createHttpApp } = await import('../src/http/app.js');
    const routes = createHttpApp(archive.services).registry.routes();
    expect(routes.length).toBeGreaterThan(20);
    const declaredPublic = routes.filter((r) => r.access === 'public').map((r) => `${r.method} ${r.path}`);
    for (const p of declaredPublic) expect(PUBLIC_ROUTES, `${p} is public: list it in PUBLIC_ROUTES deliberately`).toContain(p);
    const checked: string[] = [];
    for (const route of routes) {
      if (route.access === 'public') continue;
      const path = concretePath(route.path);
      for (const headers of <Record<string, string>[]>[{}, { authorization: 'Bearer arc_0123456789abcdef_' + 'A'.repeat(43) }, { authorization: 'Basic YWRtaW46YWRtaW4=' }, { cookie: 'archive_session=' + 'A'.repeat(43) }]) {
        const r = await fetch(`${base}${path}`, {
          method: route.method.toUpperCase(),
          headers: { ...headers, ...(route.method === 'get' ? {} : { 'content-type': 'application/json' }) },
          ...(route.method === 'get' ? {} : { body: '{}' }),
        });
        expect(r.status, `${route.method.toUpperCase()} ${path} with ${JSON.stringify(headers)}`).toBe(401);
        const body = (await r.json()) as { error: { code: string } };
        expect(body.error.code).toBe('unauthorized');
      }
      checked.push(`${route.method} ${route.path}`);
    }
    expect(checked.length).toBe(routes.length - declaredPublic.length);
    // Paths that match no route are refused before anything else, too.
    expect((await fetch(`${base}/api/no-such-route`)).status).toBe(401);
    // What stays open: health and the API description.
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/api/openapi.json`)).status).toBe(200);
  });

  it('the OpenAPI document lists the new routes with their roles', async () => {
    const doc = (await (await fetch(`${base}/api/openapi.json`)).json()) as { paths: Record<string, Record<string, { security?: unknown[]; 'x-roles'?: string[] }>> };
    for (const p of ['/api/auth/sign-in', '/api/auth/me', '/api/users', '/api/tokens', '/api/audit', '/api/audit/export.csv', '/api/audit/verify', '/api/custodian-groups/{name}']) expect(Object.keys(doc.paths)).toContain(p);
    expect(doc.paths['/api/auth/sign-in'].post.security).toEqual([]);
    expect(doc.paths['/api/search'].get['x-roles']).toEqual(['officer', 'reviewer']);
    expect(doc.paths['/api/audit'].get['x-roles']).toEqual(['auditor']);
  });

  it('roles: content needs officer or reviewer; an auditor alone sees no content; admin routes need admin; the trail needs auditor', async () => {
    const id = 'a'.repeat(64);
    const content = ['/api/search?q=x', `/api/messages/${id}`, `/api/messages/${id}/raw`, `/api/messages/${id}/attachments/0`, `/api/messages/${id}/thread`];
    for (const p of content) {
      expect((await admin.fetch(p)).status, `admin ${p}`).toBe(403);
      expect((await auditor.fetch(p)).status, `auditor ${p}`).toBe(403);
      expect([200, 404]).toContain((await officer.fetch(p)).status);
      expect([200, 404]).toContain((await reviewer.fetch(p)).status);
      expect([200, 404]).toContain((await auditorOfficer.fetch(p)).status);
    }
    for (const p of ['/api/users', '/api/jobs', '/api/custodian-groups']) {
      expect((await admin.fetch(p)).status).toBe(200);
      for (const u of [officer, reviewer, auditor]) expect((await u.fetch(p)).status).toBe(403);
    }
    for (const p of ['/api/audit', '/api/audit/verify', '/api/audit/head', '/api/audit/export.csv']) {
      expect((await auditor.fetch(p)).status).toBe(200);
      for (const u of [admin, officer, reviewer]) expect((await u.fetch(p)).status).toBe(403);
    }
    // The denial is itself in the trail.
    const denied = await archive.services.audit.search({ user: auditor.email, action: 'search', outcome: 'denied' });
    expect(denied.records.length).toBeGreaterThan(0);
  });

  it('an admin creates a user with a one-time password; the first sign-in must change it; cookies are httpOnly and SameSite', async () => {
    const created = await admin.fetch('/api/users', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'New.Officer@Example.com', roles: ['officer'], scope: { domains: ['example.com'] } }),
    });
    expect(created.status).toBe(201);
    const { user, password } = (await created.json()) as { user: { email: string; mustChangePassword: boolean }; password: string };
    expect(user).toMatchObject({ email: 'new.officer@example.com', mustChangePassword: true });
    expect(password).toMatch(/^[A-Za-z0-9]{20}$/);
    // The stored record holds a scrypt hash, never the password.
    const stored = await archive.services.auth.getUser('new.officer@example.com');
    expect(stored!.passwordHash).toMatch(/^scrypt\$32768\$8\$1\$/);
    expect(JSON.stringify(stored)).not.toContain(password);

    const jar = cookieJar();
    const signIn = await fetch(`${base}/api/auth/sign-in`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: 'new.officer@example.com', password }) });
    expect(signIn.status).toBe(200);
    const setCookies = signIn.headers.getSetCookie();
    const session = setCookies.find((c) => c.startsWith('archive_session='))!;
    expect(session).toMatch(/HttpOnly/i);
    expect(session).toMatch(/SameSite=Lax/i);
    expect(session).toMatch(/Path=\//);
    expect(setCookies.find((c) => c.startsWith('archive_csrf='))).not.toMatch(/HttpOnly/i);
    jar.take(signIn);
    const { csrf } = (await signIn.json()) as { csrf: string };

    const withSession = (path: string, init: RequestInit = {}) => fetch(`${base}${path}`, { ...init, headers: { ...(init.headers as Record<string, string>), cookie: jar.header() } });
    // Until the password is changed, only /me, /password and sign-out answer.
    expect((await withSession('/api/search?q=x')).status).toBe(403);
    expect(((await (await withSession('/api/search?q=x')).json()) as { error: { code: string } }).error.code).toBe('password_change_required');
    expect((await withSession('/api/auth/me')).status).toBe(200);
    // CSRF: a state-changing request with the cookie but without the token is refused.
    const noCsrf = await withSession('/api/auth/password', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ currentPassword: password, newPassword: 'a much better passphrase' }) });
    expect(noCsrf.status).toBe(403);
    expect(((await noCsrf.json()) as { error: { code: string } }).error.code).toBe('csrf_failed');
    const wrongCsrf = await withSession('/api/auth/password', { method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': csrf.replace(/^./, (c) => (c === 'A' ? 'B' : 'A')) }, body: JSON.stringify({ currentPassword: password, newPassword: 'a much better passphrase' }) });
    expect(wrongCsrf.status).toBe(403);
    const tooShort = await withSession('/api/auth/password', { method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': csrf }, body: JSON.stringify({ currentPassword: password, newPassword: 'short' }) });
    expect(tooShort.status).toBe(400);
    const changed = await withSession('/api/auth/password', { method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': csrf }, body: JSON.stringify({ currentPassword: password, newPassword: 'a much better passphrase' }) });
    expect(changed.status).toBe(204);
    expect((await withSession('/api/search?q=x')).status).toBe(200);
    // POST search with the session needs the CSRF token too.
    expect((await withSession('/api/search', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"q":"x"}' })).status).toBe(403);
    expect((await withSession('/api/search', { method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': csrf }, body: '{"q":"x"}' })).status).toBe(200);
    const me = (await (await withSession('/api/auth/me')).json()) as { user: { email: string; roles: string[] }; scope: unknown; via: string; csrf: string };
    expect(me).toMatchObject({ user: { email: 'new.officer@example.com', roles: ['officer'] }, scope: { domains: ['example.com'], addresses: [], groups: [] }, via: 'session', csrf });

    // The one-time password no longer works; the new one does.
    expect((await fetch(`${base}/api/auth/sign-in`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: 'new.officer@example.com', password }) })).status).toBe(401);

    // Sign-out ends the session for good.
    const out = await withSession('/api/auth/sign-out', { method: 'POST', headers: { 'x-csrf-token': csrf } });
    expect(out.status).toBe(204);
    expect((await withSession('/api/auth/me')).status).toBe(401);
  });

  it('secure cookies use the __Host- prefix and the Secure flag', async () => {
    const secureEnv = await env();
    const secure = await startInProcess({ ...secureEnv, ARCHIVE_COOKIE_SECURE: 'true' });
    try {
      const u = await makeUser(secure.services, '', { roles: ['reviewer'] });
      await secure.services.auth.changePassword(u.email, u.password, 'correct horse battery staple', TEST_ACTOR);
      const r = await fetch(`http://127.0.0.1:${secure.httpPort}/api/auth/sign-in`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: u.email, password: 'correct horse battery staple' }) });
      expect(r.status).toBe(200);
      const session = r.headers.getSetCookie().find((c) => c.startsWith('__Host-archive_session='))!;
      expect(session).toMatch(/; Secure/i);
      expect(session).toMatch(/HttpOnly/i);
      expect(r.headers.get('strict-transport-security')).toMatch(/max-age=/);
    } finally {
      await secure.close();
      await dropModeIndices(secureEnv);
    }
  });

  it('TOTP: enrolment, sign-in needs the code, a wrong or replayed code fails', async () => {
    const u = await makeUser(archive.services, base, { roles: ['reviewer'] });
    await archive.services.auth.changePassword(u.email, u.password, 'two factor passphrase', TEST_ACTOR);
    const setup = (await (await u.fetch('/api/auth/totp/setup', { method: 'POST' })).json()) as { secret: string; otpauthUri: string };
    expect(setup.otpauthUri).toContain(`secret=${setup.secret}`);
    expect((await u.fetch('/api/auth/totp/enable', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code: '000000' === totp(setup.secret, Date.now()) ? '111111' : '000000' }) })).status).toBe(400);
    // The enabling code's step is used up; the next sign-in needs a later one.
    const enableAt = Date.now() - 30_000;
    expect((await u.fetch('/api/auth/totp/enable', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code: totp(setup.secret, enableAt) }) })).status).toBe(204);

    const signIn = (body: Record<string, string>) => fetch(`${base}/api/auth/sign-in`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: u.email, password: 'two factor passphrase', ...body }) });
    const needCode = await signIn({});
    expect(needCode.status).toBe(401);
    expect(((await needCode.json()) as { error: { code: string } }).error.code).toBe('totp_required');
    const code = totp(setup.secret, Date.now());
    const wrong = code === '123456' ? '654321' : '123456';
    expect((await signIn({ totp: wrong })).status).toBe(401);
    await new Promise((r) => setTimeout(r, 50));
    expect((await signIn({ totp: code })).status).toBe(200);
    // The same code again: replay.
    const replay = await signIn({ totp: code });
    expect(replay.status).toBe(401);
    const failures = await archive.services.audit.search({ user: u.email, action: 'auth.sign_in', outcome: 'failure' });
    expect(failures.records.map((r) => r.details.reason)).toEqual(expect.arrayContaining(['wrong one-time code', 'one-time code replayed']));
  });

  it('API tokens: stored as a hash, expire, and are revocable; a user manages only their own', async () => {
    const created = await officer.fetch('/api/tokens', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'script', expiresDays: 1 }) });
    expect(created.status).toBe(201);
    const t = (await created.json()) as { token: string; id: string; expiresAt: string; user: string };
    expect(t.token).toMatch(/^arc_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    expect(t.user).toBe(officer.email);
    expect(Date.parse(t.expiresAt) - Date.now()).toBeGreaterThan(23 * 3600_000);
    const rec = await archive.services.catalog.get<TokenRecord>(TOKENS, t.id);
    // The secret is everything after `arc_<16 hex id>_` (base64url: it may itself contain `_`).
    const secret = t.token.slice('arc_'.length + 16 + 1);
    expect(secret).toHaveLength(43);
    expect(JSON.stringify(rec)).not.toContain(secret);
    expect(rec!.data.hash).toMatch(/^[0-9a-f]{64}$/);

    const useIt = () => fetch(`${base}/api/auth/me`, { headers: { authorization: `Bearer ${t.token}` } });
    expect((await useIt()).status).toBe(200);
    // A token with one character changed is refused.
    const forged = t.token.slice(0, -1) + (t.token.endsWith('A') ? 'B' : 'A');
    expect((await fetch(`${base}/api/auth/me`, { headers: { authorization: `Bearer ${forged}` } })).status).toBe(401);
    // Others cannot revoke it or see it.
    expect((await reviewer.fetch(`/api/tokens/${t.id}`, { method: 'DELETE' })).status).toBe(404);
    expect((await reviewer.fetch(`/api/tokens?user=${encodeURIComponent(officer.email)}`)).status).toBe(403);
    const mine = (await (await officer.fetch('/api/tokens')).json()) as { tokens: { id: string; hash?: string }[] };
    expect(mine.tokens.map((x) => x.id)).toContain(t.id);
    expect(mine.tokens.every((x) => x.hash === undefined)).toBe(true);
    expect((await officer.fetch(`/api/tokens/${t.id}`, { method: 'DELETE' })).status).toBe(200);
    expect((await useIt()).status).toBe(401);

    // Expiry: a token that expired a moment ago is refused.
    const { token: short } = await archive.services.auth.createToken({ email: officer.email, expiresDays: 1 }, TEST_ACTOR);
    const id = short.split('_')[1];
    const cur = await archive.services.catalog.get<TokenRecord>(TOKENS, id);
    await archive.services.catalog.update(TOKENS, id, { ...cur!.data, expiresAt: new Date(Date.now() - 1000).toISOString() }, cur!.version);
    expect((await fetch(`${base}/api/auth/me`, { headers: { authorization: `Bearer ${short}` } })).status).toBe(401);
  });

  it('expired sessions are swept away', async () => {
    const u = await makeUser(archive.services, base, { roles: ['reviewer'] });
    const r = await fetch(`${base}/api/auth/sign-in`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: u.email, password: u.password }) });
    expect(r.status).toBe(200);
    const cookie = r.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
    const sessions = await archive.services.catalog.list<SessionRecord>(SESSIONS, { where: { user: u.email } });
    expect(sessions.records).toHaveLength(1);
    const s0 = sessions.records[0];
    await archive.services.catalog.update(SESSIONS, s0.id, { ...s0.data, expiresAt: Date.now() - 1 }, s0.version);
    expect(await archive.services.auth.sweepExpired()).toBeGreaterThanOrEqual(1);
    expect(await archive.services.catalog.get(SESSIONS, s0.id)).toBeUndefined();
    expect((await fetch(`${base}/api/auth/me`, { headers: { cookie } })).status).toBe(401);
  });

  it('a disabled user is refused at once, whatever credential they hold', async () => {
    const u = await makeUser(archive.services, base, { roles: ['reviewer'] });
    expect((await u.fetch('/api/auth/me')).status).toBe(200);
    const r = await admin.fetch(`/api/users/${encodeURIComponent(u.email)}`, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ disabled: true }) });
    expect(r.status).toBe(200);
    expect((await u.fetch('/api/auth/me')).status).toBe(401);
  });

  it('brute force: failures are slowed, then the account locks, and the lockout is audited', async () => {
    const u = await makeUser(archive.services, base, { roles: ['reviewer'] });
    await archive.services.auth.changePassword(u.email, u.password, 'the right passphrase', TEST_ACTOR);
    const attempt = (password: string) => fetch(`${base}/api/auth/sign-in`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: u.email, password }) });
    const statuses: number[] = [];
    const wrongTimes: number[] = [];
    // Settings: backoff `backoffMs` after the 2nd failure, doubling; lock after 5 failures.
    let failures = 0;
    const t0 = Date.now();
    while (failures < 5) {
      const r = await attempt(`wrong-${failures}`);
      statuses.push(r.status);
      if (r.status === 401) {
        failures++;
        wrongTimes.push(Date.now() - t0);
        continue;
      }
      expect(r.status).toBe(429);
      const retryAfter = Number(r.headers.get('retry-after'));
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      // Slowed: retry right away is refused again without checking the password.
      expect((await attempt('the right passphrase')).status).toBe(429);
      await new Promise((res) => setTimeout(res, (backoffMs + 50) * 2 ** Math.max(0, failures - 2)));
    }
    // The first two wrong passwords answer at once; after that each one waits longer.
    expect(statuses.slice(0, 2)).toEqual([401, 401]);
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(3);
    expect(wrongTimes[4] - wrongTimes[1]).toBeGreaterThanOrEqual(backoffMs * (1 + 2 + 4) - 100);
    // Locked: even the right password is refused now.
    const locked = await attempt('the right passphrase');
    expect(locked.status).toBe(429);
    expect(((await locked.json()) as { error: { message: string } }).error.message).toMatch(/locked/);
    // The lockout is itself in the trail, and so are the failures.
    const lockouts = await archive.services.audit.search({ action: 'auth.lockout', target: u.email });
    expect(lockouts.records).toHaveLength(1);
    expect(lockouts.records[0]).toMatchObject({ outcome: 'denied', user: u.email, clientAddress: expect.stringMatching(/127\.0\.0\.1/) });
    expect(lockouts.records[0].details.failures).toBe(5);
    const failed = await archive.services.audit.search({ action: 'auth.sign_in', user: u.email, outcome: 'failure' });
    expect(failed.records).toHaveLength(5);
    const deniedLocked = await archive.services.audit.search({ action: 'auth.sign_in', user: u.email, outcome: 'denied' });
    expect(deniedLocked.records.some((r) => r.details.reason === 'locked')).toBe(true);
    // An admin can lift it (audited), and the right password works again.
    expect((await admin.fetch(`/api/users/${encodeURIComponent(u.email)}/unlock`, { method: 'POST' })).status).toBe(204);
    expect((await attempt('the right passphrase')).status).toBe(200);
    expect((await archive.services.audit.search({ action: 'user.unlock', target: u.email })).records).toHaveLength(1);
  });

  it('unknown accounts get the same answers as known ones (no enumeration), and are throttled alike', async () => {
    const attempt = (email: string) => fetch(`${base}/api/auth/sign-in`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email, password: 'guess' }) });
    const a = await attempt('nobody@nowhere.example');
    expect(a.status).toBe(401);
    expect(await a.json()).toEqual({ error: { code: 'unauthorized', message: 'Invalid e-mail or password' } });
    await attempt('nobody@nowhere.example');
    expect((await attempt('nobody@nowhere.example')).status).toBe(429);
  });

  it('hardening: security headers, body size limit, malformed JSON, and no stack traces', async () => {
    const r = await officer.fetch('/api/search?q=x');
    expect(r.headers.get('content-security-policy')).toContain("default-src 'none'");
    expect(r.headers.get('x-content-type-options')).toBe('nosniff');
    expect(r.headers.get('x-frame-options')).toBe('SAMEORIGIN');
    expect(r.headers.get('x-powered-by')).toBeNull();
    expect(r.headers.get('referrer-policy')).toBe('no-referrer');

    const big = await officer.fetch('/api/search', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ q: 'x'.repeat(300 * 1024) }) });
    expect(big.status).toBe(413);
    const bad = await fetch(`${base}/api/auth/sign-in`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"email": ' });
    expect(bad.status).toBe(400);
    const badText = await bad.text();
    expect(badText).not.toMatch(/\bat .*\.(js|ts):\d+/);
    expect(badText).not.toMatch(/node_modules/);

    // An unexpected failure deep inside answers a generic 500: no message, no stack.
    const search = archive.services.search;
    const original = search.search;
    search.search = async () => {
      throw new Error('secret internals at /work/main/search/x.ts:12:3');
    };
    try {
      const boom = await officer.fetch('/api/search?q=x');
      expect(boom.status).toBe(500);
      const text = await boom.text();
      expect(JSON.parse(text)).toEqual({ error: { code: 'internal', message: 'Internal error' } });
      expect(text).not.toContain('secret internals');
    } finally {
      search.search = original;
    }
  });
});

describe.each(MODES.filter((m) => m.enabled))('rate limits ($mode)', ({ env }) => {
  it('sign-in and search are rate-limited per client and per user', async () => {
    const modeEnv = await env();
    const archive = await startInProcess({ ...modeEnv, ARCHIVE_COOKIE_SECURE: 'false', ARCHIVE_RATE_LIMIT_SIGN_IN: '4', ARCHIVE_RATE_LIMIT_SEARCH: '3' });
    try {
      const base = `http://127.0.0.1:${archive.httpPort}`;
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) {
        const r = await fetch(`${base}/api/auth/sign-in`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: `u${i}@x.example`, password: 'p' }) });
        statuses.push(r.status);
      }
      expect(statuses.slice(0, 4)).toEqual([401, 401, 401, 401]);
      expect(statuses.slice(4)).toEqual([429, 429]);
      const u = await makeUser(archive.services, base, { roles: ['officer'] });
      const other = await makeUser(archive.services, base, { roles: ['officer'] });
      const s: number[] = [];
      for (let i = 0; i < 5; i++) s.push((await u.fetch('/api/search?q=x')).status);
      expect(s).toEqual([200, 200, 200, 429, 429]);
      const limited = await u.fetch('/api/search?q=x');
      expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
      // Another user has their own budget.
      expect((await other.fetch('/api/search?q=x')).status).toBe(200);
    } finally {
      await archive.close();
      await dropModeIndices(modeEnv);
    }
  });
});
