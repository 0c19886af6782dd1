// Weft's volumes and snapshots as CSI objects: Volume (with its content source, topology and
// context), Snapshot, VolumeCondition and Timestamp.

import { resyncDone, type ReplicaInfo, type SnapshotInfo, type VolumeInfo } from '../../fabric/volume/types';
import type { Snapshot, StringMap, Timestamp, Volume, VolumeCondition, VolumeContentSource } from './messages';
import { isCloneSnapshot, parseSnapshotId, snapshotId } from './names';
import { volumeTopology, type Place } from './topology';

/** extraContext: what CreateVolume adds to the volume's context (the claim, claimContext()). */
export function csiVolume(info: VolumeInfo, place: Place, extraContext: StringMap = {}): Volume {
  return {
    capacity_bytes: info.sizeBytes,
    volume_id: info.name,
    volume_context: { ...extraContext, class: info.class },
    content_source: contentSource(info.sourceSnapshot),
    accessible_topology: volumeTopology(place, info.replication !== undefined),
  };
}

/** A clone of a hidden clone snapshot was made from that snapshot's volume; others from the snapshot. */
export function contentSource(sourceSnapshot: string | undefined): VolumeContentSource | null {
  const ref = sourceSnapshot ? parseSnapshotId(sourceSnapshot) : undefined;
  if (!ref) return null;
  return isCloneSnapshot(ref.snapshot) ? { volume: { volume_id: ref.volume } } : { snapshot: { snapshot_id: snapshotId(ref) } };
}

/** "snapshot:ID", "volume:ID" or "" — equal when two sources are the same. */
export function sourceKey(source: VolumeContentSource | null): string {
  if (source?.snapshot) return `snapshot:${source.snapshot.snapshot_id}`;
  if (source?.volume) return `volume:${source.volume.volume_id}`;
  return '';
}

/**
 * Abnormal while a block failed its checksum on this node, or a copy of a replicated volume is not in
 * sync (it serves on, with fewer copies than asked for): what Kubernetes' health monitor reports on
 * the claim. The controller's weftd holds no copy, so there only the copies count.
 */
export function volumeCondition(info: VolumeInfo): VolumeCondition {
  const problems: string[] = [];
  const replicas = info.replication?.replicas ?? [];
  const lagging = replicas.filter((r) => r.state !== 'in-sync');
  // Not "n of m": a failed copy and its replacement are both listed while the replacement resyncs.
  if (lagging.length > 0) problems.push(`copies not in sync: ${lagging.map(copyState).join(', ')} (${replicas.length - lagging.length} in sync): "weft volume show ${info.name}" tells more`);
  if (info.checksumErrors > 0) problems.push(`${info.checksumErrors} block(s) failed their checksum since weftd started; run "weft volume verify ${info.name}"`);
  return problems.length === 0 ? { abnormal: false, message: 'healthy' } : { abnormal: true, message: problems.join('; ') };
}

/** "node-b resyncing 40%", "node-c out": a copy that is not in sync. */
function copyState(replica: ReplicaInfo): string {
  const done = resyncDone(replica);
  return done ? `${replica.node} resyncing ${done.percent}%` : `${replica.node} ${replica.state}`;
}

export function csiSnapshot(info: SnapshotInfo): Snapshot {
  return {
    size_bytes: info.sizeBytes,
    snapshot_id: snapshotId({ volume: info.volume, snapshot: info.name }),
    source_volume_id: info.volume,
    creation_time: timestamp(info.createdAt),
    ready_to_use: true,
  };
}

function timestamp(iso: string): Timestamp {
  const ms = Date.parse(iso);
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
}
