/**
 * Promise 1: nothing acknowledged is lost. SIGKILL the server in the middle
 * of a stream of SMTP deliveries, restart it, and every message that got 250
 * is present and intact; the spool debris of the crash is never taken for a
 * message.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { archivedSha, sendRaw } from './helpers/smtp-client.js';
import { runCli, startChild, tempDir } from './helpers/archive-process.js';
import { MODES, storedBytes } from './helpers/modes.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function message(i: number): Buffer {
  // Some messages are large enough to be mid-write (spooled to disk) when the kill lands.
  const body = randomBytes(i % 5 === 0 ? 600_000 : 2_000).toString('base64').replace(/.{76}/g, '$&\r\n');
  return Buffer.from(`From: load@example.com\r\nTo: archive@example.com\r\nSubject: crash test ${i}\r\nMessage-ID: <crash-${i}@example.com>\r\n\r\n${body}\r\n`);
}

describe.each(MODES.filter((m) => m.enabled))('crash safety ($mode)', ({ env }) => {
  it('keeps every acknowledged message across a SIGKILL', async () => {
    const dataDir = await tempDir();
    const modeEnv = await env();
    const child = await startChild(dataDir, { ...modeEnv, ARCHIVE_LOG_LEVEL: 'warn' });
    const acked = new Map<string, Buffer>();
    let sent = 0;
    let stop = false;
    const sender = async (worker: number) => {
      for (let i = worker; !stop; i += 8) {
        const msg = message(i);
        sent++;
        const answer = await sendRaw(child.smtpPort, { from: 'load@example.com', to: ['archive@example.com'] }, msg, { timeoutMs: 5_000 }).catch(() => undefined);
        if (!answer) return; // the server is gone
        if (answer.code === 250) {
          expect(archivedSha(answer)).toBe(sha(msg));
          acked.set(sha(msg), msg);
        }
      }
    };
    const senders = Array.from({ length: 8 }, (_, w) => sender(w));
    // Let deliveries flow, then kill without warning.
    while (acked.size < 40) await new Promise((r) => setTimeout(r, 20));
    await child.kill();
    stop = true;
    await Promise.all(senders);
    expect(acked.size).toBeGreaterThanOrEqual(40);
    expect(sent).toBeGreaterThan(acked.size); // some were in flight when the kill landed

    // Restart: debris of the crash is cleaned from the spool, never stored as a message.
    const again = await startChild(dataDir, { ...modeEnv, ARCHIVE_LOG_LEVEL: 'info' });
    try {
      expect(await readdir(path.join(dataDir, 'spool'))).toEqual([]);
      for (const [h, msg] of acked) expect((await storedBytes(dataDir, modeEnv, h)).equals(msg), h).toBe(true);
    } finally {
      await again.stop();
    }
    const verify = await runCli(['verify', '--json'], { ...modeEnv, ARCHIVE_DATA_DIR: dataDir, ARCHIVE_LOG_LEVEL: 'warn' });
    expect(verify.code).toBe(0);
    const report = JSON.parse(verify.stdout);
    expect(report.problems).toEqual([]);
    // Only complete messages are in the store: at least the acknowledged ones, never a partial one.
    expect(report.checked).toBeGreaterThanOrEqual(acked.size);
    expect(report.ok).toBe(report.checked);
  });
});
