/**
 * A lean SMTP load client for benchmarks: one persistent connection, many
 * messages, PIPELINING of MAIL/RCPT/DATA, and the time from the end of DATA
 * to the 250. Lighter than a general client, so the client steals as little
 * CPU from the server under test as possible on a 2-core machine.
 */
import { connect, type Socket } from 'node:net';

export interface Delivery {
  code: number;
  /** Milliseconds from writing the final `.` to reading the reply. */
  latencyMs: number;
}

export class SmtpLoadConnection {
  private sock!: Socket;
  private buf = '';
  private waiters: ((line: string) => void)[] = [];
  private lines: string[] = [];

  static async open(port: number, host = '127.0.0.1'): Promise<SmtpLoadConnection> {
    const c = new SmtpLoadConnection();
    c.sock = connect(port, host);
    c.sock.setNoDelay(true);
    c.sock.on('data', (d) => c.onData(d.toString('latin1')));
    await new Promise<void>((res, rej) => {
      c.sock.once('connect', () => res());
      c.sock.once('error', rej);
    });
    await c.reply(); // greeting
    c.sock.write('EHLO bench.example.com\r\n');
    await c.reply();
    return c;
  }

  private onData(s: string) {
    this.buf += s;
    let i;
    while ((i = this.buf.indexOf('\r\n')) >= 0) {
      const line = this.buf.slice(0, i);
      this.buf = this.buf.slice(i + 2);
      if (/^\d{3}-/.test(line)) continue; // continuation of a multi-line reply
      const w = this.waiters.shift();
      if (w) w(line);
      else this.lines.push(line);
    }
  }

  private reply(): Promise<string> {
    const l = this.lines.shift();
    if (l !== undefined) return Promise.resolve(l);
    return new Promise((r) => this.waiters.push(r));
  }

  /** Sends one message; `data` must already use CRLF line endings. */
  async send(from: string, to: string, data: Buffer): Promise<Delivery> {
    this.sock.write(`MAIL FROM:<${from}>\r\nRCPT TO:<${to}>\r\nDATA\r\n`);
    const mail = await this.reply();
    const rcpt = await this.reply();
    const go = await this.reply();
    if (!go.startsWith('354')) return { code: Number(go.slice(0, 3)) || Number(rcpt.slice(0, 3)) || Number(mail.slice(0, 3)), latencyMs: 0 };
    this.sock.write(dotStuff(data));
    const t0 = performance.now();
    this.sock.write(data.length && data[data.length - 1] === 0x0a ? '.\r\n' : '\r\n.\r\n');
    const done = await this.reply();
    return { code: Number(done.slice(0, 3)), latencyMs: performance.now() - t0 };
  }

  close(): void {
    this.sock.end('QUIT\r\n');
  }
}

/** RFC 5321 4.5.2: a line starting with `.` gets one more. */
export function dotStuff(data: Buffer): Buffer {
  if (data.indexOf('\n.') < 0 && data[0] !== 0x2e) return data;
  const s = data.toString('latin1').replace(/(^|\n)\./g, '$1..');
  return Buffer.from(s, 'latin1');
}
