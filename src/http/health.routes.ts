import { Router } from 'express';
import type { Services } from '../services.js';

/**
 * `GET /healthz`: 200 when the store can write, 503 otherwise, with the state
 * of each part, so a load balancer and an admin read the same answer.
 */
export function healthRouter(s: Services): Router {
  const r = Router();
  r.get('/healthz', async (_req, res) => {
    const [store, queue] = await Promise.all([
      s.store.health(),
      s.queue.counts('index-message').then(
        (c) => ({ ok: true, driver: s.queue.driver, ...c }),
        (err: Error) => ({ ok: false, driver: s.queue.driver, detail: err.message }),
      ),
    ]);
    const ok = store.ok && queue.ok;
    res.status(ok ? 200 : 503).json({ status: ok ? 'ok' : 'degraded', store, queue });
  });
  return r;
}
