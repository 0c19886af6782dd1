// The fence of a volume on the node holding a copy: a replication connection opened at epoch N may
// write only while the volume's epoch is N or below. Raising the epoch closes the fence's gate,
// drains the fenced writes in flight, commits, and reopens it: a fenced write either completed
// before the new epoch was committed, or sees it and is refused. That is what stops an old primary.

import { IoError } from '../errors';
import type { Pieces } from '../pieces';
import type { BlockDevice, WriteZeroesOptions } from './block-device';
import { PassThroughDevice } from './pass-through-device';
import { Quiesce } from './quiesce';

export class EpochFence {
  /** Fenced writes pass this gate; a raise closes it while it commits. */
  readonly gate = new Quiesce();

  /** epoch: the volume's durable epoch, as its catalog record holds it now. */
  constructor(readonly volume: string, readonly epoch: () => number) {}

  /** Runs a raise of the epoch (commit) with every fenced write drained and new ones held back. */
  raising<T>(commit: () => Promise<T>): Promise<T> {
    return this.gate.during(commit);
  }

  /** The device seen by a connection opened at epoch: its writes are refused once the volume's epoch passes it. */
  guard(device: BlockDevice, epoch: number): BlockDevice {
    return new FencedDevice(device, this, epoch);
  }
}

/**
 * Writes, trims, zeroes and flushes are refused with EPERM once the volume's epoch is above the
 * connection's: the writer has lost its authority (a newer primary exists), which is neither an I/O
 * failure (EIO) nor something a retry on this connection can fix. Reads go on.
 */
class FencedDevice extends PassThroughDevice {
  constructor(below: BlockDevice, private readonly fence: EpochFence, private readonly epoch: number) {
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
    return written.then(this.leave, this.leaveAndThrow);
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
    } finally {
      this.fence.gate.leave();
    }
  }
}
