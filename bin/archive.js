#!/usr/bin/env node
// The `archive` command. The libuv thread pool does the file I/O and fsyncs
// of ingest; its default of 4 threads caps concurrent fsyncs at 4, so it is
// raised before anything touches the pool. Cost: a few MB of stacks.
process.env.UV_THREADPOOL_SIZE ??= '16';
process.env.TZ ??= 'UTC';
const { fileURLToPath } = await import('node:url');
const { existsSync } = await import('node:fs');
const entry = new URL('../dist/src/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  console.error('archive: not built yet. Run `npm run build` (npm start and npm test build first).');
  process.exit(2);
}
const { main } = await import(entry.href);
process.exitCode = await main(process.argv.slice(2));
