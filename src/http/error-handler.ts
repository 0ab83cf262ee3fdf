import type { ErrorRequestHandler } from 'express';
import type { Logger } from 'pino';
import { AppError } from '../errors.js';

/**
 * The one mapping from errors to HTTP answers: `{error: {code, message}}`.
 * Unknown errors become a generic 500; their details go to the log only,
 * never a stack trace to the client.
 */
export function errorHandler(log: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    if (res.headersSent) {
      // Mid-stream failure (e.g. an integrity error while sending raw bytes): cut the transfer.
      log.error({ err, path: req.path }, 'error after response started; connection aborted');
      res.destroy(err instanceof Error ? err : undefined);
      return;
    }
    if (err instanceof AppError) {
      if (err.status >= 500) log.error({ err, path: req.path }, err.message);
      const retryAfter = err.details?.retryAfterSeconds;
      if (typeof retryAfter === 'number') res.setHeader('Retry-After', String(retryAfter));
      res.status(err.status).json({ error: { code: err.code, message: err.message, ...(err.details ? { details: err.details } : {}) } });
      return;
    }
    const status = typeof err?.status === 'number' && err.status >= 400 && err.status < 500 ? err.status : 500;
    if (status === 500) log.error({ err, path: req.path }, 'unhandled error');
    const code = status === 500 ? 'internal' : (err?.type ?? 'bad_request');
    const message = status === 500 ? 'Internal error' : String(err?.message ?? 'Bad request');
    res.status(status).json({ error: { code, message } });
  };
}
