/**
 * A one-line progress display for terminals. On anything else (a pipe, CI
 * logs) it prints nothing, so logs stay readable.
 */
export class ProgressLine {
  private last = 0;
  private shown = false;
  private readonly started = Date.now();

  constructor(private readonly out: NodeJS.WriteStream, private readonly everyMs = 100) {}

  update(text: string): void {
    if (!this.out.isTTY) return;
    const now = Date.now();
    if (now - this.last < this.everyMs) return;
    this.last = now;
    const secs = ((now - this.started) / 1000).toFixed(0);
    this.out.write(`\r\x1b[2K${text}  ${secs}s`);
    this.shown = true;
  }

  done(): void {
    if (this.shown) this.out.write('\r\x1b[2K');
    this.shown = false;
  }
}
