/**
 * Routes are declared once, with zod schemas for their input; the same
 * declarations validate requests (validation at the edge), type handlers
 * (z.infer), and generate the OpenAPI document. A route cannot exist
 * without appearing in the document.
 *
 * Each declaration also says who may call it (`access`: public, any
 * signed-in user, or a list of roles; the authentication middleware and the
 * guard here enforce it) and, for human actions, what goes into the audit
 * trail (`audit`). An audited route's response is held at its very end until
 * the audit record is durable: a client never receives a complete answer
 * that left no trace (promise 6). If the trail cannot be written, a JSON
 * answer becomes a 503 and a streamed one is cut off.
 */
import type { Request, Response, Router } from 'express';
import type { Logger } from 'pino';
import { z, type ZodTypeAny } from 'zod';
import { zodToJsonSchema } from 'zod-to-json-schema';
import { ForbiddenError, UnauthorizedError, ValidationError } from '../errors.js';
import type { AuditOutcome, AuditTrail } from '../audit/audit-trail.js';
import { hasAnyRole, type Role } from '../auth/roles.js';
import '../auth/request.js';

/** Who may call a route: anyone (sign-in, the OpenAPI document), any signed-in user, or holders of one of the roles. */
export type RouteAccess = 'public' | 'authenticated' | readonly Role[];

export interface RouteAudit<Q extends ZodTypeAny, B extends ZodTypeAny, P extends ZodTypeAny> {
  /** e.g. `search`, `message.view`. */
  action: string;
  /** What the action was on (a message id); from the validated input. */
  target?: (input: ValidInput<Q, B, P>) => string | null;
  /** What else to keep (the query text). Handlers may add to `res.locals.auditDetails`. */
  details?: (input: ValidInput<Q, B, P>) => Record<string, unknown>;
}

export interface RouteSpec<Q extends ZodTypeAny, B extends ZodTypeAny, P extends ZodTypeAny> {
  method: 'get' | 'post' | 'put' | 'patch' | 'delete';
  /** Express-style path, e.g. `/api/messages/:id`. */
  path: string;
  summary: string;
  tag: string;
  params?: P;
  query?: Q;
  body?: B;
  /** Status code → description (and media type when not JSON). */
  responses: Record<number, string | { description: string; contentType: string }>;
  access: RouteAccess;
  audit?: RouteAudit<Q, B, P>;
}

export interface ValidInput<Q extends ZodTypeAny, B extends ZodTypeAny, P extends ZodTypeAny> {
  params: z.infer<P>;
  query: z.infer<Q>;
  body: z.infer<B>;
}

type Handler<Q extends ZodTypeAny, B extends ZodTypeAny, P extends ZodTypeAny> = (input: ValidInput<Q, B, P>, req: Request, res: Response) => Promise<void> | void;

export interface RouteRegistryOptions {
  /** Where audited routes record; without it, declaring `audit` is an error. */
  audit?: AuditTrail;
  log?: Logger;
}

export class RouteRegistry {
  private readonly specs: RouteSpec<ZodTypeAny, ZodTypeAny, ZodTypeAny>[] = [];
  private readonly publicRoutes = new Set<string>();

  constructor(private readonly opts: RouteRegistryOptions = {}) {}

  /** All declared routes (used by the OpenAPI document and by tests that walk every route). */
  routes(): readonly RouteSpec<ZodTypeAny, ZodTypeAny, ZodTypeAny>[] {
    return this.specs;
  }

  /** Whether a request goes to a route declared public (public routes have fixed paths, no parameters). */
  isPublic(method: string, path: string): boolean {
    const m = method.toLowerCase() === 'head' ? 'get' : method.toLowerCase();
    return this.publicRoutes.has(`${m} ${path}`);
  }

  add<Q extends ZodTypeAny = ZodTypeAny, B extends ZodTypeAny = ZodTypeAny, P extends ZodTypeAny = ZodTypeAny>(
    router: Router,
    spec: RouteSpec<Q, B, P>,
    handler: Handler<Q, B, P>,
  ): void {
    if (spec.access === 'public') {
      if (spec.path.includes(':')) throw new Error(`public route ${spec.path} must have a fixed path`);
      this.publicRoutes.add(`${spec.method} ${spec.path}`);
    } else if (spec.access !== 'authenticated' && spec.access.length === 0) {
      throw new Error(`route ${spec.method} ${spec.path}: access needs at least one role`);
    }
    if (spec.audit && !this.opts.audit) throw new Error(`route ${spec.method} ${spec.path} is audited but the registry has no audit trail`);
    this.specs.push(spec as unknown as RouteSpec<ZodTypeAny, ZodTypeAny, ZodTypeAny>);
    router[spec.method](spec.path, async (req: Request, res: Response) => {
      const hook = spec.audit ? holdUntilAudited(this.opts.audit!, this.opts.log, spec.audit, req, res) : undefined;
      try {
        if (spec.access !== 'public') {
          // The middleware authenticated already; this is the guard of last resort and the role check.
          if (!req.user) throw new UnauthorizedError();
          if (spec.access !== 'authenticated' && !hasAnyRole(req.user.roles, spec.access)) {
            throw new ForbiddenError(`This needs the role ${spec.access.join(' or ')}`);
          }
        }
        const input = {
          params: parse(spec.params, req.params, 'path parameter'),
          query: parse(spec.query, req.query, 'query parameter'),
          body: parse(spec.body, req.body, 'body'),
        } as ValidInput<Q, B, P>;
        if (hook) hook.input = input;
        await handler(input, req, res);
      } catch (err) {
        if (hook) await hook.failed(err);
        throw err;
      }
    });
  }

  openApi(info: { title: string; version: string; description: string }): Record<string, unknown> {
    const paths: Record<string, Record<string, unknown>> = {};
    for (const r of this.specs) {
      const p = r.path.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
      const parameters: unknown[] = [];
      for (const [where, schema] of [
        ['path', r.params],
        ['query', r.query],
      ] as const) {
        if (!schema) continue;
        const js = toJsonSchema(schema) as { properties?: Record<string, unknown>; required?: string[] };
        for (const [name, s] of Object.entries(js.properties ?? {})) {
          parameters.push({ name, in: where, required: where === 'path' || (js.required ?? []).includes(name), schema: s, description: (s as { description?: string }).description });
        }
      }
      const responses: Record<string, unknown> = {};
      for (const [code, d] of Object.entries(r.responses)) {
        const desc = typeof d === 'string' ? { description: d, contentType: 'application/json' } : d;
        responses[code] = { description: desc.description, content: { [desc.contentType]: {} } };
      }
      (paths[p] ??= {})[r.method] = {
        summary: r.summary,
        tags: [r.tag],
        parameters,
        ...(r.body ? { requestBody: { required: true, content: { 'application/json': { schema: toJsonSchema(r.body) } } } } : {}),
        responses: { ...responses, default: { description: 'Error: `{error: {code, message}}`', content: { 'application/json': { schema: ERROR_SCHEMA } } } },
        ...(r.access === 'public' ? { security: [] } : {}),
        ...(Array.isArray(r.access) ? { 'x-roles': r.access } : {}),
        ...(r.audit ? { 'x-audit-action': r.audit.action } : {}),
      };
    }
    return {
      openapi: '3.0.3',
      info,
      paths,
      // Every route needs one of these unless it says `security: []`.
      security: [{ bearer: [] }, { session: [] }],
      components: {
        schemas: { Error: ERROR_SCHEMA },
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: 'An API token (`archive tokens create`, or POST /api/tokens).' },
          session: { type: 'apiKey', in: 'cookie', name: 'archive_session', description: 'Browser session from POST /api/auth/sign-in or single sign-on (`__Host-archive_session` with secure cookies). State-changing requests also need the X-CSRF-Token header.' },
        },
      },
    };
  }
}

const ERROR_SCHEMA = {
  type: 'object',
  properties: { error: { type: 'object', properties: { code: { type: 'string' }, message: { type: 'string' } }, required: ['code', 'message'] } },
  required: ['error'],
};

function toJsonSchema(schema: ZodTypeAny): Record<string, unknown> {
  const js = zodToJsonSchema(schema, { target: 'openApi3', $refStrategy: 'none' }) as Record<string, unknown>;
  delete js.$schema;
  return js;
}

function parse(schema: ZodTypeAny | undefined, value: unknown, what: string): unknown {
  if (!schema) return undefined;
  const r = schema.safeParse(value ?? {});
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  throw new ValidationError(`invalid ${what} ${issue.path.join('.') || ''}: ${issue.message}`.replace('  ', ' '), { issues: r.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })) });
}

/** The audit record's outcome, from the status the client is about to receive. */
function outcomeOf(status: number): AuditOutcome {
  if (status < 400) return 'success';
  return status === 401 || status === 403 ? 'denied' : 'failure';
}

/**
 * Holds the end of an audited route's response until its audit record is
 * written: `res.end` is replaced for this response only. Returns the hook the
 * route wrapper feeds with the validated input and any error.
 */
function holdUntilAudited<Q extends ZodTypeAny, B extends ZodTypeAny, P extends ZodTypeAny>(
  trail: AuditTrail,
  log: Logger | undefined,
  spec: RouteAudit<Q, B, P>,
  req: Request,
  res: Response,
): { input?: ValidInput<Q, B, P>; failed(err: unknown): Promise<void> } {
  let error: unknown;
  let recorded = false;
  const hook: { input?: ValidInput<Q, B, P>; failed(err: unknown): Promise<void> } = {
    async failed(err: unknown) {
      error = err;
      // The response broke mid-stream (it never reaches res.end normally): record now.
      if (res.headersSent && !recorded) {
        recorded = true;
        await write(500).catch(() => undefined);
      }
    },
  };
  const write = (status: number) => {
    const input = hook.input;
    const code = (error as { code?: string } | undefined)?.code;
    const params = req.params as Record<string, string>;
    return trail.record({
      action: spec.action,
      outcome: error && status < 400 ? 'failure' : outcomeOf(status),
      user: req.user?.email ?? null,
      clientAddress: req.ip ?? null,
      target: input && spec.target ? spec.target(input) : (params.id ?? null),
      details: {
        ...(input && spec.details ? spec.details(input) : {}),
        ...((res.locals.auditDetails as Record<string, unknown> | undefined) ?? {}),
        ...(error ? { error: typeof code === 'string' ? code : 'internal', status } : {}),
      },
    });
  };
  // The last chunk written is held back until the end, so that even a
  // streamed answer (raw bytes, CSV) is never complete on the client's side
  // before its record is durable; memory: one chunk.
  const realWrite = res.write.bind(res) as (...args: unknown[]) => boolean;
  const realEnd = res.end.bind(res) as (...args: unknown[]) => Response;
  let held: unknown[] | undefined;
  res.write = ((...args: unknown[]) => {
    if (recorded) return realWrite(...args);
    const previous = held;
    held = args;
    return previous ? realWrite(...previous) : true;
  }) as typeof res.write;
  res.end = ((...args: unknown[]) => {
    if (recorded) return realEnd(...args);
    recorded = true;
    write(res.statusCode).then(
      () => {
        if (held) realWrite(...held);
        realEnd(...args);
      },
      (err: unknown) => {
        log?.error({ err, action: spec.action, alert: 'audit' }, 'AUDIT ALERT: response withheld because its audit record could not be written');
        if (res.headersSent) {
          res.destroy(err instanceof Error ? err : undefined);
          return;
        }
        const body = JSON.stringify({ error: { code: 'audit_unavailable', message: 'The audit trail cannot be written; the request was not completed' } });
        res.statusCode = 503;
        res.setHeader('Content-Type', 'application/json; charset=utf-8');
        res.setHeader('Content-Length', String(Buffer.byteLength(body)));
        res.removeHeader('Content-Disposition');
        res.removeHeader('X-Content-SHA256');
        realEnd(body);
      },
    );
    return res;
  }) as typeof res.end;
  return hook;
}
