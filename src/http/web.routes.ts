/**
 * The web UI, served by the archive itself at `/`: static files (plain ES
 * modules, no build step) from `src/web/public/`, and `index.html` for every
 * page path so that a bookmarked `/search?q=…` or `/messages/<id>` opens
 * directly. The UI holds no rules of its own: it calls the API, and the API
 * decides roles and scope.
 *
 * Its pages get their own Content-Security-Policy (the API's is `default-src
 * 'none'`): scripts and styles from this origin only, no inline script, and
 * frames from this origin only (the sandboxed message body).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import express, { Router, type Response } from 'express';

/** The UI's files: found from the package root, so the same code works from `src/` (tests) and `dist/` (npm start). */
export function webRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(path.join(dir, 'package.json')) && existsSync(path.join(dir, 'src/web/public/index.html'))) return path.join(dir, 'src/web/public');
    dir = path.dirname(dir);
  }
  throw new Error('web UI files (src/web/public) not found');
}

export const UI_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "frame-src 'self'",
  "form-action 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** Page paths of the single-page UI (anything else outside /api answers 404). */
const PAGES = /^\/(|sign-in|search|messages\/[0-9a-f]{64}|exports|cases|retention|reports|audit|admin)$/;

export function webRouter(): Router {
  const r = Router();
  const root = webRoot();
  const setCsp = (res: Response) => res.setHeader('Content-Security-Policy', UI_CSP);
  r.use(
    '/ui',
    express.static(root, {
      index: false,
      fallthrough: false,
      setHeaders: (res) => {
        setCsp(res as unknown as Response);
        res.setHeader('Cache-Control', 'no-cache');
      },
    }),
  );
  r.get(PAGES, (_req, res) => {
    setCsp(res);
    res.setHeader('Cache-Control', 'no-cache');
    res.sendFile(path.join(root, 'index.html'));
  });
  return r;
}
