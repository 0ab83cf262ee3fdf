/**
 * The HTTP application: health, the API and (later) the web UI, on one port.
 */
import express, { type Express } from 'express';
import type { Services } from '../services.js';
import { errorHandler } from './error-handler.js';
import { healthRouter } from './health.routes.js';

export function createHttpApp(services: Services): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', false);
  app.use(healthRouter(services));
  app.use((_req, res) => {
    res.status(404).json({ error: { code: 'not_found', message: 'No such route' } });
  });
  app.use(errorHandler(services.log.child({ component: 'http' })));
  return app;
}
