/**
 * OpenID Connect single sign-on (openid-client): authorization code flow
 * with PKCE (S256), state and nonce. The provider's groups map to roles and
 * scopes through ARCHIVE_OIDC_GROUP_MAP; a user whose groups map to no role
 * is refused.
 *
 * The flow's secrets (PKCE verifier, nonce, where to return) are kept in the
 * catalog under the hash of the state, not in the browser, so any node can
 * finish a flow another node started. The browser holds the state in a
 * short-lived httpOnly cookie that binds the callback to the browser that
 * began the flow.
 *
 * The provider is reached over HTTPS; plain HTTP is allowed only for an
 * issuer on a loopback address (a provider on the same host, as in tests).
 */
import { timingSafeEqual } from 'node:crypto';
import * as client from 'openid-client';
import type { Logger } from 'pino';
import type { CatalogStore } from '../ports/catalog-store.js';
import type { OidcGroupMap } from '../config/config.js';
import { AppError, CatalogConflictError, ForbiddenError, UnauthorizedError } from '../errors.js';
import type { AuthService, SignInResult } from './auth-service.js';
import { sha256Hex } from './auth-service.js';
import { ROLES, type Role } from './roles.js';
import { normalizeScope, type UserScope } from './scope.js';
import { OIDC_TRANSACTIONS, type Actor } from './types.js';

export interface OidcSettings {
  issuer: string;
  clientId: string;
  clientSecret?: string;
  redirectUrl: string;
  scopes: string;
  groupsClaim: string;
  groupMap: OidcGroupMap;
}

interface OidcTransaction {
  codeVerifier: string;
  nonce: string;
  returnTo: string;
  expiresAt: number;
}

/** How long a user has to finish signing in at the provider (ms). */
export const OIDC_FLOW_TTL_MS = 10 * 60 * 1000;

/** What the groups of a user grant: the union of roles and of scopes. `scope: null` = unrestricted. */
export function mapGroups(groups: string[], map: OidcGroupMap): { roles: Role[]; scope: UserScope | null } {
  const roles = new Set<Role>();
  let all = false;
  const scope: UserScope = { addresses: [], domains: [], groups: [] };
  for (const g of groups) {
    const m = map[g];
    if (!m) continue;
    for (const r of m.roles) roles.add(r);
    if (m.scope === 'all') all = true;
    else if (m.scope) {
      scope.addresses.push(...m.scope.addresses);
      scope.domains.push(...m.scope.domains);
      scope.groups.push(...m.scope.groups);
    }
  }
  return { roles: ROLES.filter((r) => roles.has(r)), scope: all ? null : normalizeScope(scope) };
}

/** Only a local path may be returned to after sign-in (no open redirect). */
export function safeReturnTo(v: string | undefined): string {
  if (!v || !v.startsWith('/') || v.startsWith('//') || v.startsWith('/\\') || /[\r\n]/.test(v)) return '/';
  return v.slice(0, 2000);
}

function isLoopbackHttp(url: string): boolean {
  const u = new URL(url);
  return u.protocol === 'http:' && (u.hostname === '127.0.0.1' || u.hostname === 'localhost' || u.hostname === '[::1]' || u.hostname.startsWith('127.'));
}

function claimStrings(v: unknown): string[] {
  if (typeof v === 'string') return [v];
  if (Array.isArray(v)) return v.filter((x): x is string => typeof x === 'string');
  return [];
}

export class OidcSignIn {
  private configuration: Promise<client.Configuration> | undefined;

  constructor(
    private readonly settings: OidcSettings,
    private readonly catalog: CatalogStore,
    private readonly auth: AuthService,
    private readonly log: Logger,
  ) {
    if (!settings.issuer.startsWith('https:') && !isLoopbackHttp(settings.issuer)) {
      throw new AppError('config_invalid', 500, 'ARCHIVE_OIDC_ISSUER: must be https (plain http only for a loopback address)');
    }
  }

  /** Discovery, once per process (retried at the next sign-in when it fails). */
  private config(): Promise<client.Configuration> {
    this.configuration ??= client
      .discovery(
        new URL(this.settings.issuer),
        this.settings.clientId,
        undefined,
        this.settings.clientSecret ? client.ClientSecretBasic(this.settings.clientSecret) : client.None(),
        isLoopbackHttp(this.settings.issuer) ? { execute: [client.allowInsecureRequests] } : undefined,
      )
      .then((cfg) => {
        // Check the ID token's signature against the provider's keys even
        // though it comes straight from the token endpoint (OIDC lets a client
        // rely on TLS alone there): an altered token is refused whatever the
        // transport, and the signed token is evidence of who signed in.
        client.enableNonRepudiationChecks(cfg);
        return cfg;
      })
      .catch((err: unknown) => {
        this.configuration = undefined;
        this.log.error({ err, issuer: this.settings.issuer }, 'OpenID Connect discovery failed');
        throw new AppError('sso_unavailable', 503, 'The single-sign-on provider cannot be reached');
      });
    return this.configuration;
  }

  /** Starts a flow: the provider URL to redirect to, and the state for the browser's cookie. */
  async begin(returnTo: string | undefined): Promise<{ url: string; state: string }> {
    const cfg = await this.config();
    const state = client.randomState();
    const nonce = client.randomNonce();
    const codeVerifier = client.randomPKCECodeVerifier();
    const tx: OidcTransaction = { codeVerifier, nonce, returnTo: safeReturnTo(returnTo), expiresAt: Date.now() + OIDC_FLOW_TTL_MS };
    await this.catalog.create(OIDC_TRANSACTIONS, sha256Hex(state), tx);
    const url = client.buildAuthorizationUrl(cfg, {
      redirect_uri: this.settings.redirectUrl,
      scope: this.settings.scopes,
      state,
      nonce,
      code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: 'S256',
    });
    return { url: url.href, state };
  }

  /**
   * Finishes a flow at the callback: checks the state against the browser's
   * cookie, redeems the code (PKCE), validates the ID token (signature,
   * issuer, audience, expiry, nonce), maps the groups, signs the user in.
   * Every refusal is audited and answers 401 (403 when no group maps to a role).
   */
  async complete(query: Record<string, string>, cookieState: string | undefined, actor: Actor): Promise<{ result: SignInResult; returnTo: string }> {
    const fail = async (reason: string, err?: unknown, user: string | null = null): Promise<never> => {
      if (err) this.log.warn({ err: (err as Error).message, reason }, 'single sign-on refused');
      await this.auth.recordEvent({ ...actor, user }, { action: 'auth.sign_in', target: user, outcome: 'failure', user, details: { method: 'oidc', reason } });
      throw new UnauthorizedError(`Single sign-on failed: ${reason}`);
    };
    const state = query.state;
    if (!state || !cookieState || state.length !== cookieState.length || !timingSafeEqual(Buffer.from(state), Buffer.from(cookieState))) {
      return fail('state does not match this browser');
    }
    if (query.error) return fail(`the provider answered ${String(query.error).slice(0, 100)}`);
    const txId = sha256Hex(state);
    const txRec = await this.catalog.get<OidcTransaction>(OIDC_TRANSACTIONS, txId);
    if (!txRec) return fail('unknown or already used sign-in attempt');
    // One use only: whoever deletes it first finishes the flow.
    try {
      await this.catalog.delete(OIDC_TRANSACTIONS, txId, txRec.version);
    } catch (err) {
      if (err instanceof CatalogConflictError) return fail('sign-in attempt already used');
      throw err;
    }
    const tx = txRec.data;
    if (tx.expiresAt < Date.now()) return fail('the sign-in attempt expired');

    const cfg = await this.config();
    const current = new URL(this.settings.redirectUrl);
    for (const [k, v] of Object.entries(query)) current.searchParams.set(k, v);
    let tokens: Awaited<ReturnType<typeof client.authorizationCodeGrant>>;
    try {
      tokens = await client.authorizationCodeGrant(cfg, current, { pkceCodeVerifier: tx.codeVerifier, expectedNonce: tx.nonce, expectedState: state, idTokenExpected: true });
    } catch (err) {
      return fail('the provider’s answer was rejected', err);
    }
    const idClaims = tokens.claims();
    if (!idClaims) return fail('no ID token');
    // The ID token's claims win; what it lacks (groups, e-mail: providers put
    // scope claims in userinfo for the code flow) comes from userinfo.
    const claims: Record<string, unknown> = { ...idClaims };
    if (cfg.serverMetadata().userinfo_endpoint) {
      try {
        const info = await client.fetchUserInfo(cfg, tokens.access_token, idClaims.sub);
        for (const k of [this.settings.groupsClaim, 'email', 'email_verified', 'name']) if (!(k in idClaims) && k in info) claims[k] = info[k];
      } catch (err) {
        return fail('the provider’s userinfo was rejected', err);
      }
    }
    const email = typeof claims.email === 'string' ? claims.email.toLowerCase() : undefined;
    if (!email) return fail('the provider gave no e-mail address');
    if (claims.email_verified === false) return fail('the provider has not verified the e-mail address', undefined, email);
    const groups = claimStrings(claims[this.settings.groupsClaim]);
    const mapped = mapGroups(groups, this.settings.groupMap);
    if (!mapped.roles.length) {
      await this.auth.recordEvent({ ...actor, user: email }, { action: 'auth.sign_in', target: email, outcome: 'denied', user: email, details: { method: 'oidc', reason: 'no role for these groups', groups } });
      throw new ForbiddenError('Your groups at the sign-on provider give you no role in the archive');
    }
    let user;
    try {
      user = await this.auth.upsertOidcUser({ email, name: typeof claims.name === 'string' ? claims.name : undefined, issuer: String(idClaims.iss), subject: idClaims.sub, groups }, mapped);
    } catch (err) {
      if (err instanceof ForbiddenError) return fail(err.message, undefined, email);
      throw err;
    }
    if (user.disabled) return fail('account disabled', undefined, email);
    const who = { ...actor, user: email };
    const result = await this.auth.createSession(user, 'oidc', who);
    await this.auth.recordEvent(who, { action: 'auth.sign_in', target: email, outcome: 'success', user: email, details: { method: 'oidc', groups, roles: user.roles } });
    return { result, returnTo: tx.returnTo };
  }
}
