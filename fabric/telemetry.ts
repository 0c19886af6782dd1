// What a node has to report, as plain data read when asked: the read-only interface between the
// fabric and its exporters (exporters/prometheus). Nothing here knows a metrics format.

import type { ApiCallCounts } from './api/call-stats';
import type { ServiceClass } from './class-objectives';
import type { EventLoopDelayReport } from './event-loop-delay';
import type { LatencyCounts } from './latency';
import type { VolumeStats } from './volume/metrics-device';
import type { PoolState } from './volume/types';

export type { ApiCallCounts, EventLoopDelayReport, LatencyCounts, ServiceClass, VolumeStats };
export { ERROR_KINDS, OPERATIONS } from './volume/metrics-device';
export { LATENCY_BUCKETS } from './latency';

/**
 * The I/O counts of one export (VOL, or VOL@SNAP for a snapshot), as its metrics layer counts them.
 * Per-workload counts (pod, Nomad allocation, Mesos task from the volume's open handles) will be
 * more series of this shape, with the workload in their own labels: see NodeTelemetry.volumeIo().
 */
export interface IoSeries {
  volume: string;
  stats: VolumeStats;
}

/**
 * One workload using a volume attached on this node, as the CSI node service recorded it (weft
 * attachment list). Fields the orchestrator did not tell are empty. stats: the volume's I/O on this
 * node, which the workloads of one attachment share (absent when this node does not count it).
 */
export interface WorkloadReport {
  volume: string;
  class: string;
  orchestrator: string;
  namespace: string;
  pod: string;
  /** The pod's PersistentVolumeClaim (name). */
  pvc: string;
  alloc: string;
  /** The allocation's job id. */
  job: string;
  task: string;
  stats?: VolumeStats;
}

/** A volume held on this node. */
export interface VolumeReport {
  name: string;
  class: string;
  sizeBytes: number;
  /** Pool space its own blocks hold. */
  allocatedBytes: number;
}

/** Blocks that failed their checksum since weftd started, of a volume or a VOL@SNAP. */
export interface ChecksumReport {
  volume: string;
  errors: number;
}

export interface PoolReport {
  class: string;
  capacityBytes: number;
  usedBytes: number;
  provisionedBytes: number;
  state: PoolState;
}

export interface JournalReport {
  /** Bytes in the metadata journals a restart would replay. */
  bytes: number;
  /** How long each checkpoint took, from its start to its file written. */
  checkpoints: LatencyCounts;
}

/** A replicated volume this node serves as primary. */
export interface ReplicatedVolumeReport {
  volume: string;
  epoch: number;
  /** Every copy (this node's too), as the cluster store has it. */
  copies: { node: string; state: 'in-sync' | 'out' | 'resyncing' | 'failed' }[];
  /** The remote copies, as the primary sees them. */
  remotes: { node: string; behindBytes: number; resyncTotalBytes: number; resyncCopiedBytes: number }[];
}

/** One condition of readiness: the engine open, the cluster store reachable, the API listening. */
export interface ReadinessCheck {
  name: string;
  ok: boolean;
  /** Why not, when not. */
  detail?: string;
}

export interface NodeTelemetry {
  readonly nodeId: string;
  /**
   * The I/O counts of the exports that exist (those of a deleted one are gone at the next call).
   */
  volumeIo(): IoSeries[];
  /** The workloads of the volumes attached on this node (bounded by its attachments). */
  workloads(): WorkloadReport[];
  volumes(): VolumeReport[];
  checksumErrors(): ChecksumReport[];
  pools(): PoolReport[];
  /** The classes weftd's config declares, with their objectives. */
  classes(): ServiceClass[];
  nbdConnections(): number;
  /** NBD connections refused since the start (the node had --nbd-max-connections open). */
  nbdRefusedConnections(): number;
  apiCalls(): ApiCallCounts[];
  journal(): JournalReport;
  /** Quantiles since the previous call: one reader (the exporter) should call it. */
  eventLoopDelay(): EventLoopDelayReport;
  replicatedVolumes(): ReplicatedVolumeReport[];
  readiness(): Promise<ReadinessCheck[]>;
}
