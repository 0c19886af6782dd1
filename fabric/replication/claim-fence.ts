// A forwarding node's connection to a volume's primary, fenced by the volume's attach claim (the
// primary's side; cluster/attach-claims.ts). A node cut from etcd holds no claim once its lease
// lapses, so another node may stage the volume, while the pods of the cut node may still run and
// write through it: it still reaches the primary, only not the store. Two kernels writing one
// filesystem corrupt it. So the primary refuses the changes of a forwarder whose node is not the
// one the claim names, while a claim names another. Reads and flushes go on (they change nothing);
// with no claim at all, every node may write (a node's own attachments without the CSI driver, and
// a node whose lease lapsed with no one staging the volume since).

import { IoError } from '../errors';
import type { Pieces } from '../pieces';
import type { BlockDevice, WriteZeroesOptions } from '../volume/block-device';
import { PassThroughDevice } from '../volume/pass-through-device';

export class ClaimFencedDevice extends PassThroughDevice {
  /**
   * node: the forwarder's node; holder: the node the volume's claim names now, as this node's view
   * of the store has it (undefined: no claim).
   */
  constructor(
    below: BlockDevice,
    private readonly volume: string,
    private readonly node: string,
    private readonly holder: () => string | undefined,
  ) {
    super(below);
  }

  override write(offsetBytes: number, data: Buffer | Pieces, fua: boolean): Promise<void> {
    return this.refusal() ?? super.write(offsetBytes, data, fua);
  }

  override trim(offsetBytes: number, lengthBytes: number, fua: boolean): Promise<void> {
    return this.refusal() ?? super.trim(offsetBytes, lengthBytes, fua);
  }

  override writeZeroes(offsetBytes: number, lengthBytes: number, options: WriteZeroesOptions): Promise<void> {
    return this.refusal() ?? super.writeZeroes(offsetBytes, lengthBytes, options);
  }

  /**
   * EIO, which the forwarder hands to its client as it is (not EPERM or ESHUTDOWN, which it would
   * take for a primary that moved, and retry): to the client's filesystem, its disk failed.
   */
  private refusal(): Promise<never> | undefined {
    const holder = this.holder();
    if (holder === undefined || holder === this.node) return undefined;
    return Promise.reject(new IoError('EIO', `volume ${this.volume} is attached on node ${holder}: changes forwarded by node ${this.node} are refused`));
  }
}
