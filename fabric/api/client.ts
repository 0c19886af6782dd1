// WeftClient: the typed, promise-based client of the control API that the CLI and the CSI driver
// use. Failures become WeftApiError: the server's message, and the gRPC code.

import * as grpc from '@grpc/grpc-js';
import type { ClusterNode } from '../cluster/membership';
import type { Absence } from '../replication/absence-log';
import { DirtyMap } from '../replication/dirty-map';
import type { CopyOperation } from '../replication/replication-layer';
import type { ClassObjectives } from '../class-objectives';
import type { ClassInfo } from './pool-service';
import type { PoolInfo, SnapshotInfo, VerifyReport, VolumeInfo } from '../volume/types';
import type { AttachmentFilter, AttachmentRecord } from './attachments';
import { MAX_ABSENCE_MAP_BYTES, MAX_MESSAGE_BYTES, serviceDefinition, type ServiceName } from './definition';
import { checksumsFromWire, verifyReportFromWire, volumeFromWire, type Activity, type BlockChecksums, type ControlCopyRequest, type CopyCreate, type SnapshotRef, type VerifyVolumeEvent, type VolumeInfo as WireVolumeInfo, type VolumeStatsResponse } from './messages';
import type { NodeStatus } from './node-info';

export interface CreateVolumeOptions {
  name: string;
  /** Required for a new volume; for a clone, omit to keep the snapshot's size. */
  sizeBytes?: number;
  /** Service class; omit for "default" (or the only pool). For a clone, where its new writes go (omit: the snapshot's). */
  class?: string;
  /** Clone this snapshot instead of creating an empty volume. */
  sourceSnapshot?: SnapshotRef;
  /** Copies on distinct nodes (default 1, on the node asked). */
  replicas?: number;
  /** The node to hold the primary copy. */
  locality?: string;
  /** The node to hold the primary copy if it can; else placement chooses (no refusal). */
  preferredNode?: string;
}

export type VerifyProgressListener = (doneBlocks: number, totalBlocks: number) => void;

export class WeftApiError extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
    this.name = 'WeftApiError';
  }
}

export class WeftClient {
  private readonly client: grpc.Client;

  /** endpoint: "HOST:PORT" ("[::1]:PORT" for IPv6). Connects lazily, on the first call. */
  /** unaryDeadlineMs: each unary call fails with DEADLINE_EXCEEDED after this long, a verify after this long without progress; default: none. */
  constructor(readonly endpoint: string, private readonly unaryDeadlineMs?: number) {
    this.client = new grpc.Client(endpoint, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': MAX_MESSAGE_BYTES });
  }

  async createVolume(options: CreateVolumeOptions): Promise<VolumeInfo> {
    return volumeFromWire(await this.unary('VolumeService', 'CreateVolume', options));
  }

  async listVolumes(): Promise<VolumeInfo[]> {
    const response = await this.unary<{ volumes: WireVolumeInfo[] }>('VolumeService', 'ListVolumes', {});
    return response.volumes.map(volumeFromWire);
  }

  async getVolume(name: string): Promise<VolumeInfo> {
    return volumeFromWire(await this.unary('VolumeService', 'GetVolume', { name }));
  }

  async resizeVolume(name: string, sizeBytes: number): Promise<VolumeInfo> {
    return volumeFromWire(await this.unary('VolumeService', 'ResizeVolume', { name, sizeBytes }));
  }

  async deleteVolume(name: string): Promise<void> {
    await this.unary('VolumeService', 'DeleteVolume', { name });
  }

  /**
   * Runs a verify on the node: streams its progress to onProgress, and resolves with its report.
   * Aborting `stop` cancels the call, which stops the verify there. With stallMs (by
   * default the unary deadline; null: none), the verify fails with DEADLINE_EXCEEDED, and is
   * cancelled there, once weftd sends nothing for that long: a verify that moves sends progress at
   * least every half second (volume-service.ts), so silence is a stuck or unreachable node, however
   * long the whole takes. Not with a weftd of an earlier version (its progress says no heartbeat),
   * which may be silent for as long as a percent of the volume takes.
   */
  verifyVolume(name: string, onProgress?: VerifyProgressListener, stop?: AbortSignal, stallMs: number | null = this.unaryDeadlineMs ?? null): Promise<VerifyReport> {
    const { path, requestSerialize, responseDeserialize } = serviceDefinition('VolumeService').VerifyVolume;
    const stream = this.client.makeServerStreamRequest(path, requestSerialize, responseDeserialize, { name });
    if (stop?.aborted) stream.cancel();
    else stop?.addEventListener('abort', () => stream.cancel(), { once: true });
    return new Promise((resolve, reject) => {
      let report: VerifyReport | undefined;
      let stalled: NodeJS.Timeout | undefined;
      let silentMs = stallMs;
      const watch = () => {
        clearTimeout(stalled);
        if (silentMs === null) return;
        stalled = setTimeout(() => {
          reject(new WeftApiError(grpc.status.DEADLINE_EXCEEDED, `weftd at ${this.endpoint} sent no progress of the verify of ${name} for ${(silentMs as number) / 1000} s: it was cancelled`));
          stream.cancel();
        }, silentMs);
      };
      watch();
      stream.on('data', (message: VerifyVolumeEvent) => {
        if (message.event === 'progress' && !message.progress.heartbeatMs) silentMs = null;
        watch();
        if (message.event === 'report') report = verifyReportFromWire(message.report);
        else onProgress?.(message.progress.doneBlocks, message.progress.totalBlocks);
      });
      stream.on('error', (error: grpc.ServiceError) => {
        clearTimeout(stalled);
        reject(this.toError(error));
      });
      stream.on('end', () => {
        clearTimeout(stalled);
        if (report) resolve(report);
        else reject(new WeftApiError(grpc.status.INTERNAL, 'verify ended without a report'));
      });
    });
  }

  async revertVolume(name: string, snapshot: string): Promise<VolumeInfo> {
    return volumeFromWire(await this.unary('VolumeService', 'RevertVolume', { name, snapshot }));
  }

  /** The cumulative I/O counters of one volume (or VOL@SNAP), or of every volume with counters on the node. */
  volumeStats(name?: string): Promise<VolumeStatsResponse> {
    return this.unary('VolumeService', 'VolumeStats', { name });
  }

  createSnapshot(volume: string, name: string): Promise<SnapshotInfo> {
    return this.unary('SnapshotService', 'CreateSnapshot', { volume, name });
  }

  /** Every snapshot, or only the given volume's. */
  async listSnapshots(volume?: string): Promise<SnapshotInfo[]> {
    const response = await this.unary<{ snapshots: SnapshotInfo[] }>('SnapshotService', 'ListSnapshots', { volume });
    return response.snapshots;
  }

  async deleteSnapshot(volume: string, name: string): Promise<void> {
    await this.unary('SnapshotService', 'DeleteSnapshot', { volume, name });
  }

  async listPools(): Promise<PoolInfo[]> {
    return (await this.unary<{ pools: PoolInfo[] }>('PoolService', 'ListPools', {})).pools;
  }

  /** The node's service classes; an objective the class does not promise is absent. */
  async listClasses(): Promise<ClassInfo[]> {
    const { classes } = await this.unary<{ classes: ClassInfo[] }>('PoolService', 'ListClasses', {});
    // The wire has 0 for what is not promised.
    const promised = (objectives: ClassObjectives = {}) => Object.fromEntries(Object.entries(objectives).filter(([, value]) => value > 0));
    return classes.map((c) => ({ ...c, objectives: promised(c.objectives) }));
  }

  getNodeInfo(): Promise<NodeStatus> {
    return this.unary('NodeService', 'GetNodeInfo', {});
  }

  /** Takes a node that is down for good out of the cluster (refused while it is up or holds a copy). */
  async forgetNode(nodeId: string): Promise<void> {
    await this.unary('NodeService', 'ForgetNode', { nodeId });
  }

  /** Every node of the cluster, up or down; a node without a zone has zone "". */
  async listNodes(): Promise<ClusterNode[]> {
    return (await this.unary<{ nodes: ClusterNode[] }>('NodeService', 'ListNodes', {})).nodes;
  }

  /** Node to node: makes this node's copy of a replicated volume being created (a clone of its own copy of source, if given). */
  async createCopy(name: string, sizeBytes: number, poolClass: string, source?: SnapshotRef, create?: CopyCreate, replacement = false): Promise<VolumeInfo> {
    return volumeFromWire(await this.unary('ReplicaService', 'CreateCopy', { name, sizeBytes, class: poolClass, sourceSnapshot: source, createId: create?.id, marked: create?.marked, replacement }));
  }

  /** Node to node: drops this node's copy (checkOnly: only checks that no client has it open). */
  async deleteCopy(name: string, checkOnly = false): Promise<void> {
    await this.unary('ReplicaService', 'DeleteCopy', { name, checkOnly });
  }

  /** Node to node: drops this node's copy of a deleted volume, if its leftover key is still there (ClusterVolumes.dropLeftover). */
  async dropLeftover(name: string): Promise<void> {
    await this.unary('ReplicaService', 'DeleteCopy', { name, leftover: true });
  }

  /** Node to node: the primary (at epoch) applies a control operation to this node's copy. */
  async controlCopy(name: string, operation: CopyOperation, epoch: number): Promise<void> {
    await this.unary('ReplicaService', 'ControlCopy', { name, epoch, operationId: operation.id ?? '', ...controlCopyFields(operation) });
  }

  /** Node to node: the primary settles on this node's copy the control operations it got no answer to (control-ledger.ts). */
  async settleCopyControls(name: string, ids: string[]): Promise<void> {
    await this.unary('ReplicaService', 'ControlCopy', { name, settle: ids });
  }

  /** Node to node: the primary (at epoch) has this node's copy log what copy `absent` misses (absence), or stop (null). */
  async trackAbsence(name: string, epoch: number, absent: string, absence: Absence | null): Promise<void> {
    const map = absence && !absence.full ? absence.map.encode() : Buffer.alloc(0);
    const lacks = !absence ? { forget: true } : map.length > MAX_ABSENCE_MAP_BYTES ? { full: true, map: Buffer.alloc(0) } : { full: absence.full, map };
    await this.unary('ReplicaService', 'TrackAbsence', { name, epoch, absent, ...lacks });
  }

  /** Node to node: the primary (at epoch) has this node's copy record its activity log's extents, as of its revision. */
  async trackActivity(name: string, epoch: number, revision: number, extents: readonly number[]): Promise<void> {
    await this.unary('ReplicaService', 'TrackActivity', { name, epoch, revision, extents });
  }

  /** Node to node: a new primary (at epoch) asks for the checksum of each block of the range on this node's copy. */
  async blockChecksums(name: string, epoch: number, offsetBytes: number, lengthBytes: number): Promise<Uint32Array> {
    const answer = await this.unary<BlockChecksums>('ReplicaService', 'BlockChecksums', { name, epoch, offsetBytes, lengthBytes });
    return checksumsFromWire(answer.crc32c);
  }

  /** Node to node: this node's own snapshots of the volume (its copy's, or a deleted volume's kept here). */
  async copySnapshots(name: string): Promise<SnapshotInfo[]> {
    return (await this.unary<{ snapshots: SnapshotInfo[] }>('ReplicaService', 'CopySnapshots', { name })).snapshots;
  }

  /** Node to node: where this node's copy may differ from the others, from its last time as the primary. */
  async activity(name: string): Promise<{ epoch: number; map: DirtyMap }> {
    const activity = await this.unary<Activity>('ReplicaService', 'GetActivity', { name });
    return { epoch: Number(activity.epoch), map: DirtyMap.decode(activity.map) };
  }

  /** Adds or replaces the attachment of the volume on the node; resolves with it as stored. */
  recordAttachment(attachment: Omit<AttachmentRecord, 'attachedAt'>): Promise<AttachmentRecord> {
    return this.unary('AttachmentService', 'RecordAttachment', attachment);
  }

  /** Claims a volume of the cluster for an attachment on this node (attach-claims.ts). */
  async claimVolume(volume: string, keepTrying = false): Promise<void> {
    await this.unary('AttachmentService', 'ClaimVolume', { volume, keepTrying });
  }

  async releaseVolume(volume: string): Promise<void> {
    await this.unary('AttachmentService', 'ReleaseVolume', { volume });
  }

  async removeAttachment(volume: string, nodeId: string): Promise<void> {
    await this.unary('AttachmentService', 'RemoveAttachment', { volume, nodeId });
  }

  async listAttachments(filter: AttachmentFilter = {}): Promise<AttachmentRecord[]> {
    return (await this.unary<{ attachments: AttachmentRecord[] }>('AttachmentService', 'ListAttachments', filter)).attachments;
  }

  close(): void {
    this.client.close();
  }

  private unary<Response>(service: ServiceName, method: string, request: object): Promise<Response> {
    const { path, requestSerialize, responseDeserialize } = serviceDefinition(service)[method];
    return new Promise((resolve, reject) => {
      const deadline = this.unaryDeadlineMs === undefined ? undefined : Date.now() + this.unaryDeadlineMs;
      this.client.makeUnaryRequest(path, requestSerialize, responseDeserialize, request, deadline === undefined ? {} : { deadline }, (error, response) => {
        if (!error) resolve(response as Response);
        // Its own deadline, not another node's that this one passes on (a forwarded call's).
        else if (error.code === grpc.status.DEADLINE_EXCEEDED && deadline !== undefined && Date.now() >= deadline) {
          // The call goes on there all the same: a change asked for may yet be made.
          const mayChange = READ_ONLY_CALL.test(method) ? '' : `; ${method} may still be done there: check before trying it again`;
          reject(new WeftApiError(error.code, `weftd at ${this.endpoint} did not answer within ${this.unaryDeadlineMs! / 1000} s${mayChange}`));
        } else reject(this.toError(error));
      });
    });
  }

  private toError(error: grpc.ServiceError): WeftApiError {
    const reason = unreachableReason(error);
    const message = reason ? `cannot reach weftd at ${this.endpoint} (${reason})` : error.details;
    return new WeftApiError(error.code, message);
  }
}

/** Calls that change nothing. */
const READ_ONLY_CALL = /^(Get|List|VolumeStats$|BlockChecksums$|CopySnapshots$)/;

/** ControlCopyRequest's fields for one operation (copyOperation in volume-service.ts reads them back). */
function controlCopyFields(operation: CopyOperation): Partial<ControlCopyRequest> {
  switch (operation.type) {
    case 'snapshot':
      return { snapshot: operation.name };
    case 'resize':
      return { sizeBytes: operation.sizeBytes, checkOnly: operation.checkOnly ?? false };
    case 'delete-snapshot':
      return { deleteSnapshot: operation.name };
    case 'revert':
      return { revertTo: operation.snapshot, checkOnly: operation.checkOnly ?? false };
  }
}

const ERRNO_REASONS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ETIMEDOUT: 'connection timed out',
};

/** Why the channel could not reach the server, or undefined when the server itself answered. */
export function unreachableReason(error: { code: grpc.status; details: string }): string | undefined {
  if (error.code !== grpc.status.UNAVAILABLE) return undefined;
  const { details } = error;
  if (details.startsWith('Name resolution failed')) return 'unknown host';
  if (details.startsWith('Connection dropped')) return 'connection dropped';
  if (!details.startsWith('No connection established')) return undefined;
  const errno = /\b(E[A-Z]{4,})\b/.exec(details)?.[1];
  return errno ? (ERRNO_REASONS[errno] ?? errno) : 'no connection';
}
