// One consumer's handle on a volume or snapshot device: the device itself, plus a close() that
// tells the engine the consumer is gone (the engine refuses to delete what is in use).

import type { BlockDevice } from './block-device';
import { PassThroughDevice } from './pass-through-device';
import type { OpenDevice } from './types';

export class DeviceHandle extends PassThroughDevice implements OpenDevice {
  private closed = false;

  constructor(device: BlockDevice, private readonly onClose: () => void) {
    super(device);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.onClose();
  }
}
