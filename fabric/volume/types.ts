// What the storage engine offers the rest of the node: the control operations that the gRPC API
// serves (to the CLI and the CSI driver), and the devices that the NBD server exports.

import type { BlockDevice } from './block-device';
import { BLOCK_BYTES } from '../store/block-size';

export { BLOCK_BYTES };
/** The largest volume: block numbers stay clear of the block map's reserved values. */
export const MAX_VOLUME_BYTES = 0xfffffff0 * BLOCK_BYTES;

export interface VolumeInfo {
  name: string;
  /** Service class of the pool the volume lives in (e.g. "default", "ssd", "hdd"). */
  class: string;
  sizeBytes: number;
  /** Bytes of pool space this volume's own blocks hold (thin: grows as it is written). */
  allocatedBytes: number;
  /** "VOL@SNAP" when the volume was created as a clone of a snapshot. */
  sourceSnapshot?: string;
  snapshotCount: number;
  /** Open NBD connections to the volume. */
  connections: number;
  /** Blocks that failed their checksum on read or verify since weftd started. */
  checksumErrors: number;
  createdAt: string; // ISO 8601
}

export interface SnapshotInfo {
  volume: string;
  name: string;
  /** Size of the volume when the snapshot was taken. */
  sizeBytes: number;
  /** Bytes held only by this snapshot (freed if it is deleted and nothing else needs them). */
  exclusiveBytes: number;
  createdAt: string;
  /** Service class of the pool holding its blocks (where clones of it are made). */
  class: string;
  /** Blocks that failed their checksum on read or verify of VOL@SNAP since weftd started. */
  checksumErrors: number;
}

export interface PoolMemberInfo {
  path: string;
  sizeBytes: number;
}

export interface PoolInfo {
  class: string;
  capacityBytes: number;
  usedBytes: number;
  /** Sum of the sizes of the volumes in this pool (thin provisioning may exceed capacity). */
  provisionedBytes: number;
  members: PoolMemberInfo[];
}

export interface VerifyReport {
  /** The volume, or VOL@SNAP for a snapshot. */
  volume: string;
  checkedBlocks: number;
  /** Byte offsets (within the volume) of blocks whose checksum does not match their data. */
  badBlockOffsets: number[];
}

export interface CreateVolumeRequest {
  name: string;
  sizeBytes: number;
  /** Defaults to "default" if such a pool exists, else the only pool. */
  class?: string;
}

export interface CloneVolumeRequest {
  name: string;
  volume: string;
  snapshot: string;
  /** Defaults to the snapshot's size; may be larger, never smaller. */
  sizeBytes?: number;
}

/** A BlockDevice handed to one consumer (one NBD connection). close() must be called once. */
export interface OpenDevice extends BlockDevice {
  close(): void;
}

/** The storage engine of one node. All methods throw WeftError with a user-facing message. */
export interface VolumeEngine {
  createVolume(request: CreateVolumeRequest): Promise<VolumeInfo>;
  cloneVolume(request: CloneVolumeRequest): Promise<VolumeInfo>;
  listVolumes(): VolumeInfo[];
  getVolume(name: string): VolumeInfo;
  /** Grow only; shrinking is refused with INVALID_ARGUMENT. */
  resizeVolume(name: string, sizeBytes: number): Promise<VolumeInfo>;
  /** Refused with FAILED_PRECONDITION while connected; its snapshots stay until they are deleted. */
  deleteVolume(name: string): Promise<void>;
  /** Reads every allocated block of the volume (or snapshot, VOL@SNAP) and checks it against its checksum. */
  verifyVolume(name: string, onProgress?: (doneBlocks: number, totalBlocks: number) => void): Promise<VerifyReport>;
  /** Discards everything written since the snapshot. Refused while the volume is connected. */
  revertVolume(name: string, snapshot: string): Promise<VolumeInfo>;

  createSnapshot(volume: string, name: string): Promise<SnapshotInfo>;
  /** All snapshots, or the given volume's. */
  listSnapshots(volume?: string): SnapshotInfo[];
  deleteSnapshot(volume: string, name: string): Promise<void>;

  listPools(): PoolInfo[];

  /** Opens a volume (writable) or "VOL@SNAP" (read-only) for I/O. Throws NOT_FOUND. */
  open(exportName: string): OpenDevice;
  /** Names that open() accepts: every volume, and every snapshot as VOL@SNAP. */
  exportNames(): string[];

  /** Flushes everything and releases files. */
  close(): Promise<void>;
}
