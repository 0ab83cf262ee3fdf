/**
 * The identity layer: users and roles, custodian groups, API tokens,
 * password sign-in with backoff and lockout, optional TOTP, and browser
 * sessions. Everything lives in the catalog store (so any number of stateless
 * nodes share it) and every change, sign-in and lockout goes into the audit
 * trail from here, whichever caller (API or CLI) asked for it.
 *
 * There are no default credentials: the first user is made with
 * `archive users add`, which prints a one-time password.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import type { CatalogStore } from '../ports/catalog-store.js';
import type { AuditEvent, AuditTrail } from '../audit/audit-trail.js';
import { AppError, CatalogConflictError, ForbiddenError, NotFoundError, TooManyRequestsError, UnauthorizedError, ValidationError } from '../errors.js';
import { dummyHash, generatePassword, hashPassword, MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, verifyPassword } from './password.js';
import { generateTotpSecret, matchTotp, otpauthUri, totpStep } from './totp.js';
import { isRole, type Role } from './roles.js';
import { groupName, normalizeAddress, normalizeScope, resolveScope, type CustodianGroup, type UserScope } from './scope.js';
import {
  GROUPS,
  OIDC_TRANSACTIONS,
  SESSIONS,
  THROTTLE,
  TOKENS,
  USERS,
  publicToken,
  publicUser,
  type Actor,
  type Principal,
  type PublicToken,
  type PublicUser,
  type SessionRecord,
  type ThrottleRecord,
  type TokenRecord,
  type UserRecord,
} from './types.js';

export interface AuthSettings {
  /** Absolute session lifetime (ms). */
  sessionTtlMs: number;
  /** Idle session timeout (ms). */
  sessionIdleMs: number;
  /** Failures in a row that lock an account. */
  lockoutThreshold: number;
  lockoutMs: number;
  /** Wait after the second failure in a row (ms); doubles with each further failure. */
  backoffMs: number;
  /** Name shown in authenticator apps. */
  issuerName: string;
}

/** Longest wait between two sign-in attempts of one account before the lockout (ms). */
const MAX_BACKOFF_MS = 60_000;
/** Token format: `arc_<16 hex id>_<43 base64url secret>` (256-bit secret). */
const TOKEN_RE = /^arc_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;
/** Only write a token's lastUsedAt / a session's lastSeenAt when older than this (ms): one write per hour/minute, not per request. */
const TOKEN_TOUCH_MS = 60 * 60 * 1000;
const SESSION_TOUCH_MS = 60 * 1000;
/** Optimistic-update attempts before giving up on a contended record. */
const MAX_ATTEMPTS = 50;

export interface SignInResult {
  /** The cookie value: shown once, stored only as a hash. */
  sessionToken: string;
  csrf: string;
  expiresAt: number;
  user: PublicUser;
}

export interface NewUser {
  email: string;
  name?: string;
  roles: Role[];
  scope: Partial<UserScope> | null;
}

export function sha256Hex(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

/** The throttle record of an address tried at sign-in: the address itself when it is a plausible one, else its hash (bounded ids). */
function throttleId(email: string): string {
  return email.length <= 254 && /^[\x21-\x7e]+$/.test(email) ? email : `h-${sha256Hex(email)}`;
}

function nowIso(ms = Date.now()): string {
  return new Date(ms).toISOString();
}

function checkRoles(roles: string[]): Role[] {
  const bad = roles.filter((r) => !isRole(r));
  if (bad.length) throw new ValidationError(`unknown role(s): ${bad.join(', ')} (roles: admin, officer, reviewer, auditor)`);
  if (!roles.length) throw new ValidationError('a user needs at least one role');
  return [...new Set(roles as Role[])];
}

function checkEmail(email: string): string {
  try {
    return normalizeAddress(email);
  } catch {
    throw new ValidationError(`not an e-mail address: "${email.slice(0, 200)}"`);
  }
}

function checkScope(scope: Partial<UserScope> | null): UserScope | null {
  if (scope === null) return null;
  try {
    return normalizeScope(scope);
  } catch (err) {
    const issue = (err as { issues?: { path: (string | number)[]; message: string }[] }).issues?.[0];
    throw new ValidationError(`bad scope${issue ? ` ${issue.path.join('.')}: ${issue.message}` : ''}`);
  }
}

function checkNewPassword(pw: string): void {
  if (pw.length < MIN_PASSWORD_LENGTH) throw new ValidationError(`a password needs at least ${MIN_PASSWORD_LENGTH} characters`);
  if (pw.length > MAX_PASSWORD_LENGTH) throw new ValidationError(`a password has at most ${MAX_PASSWORD_LENGTH} characters`);
}

export class AuthService {
  constructor(
    private readonly catalog: CatalogStore,
    private readonly audit: AuditTrail,
    private readonly settings: AuthSettings,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** Records an event; a failure to record is logged as an alert by the trail and rethrown. */
  private async trace(actor: Actor, e: Omit<AuditEvent, 'user' | 'clientAddress'> & { user?: string | null }): Promise<void> {
    await this.audit.record({ user: actor.user, clientAddress: actor.clientAddress, ...e });
  }

  /**
   * Runs a change and audits it: success with its target, or failure with
   * the error code (then rethrows).
   */
  private async audited<T>(actor: Actor, action: string, target: string | null, details: Record<string, unknown>, fn: () => Promise<T>): Promise<T> {
    let result: T;
    try {
      result = await fn();
    } catch (err) {
      await this.trace(actor, { action, target, outcome: err instanceof ForbiddenError ? 'denied' : 'failure', details: { ...details, error: (err as { code?: string }).code ?? 'error' } });
      throw err;
    }
    await this.trace(actor, { action, target, outcome: 'success', details });
    return result;
  }

  /** Reads, changes and writes a record until the write wins. `change` returning undefined means "no write". */
  private async modify<T>(collection: string, id: string, change: (cur: T) => T | undefined): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const cur = await this.catalog.get<T>(collection, id);
      if (!cur) throw new NotFoundError(`${collection === USERS ? 'user' : collection} ${id} not found`);
      const next = change(cur.data);
      if (next === undefined) return cur.data;
      try {
        return (await this.catalog.update<T>(collection, id, next, cur.version)).data;
      } catch (err) {
        if (!(err instanceof CatalogConflictError) || attempt >= MAX_ATTEMPTS) throw err;
      }
    }
  }

  // ------------------------------------------------------------------ users

  async getUser(email: string): Promise<UserRecord | undefined> {
    let id: string;
    try {
      id = normalizeAddress(email);
    } catch {
      return undefined;
    }
    return (await this.catalog.get<UserRecord>(USERS, id))?.data;
  }

  async listUsers(): Promise<PublicUser[]> {
    const out: PublicUser[] = [];
    for await (const r of this.catalog.scan<UserRecord>(USERS)) out.push(publicUser(r.data));
    return out;
  }

  /** Creates a local user with a one-time password (returned once; they must change it at first sign-in). */
  async createUser(input: NewUser, actor: Actor): Promise<{ user: PublicUser; password: string }> {
    const email = checkEmail(input.email);
    return this.audited(actor, 'user.create', email, { roles: input.roles, scope: input.scope }, async () => {
      const roles = checkRoles(input.roles);
      const scope = checkScope(input.scope);
      const password = generatePassword();
      const t = nowIso(this.now());
      const rec: UserRecord = {
        email,
        ...(input.name ? { name: input.name } : {}),
        roles,
        scope,
        passwordHash: await hashPassword(password),
        mustChangePassword: true,
        disabled: false,
        source: 'local',
        createdAt: t,
        updatedAt: t,
      };
      try {
        await this.catalog.create(USERS, email, rec);
      } catch (err) {
        if (err instanceof CatalogConflictError) throw new CatalogConflictError(`user ${email} already exists`);
        throw err;
      }
      return { user: publicUser(rec), password };
    });
  }

  /** Changes roles, scope, name or the disabled flag. Disabling ends the user's sessions. */
  async updateUser(emailIn: string, patch: { roles?: string[]; scope?: Partial<UserScope> | null; name?: string; disabled?: boolean }, actor: Actor): Promise<PublicUser> {
    const email = checkEmail(emailIn);
    return this.audited(actor, 'user.update', email, { ...patch }, async () => {
      const roles = patch.roles === undefined ? undefined : checkRoles(patch.roles);
      const scope = patch.scope === undefined ? undefined : checkScope(patch.scope);
      const rec = await this.modify<UserRecord>(USERS, email, (u) => ({
        ...u,
        ...(roles ? { roles } : {}),
        ...(scope !== undefined ? { scope } : {}),
        ...(patch.name !== undefined ? { name: patch.name } : {}),
        ...(patch.disabled !== undefined ? { disabled: patch.disabled } : {}),
        ...(patch.disabled ? { sessionsNotBefore: this.now() } : {}),
        updatedAt: nowIso(this.now()),
      }));
      return publicUser(rec);
    });
  }

  /** A new one-time password; ends the user's sessions and lifts a lockout. */
  async resetPassword(emailIn: string, actor: Actor): Promise<{ password: string }> {
    const email = checkEmail(emailIn);
    return this.audited(actor, 'user.reset_password', email, {}, async () => {
      const password = generatePassword();
      const hash = await hashPassword(password);
      await this.modify<UserRecord>(USERS, email, (u) => ({ ...u, passwordHash: hash, mustChangePassword: true, sessionsNotBefore: this.now(), updatedAt: nowIso(this.now()) }));
      await this.clearThrottle(email);
      return { password };
    });
  }

  /** Lifts a lockout (and the backoff) now. */
  async unlock(emailIn: string, actor: Actor): Promise<void> {
    const email = checkEmail(emailIn);
    await this.audited(actor, 'user.unlock', email, {}, () => this.clearThrottle(email));
  }

  private async clearThrottle(email: string): Promise<void> {
    const id = throttleId(email);
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const t = await this.catalog.get<ThrottleRecord>(THROTTLE, id);
      if (!t) return;
      try {
        await this.catalog.delete(THROTTLE, id, t.version);
        return;
      } catch (err) {
        if (!(err instanceof CatalogConflictError) && !(err instanceof NotFoundError)) throw err;
      }
    }
  }

  /** Whether an account is locked now, and until when (for `users list`). */
  async lockState(email: string): Promise<{ locked: boolean; until?: string; failures: number }> {
    const t = (await this.catalog.get<ThrottleRecord>(THROTTLE, throttleId(email)))?.data;
    if (!t) return { locked: false, failures: 0 };
    return t.lockedUntil > this.now() ? { locked: true, until: nowIso(t.lockedUntil), failures: t.failures } : { locked: false, failures: t.failures };
  }

  // ------------------------------------------------------------------ custodian groups

  async listGroups(): Promise<CustodianGroup[]> {
    const out: CustodianGroup[] = [];
    for await (const r of this.catalog.scan<CustodianGroup>(GROUPS)) out.push(r.data);
    return out;
  }

  /** Creates or replaces a custodian group (its addresses). */
  async putGroup(name: string, addresses: string[], description: string | undefined, actor: Actor): Promise<CustodianGroup> {
    return this.audited(actor, 'group.put', name, { addresses: addresses.length }, async () => {
      if (!groupName.safeParse(name).success) throw new ValidationError(`bad group name "${name.slice(0, 100)}"`);
      const scope = checkScope({ addresses });
      const g: CustodianGroup = { name, addresses: scope!.addresses, ...(description ? { description } : {}), updatedAt: nowIso(this.now()) };
      for (let attempt = 1; ; attempt++) {
        const cur = await this.catalog.get<CustodianGroup>(GROUPS, name);
        try {
          if (cur) await this.catalog.update(GROUPS, name, g, cur.version);
          else await this.catalog.create(GROUPS, name, g);
          return g;
        } catch (err) {
          if (!(err instanceof CatalogConflictError) || attempt >= MAX_ATTEMPTS) throw err;
        }
      }
    });
  }

  async deleteGroup(name: string, actor: Actor): Promise<void> {
    await this.audited(actor, 'group.delete', name, {}, async () => {
      const cur = await this.catalog.get<CustodianGroup>(GROUPS, name);
      if (!cur) throw new NotFoundError(`group ${name} not found`);
      await this.catalog.delete(GROUPS, name, cur.version);
    });
  }

  // ------------------------------------------------------------------ tokens

  /** A new API token for a user. The token string is returned once; only its SHA-256 is kept. */
  async createToken(input: { email: string; name?: string; expiresDays?: number }, actor: Actor): Promise<{ token: string; record: PublicToken }> {
    const email = checkEmail(input.email);
    return this.audited(actor, 'token.create', email, { name: input.name ?? null, expiresDays: input.expiresDays ?? null }, async () => {
      const user = await this.getUser(email);
      if (!user) throw new NotFoundError(`user ${email} not found`);
      if (input.expiresDays !== undefined && !(input.expiresDays > 0 && input.expiresDays <= 3650)) throw new ValidationError('expiry must be 1 to 3650 days');
      const id = randomBytes(8).toString('hex');
      const token = `arc_${id}_${randomBytes(32).toString('base64url')}`;
      const t = this.now();
      const rec: TokenRecord = {
        id,
        user: email,
        name: input.name ?? 'api token',
        hash: sha256Hex(token),
        createdAt: nowIso(t),
        createdBy: actor.user ?? 'unknown',
        expiresAt: input.expiresDays === undefined ? null : nowIso(t + input.expiresDays * 86_400_000),
        revokedAt: null,
        lastUsedAt: null,
      };
      await this.catalog.create(TOKENS, id, rec);
      return { token, record: publicToken(rec) };
    });
  }

  async listTokens(email?: string): Promise<PublicToken[]> {
    const out: PublicToken[] = [];
    for await (const r of this.catalog.scan<TokenRecord>(TOKENS)) if (!email || r.data.user === email) out.push(publicToken(r.data));
    return out;
  }

  async getToken(id: string): Promise<PublicToken | undefined> {
    const r = await this.catalog.get<TokenRecord>(TOKENS, id);
    return r ? publicToken(r.data) : undefined;
  }

  /** Revokes a token for good. `onlyOwner`: refuse (as not found) a token of another user. */
  async revokeToken(id: string, actor: Actor, onlyOwner?: string): Promise<PublicToken> {
    return this.audited(actor, 'token.revoke', id, {}, async () => {
      const cur = await this.catalog.get<TokenRecord>(TOKENS, id);
      if (!cur || (onlyOwner && cur.data.user !== onlyOwner)) throw new NotFoundError(`token ${id} not found`);
      const rec = await this.modify<TokenRecord>(TOKENS, id, (t) => (t.revokedAt ? undefined : { ...t, revokedAt: nowIso(this.now()), revokedBy: actor.user ?? 'unknown' }));
      return publicToken(rec);
    });
  }

  // ------------------------------------------------------------------ authentication of requests

  /** The principal of a Bearer token, or UnauthorizedError (the same answer for every kind of bad token). */
  async authenticateToken(token: string): Promise<Principal> {
    const m = TOKEN_RE.exec(token);
    const bad = new UnauthorizedError('Invalid or expired token');
    if (!m) throw bad;
    const rec = await this.catalog.get<TokenRecord>(TOKENS, m[1]);
    if (!rec) throw bad;
    const t = rec.data;
    if (!timingSafeEqual(Buffer.from(sha256Hex(token), 'hex'), Buffer.from(t.hash, 'hex'))) throw bad;
    const now = this.now();
    if (t.revokedAt || (t.expiresAt && Date.parse(t.expiresAt) <= now)) throw bad;
    const user = await this.getUser(t.user);
    if (!user || user.disabled) throw bad;
    if (!t.lastUsedAt || now - Date.parse(t.lastUsedAt) > TOKEN_TOUCH_MS) {
      // Best effort: a lost race means another request just touched it.
      await this.catalog.update(TOKENS, t.id, { ...t, lastUsedAt: nowIso(now) }, rec.version).catch(() => undefined);
    }
    return { ...(await this.principalOf(user, 'token')), tokenId: t.id };
  }

  /** The principal of a session cookie, or UnauthorizedError. */
  async authenticateSession(cookieValue: string): Promise<Principal> {
    const bad = new UnauthorizedError('Session expired; sign in again');
    if (!/^[A-Za-z0-9_-]{43}$/.test(cookieValue)) throw bad;
    const id = sha256Hex(cookieValue);
    const rec = await this.catalog.get<SessionRecord>(SESSIONS, id);
    if (!rec) throw bad;
    const s = rec.data;
    const now = this.now();
    if (s.expiresAt <= now || s.lastSeenAt + this.settings.sessionIdleMs <= now) {
      await this.catalog.delete(SESSIONS, id, rec.version).catch(() => undefined);
      throw bad;
    }
    const user = await this.getUser(s.user);
    if (!user || user.disabled || (user.sessionsNotBefore && s.createdAt < user.sessionsNotBefore)) throw bad;
    if (now - s.lastSeenAt > SESSION_TOUCH_MS) await this.catalog.update(SESSIONS, id, { ...s, lastSeenAt: now }, rec.version).catch(() => undefined);
    return { ...(await this.principalOf(user, 'session')), sessionId: id, csrf: s.csrf, mustChangePassword: user.mustChangePassword && s.via === 'password' };
  }

  /** Resolves the user's custodian groups into addresses: the scope the index applies. */
  async principalOf(user: UserRecord, via: 'token' | 'session'): Promise<Principal> {
    const groups = new Map<string, CustodianGroup | undefined>();
    for (const g of user.scope?.groups ?? []) groups.set(g, (await this.catalog.get<CustodianGroup>(GROUPS, g))?.data);
    return {
      email: user.email,
      ...(user.name ? { name: user.name } : {}),
      roles: user.roles,
      userScope: user.scope,
      scope: resolveScope(user.scope, groups),
      via,
      mustChangePassword: false,
    };
  }

  // ------------------------------------------------------------------ password sign-in

  /** Wait before the next attempt after `failures` failures in a row (ms). */
  backoffAfter(failures: number): number {
    if (failures < 2) return 0;
    return Math.min(this.settings.backoffMs * 2 ** (failures - 2), MAX_BACKOFF_MS);
  }

  /**
   * Claims the right to try a password for this account now: one attempt at
   * a time per account across every node (the claim is an optimistic write),
   * none before the backoff has passed, none while locked. Returns the
   * failures so far.
   */
  private async claimAttempt(email: string, actor: Actor): Promise<number> {
    const now = this.now();
    const id = throttleId(email);
    const cur = await this.catalog.get<ThrottleRecord>(THROTTLE, id);
    let t: ThrottleRecord = cur?.data ?? { failures: 0, nextAttemptAt: 0, lockedUntil: 0, lastFailureAt: 0 };
    // A lockout or an old run of failures that has expired starts afresh.
    if ((t.lockedUntil && t.lockedUntil <= now) || (!t.lockedUntil && t.lastFailureAt && now - t.lastFailureAt > this.settings.lockoutMs)) {
      t = { failures: 0, nextAttemptAt: 0, lockedUntil: 0, lastFailureAt: 0 };
    }
    if (t.lockedUntil > now) {
      await this.trace(actor, { user: email, action: 'auth.sign_in', target: email, outcome: 'denied', details: { reason: 'locked', lockedUntil: nowIso(t.lockedUntil) } });
      throw new TooManyRequestsError('Too many failed sign-ins: this account is locked for now', Math.ceil((t.lockedUntil - now) / 1000));
    }
    if (t.nextAttemptAt > now) {
      await this.trace(actor, { user: email, action: 'auth.sign_in', target: email, outcome: 'denied', details: { reason: 'backoff', failures: t.failures } });
      throw new TooManyRequestsError('Too many failed sign-ins: wait before trying again', Math.ceil((t.nextAttemptAt - now) / 1000));
    }
    // Pessimistic claim: the next attempt waits as if this one fails, until it is known not to.
    const claimed: ThrottleRecord = { ...t, nextAttemptAt: now + Math.max(this.backoffAfter(t.failures + 1), 1) };
    try {
      if (cur) await this.catalog.update(THROTTLE, id, claimed, cur.version);
      else await this.catalog.create(THROTTLE, id, claimed);
    } catch (err) {
      if (!(err instanceof CatalogConflictError)) throw err;
      throw new TooManyRequestsError('Another sign-in for this account is in progress', 1);
    }
    return t.failures;
  }

  private async recordFailure(email: string, failuresBefore: number, actor: Actor, reason: string): Promise<void> {
    const now = this.now();
    const failures = failuresBefore + 1;
    const locked = failures >= this.settings.lockoutThreshold;
    const next: ThrottleRecord = {
      failures,
      nextAttemptAt: now + this.backoffAfter(failures),
      lockedUntil: locked ? now + this.settings.lockoutMs : 0,
      lastFailureAt: now,
    };
    const id = throttleId(email);
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const cur = await this.catalog.get<ThrottleRecord>(THROTTLE, id);
      try {
        if (cur) await this.catalog.update(THROTTLE, id, next, cur.version);
        else await this.catalog.create(THROTTLE, id, next);
        break;
      } catch (err) {
        if (!(err instanceof CatalogConflictError)) throw err;
      }
    }
    await this.trace(actor, { user: email, action: 'auth.sign_in', target: email, outcome: 'failure', details: { reason, failures } });
    if (locked) {
      this.log.warn({ email, failures }, 'account locked after repeated failed sign-ins');
      await this.trace(actor, { user: email, action: 'auth.lockout', target: email, outcome: 'denied', details: { failures, lockedUntil: nowIso(next.lockedUntil) } });
    }
  }

  /**
   * Password (and TOTP) sign-in. Unknown accounts, wrong passwords and
   * disabled accounts all answer the same 401 after the same scrypt work.
   * With TOTP on and no code given, a right password answers 401
   * `totp_required` without counting as a failure.
   */
  async signIn(input: { email: string; password: string; totp?: string }, actor: Actor): Promise<SignInResult> {
    const email = input.email.trim().toLowerCase().slice(0, 320);
    const who: Actor = { user: email, clientAddress: actor.clientAddress };
    const failures = await this.claimAttempt(email, who);
    const user = await this.getUser(email);
    const ok = await verifyPassword(input.password.slice(0, MAX_PASSWORD_LENGTH), user?.passwordHash ?? (await dummyHash()));
    if (!ok || !user || user.disabled || !user.passwordHash) {
      await this.recordFailure(email, failures, who, !user ? 'unknown account' : user.disabled ? 'disabled' : 'wrong password');
      throw new UnauthorizedError('Invalid e-mail or password');
    }
    if (user.totp?.enabled) {
      if (!input.totp) {
        // The password was right: release the claim without counting a failure.
        await this.releaseClaim(email, failures);
        throw new AppError('totp_required', 401, 'A one-time code from your authenticator app is required');
      }
      const step = matchTotp(user.totp.secret, input.totp.trim(), this.now());
      if (step === undefined || (user.totp.lastStep !== undefined && step <= user.totp.lastStep)) {
        await this.recordFailure(email, failures, who, step === undefined ? 'wrong one-time code' : 'one-time code replayed');
        throw new UnauthorizedError('Invalid one-time code');
      }
      await this.modify<UserRecord>(USERS, email, (u) => ({ ...u, totp: { ...u.totp!, lastStep: step } }));
    }
    await this.clearThrottle(email);
    const result = await this.createSession(user, 'password', who);
    await this.trace(who, { action: 'auth.sign_in', target: email, outcome: 'success', details: { method: user.totp?.enabled ? 'password+totp' : 'password' } });
    return result;
  }

  private async releaseClaim(email: string, failures: number): Promise<void> {
    const id = throttleId(email);
    const cur = await this.catalog.get<ThrottleRecord>(THROTTLE, id);
    if (!cur) return;
    await this.catalog.update(THROTTLE, id, { ...cur.data, failures, nextAttemptAt: 0 }, cur.version).catch(() => undefined);
  }

  /**
   * Deletes what has expired: sessions past their end or idle timeout,
   * abandoned single-sign-on attempts, and sign-in throttles whose failures
   * are old and not locked. Safe on several nodes at once (conditional
   * deletes). Returns how many records went.
   */
  async sweepExpired(): Promise<number> {
    const now = this.now();
    let n = 0;
    const drop = async (collection: string, id: string, version: number) => {
      await this.catalog.delete(collection, id, version).then(
        () => n++,
        () => undefined,
      );
    };
    for await (const r of this.catalog.scan<SessionRecord>(SESSIONS)) {
      if (r.data.expiresAt <= now || r.data.lastSeenAt + this.settings.sessionIdleMs <= now) await drop(SESSIONS, r.id, r.version);
    }
    for await (const r of this.catalog.scan<{ expiresAt: number }>(OIDC_TRANSACTIONS)) if (r.data.expiresAt <= now) await drop(OIDC_TRANSACTIONS, r.id, r.version);
    for await (const r of this.catalog.scan<ThrottleRecord>(THROTTLE)) {
      if (r.data.lockedUntil <= now && now - r.data.lastFailureAt > this.settings.lockoutMs && r.data.nextAttemptAt <= now) await drop(THROTTLE, r.id, r.version);
    }
    if (n) this.log.info({ removed: n }, 'removed expired sessions, sign-in attempts and throttles');
    return n;
  }

  /** A new browser session for a signed-in user. */
  async createSession(user: UserRecord, via: 'password' | 'oidc', actor: Actor): Promise<SignInResult> {
    const sessionToken = randomBytes(32).toString('base64url');
    const csrf = randomBytes(32).toString('base64url');
    const now = this.now();
    const rec: SessionRecord = { user: user.email, csrf, via, createdAt: now, expiresAt: now + this.settings.sessionTtlMs, lastSeenAt: now, clientAddress: actor.clientAddress };
    await this.catalog.create(SESSIONS, sha256Hex(sessionToken), rec);
    return { sessionToken, csrf, expiresAt: rec.expiresAt, user: publicUser(user) };
  }

  /** Ends a session (sign-out). */
  async signOut(principal: Principal, actor: Actor): Promise<void> {
    await this.audited(actor, 'auth.sign_out', principal.email, { via: principal.via }, async () => {
      if (!principal.sessionId) return;
      const cur = await this.catalog.get<SessionRecord>(SESSIONS, principal.sessionId);
      if (cur) await this.catalog.delete(SESSIONS, principal.sessionId, cur.version).catch(() => undefined);
    });
  }

  /** Sets a new password; the current one (or the one-time one) must be given. */
  async changePassword(email: string, current: string, next: string, actor: Actor): Promise<void> {
    await this.audited(actor, 'auth.change_password', email, {}, async () => {
      checkNewPassword(next);
      const user = await this.getUser(email);
      if (!user?.passwordHash || !(await verifyPassword(current.slice(0, MAX_PASSWORD_LENGTH), user.passwordHash))) throw new UnauthorizedError('The current password is wrong');
      if (current === next) throw new ValidationError('the new password must differ from the current one');
      const hash = await hashPassword(next);
      await this.modify<UserRecord>(USERS, email, (u) => ({ ...u, passwordHash: hash, mustChangePassword: false, updatedAt: nowIso(this.now()) }));
    });
  }

  // ------------------------------------------------------------------ TOTP

  /** Starts TOTP enrolment: a new secret (not active until confirmed with a code). */
  async totpSetup(email: string, actor: Actor): Promise<{ secret: string; otpauthUri: string }> {
    return this.audited(actor, 'auth.totp_setup', email, {}, async () => {
      const secret = generateTotpSecret();
      await this.modify<UserRecord>(USERS, email, (u) => {
        if (u.totp?.enabled) throw new ValidationError('two-factor sign-in is already on; turn it off first');
        return { ...u, totp: { secret, enabled: false }, updatedAt: nowIso(this.now()) };
      });
      return { secret, otpauthUri: otpauthUri(secret, email, this.settings.issuerName) };
    });
  }

  /** Confirms enrolment with a first code. */
  async totpEnable(email: string, code: string, actor: Actor): Promise<void> {
    await this.audited(actor, 'auth.totp_enable', email, {}, async () => {
      const user = await this.getUser(email);
      if (!user?.totp || user.totp.enabled) throw new ValidationError('start with /api/auth/totp/setup');
      const step = matchTotp(user.totp.secret, code.trim(), this.now());
      if (step === undefined) throw new ValidationError('that code is not valid now');
      await this.modify<UserRecord>(USERS, email, (u) => ({ ...u, totp: { ...u.totp!, enabled: true, lastStep: step }, updatedAt: nowIso(this.now()) }));
    });
  }

  /** Turns TOTP off; needs the password. */
  async totpDisable(email: string, password: string, actor: Actor): Promise<void> {
    await this.audited(actor, 'auth.totp_disable', email, {}, async () => {
      const user = await this.getUser(email);
      if (!user?.passwordHash || !(await verifyPassword(password.slice(0, MAX_PASSWORD_LENGTH), user.passwordHash))) throw new UnauthorizedError('The password is wrong');
      await this.modify<UserRecord>(USERS, email, (u) => {
        const { totp: _totp, ...rest } = u;
        return { ...rest, updatedAt: nowIso(this.now()) };
      });
    });
  }

  /** Current TOTP step, for tests and clock diagnostics. */
  totpStepNow(): number {
    return totpStep(this.now());
  }

  // ------------------------------------------------------------------ single sign-on

  /**
   * The user record for an OpenID Connect sign-in: created or updated with
   * the roles and scope the provider's groups map to. A local account of the
   * same address keeps its own roles and scope (an admin set them).
   */
  async upsertOidcUser(claims: { email: string; name?: string; issuer: string; subject: string; groups: string[] }, mapped: { roles: Role[]; scope: UserScope | null }): Promise<UserRecord> {
    const email = checkEmail(claims.email);
    const t = nowIso(this.now());
    for (let attempt = 1; ; attempt++) {
      const cur = await this.catalog.get<UserRecord>(USERS, email);
      const oidc = { issuer: claims.issuer, subject: claims.subject, groups: claims.groups };
      try {
        if (!cur) {
          const rec: UserRecord = { email, ...(claims.name ? { name: claims.name } : {}), roles: mapped.roles, scope: mapped.scope, mustChangePassword: false, disabled: false, source: 'oidc', oidc, createdAt: t, updatedAt: t };
          await this.catalog.create(USERS, email, rec);
          return rec;
        }
        if (cur.data.oidc && (cur.data.oidc.issuer !== claims.issuer || cur.data.oidc.subject !== claims.subject)) {
          throw new ForbiddenError('This e-mail address belongs to another single-sign-on account');
        }
        const rec: UserRecord =
          cur.data.source === 'oidc'
            ? { ...cur.data, ...(claims.name ? { name: claims.name } : {}), roles: mapped.roles, scope: mapped.scope, oidc, updatedAt: t }
            : { ...cur.data, oidc, updatedAt: t };
        await this.catalog.update(USERS, email, rec, cur.version);
        return rec;
      } catch (err) {
        if (!(err instanceof CatalogConflictError) || attempt >= MAX_ATTEMPTS) throw err;
      }
    }
  }

  /** Records an event in the trail on behalf of the identity layer's callers (OIDC). */
  async recordEvent(actor: Actor, e: Omit<AuditEvent, 'clientAddress'>): Promise<void> {
    await this.trace(actor, e);
  }
}
