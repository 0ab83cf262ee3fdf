/**
 * Retention benchmark (embedded deployment: fs store, SQLite index and
 * catalog): the time to apply a custodian hold over N messages (catalog
 * record + object legal-hold flag per message), and disposition throughput
 * (messages deleted per second, each with its guards, its immutable record
 * and its index entry).
 *
 *   npm run build && node dist/bench/retention.bench.js [--messages 10000] [--keep]
 *
 * Messages are small generated mails stored through the real store; their
 * index documents are built directly (no parse), so the build measures
 * nothing of interest and is not timed. Issue 6 target: a custodian hold
 * over 1,000,000 messages in at most 60 s.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DateTime } from 'luxon';
import { pino } from 'pino';
import { FsObjectStore } from '../src/adapters/fs/fs-object-store.js';
import { SqliteCatalogStore } from '../src/adapters/sqlite/sqlite-catalog-store.js';
import { SqliteMessageIndex } from '../search/sqlite/sqlite-message-index.js';
import { AuditTrail } from '../src/audit/audit-trail.js';
import { newEnvelopeId } from '../src/domain/envelope-id.js';
import type { IndexedMessage } from '../src/domain/indexed-message.js';
import { DispositionJob, RetentionService } from '../retention/index.js';
import { fmt } from './bench-util.js';

const { values } = parseArgs({ options: { messages: { type: 'string', default: '10000' }, keep: { type: 'boolean' } } });
const N = Number(values.messages);
const log = pino({ level: 'warn' });
/** Messages stored, indexed and recorded per batch while building. */
const BATCH = 500;

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(process.env.BENCH_DIR ?? os.tmpdir(), 'retention-bench-'));
  let now = DateTime.fromISO('2024-06-01T00:00:00Z', { zone: 'utc' });
  const clock = () => now;
  const store = new FsObjectStore(path.join(dir, 'store'), path.join(dir, 'spool'), { clock: () => now.toJSDate() });
  await store.init();
  const index = new SqliteMessageIndex(path.join(dir, 'index.sqlite'), log);
  await index.init();
  const catalog = new SqliteCatalogStore(path.join(dir, 'records.sqlite'), log);
  await catalog.init();
  const audit = new AuditTrail({ catalog, store, log, now: () => now.toJSDate() });
  const service = new RetentionService({ catalog, index, store, audit, clock, log });
  await service.init();
  const actor = { user: 'bench@corp.example' };
  await service.updatePolicy('default', { name: 'Default', matcher: {}, period: { unit: 'days', count: 30, from: 'received' }, action: 'delete' }, actor);
  const spool = path.join(dir, 'bench-spool');
  await mkdir(spool, { recursive: true });

  console.log(`building ${fmt(N)} messages in ${dir} …`);
  const t0 = performance.now();
  for (let start = 0; start < N; start += BATCH) {
    const docs: IndexedMessage[] = [];
    await Promise.all(
      Array.from({ length: Math.min(BATCH, N - start) }, async (_, k) => {
        const i = start + k;
        const custodian = `custodian${i % 2}@corp.example`;
        const date = Date.parse('2024-01-01T00:00:00Z') + i * 1000;
        const raw = Buffer.from(`From: sender${i % 97}@corp.example\r\nTo: ${custodian}\r\nSubject: bench ${i}\r\nMessage-ID: <bench-${i}@corp.example>\r\n\r\nbody ${i}\r\n`);
        const sha = createHash('sha256').update(raw).digest('hex');
        const file = path.join(spool, `${sha}.spool`);
        await writeFile(file, raw);
        await store.putMessage({ path: file, sha256: sha, size: raw.length });
        const env = { id: newEnvelopeId(new Date(date)), sha256: sha, source: 'import' as const, receivedAt: new Date(date).toISOString(), recipients: [{ address: custodian, kind: 'to' as const }], flags: [] };
        await store.putEnvelope(env);
        docs.push({
          id: sha, messageId: `bench-${i}@corp.example`, date, receivedAt: date,
          from: [{ address: `sender${i % 97}@corp.example` }], sender: [], to: [{ address: custodian }], cc: [], bcc: [], replyTo: [],
          envelopeRecipients: env.recipients, envelopeSenders: [], subject: `bench ${i}`, body: `body ${i}`, attachments: [], attachmentText: '',
          references: [], threadId: `bench-${i}@corp.example`, size: raw.length, hasAttachments: false, envelopeIds: [env.id],
        });
      }),
    );
    await index.upsert(docs);
    await service.applyToDocuments(docs);
    if ((start / BATCH) % 20 === 0) process.stdout.write(`\r  ${fmt(start + docs.length)} built`);
  }
  console.log(`\r  built ${fmt(N)} in ${((performance.now() - t0) / 1000).toFixed(1)} s (store + index + retention records at ingest: ${fmt(N / ((performance.now() - t0) / 1000))} msg/s)`);

  // 1. A custodian hold over half of the messages.
  const kase = await service.createCase({ name: 'Bench', matterNumber: 'B-1', custodians: ['custodian0@corp.example'] }, actor);
  const t1 = performance.now();
  const hold = await service.createHold({ caseId: kase.id, name: 'custodian0' }, actor);
  const holdS = (performance.now() - t1) / 1000;
  console.log(`hold application: ${fmt(hold.messageCount)} messages held in ${holdS.toFixed(2)} s = ${fmt(hold.messageCount / holdS)} msg/s (projected 1,000,000: ${fmt(1_000_000 / (hold.messageCount / holdS))} s)`);

  // 2. Disposition of the other half (the held half is passed over by the catalog query).
  now = now.plus({ years: 1 });
  const job = new DispositionJob({ catalog, index, store, audit, service, clock, log, fourEyes: false, budgetMs: 3_600_000, pageSize: 500 });
  const t2 = performance.now();
  const r = await job.run({ actor: { user: 'scheduler' } });
  const dispS = (performance.now() - t2) / 1000;
  console.log(`disposition: ${fmt(r.disposed)} deleted (${r.skipped.length} skipped) in ${dispS.toFixed(2)} s = ${fmt(r.disposed / dispS)} msg/s, each with guards, record and index delete`);

  const t3 = performance.now();
  const rel = await service.releaseHold(hold.id, 'bench', actor);
  const relS = (performance.now() - t3) / 1000;
  console.log(`hold release: ${fmt(rel.released)} flags cleared in ${relS.toFixed(2)} s = ${fmt(rel.released / relS)} msg/s`);

  await index.close();
  await catalog.close();
  if (!values.keep) await rm(dir, { recursive: true, force: true });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
