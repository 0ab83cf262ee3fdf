/**
 * The `archive` CLI as an admin uses it: configuration errors, `config`,
 * `import`, `stats` and `verify`, through the built binary.
 */
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CORPUS, runCli, tempDir } from './helpers/archive-process.js';
import { listFiles } from './helpers/mail-files.js';
import { MODES, storedBytes, tamperStored } from './helpers/modes.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('archive config', () => {
  it('stops on a bad value and names the variable', async () => {
    const r = await runCli(['config'], { ARCHIVE_SMTP_PORT: 'twenty-five', ARCHIVE_SMTP_MAX_SIZE: 'huge' });
    expect(r.code).toBe(78);
    expect(r.stderr).toContain('ARCHIVE_SMTP_PORT');
    expect(r.stderr).toContain('ARCHIVE_SMTP_MAX_SIZE');
  });

  it('refuses a malformed CIDR allowlist', async () => {
    const r = await runCli(['config'], { ARCHIVE_SMTP_ALLOW_NETWORKS: '10.0.0.0/8,300.1.1.1/33' });
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/ARCHIVE_SMTP_ALLOW_NETWORKS.*300\.1\.1\.1\/33/);
  });

  it('prints the effective configuration with secrets redacted', async () => {
    const r = await runCli(['config'], {
      ARCHIVE_SMTP_AUTH_USER: 'journal',
      ARCHIVE_SMTP_AUTH_PASSWORD: 'hunter2-secret',
      ARCHIVE_REDIS_URL: 'redis://:redispass@127.0.0.1:6379',
    });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('ARCHIVE_SMTP_PORT=2525');
    expect(r.stdout).toContain('ARCHIVE_HTTP_PORT=8080');
    expect(r.stdout).toContain('ARCHIVE_SMTP_AUTH_USER=journal');
    expect(r.stdout).toContain('ARCHIVE_SMTP_AUTH_PASSWORD=***');
    expect(r.stdout).not.toContain('hunter2-secret');
    expect(r.stdout).not.toContain('redispass');
    expect(r.stdout).toContain(`ARCHIVE_SMTP_MAX_SIZE=${150 * 1024 * 1024}`);
  });
});

describe.each(MODES.filter((m) => m.enabled))('archive import, stats and verify ($mode)', ({ env: modeEnvOf }) => {
  it('imports the whole shared corpus byte for byte, counts duplicates, and verify passes', async () => {
    const dataDir = await tempDir();
    const modeEnv = await modeEnvOf();
    const env = { ...modeEnv, ARCHIVE_DATA_DIR: dataDir, ARCHIVE_LOG_LEVEL: 'warn' };
    const files = await listFiles(CORPUS, (f) => !/(LICENSE|README)/.test(f));
    const r = await runCli(['import', '--json', ...files], env);
    expect(r.stderr).not.toMatch(/"level":(50|60)/);
    const summary = JSON.parse(r.stdout);
    const distinct = new Set(await Promise.all(files.map(async (f) => sha(await readFile(f)))));
    expect(summary.failed).toBe(0);
    expect(summary.imported).toBe(distinct.size);
    expect(summary.duplicates).toBe(files.length - distinct.size);
    expect(r.code).toBe(0);

    // Every file is stored under its own hash, byte for byte.
    for (const f of files) {
      const raw = await readFile(f);
      expect((await storedBytes(dataDir, modeEnv, sha(raw))).equals(raw), f).toBe(true);
    }

    const stats = await runCli(['stats', '--json'], env);
    expect(JSON.parse(stats.stdout)).toMatchObject({ messages: distinct.size, envelopes: files.length });

    const again = await runCli(['import', '--json', path.join(CORPUS, 'mailparser')], env);
    const s2 = JSON.parse(again.stdout);
    expect(s2.imported).toBe(0);
    expect(s2.duplicates).toBeGreaterThan(0);
    expect(s2.skipped).toBe(1); // LICENSE

    const ok = await runCli(['verify'], env);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(new RegExp(`verified ${distinct.size} objects`));

    // Damage one object: verify names it and fails.
    const victim = [...distinct].sort()[0]!;
    await tamperStored(dataDir, modeEnv, victim);
    const bad = await runCli(['verify'], env);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toContain(`MISMATCH ${victim}`);
    expect(bad.stdout).toMatch(/1 bad/);
  });

  it('imports MBOX files (mboxrd escaping undone) and reports failures with a non-zero exit', async () => {
    const dataDir = await tempDir();
    const modeEnv = await modeEnvOf();
    const env = { ...modeEnv, ARCHIVE_DATA_DIR: dataDir, ARCHIVE_LOG_LEVEL: 'warn', ARCHIVE_SMTP_MAX_SIZE: '2KB' };
    const m1 = 'From: a@example.com\nSubject: one\n\nhello\n>From the start\n';
    const m2 = 'From: b@example.com\nSubject: two\n\nsecond\n';
    const huge = `From: c@example.com\nSubject: three\n\n${'x'.repeat(4096)}\n`;
    const mbox = `From a@example.com Mon Jan  1 00:00:00 2024\n${m1.replace('>From the', '>>From the')}\nFrom b@example.com Mon Jan  1 00:00:00 2024\n${m2}\nFrom c@example.com Mon Jan  1 00:00:00 2024\n${huge}\n`;
    const file = path.join(dataDir, 'test.mbox');
    await writeFile(file, mbox);
    const r = await runCli(['import', file], env);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/imported 2, duplicates 0, failed 1/);
    expect(r.stdout).toMatch(/failed: .*test\.mbox#2: Message exceeds the maximum size of 2048 bytes/);
    const h1 = sha(Buffer.from(m1.replace('>From the', '>From the')));
    expect((await storedBytes(dataDir, modeEnv, h1)).toString('utf8')).toBe(m1);
  });

  it('reports a missing path as a failure', async () => {
    const dataDir = await tempDir();
    const r = await runCli(['import', path.join(dataDir, 'nope.eml')], { ...(await modeEnvOf()), ARCHIVE_DATA_DIR: dataDir, ARCHIVE_LOG_LEVEL: 'warn' });
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/failed: .*nope\.eml: ENOENT/);
  });
});
