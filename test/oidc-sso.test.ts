/**
 * Single sign-on against a real OpenID Provider (npm oidc-provider, a
 * certified implementation) started in the test:
 * - the whole authorization-code flow with PKCE, through redirects and
 *   cookies as a browser follows them, ending in an archive session;
 * - group-to-role and group-to-scope mapping (ARCHIVE_OIDC_GROUP_MAP), with
 *   the scope enforced on search and roles recomputed at each sign-in;
 * - refusals: an ID token altered in transit (bad signature), a state that
 *   does not match the browser, a replayed callback, groups that map to no
 *   role. Each is audited.
 *
 * The provider sits behind a small HTTP proxy at the issuer URL, which can
 * alter the token endpoint's answer on the way to the archive.
 *
 * On both deployments: the sign-in attempts, sessions and the trail live in
 * the catalog, the scoped search runs on SQLite or OpenSearch.
 */
import http from 'node:http';
import { Readable } from 'node:stream';
import Provider from 'oidc-provider';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startInProcess } from './helpers/archive-process.js';
import { dropModeIndices, MODES, waitForIndexed } from './helpers/modes.js';
import type { RunningArchive } from '../src/main.js';

interface Account {
  email: string;
  name: string;
  groups: string[];
  emailVerified?: boolean;
}

const GROUP_MAP = {
  'archive-officers': { roles: ['officer'], scope: { domains: ['corp.example'] } },
  'archive-auditors': { roles: ['auditor'] },
  'archive-all-mail': { scope: 'all' },
};

/** A browser's cookie jar, per origin (enough here: two origins, no shared cookies). */
class Browser {
  private readonly jars = new Map<string, Map<string, string>>();

  private jar(url: URL): Map<string, string> {
    let j = this.jars.get(url.host);
    if (!j) this.jars.set(url.host, (j = new Map()));
    return j;
  }

  cookies(url: string): string {
    return [...this.jar(new URL(url))].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  cookie(url: string, name: string): string | undefined {
    return this.jar(new URL(url)).get(name);
  }

  async get(url: string): Promise<Response> {
    const u = new URL(url);
    const res = await fetch(u, { redirect: 'manual', headers: { cookie: this.cookies(url) } });
    for (const c of res.headers.getSetCookie()) {
      const [pair, ...attrs] = c.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = attrs.some((a) => /^\s*expires=Thu, 01 Jan 1970/i.test(a)) || attrs.some((a) => /^\s*max-age=0\b/i.test(a));
      if (expired || value === '') this.jar(u).delete(name);
      else this.jar(u).set(name, value);
    }
    return res;
  }

  /** Follows redirects until one leaves for `stopAt` (not followed) or a non-redirect answers. */
  async follow(url: string, stopAt?: string): Promise<{ res: Response; url: string; hops: string[] }> {
    const hops: string[] = [];
    let current = url;
    for (let i = 0; i < 20; i++) {
      hops.push(current);
      const res = await this.get(current);
      const loc = res.headers.get('location');
      if (res.status < 300 || res.status >= 400 || !loc) return { res, url: current, hops };
      const next = new URL(loc, current).href;
      if (stopAt && next.startsWith(stopAt)) {
        hops.push(next);
        return { res, url: next, hops };
      }
      current = next;
    }
    throw new Error(`too many redirects: ${hops.join(' → ')}`);
  }
}

describe.each(MODES.filter((m) => m.enabled))('single sign-on (OpenID Connect) ($mode)', ({ env }) => {
  let modeEnv: Record<string, string>;
  let provider: Provider;
  let opServer: http.Server;
  let proxy: http.Server;
  let archive: RunningArchive & { dataDir: string };
  let issuer: string;
  let base: string;
  /** Who signs in at the provider next. */
  let currentAccount = 'alice';
  /** When set, the proxy alters the ID token of the next token response. */
  let tamperIdToken = false;
  const accounts: Record<string, Account> = {
    alice: { email: 'alice@corp.example', name: 'Alice Officer', groups: ['archive-officers', 'unrelated'] },
    bob: { email: 'bob@corp.example', name: 'Bob Both', groups: ['archive-officers', 'archive-auditors', 'archive-all-mail'] },
    mallory: { email: 'mallory@corp.example', name: 'Mallory', groups: ['unrelated', 'archive-users'] },
  };

  beforeAll(async () => {
    const opPort = await freePort();
    const proxyPort = await freePort();
    issuer = `http://127.0.0.1:${proxyPort}`;
    const redirectUri = 'http://127.0.0.1:PORT/api/auth/oidc/callback';
    // The archive's port is known only once it runs; register the redirect URI after it starts.
    const clients = [{ client_id: 'mail-archive', client_secret: 'archive-client-secret-for-tests', redirect_uris: [redirectUri], grant_types: ['authorization_code'], response_types: ['code' as const], token_endpoint_auth_method: 'client_secret_basic' as const }];

    const archivePort = await freePort();
    clients[0].redirect_uris = [redirectUri.replace('PORT', String(archivePort))];
    provider = new Provider(issuer, {
      clients,
      claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'], groups: ['groups'] },
      scopes: ['openid', 'email', 'profile', 'groups'],
      pkce: { required: () => true },
      features: { devInteractions: { enabled: false } },
      interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
      cookies: { keys: ['oidc-test-cookie-key'] },
      ttl: { Session: 3600, Grant: 3600, AccessToken: 600, IdToken: 600, Interaction: 600, AuthorizationCode: 60 },
      findAccount: async (_ctx, id) => {
        const a = accounts[id];
        if (!a) return undefined;
        return { accountId: id, claims: async () => ({ sub: id, email: a.email, email_verified: a.emailVerified ?? true, name: a.name, groups: a.groups }) };
      },
    });
    const callback = provider.callback();
    opServer = http.createServer(async (req, res) => {
      if (!req.url?.startsWith('/interaction/')) {
        callback(req, res);
        return;
      }
      // Our own interaction: sign in as `currentAccount` and consent to what the client asked.
      try {
        const details = await provider.interactionDetails(req, res);
        if (details.prompt.name === 'login') {
          await provider.interactionFinished(req, res, { login: { accountId: currentAccount } }, { mergeWithLastSubmission: false });
          return;
        }
        const grant = new provider.Grant({ accountId: details.session!.accountId, clientId: details.params.client_id as string });
        grant.addOIDCScope(String(details.params.scope));
        const grantId = await grant.save();
        await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
      } catch (err) {
        res.statusCode = 500;
        res.end(String(err));
      }
    });
    await new Promise<void>((r) => opServer.listen(opPort, '127.0.0.1', r));

    proxy = http.createServer((req, res) => {
      const up = http.request({ host: '127.0.0.1', port: opPort, method: req.method, path: req.url, headers: req.headers }, (upRes) => {
        const isToken = req.url?.startsWith('/token');
        if (!isToken || !tamperIdToken) {
          res.writeHead(upRes.statusCode ?? 502, upRes.headers);
          upRes.pipe(res);
          return;
        }
        const parts: Buffer[] = [];
        upRes.on('data', (c: Buffer) => parts.push(c));
        upRes.on('end', () => {
          tamperIdToken = false;
          const body = JSON.parse(Buffer.concat(parts).toString('utf8')) as { id_token: string };
          // Change one claim of the payload and keep the signature: it no longer matches.
          const [h, p, s] = body.id_token.split('.');
          const payload = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as Record<string, unknown>;
          payload.sub = 'bob';
          body.id_token = [h, Buffer.from(JSON.stringify(payload)).toString('base64url'), s].join('.');
          const out = Buffer.from(JSON.stringify(body));
          res.writeHead(upRes.statusCode ?? 200, { ...upRes.headers, 'content-length': String(out.length) });
          res.end(out);
        });
      });
      req.pipe(up);
    });
    await new Promise<void>((r) => proxy.listen(proxyPort, '127.0.0.1', r));

    base = `http://127.0.0.1:${archivePort}`;
    modeEnv = await env();
    archive = await startInProcess({
      ...modeEnv,
      ARCHIVE_HTTP_PORT: String(archivePort),
      ARCHIVE_COOKIE_SECURE: 'false',
      ARCHIVE_OIDC_ISSUER: issuer,
      ARCHIVE_OIDC_CLIENT_ID: 'mail-archive',
      ARCHIVE_OIDC_CLIENT_SECRET: 'archive-client-secret-for-tests',
      ARCHIVE_OIDC_REDIRECT_URL: `${base}/api/auth/oidc/callback`,
      ARCHIVE_OIDC_GROUP_MAP: JSON.stringify(GROUP_MAP),
    });
    // Two messages: one inside corp.example, one outside it.
    const ids: string[] = [];
    for (const [from, subject] of [
      ['carol@corp.example', 'inside'],
      ['eve@elsewhere.example', 'outside'],
    ]) {
      const raw = Buffer.from(`From: ${from}\r\nTo: ${from}\r\nSubject: ${subject}\r\nMessage-ID: <${subject}@t>\r\n\r\nhello\r\n`);
      ids.push((await archive.services.pipeline.ingest(Readable.from([raw]), { source: 'api' })).sha256);
    }
    await waitForIndexed(archive.services, ids, 30_000);
  });

  afterAll(async () => {
    await archive?.close();
    await new Promise((r) => proxy?.close(r));
    await new Promise((r) => opServer?.close(r));
    await dropModeIndices(modeEnv);
  });

  /** A full sign-in as `who`: returns the browser and the last answer of the archive's callback. */
  async function signIn(who: string, browser = new Browser()) {
    currentAccount = who;
    const start = await browser.get(`${base}/api/auth/oidc/login?returnTo=/search%3Fq%3Dx`);
    expect(start.status).toBe(302);
    const authUrl = new URL(start.headers.get('location')!);
    expect(authUrl.origin).toBe(issuer);
    expect(authUrl.searchParams.get('code_challenge_method')).toBe('S256');
    expect(authUrl.searchParams.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(authUrl.searchParams.get('state')).toBeTruthy();
    expect(authUrl.searchParams.get('nonce')).toBeTruthy();
    // Through the provider, up to its redirect back to the archive (not followed yet).
    const atProvider = await browser.follow(authUrl.href, `${base}/api/auth/oidc/callback`);
    expect(atProvider.url.startsWith(`${base}/api/auth/oidc/callback`), atProvider.hops.join(' → ')).toBe(true);
    const callbackUrl = atProvider.url;
    const res = await browser.get(callbackUrl);
    return { browser, res, callbackUrl };
  }

  const me = async (browser: Browser) => fetch(`${base}/api/auth/me`, { headers: { cookie: browser.cookies(base) } });

  it('the login flow: code + PKCE through the provider ends in an archive session; groups map to roles and scope', async () => {
    const { browser, res } = await signIn('alice');
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe('/search?q=x');
    expect(browser.cookie(base, 'archive_session')).toBeTruthy();
    const who = (await (await me(browser)).json()) as { user: { email: string; roles: string[]; source: string; name: string }; scope: unknown; via: string };
    expect(who.user).toMatchObject({ email: 'alice@corp.example', roles: ['officer'], source: 'oidc', name: 'Alice Officer' });
    expect(who.scope).toEqual({ domains: ['corp.example'], addresses: [], groups: [] });
    // The scope holds: Alice sees the corp.example message only.
    const search = (await (await fetch(`${base}/api/search?q=`, { headers: { cookie: browser.cookies(base) } })).json()) as { total: number; hits: { subject: string }[] };
    expect(search.total).toBe(1);
    expect(search.hits[0].subject).toBe('inside');
    // The sign-in is in the trail.
    const rec = (await archive.services.audit.search({ action: 'auth.sign_in', user: 'alice@corp.example', limit: 1 })).records[0];
    expect(rec).toMatchObject({ outcome: 'success', details: { method: 'oidc', roles: ['officer'] } });
  });

  it('several groups: the union of roles; "all" scope is unrestricted', async () => {
    const { browser, res } = await signIn('bob');
    expect(res.status).toBe(302);
    const who = (await (await me(browser)).json()) as { user: { roles: string[] }; scope: unknown };
    expect(who.user.roles).toEqual(['officer', 'auditor']);
    expect(who.scope).toBeNull();
    const search = (await (await fetch(`${base}/api/search?q=`, { headers: { cookie: browser.cookies(base) } })).json()) as { total: number };
    expect(search.total).toBe(2);
    expect((await fetch(`${base}/api/audit?limit=1`, { headers: { cookie: browser.cookies(base) } })).status).toBe(200);
  });

  it('roles follow the provider: a changed group membership applies at the next sign-in', async () => {
    accounts.alice.groups = ['archive-auditors'];
    try {
      const { browser } = await signIn('alice');
      const who = (await (await me(browser)).json()) as { user: { roles: string[] }; scope: unknown };
      expect(who.user.roles).toEqual(['auditor']);
      expect((await fetch(`${base}/api/search?q=`, { headers: { cookie: browser.cookies(base) } })).status).toBe(403);
    } finally {
      accounts.alice.groups = ['archive-officers', 'unrelated'];
    }
  });

  it('groups that map to no role: refused and audited', async () => {
    const { browser, res } = await signIn('mallory');
    expect(res.status).toBe(403);
    expect(browser.cookie(base, 'archive_session')).toBeUndefined();
    const rec = (await archive.services.audit.search({ action: 'auth.sign_in', user: 'mallory@corp.example', limit: 1 })).records[0];
    expect(rec).toMatchObject({ outcome: 'denied', details: { method: 'oidc', reason: 'no role for these groups', groups: ['unrelated', 'archive-users'] } });
  });

  it('a rejected token: an ID token altered in transit fails its signature check; no session', async () => {
    tamperIdToken = true;
    const { browser, res } = await signIn('alice');
    expect(tamperIdToken).toBe(false); // the proxy did alter it
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: { code: string; message: string } }).error).toMatchObject({ code: 'unauthorized', message: expect.stringMatching(/rejected/) });
    expect(browser.cookie(base, 'archive_session')).toBeUndefined();
    const rec = (await archive.services.audit.search({ action: 'auth.sign_in', outcome: 'failure', limit: 1 })).records[0];
    expect(rec).toMatchObject({ details: { method: 'oidc', reason: 'the provider’s answer was rejected' } });
  });

  it('a callback whose state is not this browser’s is refused; a replayed callback is refused', async () => {
    // Another browser brings the callback URL of Alice's flow (login CSRF / stolen code).
    currentAccount = 'alice';
    const victim = new Browser();
    const start = await victim.get(`${base}/api/auth/oidc/login`);
    const atProvider = await victim.follow(start.headers.get('location')!, `${base}/api/auth/oidc/callback`);
    const attacker = new Browser();
    const stolen = await attacker.get(atProvider.url);
    expect(stolen.status).toBe(401);
    expect(attacker.cookie(base, 'archive_session')).toBeUndefined();

    // The rightful browser completes once; the same callback again is refused.
    const first = await victim.get(atProvider.url);
    expect(first.status).toBe(302);
    // Even with the state cookie copied, the flow is used up.
    const stateCookie = victim.cookie(base, 'archive_oidc');
    expect(stateCookie).toBeUndefined(); // cleared after use
    const again = await fetch(atProvider.url, { redirect: 'manual', headers: { cookie: `archive_oidc=${new URL(atProvider.url).searchParams.get('state')}` } });
    expect(again.status).toBe(401);
    const reasons = (await archive.services.audit.search({ action: 'auth.sign_in', outcome: 'failure', limit: 5 })).records.map((r) => r.details.reason);
    expect(reasons).toEqual(expect.arrayContaining(['state does not match this browser', 'unknown or already used sign-in attempt']));
  });

  it('the provider’s tokens are not API credentials here', async () => {
    const res = await fetch(`${base}/api/auth/me`, { headers: { authorization: 'Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.sig' } });
    expect(res.status).toBe(401);
  });

  it('only local paths are returned to after sign-in (no open redirect)', async () => {
    const browser = new Browser();
    currentAccount = 'bob';
    const start = await browser.get(`${base}/api/auth/oidc/login?returnTo=${encodeURIComponent('//evil.example/x')}`);
    const atProvider = await browser.follow(start.headers.get('location')!, `${base}/api/auth/oidc/callback`);
    const res = await browser.get(atProvider.url);
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe('/');
  });
});
