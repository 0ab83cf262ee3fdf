/**
 * The disposition guard, wired into the running archive: a due message
 * whose index entry lacks a stored envelope (a later delivery whose index
 * job was lost) is skipped, and the run asks the archive's own queue to
 * index it again; once indexed, the next run treats it as any other. On
 * both deployments (the inline queue; bull with its workers).
 */
import { createHash } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { startInProcess } from './helpers/archive-process.js';
import { MODES, waitForIndexed } from './helpers/modes.js';
import { sendRaw } from './helpers/smtp-client.js';
import { newEnvelopeId } from '../src/domain/envelope-id.js';
import type { RunningArchive } from '../src/main.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const actor = { user: 'admin@corp.example' };
const running: RunningArchive[] = [];
afterEach(async () => {
  while (running.length) await running.pop()!.close();
});

for (const { mode, enabled, env: modeEnv } of MODES)
describe.runIf(enabled)(`disposition asks the archive to index a message again (${mode})`, () => {
  it('skips a due message whose index entry lacks a stored envelope, has it indexed, and then treats it as any other', async () => {
    const archive = await startInProcess(await modeEnv());
    running.push(archive);
    const s = archive.services;
    await s.retention.updatePolicy('default', { name: 'Default', matcher: {}, period: { unit: 'days', count: 1, from: 'sent' }, action: 'delete' }, actor);
    const m = Buffer.from(`From: a@corp.example\r\nTo: b@corp.example\r\nSubject: due\r\nDate: Tue, 01 Jan 2019 09:00:00 +0000\r\nMessage-ID: <due-${Date.now()}@corp.example>\r\n\r\nbody\r\n`);
    expect((await sendRaw(archive.smtpPort, { from: 'a@corp.example', to: ['b@corp.example'] }, m)).code).toBe(250);
    await waitForIndexed(s, [sha(m)]);
    // A second delivery (Bcc to a custodian) whose index job was lost: only its envelope is stored.
    const late = newEnvelopeId(new Date());
    await s.store.putEnvelope({ id: late, sha256: sha(m), source: 'smtp', receivedAt: new Date().toISOString(), recipients: [{ address: 'dave@corp.example', kind: 'bcc' }], flags: [] });

    const first = await s.disposition.run({ actor });
    expect(first.disposed).toBe(0);
    expect(first.skipped).toEqual([{ sha256: sha(m), reason: expect.stringMatching(/index lacks 1 of its stored envelopes.*\(requested\)$/) }]);
    const end = Date.now() + 60_000;
    while (!(await s.index.get(sha(m)))?.envelopeIds.includes(late)) {
      if (Date.now() > end) throw new Error('the requested index job did not run');
      await new Promise((r) => setTimeout(r, 100));
    }
    await waitForIndexed(s, [sha(m)]);
    expect((await s.index.get(sha(m)))!.envelopeRecipients.map((r) => r.address)).toContain('dave@corp.example');

    const second = await s.disposition.run({ actor });
    if (mode === 'embedded') {
      expect(second).toMatchObject({ disposed: 1, skipped: [] });
      expect(await s.store.statMessage(sha(m))).toBeUndefined();
    } else {
      // S3 keeps every new object locked for the store's default retention, by its own clock: the guard says so, and nothing else stops it.
      expect(second.skipped).toEqual([{ sha256: sha(m), reason: expect.stringMatching(/^the stored object is retained until/) }]);
    }
  }, 180_000);
});
