// The replication layer of every volume's stack (metrics -> replication -> local replica). A volume
// with no record in the cluster store is this node's alone: the layer passes through. A replicated
// volume's data calls go to its primary, wherever that is: through the router the cluster
// controller sets (a ForwardingDevice), which uses this node's own replication while it is the
// primary and the primary's node otherwise. A primary's writes to this node's copy do not pass
// here: they enter below the stack (Volume.open with an epoch), fenced by the volume's epoch.

import { failedPrecondition, IoError } from '../errors';
import type { Pieces } from '../pieces';
import type { BlockDevice, Extent, RequestOwner, VolumeLayer, WriteZeroesOptions } from '../volume/block-device';
import { PassThroughDevice, PassThroughLayer } from '../volume/pass-through-device';

/** A control operation applied to every copy of a replicated volume; a revert or resize checkOnly changes nothing, it only refuses as the operation would. */
export type CopyOperation = (
  | { type: 'snapshot'; name: string }
  | { type: 'resize'; sizeBytes: number; checkOnly?: boolean }
  | { type: 'delete-snapshot'; name: string }
  | { type: 'revert'; snapshot: string; checkOnly?: boolean }
) & {
  /** Set by a primary on what it sends a copy, so that it can settle the operation there if it gets no answer (control-ledger.ts). */
  id?: string;
};

/** Where a replicated volume's data calls go (a ForwardingDevice); closed when the layer drops it. */
export type Router = BlockDevice & { close(): void };

export class ReplicationLayer extends PassThroughLayer {
  private router: Router | undefined;
  private control: ((operation: CopyOperation) => Promise<void>) | undefined;

  constructor(readonly volume: string, below: VolumeLayer) {
    super(below);
  }

  /**
   * A replicated volume is as large as the larger of its record (the router's size) and this copy:
   * its data calls go to the primary, whatever this copy holds. This copy may lag behind a resize:
   * it was out while the volume grew (it is grown before its resync), or it is no longer one of the
   * volume's copies and is kept only by this node's clients (a replaced copy, not deleted while in
   * use). A resize grows the copies before the record, so in step the copy's size is the answer.
   */
  override get sizeBytes(): number {
    return this.router ? Math.max(this.below.sizeBytes, this.router.sizeBytes) : this.below.sizeBytes;
  }

  /** The local copy, for the replication this node runs while it is the primary. */
  get local(): VolumeLayer {
    return this.below;
  }

  /**
   * From now on every data call goes through router, and snapshot, resize and revert through control
   * (the primary's). A layer that has a router already keeps it, with the requests in flight on it,
   * and closes the new one (the controller may hand one over from two paths: a create and the record).
   */
  replicate(router: Router, control: (operation: CopyOperation) => Promise<void>): void {
    if (this.router && !(this.router instanceof RetiredDevice)) router.close();
    else this.router = router;
    this.control = control;
  }

  /** Its data calls go to the volume's primary (a copy of a volume of the cluster, not retired). */
  get replicating(): boolean {
    return this.router !== undefined && !this.retired;
  }

  /** Retired (below), and not handed a router since (a volume of the name made again). */
  get retired(): boolean {
    return this.router instanceof RetiredDevice;
  }

  /** The volume was deleted from the cluster: its copy here serves nothing more, its router is closed. */
  retire(): void {
    const old = this.router;
    this.router = new RetiredDevice(this.volume, this.below);
    this.control = undefined;
    old?.close();
  }

  override read(offsetBytes: number, lengthBytes: number, owner?: RequestOwner): Promise<Buffer> {
    return this.target().read(offsetBytes, lengthBytes, owner);
  }

  override write(offsetBytes: number, data: Buffer | Pieces, fua: boolean, owner?: RequestOwner): Promise<void> {
    return this.target().write(offsetBytes, data, fua, owner);
  }

  override flush(owner?: RequestOwner): Promise<void> {
    return this.target().flush(owner);
  }

  override trim(offsetBytes: number, lengthBytes: number, fua: boolean, owner?: RequestOwner): Promise<void> {
    return this.target().trim(offsetBytes, lengthBytes, fua, owner);
  }

  override writeZeroes(offsetBytes: number, lengthBytes: number, options: WriteZeroesOptions, owner?: RequestOwner): Promise<void> {
    return this.target().writeZeroes(offsetBytes, lengthBytes, options, owner);
  }

  override blockStatus(offsetBytes: number, lengthBytes: number, owner?: RequestOwner): Promise<Extent[]> {
    return this.target().blockStatus(offsetBytes, lengthBytes, owner);
  }

  override canMultiConn(): boolean {
    return this.router ? this.router.canMultiConn() : this.below.canMultiConn();
  }

  override canFastZero(): boolean {
    return this.router ? this.router.canFastZero() : this.below.canFastZero();
  }

  // A control operation of a replicated volume reaches every copy at the same point of its write
  // stream, through the primary; one that cannot is refused rather than applied to one copy.
  override snapshot(name: string): Promise<void> {
    return this.router ? this.replicated({ type: 'snapshot', name }) : this.below.snapshot(name);
  }

  override resize(sizeBytes: number): Promise<void> {
    return this.router ? this.replicated({ type: 'resize', sizeBytes }) : this.below.resize(sizeBytes);
  }

  override revert(snapshot: string): Promise<void> {
    return this.router ? this.replicated({ type: 'revert', snapshot }) : this.below.revert(snapshot);
  }

  private target(): BlockDevice {
    return this.router ?? this.below;
  }

  private replicated(operation: CopyOperation): Promise<void> {
    if (!this.control) return Promise.reject(failedPrecondition(`volume ${this.volume} was deleted from the cluster`));
    return this.control(operation);
  }
}

/** Every data call fails: the volume is gone from the cluster. */
class RetiredDevice extends PassThroughDevice {
  constructor(private readonly volume: string, below: BlockDevice) {
    super(below);
  }

  override read(): Promise<Buffer> {
    return this.gone();
  }

  override write(): Promise<void> {
    return this.gone();
  }

  override flush(): Promise<void> {
    return this.gone();
  }

  override trim(): Promise<void> {
    return this.gone();
  }

  override writeZeroes(): Promise<void> {
    return this.gone();
  }

  override blockStatus(): Promise<Extent[]> {
    return this.gone();
  }

  close(): void {
    // Nothing of its own to release.
  }

  private gone<T>(): Promise<T> {
    return Promise.reject(new IoError('ESHUTDOWN', `volume ${this.volume} was deleted from the cluster`));
  }
}
