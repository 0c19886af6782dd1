// What the storage engine offers the rest of the node: the control operations that the gRPC API
// serves (to the CLI and the CSI driver), and the devices that the NBD server exports.

import type { BlockDevice } from './block-device';
import type { Opener } from './volume';
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
  /** Replication epoch on this node: replication connections of an older one may not write. */
  epoch: number;
  createdAt: string; // ISO 8601
  /** Where the volume's data lives: its layers from the head (written) down to the oldest snapshot it reads through. */
  layers: LayerInfo[];
  /** A replicated volume's copies, as the cluster store has them. */
  replication?: ReplicationInfo;
}

export interface ReplicationInfo {
  /** The node serving the volume at this epoch. */
  primary: string;
  /** The volume's epoch in the cluster, raised by every failover. */
  epoch: number;
  replicas: ReplicaInfo[];
  /** The node the volume is attached on (its CSI node service claimed it), as the answering node last read the store; '' for none. */
  attachedNode: string;
  /** A snapshot being taken, or cut short and not settled yet (cluster/volume-record.ts); '' for none. */
  snapshotting: string;
}

export interface ReplicaInfo {
  node: string;
  /** The pool that holds the copy on its node: the node's pool of the volume's class (placement puts it there). */
  pool: string;
  state: 'in-sync' | 'out' | 'resyncing' | 'failed';
  /** Whether the figures below come from the primary (only the primary knows them). */
  live: boolean;
  /** Bytes the copy lacks (out), or has still to receive (resyncing). */
  behindBytes: number;
  /** Bytes copied to it by resyncs since the primary started serving. */
  resyncCopiedBytes: number;
  /** The size of the resync under way, 0 when none is: (resyncTotalBytes - behindBytes) of it are done. */
  resyncTotalBytes: number;
}

/** How far the copy's resync has come, in bytes done; undefined when none is under way, or its figures are not the primary's. */
export function resyncDone(replica: ReplicaInfo): { doneBytes: number; percent: number } | undefined {
  if (replica.state !== 'resyncing' || !replica.live || replica.resyncTotalBytes === 0) return undefined;
  const doneBytes = replica.resyncTotalBytes - replica.behindBytes;
  return { doneBytes, percent: Math.floor((doneBytes * 100) / replica.resyncTotalBytes) };
}

export interface LayerInfo {
  /** The snapshot this layer is; none for the head, and for a deleted snapshot still needed by others. */
  snapshot?: { volume: string; name: string };
  /** A deleted snapshot kept because more than one volume, or a volume in another pool, reads through it. */
  deleted?: boolean;
  /** Service class of the pool holding the layer's blocks. */
  class: string;
  /** Bytes of pool space held by this layer's own blocks. */
  allocatedBytes: number;
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

/**
 * Whether a pool's disks answer: `ok`; `slow`, a sync that a flush left out still runs (the
 * node's other pools do not wait for it); `stalled`, a member's fdatasync has run for 1 s or its
 * other calls have made no progress for 5 s (its disk may have stopped answering); `lost`, a sync
 * failed or a member file went away, and its volumes refuse writes and flushes until weftd restarts.
 */
export type PoolState = 'ok' | 'slow' | 'stalled' | 'lost';
export const POOL_STATES: readonly PoolState[] = ['ok', 'slow', 'stalled', 'lost'];

export interface PoolInfo {
  class: string;
  capacityBytes: number;
  usedBytes: number;
  /** Sum of the sizes of the volumes in this pool (thin provisioning may exceed capacity). */
  provisionedBytes: number;
  members: PoolMemberInfo[];
  state: PoolState;
}

export interface VerifyReport {
  volume: string;
  /** Set when a snapshot of the volume was verified. */
  snapshot?: string;
  checkedBlocks: number;
  /**
   * Byte offsets (within the volume) of blocks whose checksum does not match their data; of a
   * replicated volume, of blocks that no copy reads good (the others were repaired).
   */
  badBlockOffsets: number[];
  /** Of a replicated volume: what the comparison found on each copy it compared (the primary's first). */
  replicas?: ReplicaVerifyResult[];
  /** Of a replicated volume: the copies not compared (or not to the end), and why. */
  skippedReplicas?: SkippedReplica[];
}

/** One copy of a replicated volume, as a verify compared and repaired it. */
export interface ReplicaVerifyResult {
  node: string;
  comparedBlocks: number;
  /** Blocks that failed their checksum there, rewritten from a copy that reads good. */
  checksumRepairedBlocks: number;
  /** Blocks that read good there but differed from the primary's, made equal to them. */
  mismatchRepairedBlocks: number;
}

export interface SkippedReplica {
  node: string;
  reason: string;
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
  /** Where the clone's new writes go; defaults to the snapshot's class. Unchanged blocks stay where they are. */
  class?: string;
}

/** A BlockDevice handed to one consumer (one NBD connection). close() must be called once. */
export interface OpenDevice extends BlockDevice {
  close(): void;
  /**
   * The consumer's connection ended with requests still in flight (close() follows once they have
   * settled): a request that failed in a way that would be retried (a failover) fails instead.
   */
  abandon?(): void;
}

/** The storage engine of one node. All methods throw WeftError with a user-facing message. */
export interface VolumeEngine {
  createVolume(request: CreateVolumeRequest): Promise<VolumeInfo>;
  cloneVolume(request: CloneVolumeRequest): Promise<VolumeInfo>;
  listVolumes(): VolumeInfo[];
  /** The names of every volume and snapshot, without the work of describing each (listVolumes, listSnapshots). */
  listNames(): { volumes: string[]; snapshots: { volume: string; snapshot: string }[] };
  getVolume(name: string): VolumeInfo;
  /** Grow only; shrinking is refused with INVALID_ARGUMENT. */
  resizeVolume(name: string, sizeBytes: number): Promise<VolumeInfo>;
  /** Refused with FAILED_PRECONDITION while connected; its snapshots stay until they are deleted. */
  deleteVolume(name: string): Promise<void>;
  /** Reads every allocated block of the volume (or of its snapshot) and checks it against its checksum; stops with ABORTED once `stop` is aborted. */
  verifyVolume(name: string, onProgress?: (doneBlocks: number, totalBlocks: number) => void, snapshot?: string, stop?: AbortSignal): Promise<VerifyReport>;
  /** Discards everything written since the snapshot. Refused while the volume is connected. */
  revertVolume(name: string, snapshot: string): Promise<VolumeInfo>;

  createSnapshot(volume: string, name: string): Promise<SnapshotInfo>;
  /** All snapshots, or the given volume's. */
  listSnapshots(volume?: string): SnapshotInfo[];
  deleteSnapshot(volume: string, name: string): Promise<void>;

  listPools(): PoolInfo[];

  /**
   * Raises the volume's replication epoch, durably, with its fenced writes drained; from then on
   * replication connections of an older epoch may not write. Lowering is refused (FAILED_PRECONDITION).
   */
  raiseEpoch(name: string, epoch: number): Promise<VolumeInfo>;

  /**
   * Opens a volume for I/O, through its stack. Throws NOT_FOUND, and FAILED_PRECONDITION when the
   * opener names an epoch older than the volume's.
   */
  openVolume(name: string, opener?: Opener): OpenDevice;
  /** Opens a snapshot, read-only. Throws NOT_FOUND. */
  openSnapshot(volume: string, snapshot: string, opener?: Opener): OpenDevice;

  /** Flushes everything and releases files. */
  close(): Promise<void>;
}
