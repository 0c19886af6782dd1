// A serving primary's handle on its own replication (VOL~primary, and the local route of its forwarders).

import { IoError } from '../errors';
import type { Pieces } from '../pieces';
import type { BlockDevice, Extent, WriteZeroesOptions } from '../volume/block-device';
import { PassThroughDevice } from '../volume/pass-through-device';
import type { RouteTarget } from './forwarding-device';

/**
 * The primary's replication as the NBD exports and the forwarding layer use it. Once this node no
 * longer serves, every call fails with ESHUTDOWN (whatever went wrong underneath), which tells a
 * forwarder to find the new primary; a refusal by a fenced replica also stops the service.
 */
export class PrimaryHandle extends PassThroughDevice implements RouteTarget {
  constructor(below: BlockDevice, private readonly live: () => boolean, private readonly fenced: () => void) {
    super(below);
  }

  /** Nothing to release: the replication it uses is the runner's. */
  close(): void {}

  // No closure per call: a check, then the device's own promise with one shared error handler.
  override read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    return this.live() ? this.below.read(offsetBytes, lengthBytes).catch(this.failed) : Promise.reject(notServing());
  }

  override write(offsetBytes: number, data: Buffer | Pieces, fua: boolean): Promise<void> {
    return this.live() ? this.below.write(offsetBytes, data, fua).catch(this.failed) : Promise.reject(notServing());
  }

  override flush(): Promise<void> {
    return this.live() ? this.below.flush().catch(this.failed) : Promise.reject(notServing());
  }

  override trim(offsetBytes: number, lengthBytes: number, fua: boolean): Promise<void> {
    return this.live() ? this.below.trim(offsetBytes, lengthBytes, fua).catch(this.failed) : Promise.reject(notServing());
  }

  override writeZeroes(offsetBytes: number, lengthBytes: number, options: WriteZeroesOptions): Promise<void> {
    return this.live() ? this.below.writeZeroes(offsetBytes, lengthBytes, options).catch(this.failed) : Promise.reject(notServing());
  }

  override blockStatus(offsetBytes: number, lengthBytes: number): Promise<Extent[]> {
    return this.live() ? this.below.blockStatus(offsetBytes, lengthBytes).catch(this.failed) : Promise.reject(notServing());
  }

  /** A refusal by a fenced replica stops the service; once it has stopped, any failure reads as ESHUTDOWN. */
  private readonly failed = (err: unknown): never => {
    if (err instanceof IoError && err.errno === 'EPERM') this.fenced();
    throw this.live() ? err : notServing();
  };
}

function notServing(): IoError {
  return new IoError('ESHUTDOWN', 'this node no longer serves the volume as primary');
}
