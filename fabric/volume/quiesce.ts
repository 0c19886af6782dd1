// One device's gate for control operations: I/O enters and leaves; pause() closes the gate and
// waits until the I/O inside has left; resume() opens it again. Pauses nest (a control operation
// on the volume and a node-wide checkpoint may overlap): the gate opens when the last one resumes.

import { withDeadline } from '../deadline';

/**
 * How long a control operation waits for the I/O inside the gates it closes (a checkpoint's cut:
 * every volume's; an epoch raise: the fenced writes) before it gives up: I/O on a disk that stopped
 * answering would never leave, and the operation would hold up every later one, and the paused
 * volumes' I/O, meanwhile.
 */
export const DRAIN_LIMIT_MS = 5000;

export class Quiesce {
  private active = 0;
  private pauses = 0;
  private gate: Promise<void> | undefined;
  private openGate: (() => void) | undefined;
  private drained: (() => void)[] = [];

  get paused(): boolean {
    return this.pauses > 0;
  }

  /** Whether I/O is inside (one that has not left yet: on a disk that stopped answering, it may never). */
  get busy(): boolean {
    return this.active > 0;
  }

  /** Undefined when I/O may go ahead at once (the common case, no promise made), else a promise to wait on. */
  enter(): Promise<void> | undefined {
    if (this.gate) return this.gate.then(() => this.enter());
    this.active++;
    return undefined;
  }

  leave(): void {
    this.active--;
    if (this.active === 0 && this.drained.length > 0) {
      const waiting = this.drained;
      this.drained = [];
      for (const resolve of waiting) resolve();
    }
  }

  /** Closes the gate and resolves once no I/O is inside. Every pause() needs its resume(). */
  async pause(): Promise<void> {
    if (this.pauses++ === 0) this.gate = new Promise((resolve) => (this.openGate = resolve));
    if (this.active > 0) await new Promise<void>((resolve) => this.drained.push(resolve));
  }

  /**
   * pause(), but if the I/O inside has not left within limitMs (a disk that stopped answering), the
   * gate opens again (this pause undone) and it rejects with late().
   */
  async pauseWithin(limitMs: number, late: () => Error): Promise<void> {
    try {
      await withDeadline(this.pause(), limitMs, late);
    } catch (err) {
      this.resume();
      throw err;
    }
  }

  /** Runs operation with the gate closed and the I/O inside drained, then opens it again. */
  async during<T>(operation: () => Promise<T>): Promise<T> {
    await this.pause();
    try {
      return await operation();
    } finally {
      this.resume();
    }
  }

  resume(): void {
    if (this.pauses === 0) throw new Error('quiesce: resume() without pause()');
    if (--this.pauses > 0) return;
    // Left by pauses that gave up waiting (pauseWithin): no pause waits for the drain any more.
    this.drained = [];
    const open = this.openGate;
    this.gate = undefined;
    this.openGate = undefined;
    open?.();
  }
}
