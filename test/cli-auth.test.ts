/**
 * The identity and audit commands of the `archive` CLI, through the built
 * binary: `users add` prints a one-time password, `tokens create` prints the
 * token as its last line and it works against the API, `tokens revoke` ends
 * it, and `audit verify` exits 1 naming the first bad record once the
 * trail has been tampered with. On both deployments (the users, tokens and
 * the trail live in the catalog: SQLite, or OpenSearch in scale-out).
 */
import { describe, expect, it, onTestFinished } from 'vitest';
import { runCli, startInProcess, tempDir } from './helpers/archive-process.js';
import { dropModeIndices, MODES, tamperCatalogRecord } from './helpers/modes.js';
import { AUDIT_COLLECTION, type AuditRecord } from '../src/audit/audit-trail.js';

describe.each(MODES.filter((m) => m.enabled))('archive users, tokens and audit ($mode)', ({ env: modeEnvOf }) => {
  it('users add → tokens create → the token works → revoke ends it; audit verify catches tampering', async () => {
    const dataDir = await tempDir();
    const modeEnv = await modeEnvOf();
    onTestFinished(() => dropModeIndices(modeEnv));
    const env = { ...modeEnv, ARCHIVE_DATA_DIR: dataDir, ARCHIVE_LOG_LEVEL: 'warn' };

    const add = await runCli(['users', 'add', '--email', 'Officer@Corp.Example', '--role', 'officer', '--role', 'reviewer', '--scope-domain', 'corp.example', '--scope-address', 'ceo@board.example'], env);
    expect(add.code, add.stderr).toBe(0);
    const addLines = add.stdout.trim().split('\n');
    expect(addLines[0]).toBe('created user officer@corp.example');
    expect(add.stdout).toContain('roles:  officer, reviewer');
    expect(add.stdout).toContain('scope:  domain corp.example, address ceo@board.example');
    const password = addLines[addLines.length - 1];
    expect(password).toMatch(/^[A-Za-z0-9]{20}$/);

    const admin = await runCli(['users', 'add', '--email', 'admin@corp.example', '--role', 'admin'], env);
    expect(admin.code).toBe(0);
    expect(admin.stdout).toContain('scope:  all mail (unrestricted)');

    // Refusals: unknown role, duplicate user, missing --email.
    const badRole = await runCli(['users', 'add', '--email', 'x@corp.example', '--role', 'superuser'], env);
    expect(badRole.code).toBe(1);
    expect(badRole.stderr).toMatch(/unknown role.*superuser/);
    const dup = await runCli(['users', 'add', '--email', 'officer@corp.example', '--role', 'officer'], env);
    expect(dup.code).toBe(1);
    expect(dup.stderr).toMatch(/already exists/);
    expect((await runCli(['users', 'add', '--role', 'officer'], env)).code).toBe(2);

    const list = await runCli(['users', 'list'], env);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/officer@corp\.example\s+officer,reviewer\s+domain corp\.example/);
    expect(list.stdout).toContain('2 users');
    expect(list.stdout).not.toContain(password);

    const create = await runCli(['tokens', 'create', '--email', 'officer@corp.example', '--expires-days', '30', '--name', 'ediscovery-script'], env);
    expect(create.code, create.stderr).toBe(0);
    const lines = create.stdout.trim().split('\n');
    const token = lines[lines.length - 1];
    expect(token).toMatch(/^arc_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    const id = token.split('_')[1];
    expect((await runCli(['tokens', 'create', '--email', 'nobody@corp.example'], env)).code).toBe(1);

    const archive = await startInProcess({ ...modeEnv, ARCHIVE_COOKIE_SECURE: 'false' }, dataDir);
    try {
      const base = `http://127.0.0.1:${archive.httpPort}`;
      const me = await fetch(`${base}/api/auth/me`, { headers: { authorization: `Bearer ${token}` } });
      expect(me.status).toBe(200);
      expect(((await me.json()) as { user: { roles: string[] } }).user.roles).toEqual(['officer', 'reviewer']);
      expect((await fetch(`${base}/api/search?q=`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
      // The one-time password signs in (and must then be changed).
      const signIn = await fetch(`${base}/api/auth/sign-in`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: 'officer@corp.example', password }) });
      expect(signIn.status).toBe(200);
      expect(((await signIn.json()) as { user: { mustChangePassword: boolean } }).user.mustChangePassword).toBe(true);

      const tokens = await runCli(['tokens', 'list', '--email', 'officer@corp.example'], env);
      expect(tokens.stdout).toContain(id);
      expect(tokens.stdout).not.toContain(token);
      const revoke = await runCli(['tokens', 'revoke', id], env);
      expect(revoke.code).toBe(0);
      expect(revoke.stdout).toContain(`revoked token ${id}`);
      expect((await fetch(`${base}/api/auth/me`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(401);
    } finally {
      await archive.close();
    }

    // The trail holds what the CLI did, and verifies.
    const ok = await runCli(['audit', 'verify'], env);
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/audit trail OK: \d+ records/);
    const seal = await runCli(['audit', 'seal'], env);
    expect(seal.code).toBe(0);
    expect(seal.stdout).toMatch(/sealed: record \d+/);

    // Tamper with record 2 behind the archive's back (in SQLite, or in OpenSearch).
    const before = await tamperCatalogRecord<AuditRecord>(dataDir, modeEnv, AUDIT_COLLECTION, '000000000002', (r) => ({ ...r, target: 'someone-else@corp.example' }));
    expect(before.action).toBe('user.create');
    const bad = await runCli(['audit', 'verify'], env);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/AUDIT TRAIL DAMAGED at record 2 \(id 000000000002\): record 2 was altered/);
    const json = await runCli(['audit', 'verify', '--json'], env);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout).firstBad).toMatchObject({ seq: 2, id: '000000000002' });
  }, 180_000);
});

describe('archive help and config', () => {
  it('help lists the new commands, and config prints the group map as JSON', async () => {
    const help = await runCli(['help'], {});
    for (const c of ['users add', 'tokens create', 'audit verify']) expect(help.stdout).toContain(c);
    const cfg = await runCli(['config'], { ARCHIVE_OIDC_GROUP_MAP: '{"g":{"roles":["officer"]}}' });
    expect(cfg.stdout).toContain('ARCHIVE_OIDC_GROUP_MAP={"g":{"roles":["officer"]}}');
  });
});
