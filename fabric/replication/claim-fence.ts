// A volume's changes fenced by its attach claim (cluster/attach-claims.ts). A node cut from etcd
// holds no claim once its lease lapses, so another node may stage the volume, while the pods of the
// cut node may still run and write through it: it still reaches the primary, only not the store.
// A node restarted while its filesystem stayed mounted (the mount outlives weftd) may find the
// volume claimed elsewhere meanwhile. Two kernels writing one filesystem corrupt it. So, while a
// claim names another node:
// - the primary refuses the changes a forwarding node sends it (its view is the store's: the
//   forwarder's may be stale);
// - every node refuses its own clients' changes (where it is the primary itself, nothing else would).
// Reads and flushes go on (they change nothing). With no claim at all, every node may write (an
// attachment without the CSI driver, and a node whose lease lapsed with no one staging since).

import { IoError } from '../errors';
import type { Pieces } from '../pieces';
import type { BlockDevice, RequestOwner, WriteZeroesOptions } from '../volume/block-device';
import { PassThroughDevice } from '../volume/pass-through-device';

/** Where the fence learns who holds the claim (undefined: no claim). */
export interface ClaimView {
  /** As this node last read the store: asked for every change. */
  holder(): string | undefined;
  /** Read from the store now: asked before a change is refused (the view may lag a claim just moved). */
  holderNow(): Promise<string | undefined>;
}

export class ClaimFencedDevice extends PassThroughDevice {
  /**
   * node: the node the changes come through (a forwarder's, on the primary; this one, for its own
   * clients). forwarded: the changes come from a forwarder (which tries again what a store that
   * does not answer leaves unknown), not from this node's own clients.
   */
  constructor(
    below: BlockDevice,
    private readonly volume: string,
    private readonly node: string,
    private readonly claims: ClaimView,
    private readonly forwarded = true,
  ) {
    super(below);
  }

  override write(offsetBytes: number, data: Buffer | Pieces, fua: boolean, owner?: RequestOwner): Promise<void> {
    if (this.mayChange(this.claims.holder())) return super.write(offsetBytes, data, fua, owner);
    return this.confirmed().then(() => super.write(offsetBytes, data, fua, owner));
  }

  override trim(offsetBytes: number, lengthBytes: number, fua: boolean, owner?: RequestOwner): Promise<void> {
    if (this.mayChange(this.claims.holder())) return super.trim(offsetBytes, lengthBytes, fua, owner);
    return this.confirmed().then(() => super.trim(offsetBytes, lengthBytes, fua, owner));
  }

  override writeZeroes(offsetBytes: number, lengthBytes: number, options: WriteZeroesOptions, owner?: RequestOwner): Promise<void> {
    if (this.mayChange(this.claims.holder())) return super.writeZeroes(offsetBytes, lengthBytes, options, owner);
    return this.confirmed().then(() => super.writeZeroes(offsetBytes, lengthBytes, options, owner));
  }

  private mayChange(holder: string | undefined): boolean {
    return holder === undefined || holder === this.node;
  }

  /**
   * Resolves if the store says that node may change the volume after all (the claim moved to it, and
   * this node has not heard yet). Else rejects with EIO, which a forwarder hands to its client as it
   * is (not EPERM or ESHUTDOWN, which it would take for a primary that moved, and retry): to the
   * client's filesystem, its disk failed. A store that does not answer gives ESHUTDOWN to a
   * forwarder, which tries again and fails the request with EIO after its retries; EIO to this
   * node's own clients (ESHUTDOWN would tell them the server is going away: they would not come back).
   */
  private async confirmed(): Promise<void> {
    let holder: string | undefined;
    try {
      holder = await this.claims.holderNow();
    } catch (err) {
      throw new IoError(this.forwarded ? 'ESHUTDOWN' : 'EIO', `volume ${this.volume}: whether node ${this.node} may change it is not known now (the cluster store: ${(err as Error).message})`);
    }
    if (!this.mayChange(holder)) throw new IoError('EIO', `volume ${this.volume} is attached on node ${holder}: changes through node ${this.node} are refused`);
  }
}
