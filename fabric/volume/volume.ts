// A volume (or a snapshot, read-only) as one object: the top of its stack of layers, built once
// (by the daemon's stackFor), its local replica at the bottom, and the registry of its open handles,
// each of which records who opened it.

import type { VolumeLayer } from './block-device';
import { DeviceHandle } from './device-handle';
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
}

export interface OpenHandle extends Opener {
  openedAt: string; // ISO 8601
}

/** Names a volume, or one of its snapshots, for the daemon's stackFor. */
export interface VolumeRef {
  volume: string;
  snapshot?: string;
}

/** Builds the layers above a local replica (metrics, later QoS, replication, encryption). */
export type StackBuilder = (replica: LocalReplica, ref: VolumeRef) => VolumeLayer;

export class Volume {
  private readonly handles = new Set<OpenHandle>();

  constructor(readonly ref: VolumeRef, readonly replica: LocalReplica, readonly top: VolumeLayer) {}

  /** A handle on the top of the stack; it leaves the registry when closed. */
  open(opener: Opener): OpenDevice {
    const handle: OpenHandle = { ...opener, openedAt: new Date().toISOString() };
    this.handles.add(handle);
    return new DeviceHandle(this.top, () => this.handles.delete(handle));
  }

  get openHandles(): OpenHandle[] {
    return [...this.handles];
  }

  get connections(): number {
    return this.handles.size;
  }
}
