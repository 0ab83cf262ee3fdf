/**
 * Credentials for tests, made through the real identity layer (the same
 * calls `archive users add` and `archive tokens create` make): a user with
 * the given roles and scope, an API token for it, and a fetch that sends it.
 */
import { randomBytes } from 'node:crypto';
import type { Services } from '../../src/services.js';
import type { Role } from '../../src/auth/roles.js';
import type { UserScope } from '../../src/auth/scope.js';

export const TEST_ACTOR = { user: 'test-setup', clientAddress: null };

export interface TestUser {
  email: string;
  password: string;
  token: string;
  /** fetch with `Authorization: Bearer <token>`; `path` is appended to the base URL. */
  fetch: (path: string, init?: RequestInit) => Promise<Response>;
}

export async function makeUser(
  services: Pick<Services, 'auth'>,
  base: string,
  opts: { roles: Role[]; scope?: Partial<UserScope> | null; email?: string },
): Promise<TestUser> {
  const email = opts.email ?? `user-${randomBytes(4).toString('hex')}@test.example`;
  const { password } = await services.auth.createUser({ email, roles: opts.roles, scope: opts.scope === undefined ? null : opts.scope }, TEST_ACTOR);
  const { token } = await services.auth.createToken({ email }, TEST_ACTOR);
  return {
    email,
    password,
    token,
    fetch: (path, init = {}) => fetch(`${base}${path}`, { ...init, headers: { ...(init.headers as Record<string, string> | undefined), authorization: `Bearer ${token}` } }),
  };
}
