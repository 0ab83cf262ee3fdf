/**
 * The SMTP journal endpoint. Exchange journal rules, Postfix `always_bcc`
 * and other MTAs deliver here. The one rule: 250 only after the message and
 * its envelope are durable; storage trouble is 451 (the sender retries); the
 * only 5xx a well-formed delivery can get is 552 for an oversized message.
 */
import { readFileSync } from 'node:fs';
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { timingSafeEqual, createHash } from 'node:crypto';
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import type { Logger } from 'pino';
import { AppError, MessageTooLargeError } from '../src/errors.js';
import type { IngestPipeline } from './ingest-pipeline.js';

export interface SmtpJournalServerOptions {
  host: string;
  port: number;
  hostname: string;
  maxBytes: number;
  allowNetworks: string[];
  tlsCert?: string;
  tlsKey?: string;
  authUser?: string;
  authPassword?: string;
  maxClients: number;
  pipeline: IngestPipeline;
  log: Logger;
}

/** An SMTP reply error as smtp-server expects it. */
function smtpError(code: number, message: string): Error & { responseCode: number } {
  return Object.assign(new Error(message), { responseCode: code });
}

export function buildAllowList(cidrs: string[]): BlockList {
  const list = new BlockList();
  for (const c of cidrs) {
    const [addr, bits] = c.split('/');
    const type = isIPv6(addr!) ? 'ipv6' : 'ipv4';
    const prefix = bits === undefined ? (type === 'ipv6' ? 128 : 32) : Number(bits);
    list.addSubnet(addr!, prefix, type);
  }
  return list;
}

/** Whether a client address falls in the allowlist; IPv4-mapped IPv6 addresses are checked as IPv4. */
export function isAllowed(list: BlockList, address: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  const a = mapped ? mapped[1]! : address;
  if (isIPv4(a)) return list.check(a, 'ipv4');
  if (isIPv6(a)) return list.check(a, 'ipv6');
  return false;
}

function sameSecret(a: string, b: string): boolean {
  // Hash first so the comparison takes the same time whatever the lengths.
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

export class SmtpJournalServer {
  private readonly server: SMTPServer;
  private readonly log: Logger;
  /** Deliveries whose data is being stored; shutdown waits for them. */
  private readonly inFlight = new Set<Promise<unknown>>();

  constructor(private readonly opts: SmtpJournalServerOptions) {
    this.log = opts.log.child({ component: 'smtp' });
    const allow = buildAllowList(opts.allowNetworks);
    const tls = opts.tlsCert && opts.tlsKey ? { cert: readFileSync(opts.tlsCert), key: readFileSync(opts.tlsKey) } : undefined;
    const auth = opts.authUser && opts.authPassword ? { user: opts.authUser, password: opts.authPassword } : undefined;

    const options: SMTPServerOptions = {
      name: opts.hostname,
      banner: 'mail archive journal endpoint',
      size: opts.maxBytes,
      secure: false,
      ...(tls ? { key: tls.key, cert: tls.cert } : { hideSTARTTLS: true }),
      authMethods: ['PLAIN', 'LOGIN'],
      authOptional: !auth,
      disabledCommands: auth ? [] : ['AUTH'],
      // Without a certificate, AUTH has to work in the clear; the operator chose that.
      allowInsecureAuth: !tls,
      maxClients: opts.maxClients,
      // Seconds of client silence before the connection is dropped.
      socketTimeout: 5 * 60 * 1000,
      closeTimeout: 30 * 1000,
      logger: false,
      disableReverseLookup: true,
      onConnect: (session, cb) => {
        if (isAllowed(allow, session.remoteAddress)) return cb();
        this.log.warn({ peer: session.remoteAddress }, 'SMTP client not in ARCHIVE_SMTP_ALLOW_NETWORKS; refused');
        cb(smtpError(554, `5.7.1 Client ${session.remoteAddress} is not allowed to journal to this archive`));
      },
      onAuth: (a, _session, cb) => {
        if (auth && a.username === auth.user && sameSecret(a.password ?? '', auth.password)) return cb(null, { user: a.username });
        this.log.warn({ user: a.username }, 'SMTP AUTH failed');
        cb(smtpError(535, '5.7.8 Authentication credentials invalid'));
      },
      // The null reverse-path `<>` is how Exchange sends reports without an NDR address: accept it.
      onMailFrom: (_address, _session, cb) => cb(),
      onRcptTo: (_address, _session, cb) => cb(),
      onData: (stream, session, cb) => {
        const p = this.receive(stream, session).then(
          (code) => cb(null, code),
          (err: Error) => cb(err),
        );
        this.inFlight.add(p);
        void p.finally(() => this.inFlight.delete(p));
      },
    };
    this.server = new SMTPServer(options);
    this.server.on('error', (err) => this.log.error({ err }, 'SMTP server error'));
  }

  private async receive(stream: NodeJS.ReadableStream & { sizeExceeded?: boolean }, session: SMTPServerSession): Promise<string> {
    const started = Date.now();
    const mailFrom = session.envelope.mailFrom === false ? '' : session.envelope.mailFrom.address;
    try {
      const result = await this.opts.pipeline.ingest(stream as unknown as import('node:stream').Readable, {
        source: 'smtp',
        smtp: {
          peer: session.remoteAddress,
          helo: session.hostNameAppearsAs,
          mailFrom,
          rcptTo: session.envelope.rcptTo.map((r) => r.address),
          ...(session.user ? { authUser: String(session.user) } : {}),
          ...(session.secure ? { tls: true } : {}),
        },
      });
      this.log.info(
        { sha256: result.sha256, envelope: result.envelopeId, size: result.size, duplicate: !result.created, journal: result.journal, flags: result.flags, ms: Date.now() - started },
        'message archived',
      );
      return `2.6.0 Archived as ${result.sha256}`;
    } catch (err) {
      if (err instanceof MessageTooLargeError) {
        this.log.warn({ peer: session.remoteAddress, limit: this.opts.maxBytes }, 'message too large; refused with 552');
        throw smtpError(552, `5.3.4 Message exceeds the maximum size of ${this.opts.maxBytes} bytes`);
      }
      // Anything else (storage down, disk full, a bug) is temporary from the
      // sender's view: it keeps the message and retries. Never 5xx here.
      this.log.error({ err, peer: session.remoteAddress, code: err instanceof AppError ? err.code : undefined }, 'message not archived; answered 451');
      throw smtpError(451, '4.3.0 Archive storage unavailable, try again later');
    }
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.server.server.once('error', onError);
      this.server.listen(this.opts.port, this.opts.host, () => {
        this.server.server.off('error', onError);
        const addr = this.server.server.address();
        const port = typeof addr === 'object' && addr ? addr.port : this.opts.port;
        this.log.info({ host: this.opts.host, port, maxBytes: this.opts.maxBytes, tls: !!this.opts.tlsCert, auth: !!this.opts.authUser }, 'SMTP journal endpoint listening');
        resolve(port);
      });
    });
  }

  /** Stops accepting, lets deliveries in progress finish storing, then closes. */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await Promise.allSettled([...this.inFlight]);
  }
}
