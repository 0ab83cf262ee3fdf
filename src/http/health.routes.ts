import { Router } from 'express';
import type { Services } from '../services.js';

/**
 * `GET /healthz`: 200 when the store can write, 503 otherwise, with the state
 * of the store, index and queue, so a load balancer and an admin read the
 * same answer.
 */
export function healthRouter(s: Services): Router {
  const r = Router();
  r.get('/healthz', async (_req, res) => {
    const [store, index, queue] = await Promise.all([
      s.store.health(),
      s.index.health().catch((err: Error) => ({ ok: false, driver: s.index.driver, detail: err.message })),
      s.queue.counts('index-message').then(
        (c) => ({ ok: true, driver: s.queue.driver, ...c }),
        (err: Error) => ({ ok: false, driver: s.queue.driver, detail: err.message }),
      ),
    ]);
    // The store decides availability (promise 1); a down index or queue
    // degrades search, not archiving, so it is reported but still 200.
    const status = !store.ok ? 'down' : index.ok && queue.ok ? 'ok' : 'degraded';
    res.status(store.ok ? 200 : 503).json({ status, store, index, queue });
  });
  return r;
}
