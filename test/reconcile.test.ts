/**
 * Start-up reconciliation, on both deployments: a message that is stored
 * but not indexed is indexed, and so is an indexed message whose document
 * lacks an envelope the store holds (a second delivery, say a Bcc to a
 * custodian, whose index job was lost: the node crashed after the envelope
 * was written, or Redis refused the job and the node restarted). Each case
 * is set up in the store behind a stopped archive, as a crash leaves it.
 */
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startInProcess, tempDir, testEnv } from './helpers/archive-process.js';
import { MODES, waitForIndexed } from './helpers/modes.js';
import { sendRaw } from './helpers/smtp-client.js';
import { createObjectStore } from '../src/factory.js';
import { loadConfig } from '../src/config/config.js';
import { createLogger } from '../src/logger.js';
import { newEnvelopeId } from '../src/domain/envelope-id.js';
import type { ObjectStore } from '../src/ports/object-store.js';
import type { RunningArchive } from '../src/main.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const mail = (n: string) => Buffer.from(`From: a@corp.example\r\nTo: b@corp.example\r\nSubject: reconcile ${n}\r\nMessage-ID: <rec-${n}-${Date.now()}@corp.example>\r\n\r\nbody ${n}\r\n`);

const running: RunningArchive[] = [];
afterEach(async () => {
  while (running.length) await running.pop()!.close();
});

/** The deployment's store, opened on its own while the archive is stopped (as after a crash). */
async function withStore<T>(dataDir: string, env: Record<string, string>, fn: (store: ObjectStore) => Promise<T>): Promise<T> {
  const store = await createObjectStore(loadConfig(testEnv(dataDir, env)), createLogger({ level: 'silent' }));
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

async function until(what: string, cond: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

for (const { mode, enabled, env: modeEnv } of MODES)
describe.runIf(enabled)(`start-up reconciliation (${mode})`, () => {
  it('indexes a stored message the index lacks, and a delivery whose envelope the index lacks (its Bcc becomes searchable)', async () => {
    const env = await modeEnv();
    const dataDir = await tempDir('reconcile-');
    const first = await startInProcess(env, dataDir);
    running.push(first);
    const known = mail('known');
    expect((await sendRaw(first.smtpPort, { from: 'a@corp.example', to: ['b@corp.example'] }, known)).code).toBe(250);
    await waitForIndexed(first.services, [sha(known)]);
    const before = (await first.services.index.get(sha(known)))!;
    expect(before.envelopeIds).toHaveLength(1);
    await running.pop()!.close();

    // What a crash leaves behind: a second delivery's envelope, and a whole message, stored but never indexed.
    const lost = mail('lost');
    const lateEnvelope = newEnvelopeId(new Date());
    await withStore(dataDir, env, async (store) => {
      await store.putEnvelope({ id: lateEnvelope, sha256: sha(known), source: 'smtp', receivedAt: new Date().toISOString(), recipients: [{ address: 'dave@corp.example', kind: 'bcc' }], flags: [] });
      const spool = path.join(dataDir, 'lost.eml');
      await writeFile(spool, lost);
      await store.putMessage({ path: spool, sha256: sha(lost), size: lost.length });
      await store.putEnvelope({ id: newEnvelopeId(new Date()), sha256: sha(lost), source: 'smtp', receivedAt: new Date().toISOString(), recipients: [{ address: 'b@corp.example', kind: 'to' }], flags: [] });
    });

    const second = await startInProcess(env, dataDir);
    running.push(second);
    await until('reconciliation to index both', async () => {
      const [k, l] = await Promise.all([second.services.index.get(sha(known)), second.services.index.get(sha(lost))]);
      return !!l && !!k && k.envelopeIds.includes(lateEnvelope);
    });
    await waitForIndexed(second.services, [sha(known), sha(lost)]);
    const after = (await second.services.index.get(sha(known)))!;
    expect(after.envelopeIds).toEqual([...before.envelopeIds, lateEnvelope].sort());
    expect(after.envelopeRecipients.map((r) => r.address)).toContain('dave@corp.example');
    const found = await second.services.search.search({ q: 'participant:dave@corp.example', size: 10, sort: 'date', order: 'desc', facets: false });
    expect(found.hits.map((h) => h.id)).toEqual([sha(known)]);
  }, 180_000);
});
