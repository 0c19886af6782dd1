// A client that writes 4 KiB blocks one at a time through a real NBD client (qemu-io, fed its
// commands on stdin, one connection for its whole life) and records when each write was sent and
// acknowledged, so that a bench can tell how long writes stopped being acknowledged around a fault.

import { spawn, type ChildProcess } from 'node:child_process';
import { killAndWait, track } from '../helpers/weftd';

const BLOCK_BYTES = 4096;

export interface WriteRecord {
  /** performance.now() when the write was sent and when its answer came. */
  sentMs: number;
  answeredMs: number;
  ok: boolean;
}

export class AckWriter {
  readonly records: WriteRecord[] = [];
  /** qemu-io's output that was neither a prompt nor an acknowledgement (errors), for the report. */
  readonly failures: string[] = [];
  private readonly child: ChildProcess;
  private partialLine = '';
  private answer: ((ok: boolean) => void) | undefined;
  private stopped = false;
  private readonly loop: Promise<void>;

  /** Starts writing to uri at once; `volumeBytes` bounds the offsets it cycles through. */
  constructor(uri: string, private readonly volumeBytes: number) {
    this.child = track(spawn('qemu-io', ['-f', 'raw', uri], { stdio: ['pipe', 'pipe', 'pipe'] }));
    this.child.stdout?.on('data', (chunk: Buffer) => this.onOutput(chunk));
    this.child.stderr?.on('data', (chunk: Buffer) => this.onOutput(chunk));
    this.child.once('exit', () => this.answer?.(false));
    this.loop = this.writeLoop();
  }

  /** Writes acknowledged so far. */
  get acknowledged(): number {
    return this.records.filter((r) => r.ok).length;
  }

  /** Resolves with the first acknowledged write sent at or after `sinceMs` (performance.now()). */
  async firstAckSentAfter(sinceMs: number, timeoutMs: number): Promise<WriteRecord> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const found = this.records.find((r) => r.ok && r.sentMs >= sinceMs);
      if (found) return found;
      if (performance.now() > deadline) throw new Error(`no write acknowledged within ${timeoutMs} ms; qemu-io said: ${this.failures.slice(-5).join(' | ')}`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  /** Stops after the write in flight (or at once if the connection is gone). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.child.stdin?.end('quit\n');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 30_000);
    await this.loop;
    await killAndWait(this.child, 'SIGTERM');
    clearTimeout(timer);
  }

  private async writeLoop(): Promise<void> {
    for (let i = 0; !this.stopped && this.child.exitCode === null; i++) {
      const offset = (i * BLOCK_BYTES) % this.volumeBytes;
      const sentMs = performance.now();
      const answered = new Promise<boolean>((resolve) => (this.answer = resolve));
      this.child.stdin?.write(`write -P ${i % 251} ${offset} ${BLOCK_BYTES}\n`);
      const ok = await answered;
      this.records.push({ sentMs, answeredMs: performance.now(), ok });
    }
  }

  /** qemu-io answers each write with "wrote N/N bytes at offset X" or "write failed: ...". */
  private onOutput(chunk: Buffer): void {
    const lines = (this.partialLine + chunk.toString()).split('\n');
    this.partialLine = lines.pop() ?? '';
    for (const raw of lines) {
      const line = raw.replace(/^(qemu-io> )+/, '');
      const ok = line.startsWith('wrote ');
      if (!ok && !/fail|error/i.test(line)) continue; // the rate line that follows each write
      if (!ok) this.failures.push(line);
      const answer = this.answer;
      this.answer = undefined;
      answer?.(ok);
    }
  }
}
