/**
 * Administration of users, custodian groups and API tokens. Users and groups
 * are for admins; every user manages their own tokens (an admin anyone's).
 * The identity layer audits every change.
 */
import { Router } from 'express';
import { z } from 'zod';
import type { Services } from '../services.js';
import type { RouteRegistry } from './route-registry.js';
import { ROLES } from '../auth/roles.js';
import { userScopeSchema } from '../auth/scope.js';
import { publicUser } from '../auth/types.js';
import { NotFoundError, ForbiddenError } from '../errors.js';
import { principalOf } from './auth-middleware.js';
import { actorOf } from './auth.routes.js';

const ADMIN = ['admin'] as const;
const emailParam = z.object({ email: z.string().min(3).max(320).describe('The user’s e-mail address') });
const scopeInput = userScopeSchema.partial().nullable().describe('null: all mail. Otherwise the addresses, domains (with subdomains) and custodian groups the user may see.');
const roleList = z.array(z.enum(ROLES)).min(1).max(4);

export function usersRouter(s: Services, registry: RouteRegistry): Router {
  const r = Router();

  registry.add(
    r,
    { method: 'get', path: '/api/users', tag: 'users', summary: 'Every user, with lockout state', access: ADMIN, responses: { 200: '`{users}`' } },
    async (_i, _req, res) => {
      const users = await s.auth.listUsers();
      res.json({ users: await Promise.all(users.map(async (u) => ({ ...u, lock: await s.auth.lockState(u.email) }))) });
    },
  );
  registry.add(
    r,
    {
      method: 'post',
      path: '/api/users',
      tag: 'users',
      summary: 'Create a local user; answers a one-time password they must change at first sign-in',
      access: ADMIN,
      body: z.object({ email: z.string().min(3).max(320), name: z.string().max(200).optional(), roles: roleList, scope: scopeInput.default(null) }),
      responses: { 201: '`{user, password}`', 409: 'The user exists' },
    },
    async ({ body }, req, res) => {
      res.status(201).json(await s.auth.createUser({ email: body.email, name: body.name, roles: body.roles, scope: body.scope }, actorOf(req)));
    },
  );
  registry.add(
    r,
    { method: 'get', path: '/api/users/:email', tag: 'users', summary: 'One user', access: ADMIN, params: emailParam, responses: { 200: 'The user', 404: 'No such user' } },
    async ({ params }, _req, res) => {
      const u = await s.auth.getUser(params.email);
      if (!u) throw new NotFoundError(`user ${params.email} not found`);
      res.json({ ...publicUser(u), lock: await s.auth.lockState(u.email) });
    },
  );
  registry.add(
    r,
    {
      method: 'patch',
      path: '/api/users/:email',
      tag: 'users',
      summary: 'Change roles, scope, name, or disable (ends their sessions)',
      access: ADMIN,
      params: emailParam,
      body: z.object({ roles: roleList.optional(), scope: scopeInput.optional(), name: z.string().max(200).optional(), disabled: z.boolean().optional() }),
      responses: { 200: 'The user', 404: 'No such user' },
    },
    async ({ params, body }, req, res) => {
      res.json(await s.auth.updateUser(params.email, body, actorOf(req)));
    },
  );
  registry.add(
    r,
    { method: 'post', path: '/api/users/:email/reset-password', tag: 'users', summary: 'A new one-time password (ends their sessions, lifts a lockout)', access: ADMIN, params: emailParam, responses: { 200: '`{password}`', 404: 'No such user' } },
    async ({ params }, req, res) => {
      res.json(await s.auth.resetPassword(params.email, actorOf(req)));
    },
  );
  registry.add(
    r,
    { method: 'post', path: '/api/users/:email/unlock', tag: 'users', summary: 'Lift a sign-in lockout now', access: ADMIN, params: emailParam, responses: { 204: 'Unlocked' } },
    async ({ params }, req, res) => {
      await s.auth.unlock(params.email, actorOf(req));
      res.status(204).end();
    },
  );

  // ---- custodian groups

  const groupParam = z.object({ name: z.string().min(1).max(100) });
  registry.add(
    r,
    { method: 'get', path: '/api/custodian-groups', tag: 'users', summary: 'Custodian groups (named lists of mailboxes for scopes)', access: ADMIN, responses: { 200: '`{groups}`' } },
    async (_i, _req, res) => {
      res.json({ groups: await s.auth.listGroups() });
    },
  );
  registry.add(
    r,
    {
      method: 'put',
      path: '/api/custodian-groups/:name',
      tag: 'users',
      summary: 'Create or replace a custodian group',
      access: ADMIN,
      params: groupParam,
      body: z.object({ addresses: z.array(z.string().max(320)).max(10_000), description: z.string().max(500).optional() }),
      responses: { 200: 'The group' },
    },
    async ({ params, body }, req, res) => {
      res.json(await s.auth.putGroup(params.name, body.addresses, body.description, actorOf(req)));
    },
  );
  registry.add(
    r,
    { method: 'delete', path: '/api/custodian-groups/:name', tag: 'users', summary: 'Delete a custodian group (scopes naming it then see none of its mail)', access: ADMIN, params: groupParam, responses: { 204: 'Deleted', 404: 'No such group' } },
    async ({ params }, req, res) => {
      await s.auth.deleteGroup(params.name, actorOf(req));
      res.status(204).end();
    },
  );

  // ---- API tokens

  registry.add(
    r,
    {
      method: 'get',
      path: '/api/tokens',
      tag: 'tokens',
      summary: 'Your API tokens (an admin: anyone’s, with ?user= or ?all=true)',
      access: 'authenticated',
      query: z.object({ user: z.string().max(320).optional(), all: z.enum(['true', 'false']).optional() }),
      responses: { 200: '`{tokens}` (never the secrets)' },
    },
    async ({ query }, req, res) => {
      const p = principalOf(req);
      const isAdmin = p.roles.includes('admin');
      if ((query.user && query.user.toLowerCase() !== p.email) || query.all === 'true') {
        if (!isAdmin) throw new ForbiddenError('Only an admin sees the tokens of others');
      }
      res.json({ tokens: await s.auth.listTokens(query.all === 'true' ? undefined : (query.user?.toLowerCase() ?? p.email)) });
    },
  );
  registry.add(
    r,
    {
      method: 'post',
      path: '/api/tokens',
      tag: 'tokens',
      summary: 'Create an API token (shown once). An admin may create one for another user.',
      access: 'authenticated',
      body: z.object({ name: z.string().max(200).optional(), expiresDays: z.number().int().min(1).max(3650).optional(), user: z.string().max(320).optional() }),
      responses: { 201: '`{token, id, user, name, expiresAt, …}`' },
    },
    async ({ body }, req, res) => {
      const p = principalOf(req);
      const email = body.user?.toLowerCase() ?? p.email;
      if (email !== p.email && !p.roles.includes('admin')) throw new ForbiddenError('Only an admin creates tokens for others');
      const { token, record } = await s.auth.createToken({ email, name: body.name, expiresDays: body.expiresDays }, actorOf(req));
      res.status(201).json({ token, ...record });
    },
  );
  registry.add(
    r,
    { method: 'delete', path: '/api/tokens/:id', tag: 'tokens', summary: 'Revoke an API token (yours; an admin: any)', access: 'authenticated', params: z.object({ id: z.string().regex(/^[0-9a-f]{16}$/) }), responses: { 200: 'The revoked token', 404: 'No such token of yours' } },
    async ({ params }, req, res) => {
      const p = principalOf(req);
      res.json(await s.auth.revokeToken(params.id, actorOf(req), p.roles.includes('admin') ? undefined : p.email));
    },
  );
  return r;
}
