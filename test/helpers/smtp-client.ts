/**
 * A real SMTP client (nodemailer's SMTPConnection) for tests: one delivery per
 * connection, returning the server's answer instead of throwing on 4xx/5xx.
 */
import SMTPConnection from 'nodemailer/lib/smtp-connection/index.js';

export interface SmtpAnswer {
  ok: boolean;
  code: number;
  response: string;
}

export async function sendRaw(
  port: number,
  envelope: { from: string; to: string[]; size?: number },
  message: Buffer | string | NodeJS.ReadableStream,
  opts: { host?: string; timeoutMs?: number } = {},
): Promise<SmtpAnswer> {
  const conn = new SMTPConnection({
    host: opts.host ?? '127.0.0.1',
    port,
    ignoreTLS: true,
    connectionTimeout: opts.timeoutMs ?? 30_000,
    socketTimeout: opts.timeoutMs ?? 120_000,
    greetingTimeout: 10_000,
  });
  // A connection that dies mid-transaction (a killed server) is an answer too, not a crash.
  let lost: ((e: Error) => void) | undefined;
  conn.on('error', (e: Error) => lost?.(e));
  try {
    await new Promise<void>((resolve, reject) => {
      lost = reject;
      conn.connect(() => resolve());
    });
    return await new Promise<SmtpAnswer>((resolve) => {
      lost = (e) => resolve({ ok: false, code: 0, response: e.message });
      conn.once('end', () => resolve({ ok: false, code: 0, response: 'connection closed' }));
      conn.send(envelope as never, message as never, (err, info) => {
        if (err) {
          const e = err as Error & { responseCode?: number; response?: string };
          resolve({ ok: false, code: e.responseCode ?? 0, response: e.response ?? e.message });
        } else {
          const response = String(info.response ?? '');
          resolve({ ok: true, code: Number(response.slice(0, 3)) || 250, response });
        }
      });
    });
  } finally {
    conn.quit();
    conn.close();
  }
}

/** The SHA-256 the archive reports in its 250 answer (`Archived as <sha>`). */
export function archivedSha(answer: SmtpAnswer): string | undefined {
  return /Archived as ([0-9a-f]{64})/.exec(answer.response)?.[1];
}

/**
 * Speaks raw SMTP lines and collects each reply, for protocol details that
 * a polite client would never send (a declared SIZE over the limit).
 */
export async function smtpDialog(port: number, lines: string[]): Promise<string[]> {
  const { connect } = await import('node:net');
  const sock = connect(port, '127.0.0.1');
  const replies: string[] = [];
  let buf = '';
  let waiter: (() => void) | undefined;
  sock.on('data', (d) => {
    buf += d.toString('latin1');
    // A complete reply ends with a line "NNN text" (no dash after the code).
    const m = /(^|\r\n)(\d{3}) [^\r\n]*\r\n$/.exec(buf);
    if (m) {
      replies.push(buf.trimEnd());
      buf = '';
      waiter?.();
    }
  });
  const next = () => new Promise<void>((r) => (waiter = r));
  await next(); // greeting
  for (const line of lines) {
    sock.write(`${line}\r\n`);
    await next();
  }
  sock.end();
  return replies;
}
