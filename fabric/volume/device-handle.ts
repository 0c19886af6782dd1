// One consumer's handle on a volume or snapshot device: the device itself, plus a close() that
// tells the engine the consumer is gone (the engine refuses to delete what is in use).

import type { Pieces } from '../pieces';
import type { BlockDevice, Extent, WriteZeroesOptions } from './block-device';
import type { OpenDevice } from './types';

export class DeviceHandle implements OpenDevice {
  private closed = false;

  constructor(private readonly device: BlockDevice, private readonly onClose: () => void) {}

  get sizeBytes(): number {
    return this.device.sizeBytes;
  }

  get readOnly(): boolean {
    return this.device.readOnly;
  }

  read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    return this.device.read(offsetBytes, lengthBytes);
  }

  write(offsetBytes: number, data: Buffer | Pieces, fua: boolean): Promise<void> {
    return this.device.write(offsetBytes, data, fua);
  }

  flush(): Promise<void> {
    return this.device.flush();
  }

  trim(offsetBytes: number, lengthBytes: number, fua: boolean): Promise<void> {
    return this.device.trim(offsetBytes, lengthBytes, fua);
  }

  writeZeroes(offsetBytes: number, lengthBytes: number, options: WriteZeroesOptions): Promise<void> {
    return this.device.writeZeroes(offsetBytes, lengthBytes, options);
  }

  blockStatus(offsetBytes: number, lengthBytes: number): Promise<Extent[]> {
    return this.device.blockStatus(offsetBytes, lengthBytes);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.onClose();
  }
}
