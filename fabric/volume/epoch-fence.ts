// The fence of a volume on the node holding a copy: a replication connection opened at epoch N may
// write only while the volume's epoch is N or below. Raising the epoch closes the fence's gate,
// drains the fenced writes in flight, commits, and reopens it: a fenced write either completed
// before the new epoch was committed, or sees it and is refused. That is what stops an old primary.
//
// It also stops an old primary's reads. Each change a copy takes at its current epoch vouches that
// no raise will commit here for READ_LEASE_MS: a primary serves reads only while every copy that
// could be promoted has vouched, counted from when it sent the change (a read lease; the primary's
// side is in replicated-device.ts). So a raise waits, gate closed, until the last vouching ends,
// and by then the old primary has stopped reading from its own copy, even one that cannot learn
// that it was replaced (cut off from the cluster store).

import { setTimeout as sleep } from 'node:timers/promises';
import { IoError, WeftError } from '../errors';
import type { Pieces } from '../pieces';
import type { VolumeLayer, WriteZeroesOptions } from './block-device';
import { PassThroughLayer } from './pass-through-device';
import { DRAIN_LIMIT_MS, Quiesce } from './quiesce';

/**
 * How long a copy's answer to a change vouches that no newer primary is raised there. Short, as a
 * raise that follows a live primary's last change waits for it; the primary counts it shorter
 * still (from before it sent the change, less a margin for clocks that run at other rates).
 */
export const READ_LEASE_MS = 500;

export class EpochFence {
  /** Fenced writes pass this gate; a raise closes it while it commits. */
  readonly gate = new Quiesce();
  /** No raise commits before this (performance.now()): the read lease of the last change taken here. */
  private vouchedUntil = 0;

  /** epoch: the volume's durable epoch, as its catalog record holds it now. */
  constructor(readonly volume: string, readonly epoch: () => number) {}

  /**
   * Runs a raise of the epoch (commit) with every fenced write drained and new ones held back, once
   * the read lease of the last change taken has ended.
   */
  async raising<T>(commit: () => Promise<T>): Promise<T> {
    // A fenced write hung on a disk that stopped answering would hold the raise, and the volume's
    // writes behind the closed gate, for as long as it hangs: the raise gives up instead.
    await this.gate.pauseWithin(DRAIN_LIMIT_MS, () => new WeftError('UNAVAILABLE', `volume ${this.volume}: writes in flight have not ended within ${DRAIN_LIMIT_MS / 1000} s (its pool's disk may have stopped answering); the epoch is not raised, try again later`));
    try {
      // performance.now() counts from this process's start: a copy restarted just after it vouched
      // has forgotten it, so nothing is raised in its first READ_LEASE_MS either.
      const wait = Math.max(this.vouchedUntil, READ_LEASE_MS) - performance.now();
      if (wait > 0) await sleep(wait);
      return await commit();
    } finally {
      this.gate.resume();
    }
  }

  /**
   * Runs a control operation (a snapshot, a resize, a revert) that a primary at epoch applies to this
   * copy as a fenced write runs: refused (stale) once the volume's epoch is past epoch, and a raise
   * waits for it to end. Checked apart from the gate, a raise under way could commit between the
   * check and the operation, which would then change a copy that a newer primary already serves.
   */
  async controlAt<T>(epoch: number, operation: () => Promise<T>, stale: (current: number) => Error): Promise<T> {
    const gate = this.gate.enter();
    if (gate) await gate;
    try {
      const current = this.epoch();
      if (current > epoch) throw stale(current);
      return await operation();
    } finally {
      this.gate.leave();
    }
  }

  /** A change at the current epoch was taken: its sender may read for READ_LEASE_MS more. */
  vouch(): void {
    this.vouchedUntil = performance.now() + READ_LEASE_MS;
  }

  /**
   * The copy as a writer at epoch sees it: its writes are refused once the volume's epoch passes it.
   * A primary's replication connection writes through one, and so does the primary's own device.
   */
  guard(copy: VolumeLayer, epoch: number): VolumeLayer {
    return new FencedDevice(copy, this, epoch);
  }
}

/**
 * Writes, trims, zeroes and flushes are refused with EPERM once the volume's epoch is above the
 * connection's: the writer has lost its authority (a newer primary exists), which is neither an I/O
 * failure (EIO) nor something a retry on this connection can fix. Reads go on. Each one taken
 * vouches for the sender's read lease.
 */
class FencedDevice extends PassThroughLayer {
  constructor(below: VolumeLayer, private readonly fence: EpochFence, private readonly epoch: number) {
    super(below);
  }

  override write(offsetBytes: number, data: Buffer | Pieces, fua: boolean): Promise<void> {
    if (!this.mayPass()) return this.fenced(() => this.below.write(offsetBytes, data, fua));
    // The common case, without an async frame or a closure per write.
    this.fence.gate.enter();
    let written: Promise<void>;
    try {
      written = this.below.write(offsetBytes, data, fua);
    } catch (err) {
      this.leave();
      return Promise.reject(err);
    }
    return written.then(this.taken, this.leaveAndThrow);
  }

  override flush(): Promise<void> {
    return this.fenced(() => this.below.flush());
  }

  override trim(offsetBytes: number, lengthBytes: number, fua: boolean): Promise<void> {
    return this.fenced(() => this.below.trim(offsetBytes, lengthBytes, fua));
  }

  override writeZeroes(offsetBytes: number, lengthBytes: number, options: WriteZeroesOptions): Promise<void> {
    return this.fenced(() => this.below.writeZeroes(offsetBytes, lengthBytes, options));
  }

  /** The gate is open and the connection's epoch current: a write may go in at once (else fenced() waits, or refuses). */
  private mayPass(): boolean {
    return !this.fence.gate.paused && this.fence.epoch() <= this.epoch;
  }

  private readonly leave = (): void => this.fence.gate.leave();
  private readonly taken = (): void => {
    this.fence.vouch();
    this.fence.gate.leave();
  };
  private readonly leaveAndThrow = (err: unknown): never => {
    this.fence.gate.leave();
    throw err;
  };

  private async fenced(operation: () => Promise<void>): Promise<void> {
    const gate = this.fence.gate.enter();
    if (gate) await gate;
    try {
      const current = this.fence.epoch();
      if (current > this.epoch) {
        throw new IoError('EPERM', `volume ${this.fence.volume} is at epoch ${current}; this connection writes at epoch ${this.epoch} and is fenced`);
      }
      await operation();
      this.fence.vouch();
    } finally {
      this.fence.gate.leave();
    }
  }
}
