// Messages of weft.proto as grpc-js hands them over (proto-loader with defaults: absent
// strings are "", numbers 0, messages null, lists empty), and the conversion of the responses
// whose wire form differs from the engine's type (VolumeInfo, VerifyReport). Other responses are
// the engine's own types.

import type { LayerInfo, ReplicaVerifyResult, ReplicationInfo, SkippedReplica, VerifyReport, VolumeInfo as EngineVolumeInfo } from '../volume/types';
import type { AttachmentRecord } from './attachments';

export interface SnapshotRef {
  volume: string;
  snapshot: string;
}

export interface CreateVolumeRequest {
  name: string;
  sizeBytes: number;
  class: string;
  sourceSnapshot: SnapshotRef | null;
  replicas: number;
  locality: string;
  preferredNode: string;
}

/** Which create a copy is made for: its id (its record's), and whether the node marks it under the create's intent (create-intent.ts). */
export interface CopyCreate {
  id: string;
  marked: boolean;
}

export interface CreateCopyRequest {
  name: string;
  sizeBytes: number;
  class: string;
  sourceSnapshot: SnapshotRef | null;
  createId: string;
  marked: boolean;
  replacement: boolean;
}

export interface ControlCopyRequest {
  name: string;
  epoch: number;
  snapshot: string;
  sizeBytes: number;
  deleteSnapshot: string;
  revertTo: string;
  checkOnly: boolean;
  operationId: string;
  settle: string[];
}

export interface TrackAbsenceRequest {
  name: string;
  epoch: number;
  absent: string;
  forget: boolean;
  full: boolean;
  map: Buffer;
}

export interface TrackActivityRequest {
  name: string;
  epoch: number;
  revision: number;
  extents: number[];
}

export interface BlockChecksumsRequest {
  name: string;
  epoch: number;
  offsetBytes: number;
  lengthBytes: number;
}

export interface BlockChecksums {
  crc32c: Buffer;
}

export interface GetActivityRequest {
  name: string;
}

export interface Activity {
  epoch: number;
  map: Buffer;
}

export interface DeleteCopyRequest {
  name: string;
  checkOnly: boolean;
  leftover: boolean;
}

/** VolumeInfo as the wire carries it: "" for no source; a layer's snapshot as a SnapshotRef. */
export interface VolumeInfo extends Omit<EngineVolumeInfo, 'sourceSnapshot' | 'layers' | 'replication'> {
  sourceSnapshot: string;
  layers: VolumeLayer[];
  replication: ReplicationInfo | null;
}

export interface VolumeLayer {
  snapshot: SnapshotRef | null;
  deleted: boolean;
  class: string;
  allocatedBytes: number;
}

export function volumeToWire(info: EngineVolumeInfo): VolumeInfo {
  const layers = info.layers.map((layer) => ({
    snapshot: layer.snapshot ? { volume: layer.snapshot.volume, snapshot: layer.snapshot.name } : null,
    deleted: layer.deleted ?? false,
    class: layer.class,
    allocatedBytes: layer.allocatedBytes,
  }));
  return { ...info, sourceSnapshot: info.sourceSnapshot ?? '', layers, replication: info.replication ?? null };
}

/** The engine's form again: fields that are absent on the wire are left out, not empty. */
export function volumeFromWire(wire: VolumeInfo): EngineVolumeInfo {
  const layers = wire.layers.map(
    (layer): LayerInfo => ({
      ...(layer.snapshot && { snapshot: { volume: layer.snapshot.volume, name: layer.snapshot.snapshot } }),
      ...(layer.deleted && { deleted: true }),
      class: layer.class,
      allocatedBytes: layer.allocatedBytes,
    }),
  );
  const { replication, ...rest } = wire;
  return { ...rest, sourceSnapshot: wire.sourceSnapshot || undefined, layers, ...(replication && { replication }) };
}

export interface NameRequest {
  name: string;
}

export interface ResizeVolumeRequest {
  name: string;
  sizeBytes: number;
}

export interface RevertVolumeRequest {
  name: string;
  snapshot: string;
}

export interface VerifyProgress {
  doneBlocks: number;
  totalBlocks: number;
  heartbeatMs?: number;
}

/** The server sets one field of the oneof. */
export type VerifyVolumeResponse = { progress: VerifyProgress } | { report: VerifyReport };

/** VerifyReport as the wire carries it: the replica lists always (empty for a volume of one node's alone); no snapshot field. */
export interface VerifyReportWire extends Omit<VerifyReport, 'snapshot' | 'replicas' | 'skippedReplicas'> {
  replicas: ReplicaVerifyResult[];
  skippedReplicas: SkippedReplica[];
}

/** The client receives it with `event` naming the field that is set (oneofs: true). */
export type VerifyVolumeEvent =
  | { event: 'progress'; progress: VerifyProgress }
  | { event: 'report'; report: VerifyReportWire };

/** The engine's form again: the replica lists only for a replicated volume. */
export function verifyReportFromWire(wire: VerifyReportWire): VerifyReport {
  const { replicas, skippedReplicas, ...rest } = wire;
  return replicas.length > 0 ? wire : rest;
}

export interface SnapshotRequest {
  volume: string;
  name: string;
}

export interface ClaimVolumeRequest {
  volume: string;
  keepTrying?: boolean;
}

export interface ListSnapshotsRequest {
  volume: string;
}

/** RecordAttachment's request: an attachment without attachedAt (weftd sets it). */
export type AttachmentRequest = Omit<AttachmentRecord, 'attachedAt'>;

export interface RemoveAttachmentRequest {
  volume: string;
  nodeId: string;
}

export interface ListAttachmentsRequest {
  volume: string;
  nodeId: string;
}

export interface VolumeStatsRequest {
  /** "" for every volume with counters. */
  name: string;
}

/** VolumeService.VolumeStats: cumulative counters read at one instant of weftd's monotonic clock. */
export interface VolumeStatsResponse {
  monotonicSeconds: number;
  /** Upper bounds (seconds) of the latency buckets, smallest first. */
  latencyBucketBounds: number[];
  volumes: VolumeCounters[];
}

export interface VolumeCounters {
  volume: string;
  operations: OperationCounters[];
  /** The operations' inFlight, summed. */
  inFlight: number;
}

export interface OperationCounters {
  operation: string;
  count: number;
  errors: number;
  bytes: number;
  secondsSum: number;
  /** Per bucket, not cumulative; one more entry than the bounds: the latencies above the last bound. */
  bucketCounts: number[];
  inFlight: number;
}

/** BlockChecksums.crc32c: one little-endian uint32 per block. */
export function checksumsToWire(crcs: Uint32Array): Buffer {
  const bytes = Buffer.allocUnsafe(crcs.length * 4);
  crcs.forEach((crc, i) => bytes.writeUInt32LE(crc, i * 4));
  return bytes;
}

export function checksumsFromWire(bytes: Buffer): Uint32Array {
  if (bytes.length % 4 !== 0) throw new Error(`block checksums: ${bytes.length} bytes is not a whole number of uint32`);
  const crcs = new Uint32Array(bytes.length / 4);
  for (let i = 0; i < crcs.length; i++) crcs[i] = bytes.readUInt32LE(i * 4);
  return crcs;
}
