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

  override read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    return this.guarded(() => this.below.read(offsetBytes, lengthBytes));
  }

  override write(offsetBytes: number, data: Buffer | Pieces, fua: boolean): Promise<void> {
    return this.guarded(() => this.below.write(offsetBytes, data, fua));
  }

  override flush(): Promise<void> {
    return this.guarded(() => this.below.flush());
  }

  override trim(offsetBytes: number, lengthBytes: number, fua: boolean): Promise<void> {
    return this.guarded(() => this.below.trim(offsetBytes, lengthBytes, fua));
  }

  override writeZeroes(offsetBytes: number, lengthBytes: number, options: WriteZeroesOptions): Promise<void> {
    return this.guarded(() => this.below.writeZeroes(offsetBytes, lengthBytes, options));
  }

  override blockStatus(offsetBytes: number, lengthBytes: number): Promise<Extent[]> {
    return this.guarded(() => this.below.blockStatus(offsetBytes, lengthBytes));
  }

  private async guarded<T>(call: () => Promise<T>): Promise<T> {
    if (!this.live()) throw notServing();
    try {
      return await call();
    } catch (err) {
      if (err instanceof IoError && err.errno === 'EPERM') this.fenced();
      if (!this.live()) throw notServing();
      throw err;
    }
  }
}

function notServing(): IoError {
  return new IoError('ESHUTDOWN', 'this node no longer serves the volume as primary');
}
