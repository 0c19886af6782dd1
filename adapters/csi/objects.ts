// Weft's volumes and snapshots as CSI objects: Volume (with its content source, topology and
// context), Snapshot, VolumeCondition and Timestamp.

import type { SnapshotInfo, VolumeInfo } from '../../fabric/volume/types';
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

export function volumeCondition(info: VolumeInfo): VolumeCondition {
  if (info.checksumErrors === 0) return { abnormal: false, message: 'healthy' };
  return {
    abnormal: true,
    message: `${info.checksumErrors} block(s) failed their checksum since weftd started; run "weft volume verify ${info.name}"`,
  };
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
