// A one-line progress bar for long work (verify), redrawn in place on a terminal. Callers draw
// it only when the stream is a TTY; pipes and logs get the final summary instead.

export interface TerminalStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

const BAR_WIDTH = 30;

export class ProgressBar {
  private lastLine = '';

  constructor(
    private readonly stream: TerminalStream,
    private readonly label: string,
  ) {}

  update(done: number, total: number): void {
    const line = progressLine(this.label, done, total);
    if (line === this.lastLine) return;
    this.lastLine = line;
    // A terminal of unknown width (columns 0 or undefined) gets 80; the last column stays free so
    // that the cursor does not wrap to a new line.
    this.stream.write(`\r${line.slice(0, (this.stream.columns || 80) - 1)}`);
  }

  /** Erases the bar so that whatever follows starts on a clean line. */
  clear(): void {
    if (this.lastLine) this.stream.write('\r\x1b[K');
    this.lastLine = '';
  }
}

/** "verifying data [###########...................]  37%  370/1000 blocks" */
export function progressLine(label: string, done: number, total: number): string {
  const fraction = total > 0 ? Math.min(1, done / total) : 1;
  const filled = Math.round(fraction * BAR_WIDTH);
  const bar = '#'.repeat(filled) + '.'.repeat(BAR_WIDTH - filled);
  const percent = `${Math.floor(fraction * 100)}%`.padStart(4);
  return `${label} [${bar}] ${percent}  ${done}/${total} blocks`;
}
