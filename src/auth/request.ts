/**
 * What the authentication middleware adds to every authenticated request:
 * `req.user` (who) and `req.scope` (which mail they may see; null =
 * unrestricted). Routes read scope only through `scopeOf(req)`.
 */
import type { Scope } from '../ports/message-index.js';
import type { Principal } from './types.js';

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      user?: Principal;
      scope?: Scope | null;
    }
  }
}

export {};
