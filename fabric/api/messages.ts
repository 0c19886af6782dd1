// Messages of weft.proto as grpc-js hands them over (proto-loader with defaults: absent
// strings are "", numbers 0, messages null). Other responses are the engine's own types.

import type { VerifyReport } from '../volume/types';
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
}

/** The server sets one field of the oneof. */
export type VerifyVolumeResponse = { progress: VerifyProgress } | { report: VerifyReport };

/** The client receives it with `event` naming the field that is set (oneofs: true). */
export type VerifyVolumeEvent =
  | { event: 'progress'; progress: VerifyProgress }
  | { event: 'report'; report: VerifyReport };

export interface SnapshotRequest {
  volume: string;
  name: string;
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
