/**
 * The HTTP application: health, the API and its OpenAPI document, on one port.
 */
import express, { type Express } from 'express';
import type { Services } from '../services.js';
import { errorHandler } from './error-handler.js';
import { healthRouter } from './health.routes.js';
import { searchRouter } from './search.routes.js';
import { jobsRouter } from './jobs.routes.js';
import { RouteRegistry } from './route-registry.js';

/** Largest JSON request body, in bytes. Queries are at most 2,000 characters; nothing legitimate is bigger. */
const JSON_LIMIT = '256kb';

export function createHttpApp(services: Services): Express & { registry: RouteRegistry } {
  const app = express();
  const registry = new RouteRegistry();
  app.disable('x-powered-by');
  app.set('trust proxy', false);
  app.set('query parser', 'simple');
  app.use(express.json({ limit: JSON_LIMIT }));
  app.use(healthRouter(services));
  app.use(searchRouter(services, registry));
  app.use(jobsRouter(services, registry));
  const openApi = registry.openApi({
    title: 'Mail archive API',
    version: '0.1.0',
    description: 'Search, read and download archived mail. Errors are `{error: {code, message}}`. Query language: docs/search.md.',
  });
  app.get('/api/openapi.json', (_req, res) => {
    res.json(openApi);
  });
  app.use((_req, res) => {
    res.status(404).json({ error: { code: 'not_found', message: 'No such route' } });
  });
  app.use(errorHandler(services.log.child({ component: 'http' })));
  return Object.assign(app, { registry });
}
