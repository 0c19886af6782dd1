// One consumer's handle on a volume or snapshot device: the device itself, plus a close() that
// tells the engine the consumer is gone (the engine refuses to delete what is in use). Every request
// through it names the handle as its owner, so that once abandon() says the consumer's connection
// has ended, the layers below stop re-issuing its requests (block-device.ts: RequestOwner).

import type { Pieces } from '../pieces';
import type { BlockDevice, Extent, RequestOwner, WriteZeroesOptions } from './block-device';
import { PassThroughDevice } from './pass-through-device';
import type { OpenDevice } from './types';

export class DeviceHandle extends PassThroughDevice implements OpenDevice, RequestOwner {
  private closed = false;
  private abandonedFlag = false;

  constructor(device: BlockDevice, private readonly onClose: () => void) {
    super(device);
  }

  get abandoned(): boolean {
    return this.abandonedFlag;
  }

  override read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    return this.below.read(offsetBytes, lengthBytes, this);
  }

  override write(offsetBytes: number, data: Buffer | Pieces, fua: boolean): Promise<void> {
    return this.below.write(offsetBytes, data, fua, this);
  }

  override flush(): Promise<void> {
    return this.below.flush(this);
  }

  override trim(offsetBytes: number, lengthBytes: number, fua: boolean): Promise<void> {
    return this.below.trim(offsetBytes, lengthBytes, fua, this);
  }

  override writeZeroes(offsetBytes: number, lengthBytes: number, options: WriteZeroesOptions): Promise<void> {
    return this.below.writeZeroes(offsetBytes, lengthBytes, options, this);
  }

  override blockStatus(offsetBytes: number, lengthBytes: number): Promise<Extent[]> {
    return this.below.blockStatus(offsetBytes, lengthBytes, this);
  }

  /** The consumer is gone while requests of its may still be in flight: they need not complete. */
  abandon(): void {
    this.abandonedFlag = true;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.abandonedFlag = true;
    this.onClose();
  }
}
