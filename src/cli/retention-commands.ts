/**
 * `archive policies|cases|holds|dispose|reports`: the retention engine from
 * the command line. Each acts as `cli:<os user>` in the audit trail.
 */
import { writeFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { parseArgs } from 'node:util';
import type { Config } from '../config/config.js';
import type { Logger } from '../logger.js';
import { createServices, type Services } from '../services.js';
import { ValidationError } from '../errors.js';
import type { PolicyInput, RetentionActor } from '../../retention/index.js';
import { checkFixity } from '../integrity/fixity-check.js';
import { loadSigningKey } from '../export/signing-key.js';
import { certificateCsv, certificatePdf, holdReportCsv, holdReportPdf, retentionReportCsv, retentionReportPdf, signCertificate } from '../reports/retention-reports.js';
import { periodOf } from '../http/retention.routes.js';

export const RETENTION_HELP = `  policies list|show <id>|create|update <id>|delete <id>|simulate [<id>]
                        Retention policies. create/update/simulate take
                        --name N --period 7y|18m|90d|forever [--from sent|received]
                        [--action delete|review] [--senders a,b] [--recipients ..]
                        [--envelope-recipients ..] [--custodians ..]
                        [--has-attachment yes|no] [--query Q]
  cases list|show <id>|create --name N --matter M [--description D] [--custodians a,b]
  holds list|create --case ID --name N [--custodians a,b] [--query Q] [--date-from D] [--date-to D]
        |release <id> --reason R
  dispose [--dry-run] [--json] | dispose pending | dispose approve <sha256>...
                        Delete what is past retain-until and not held (fail-closed)
  reports retention|certificate|hold <case-id> [--from D] [--to D]
        [--format json|csv|pdf] [--out FILE] [--fixity]`;

type Ctx = { config: Config; log: Logger };

function actor(): RetentionActor {
  let name = 'unknown';
  try {
    name = userInfo().username;
  } catch {
    // no passwd entry (containers)
  }
  return { user: `cli:${name}`, clientAddress: null, scope: null };
}

const list = (v: string | undefined) => (v === undefined ? undefined : v.split(',').map((s) => s.trim()).filter(Boolean));

const policyOptions = {
  name: { type: 'string' },
  description: { type: 'string' },
  period: { type: 'string' },
  from: { type: 'string' },
  action: { type: 'string' },
  senders: { type: 'string' },
  recipients: { type: 'string' },
  'envelope-recipients': { type: 'string' },
  custodians: { type: 'string' },
  'has-attachment': { type: 'string' },
  query: { type: 'string' },
  json: { type: 'boolean' },
} as const;

function policyInput(v: Record<string, string | boolean | undefined>): PolicyInput {
  const m = /^(\d+)\s*([dmy])$/.exec(String(v.period ?? ''));
  if (!m && v.period !== 'forever') throw new ValidationError('--period: e.g. 90d, 18m, 7y or forever');
  const unit = v.period === 'forever' ? 'forever' : ({ d: 'days', m: 'months', y: 'years' } as const)[m![2] as 'd' | 'm' | 'y'];
  const ha = v['has-attachment'];
  return {
    name: String(v.name ?? ''),
    description: v.description as string | undefined,
    period: { unit, count: m ? Number(m[1]) : 0, from: v.from === 'sent' ? 'sent' : 'received' },
    action: v.action === 'review' ? 'review' : 'delete',
    matcher: {
      senders: list(v.senders as string | undefined),
      recipients: list(v.recipients as string | undefined),
      envelopeRecipients: list(v['envelope-recipients'] as string | undefined),
      custodians: list(v.custodians as string | undefined),
      hasAttachment: ha === undefined ? undefined : ha === 'yes' || ha === 'true',
      query: v.query as string | undefined,
    },
  };
}

async function withServices<T>(ctx: Ctx, fn: (s: Services) => Promise<T>): Promise<T> {
  const s = await createServices(ctx.config, ctx.log);
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

const print = (v: unknown) => console.log(JSON.stringify(v, null, 2));

export async function policiesCommand(args: string[], ctx: Ctx): Promise<number> {
  const { positionals, values } = parseArgs({ args, allowPositionals: true, options: policyOptions });
  const [action = 'list', id] = positionals;
  return withServices(ctx, async (s) => {
    switch (action) {
      case 'list': {
        const ps = await s.retention.listPolicies();
        if (values.json) print(ps);
        else for (const p of ps) console.log(`${p.id.padEnd(14)} v${String(p.version).padEnd(3)} ${p.name}  (${p.period.unit === 'forever' ? 'forever' : `${p.period.count} ${p.period.unit} from ${p.period.from}`}; then ${p.action})`);
        return 0;
      }
      case 'show':
        print({ policy: await s.retention.getPolicy(id), versions: await s.retention.policyVersions(id) });
        return 0;
      case 'create':
        print(await s.retention.createPolicy(policyInput(values), actor()));
        return 0;
      case 'update':
        print(await s.retention.updatePolicy(id, policyInput(values), actor()));
        return 0;
      case 'delete':
        await s.retention.deletePolicy(id, actor());
        console.log(`deleted ${id}`);
        return 0;
      case 'simulate':
        print(await s.retention.simulate(policyInput(values), id));
        return 0;
      default:
        console.error(`archive policies: unknown action ${action}`);
        return 2;
    }
  });
}

export async function casesCommand(args: string[], ctx: Ctx): Promise<number> {
  const { positionals, values } = parseArgs({ args, allowPositionals: true, options: { name: { type: 'string' }, matter: { type: 'string' }, description: { type: 'string' }, custodians: { type: 'string' }, json: { type: 'boolean' } } });
  const [action = 'list', id] = positionals;
  return withServices(ctx, async (s) => {
    if (action === 'list') {
      const cs = await s.retention.listCases();
      if (values.json) print(cs);
      else for (const c of cs) console.log(`${c.id}  ${c.matterNumber}  ${c.name}  custodians: ${c.custodians.join(', ')}`);
      return 0;
    }
    if (action === 'show') {
      print({ case: await s.retention.getCase(id), holds: await s.retention.listHolds(id) });
      return 0;
    }
    if (action === 'create') {
      print(await s.retention.createCase({ name: values.name ?? '', matterNumber: values.matter ?? '', description: values.description, custodians: list(values.custodians) ?? [] }, actor()));
      return 0;
    }
    console.error(`archive cases: unknown action ${action}`);
    return 2;
  });
}

export async function holdsCommand(args: string[], ctx: Ctx): Promise<number> {
  const { positionals, values } = parseArgs({
    args,
    allowPositionals: true,
    options: { case: { type: 'string' }, name: { type: 'string' }, custodians: { type: 'string' }, query: { type: 'string' }, 'date-from': { type: 'string' }, 'date-to': { type: 'string' }, reason: { type: 'string' }, json: { type: 'boolean' } },
  });
  const [action = 'list', id] = positionals;
  return withServices(ctx, async (s) => {
    if (action === 'list') {
      const hs = await s.retention.listHolds(values.case);
      if (values.json) print(hs);
      else for (const h of hs) console.log(`${h.id}  ${h.status.padEnd(8)} ${String(h.messageCount).padStart(8)} messages  ${h.name}  (case ${h.caseId})${h.clearsPending ? `  [release pending: legal-hold flags not all cleared yet${h.lastClearError ? `: ${h.lastClearError}` : ''}]` : ''}${h.applyPending && h.status === 'active' ? `  [applying: not yet applied to every archived message (it protects them meanwhile)${h.lastApplyError ? `: ${h.lastApplyError}` : ''}]` : ''}`);
      return 0;
    }
    if (action === 'create') {
      if (!values.case) throw new ValidationError('--case is required');
      print(await s.retention.createHold({ caseId: values.case, name: values.name ?? 'Legal hold', custodians: list(values.custodians), query: values.query, dateFrom: values['date-from'], dateTo: values['date-to'] }, actor()));
      return 0;
    }
    if (action === 'release') {
      print(await s.retention.releaseHold(id, values.reason ?? '', actor()));
      return 0;
    }
    console.error(`archive holds: unknown action ${action}`);
    return 2;
  });
}

export async function disposeCommand(args: string[], ctx: Ctx): Promise<number> {
  const { positionals, values } = parseArgs({ args, allowPositionals: true, options: { 'dry-run': { type: 'boolean' }, json: { type: 'boolean' } } });
  const [action, ...shas] = positionals;
  return withServices(ctx, async (s) => {
    if (action === 'pending') {
      print(await s.disposition.pending());
      return 0;
    }
    if (action === 'approve') {
      print(await s.disposition.approve(shas, actor()));
      return 0;
    }
    const r = await s.disposition.run({ dryRun: !!values['dry-run'], actor: actor() });
    if (values.json) print(r);
    else {
      if (!r.acquired) console.log('another node is running the disposition engine; nothing done');
      for (const c of r.candidates) console.log(`would ${c.action === 'delete' ? 'delete ' : 'propose'} ${c.sha256}  retained until ${c.retainUntil}  (${c.policyId})`);
      for (const k of r.skipped) console.log(`skipped ${k.sha256}: ${k.reason}`);
      if (r.holdsApplied || r.holdsApplyPending) console.log(`pending hold applications: ${r.holdsApplied} finished, ${r.holdsApplyPending} still pending`);
      if (r.holdFlagsCleared || r.holdFlagsPending) console.log(`pending hold releases: ${r.holdFlagsCleared} legal-hold flags cleared, ${r.holdFlagsPending} still pending`);
      console.log(`${r.dryRun ? 'dry run: ' : ''}examined ${r.examined}, disposed ${r.disposed}, proposed ${r.proposed}, skipped ${r.skipped.length}${r.complete ? '' : ' (budget used up; the next run resumes)'}`);
    }
    return r.skipped.length ? 1 : 0;
  });
}

export async function reportsCommand(args: string[], ctx: Ctx): Promise<number> {
  const { positionals, values } = parseArgs({ args, allowPositionals: true, options: { from: { type: 'string' }, to: { type: 'string' }, format: { type: 'string', default: 'json' }, out: { type: 'string' }, fixity: { type: 'boolean' } } });
  const [kind, caseId] = positionals;
  const format = values.format as 'json' | 'csv' | 'pdf';
  if (!['json', 'csv', 'pdf'].includes(format)) throw new ValidationError('--format: json, csv or pdf');
  const meta = { organisation: ctx.config.ARCHIVE_ORG_NAME };
  return withServices(ctx, async (s) => {
    let out: Buffer | string;
    if (kind === 'retention') {
      const d = await s.retentionReports.retention(periodOf(values));
      if (values.fixity) {
        const f = await checkFixity(s.store);
        d.fixity = { checked: f.checked, ok: f.ok, problems: f.problems.length, bytes: f.bytes, startedAt: f.startedAt, finishedAt: f.finishedAt };
      }
      out = format === 'pdf' ? await retentionReportPdf(d, meta) : format === 'csv' ? retentionReportCsv(d) : JSON.stringify(d, null, 2);
    } else if (kind === 'certificate') {
      const d = await s.retentionReports.certificate(periodOf(values));
      const cert = signCertificate(d, meta, await loadSigningKey(ctx.config));
      out = format === 'pdf' ? await certificatePdf(d, cert, meta) : format === 'csv' ? certificateCsv(d) : JSON.stringify({ certificate: cert, items: d.items }, null, 2);
    } else if (kind === 'hold') {
      const d = await s.retentionReports.holdReport(caseId);
      out = format === 'pdf' ? await holdReportPdf(d, meta) : format === 'csv' ? holdReportCsv(d) : JSON.stringify(d, null, 2);
    } else {
      console.error('archive reports: retention, certificate or hold <case-id>');
      return 2;
    }
    if (values.out) {
      await writeFile(values.out, out);
      console.error(`wrote ${values.out}`);
    } else if (format === 'pdf') {
      console.error('archive reports: a PDF needs --out FILE');
      return 2;
    } else process.stdout.write(out);
    await s.audit.record({ action: `report.${kind}`, outcome: 'success', user: actor().user, details: { format } });
    return 0;
  });
}
