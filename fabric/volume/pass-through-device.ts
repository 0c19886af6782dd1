// The base of every layer that wraps another BlockDevice: it forwards every call and every
// capability question to the device below, so a layer overrides only what it changes (as an
// nbdkit filter does). A layer that adds a capability, or takes one away, overrides its question.

import type { Pieces } from '../pieces';
import type { BlockDevice, Extent, RequestOwner, VolumeLayer, WriteZeroesOptions } from './block-device';

export abstract class PassThroughDevice<Below extends BlockDevice = BlockDevice> implements BlockDevice {
  constructor(protected readonly below: Below) {}

  get sizeBytes(): number {
    return this.below.sizeBytes;
  }

  get readOnly(): boolean {
    return this.below.readOnly;
  }

  read(offsetBytes: number, lengthBytes: number, owner?: RequestOwner): Promise<Buffer> {
    return this.below.read(offsetBytes, lengthBytes, owner);
  }

  write(offsetBytes: number, data: Buffer | Pieces, fua: boolean, owner?: RequestOwner): Promise<void> {
    return this.below.write(offsetBytes, data, fua, owner);
  }

  flush(owner?: RequestOwner): Promise<void> {
    return this.below.flush(owner);
  }

  trim(offsetBytes: number, lengthBytes: number, fua: boolean, owner?: RequestOwner): Promise<void> {
    return this.below.trim(offsetBytes, lengthBytes, fua, owner);
  }

  writeZeroes(offsetBytes: number, lengthBytes: number, options: WriteZeroesOptions, owner?: RequestOwner): Promise<void> {
    return this.below.writeZeroes(offsetBytes, lengthBytes, options, owner);
  }

  blockStatus(offsetBytes: number, lengthBytes: number, owner?: RequestOwner): Promise<Extent[]> {
    return this.below.blockStatus(offsetBytes, lengthBytes, owner);
  }

  canMultiConn(): boolean {
    return this.below.canMultiConn();
  }

  canFua(): boolean {
    return this.below.canFua();
  }

  canTrim(): boolean {
    return this.below.canTrim();
  }

  canZero(): boolean {
    return this.below.canZero();
  }

  canFastZero(): boolean {
    return this.below.canFastZero();
  }
}

/** The base of a layer in a volume's stack: it passes the control operations down too. */
export abstract class PassThroughLayer extends PassThroughDevice<VolumeLayer> implements VolumeLayer {
  snapshot(name: string): Promise<void> {
    return this.below.snapshot(name);
  }

  resize(sizeBytes: number): Promise<void> {
    return this.below.resize(sizeBytes);
  }

  revert(snapshot: string): Promise<void> {
    return this.below.revert(snapshot);
  }
}
