/**
 * Worker-thread entry: parses messages handed over as transferred buffers,
 * so parsing (the CPU-heavy part of indexing) runs on every core while the
 * main thread keeps serving SMTP and HTTP.
 */
import { parentPort } from 'node:worker_threads';
import { Readable } from 'node:stream';
import { parseMessage, DEFAULT_PARSE_LIMITS } from './message-parser.js';

interface ParseRequest {
  id: number;
  bytes: Uint8Array;
}

parentPort!.on('message', (req: ParseRequest) => {
  const buf = Buffer.from(req.bytes.buffer, req.bytes.byteOffset, req.bytes.byteLength);
  parseMessage(Readable.from([buf]), DEFAULT_PARSE_LIMITS).then(
    (parsed) => parentPort!.postMessage({ id: req.id, parsed }),
    (err: Error) => parentPort!.postMessage({ id: req.id, error: err.message }),
  );
});
