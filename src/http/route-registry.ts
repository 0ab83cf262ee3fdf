/**
 * Routes are declared once, with zod schemas for their input; the same
 * declarations validate requests (validation at the edge), type handlers
 * (z.infer), and generate the OpenAPI document. A route cannot exist
 * without appearing in the document.
 */
import type { Request, Response, Router } from 'express';
import { z, type ZodTypeAny } from 'zod';
import { zodToJsonSchema } from 'zod-to-json-schema';
import { ValidationError } from '../errors.js';

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
}

export interface ValidInput<Q extends ZodTypeAny, B extends ZodTypeAny, P extends ZodTypeAny> {
  params: z.infer<P>;
  query: z.infer<Q>;
  body: z.infer<B>;
}

type Handler<Q extends ZodTypeAny, B extends ZodTypeAny, P extends ZodTypeAny> = (input: ValidInput<Q, B, P>, req: Request, res: Response) => Promise<void> | void;

export class RouteRegistry {
  private readonly specs: RouteSpec<ZodTypeAny, ZodTypeAny, ZodTypeAny>[] = [];

  /** All declared routes (used by the OpenAPI document and by tests that walk every route). */
  routes(): readonly RouteSpec<ZodTypeAny, ZodTypeAny, ZodTypeAny>[] {
    return this.specs;
  }

  add<Q extends ZodTypeAny = ZodTypeAny, B extends ZodTypeAny = ZodTypeAny, P extends ZodTypeAny = ZodTypeAny>(
    router: Router,
    spec: RouteSpec<Q, B, P>,
    handler: Handler<Q, B, P>,
  ): void {
    this.specs.push(spec as unknown as RouteSpec<ZodTypeAny, ZodTypeAny, ZodTypeAny>);
    router[spec.method](spec.path, async (req: Request, res: Response) => {
      const input = {
        params: parse(spec.params, req.params, 'path parameter'),
        query: parse(spec.query, req.query, 'query parameter'),
        body: parse(spec.body, req.body, 'body'),
      } as ValidInput<Q, B, P>;
      await handler(input, req, res);
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
      };
    }
    return { openapi: '3.0.3', info, paths, components: { schemas: { Error: ERROR_SCHEMA } } };
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
