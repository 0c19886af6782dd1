// A volume (or a snapshot, read-only) as one object: the top of its stack of layers, built once
// (by the daemon's stackFor), its local replica at the bottom, and the registry of its open handles,
// each of which records who opened it.

import { cancelled } from '../errors';
import { BLOCK_BYTES } from '../store/block-size';
import type { VolumeLayer } from './block-device';
import { FIRST_PHYSICAL } from './block-map';
import { DeviceHandle } from './device-handle';
import type { EpochFence } from './epoch-fence';
import type { LocalReplica } from './local-replica';
import type { OpenDevice } from './types';

/** Who opened a handle: the NBD peer, and the CSI attachment or workload when there is one. */
export interface Opener {
  /** "ADDRESS:PORT" of the NBD client. */
  peer?: string;
  /** The CSI attachment (volume id and node) the handle serves, when known. */
  attachment?: string;
  /** What is on the other end when it is not an NBD client (e.g. "verify"). */
  purpose?: string;
  /** The replication epoch the opener writes at: its writes are fenced once the volume's epoch passes it. */
  epoch?: number;
}

export interface OpenHandle extends Opener {
  openedAt: string; // ISO 8601
}

/** Names a volume, or one of its snapshots, for the daemon's stackFor. */
export interface VolumeRef {
  volume: string;
  snapshot?: string;
}

/** A volume's layers: the top of its stack, and the device a primary's replication writes to (the local replica, or a layer tracking what reaches it). */
export interface VolumeStack {
  top: VolumeLayer;
  copy: VolumeLayer;
}

/** Builds the layers above a local replica (metrics, later QoS, replication, encryption). */
export type StackBuilder = (replica: LocalReplica, ref: VolumeRef) => VolumeStack;

const VERIFY_BATCH_BLOCKS = 256;

export class Volume {
  private readonly handles = new Set<OpenHandle>();

  readonly top: VolumeLayer;
  /** Where a primary's replication writes enter: the local replica, or a layer just above it. */
  private readonly copy: VolumeLayer;

  constructor(readonly ref: VolumeRef, readonly replica: LocalReplica, stack: VolumeStack, readonly fence: EpochFence) {
    this.top = stack.top;
    this.copy = stack.copy;
  }

  /**
   * A handle on the top of the stack, or on the local replica, fenced, when the opener names an epoch; it leaves the registry
   * when closed. The caller has checked that the epoch is not older than the volume's.
   */
  open(opener: Opener): OpenDevice {
    const handle: OpenHandle = { ...opener, openedAt: new Date().toISOString() };
    this.handles.add(handle);
    // A primary's replication writes enter below the stack: the layers above (metrics, the routing
    // to the primary) are the primary's business, done there already.
    const device = opener.epoch === undefined ? this.top : this.fence.guard(this.copy, opener.epoch);
    return new DeviceHandle(device, () => this.handles.delete(handle));
  }

  get openHandles(): OpenHandle[] {
    return [...this.handles];
  }

  get connections(): number {
    return this.handles.size;
  }

  /**
   * Reads every mapped block and checks it against its checksum; returns how many were checked and
   * the offsets of the bad ones. Holds a handle while it runs, like a connection, so that the volume
   * is not deleted or reverted under it (blocks freed and reused would read as false errors). Once
   * `stop` is aborted (its caller went away), it stops before the next batch with ABORTED.
   */
  async verify(onProgress?: (doneBlocks: number, totalBlocks: number) => void, stop?: AbortSignal): Promise<{ checkedBlocks: number; badBlockOffsets: number[] }> {
    const handle = this.open({ purpose: 'verify' });
    const totalBlocks = Math.ceil(this.replica.sizeBytes / BLOCK_BYTES);
    const badBlockOffsets: number[] = [];
    let checkedBlocks = 0;
    try {
      for (let first = 0; first < totalBlocks; first += VERIFY_BATCH_BLOCKS) {
        if (stop?.aborted) throw cancelled(`the verify was cancelled by its caller after ${first} of ${totalBlocks} blocks`);
        const end = Math.min(totalBlocks, first + VERIFY_BATCH_BLOCKS);
        for (let b = first; b < end; b++) if (this.replica.resolve(b) >= FIRST_PHYSICAL) checkedBlocks++;
        badBlockOffsets.push(...(await this.replica.scrub(first, end)));
        onProgress?.(end, totalBlocks);
      }
    } finally {
      handle.close();
    }
    return { checkedBlocks, badBlockOffsets };
  }
}
