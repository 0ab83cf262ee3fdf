/**
 * Users, tokens and sessions as the catalog stores them, and the principal a
 * request acts as once authenticated.
 */
import type { Role } from './roles.js';
import type { UserScope } from './scope.js';
import type { Scope } from '../ports/message-index.js';

/** Catalog collections of the identity layer. */
export const USERS = 'users';
export const TOKENS = 'api_tokens';
export const SESSIONS = 'sessions';
export const GROUPS = 'custodian_groups';
export const THROTTLE = 'sign_in_throttle';
export const OIDC_TRANSACTIONS = 'oidc_transactions';

/** A user, keyed by lower-cased e-mail address (the catalog id). */
export interface UserRecord {
  email: string;
  name?: string;
  roles: Role[];
  /** null: unrestricted. */
  scope: UserScope | null;
  /** scrypt hash (src/auth/password.ts); absent for single-sign-on users. */
  passwordHash?: string;
  /** Set for one-time passwords: the user must choose a new one before anything else. */
  mustChangePassword: boolean;
  totp?: { secret: string; enabled: boolean; lastStep?: number };
  disabled: boolean;
  source: 'local' | 'oidc';
  oidc?: { issuer: string; subject: string; groups: string[] };
  /** Sessions created before this time (ms) are no longer valid (password reset, disable). */
  sessionsNotBefore?: number;
  createdAt: string;
  updatedAt: string;
}

/** What the API and CLI show of a user: never the hash or the TOTP secret. */
export interface PublicUser {
  email: string;
  name?: string;
  roles: Role[];
  scope: UserScope | null;
  source: 'local' | 'oidc';
  disabled: boolean;
  mustChangePassword: boolean;
  totpEnabled: boolean;
  createdAt: string;
  updatedAt: string;
}

export function publicUser(u: UserRecord): PublicUser {
  return {
    email: u.email,
    ...(u.name ? { name: u.name } : {}),
    roles: u.roles,
    scope: u.scope,
    source: u.source,
    disabled: u.disabled,
    mustChangePassword: u.mustChangePassword,
    totpEnabled: !!u.totp?.enabled,
    createdAt: u.createdAt,
    updatedAt: u.updatedAt,
  };
}

/** An API token; the catalog id is the token's public id, the secret is stored only as a SHA-256. */
export interface TokenRecord {
  id: string;
  user: string;
  name: string;
  /** SHA-256 (hex) of the whole token string. */
  hash: string;
  createdAt: string;
  createdBy: string;
  /** ISO time, or null: never expires. */
  expiresAt: string | null;
  revokedAt: string | null;
  revokedBy?: string;
  lastUsedAt: string | null;
}

export type PublicToken = Omit<TokenRecord, 'hash'>;

export function publicToken(t: TokenRecord): PublicToken {
  const { hash: _hash, ...rest } = t;
  return rest;
}

/** A browser session; the catalog id is the SHA-256 of the cookie value, so a catalog reader cannot hijack it. */
export interface SessionRecord {
  user: string;
  /** The CSRF token state-changing requests of this session must echo in `X-CSRF-Token`. */
  csrf: string;
  via: 'password' | 'oidc';
  createdAt: number;
  /** ms; absolute end. */
  expiresAt: number;
  /** ms; the idle timeout counts from here. */
  lastSeenAt: number;
  clientAddress: string | null;
}

/** Per-account sign-in throttle, keyed by the e-mail tried (known or not, so answers do not reveal which accounts exist). */
export interface ThrottleRecord {
  failures: number;
  /** ms: no attempt before this. */
  nextAttemptAt: number;
  /** ms: locked until this, or 0. */
  lockedUntil: number;
  lastFailureAt: number;
}

/** Who a request acts as. */
export interface Principal {
  email: string;
  name?: string;
  roles: Role[];
  /** The stored scope (groups by name). */
  userScope: UserScope | null;
  /** The scope the index applies (groups resolved to addresses); null = unrestricted. */
  scope: Scope | null;
  via: 'token' | 'session';
  tokenId?: string;
  /** Catalog id of the session (a hash, not the cookie). */
  sessionId?: string;
  csrf?: string;
  mustChangePassword: boolean;
}

/** Who did something, for the audit trail. */
export interface Actor {
  user: string | null;
  clientAddress: string | null;
}
