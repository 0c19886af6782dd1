// VolumeService.VolumeStats: the cumulative I/O counters of the metrics layer, read at one instant
// of weftd's monotonic clock, for one volume (or VOL@SNAP) or for every one with counters here.

import { performance } from 'node:perf_hooks';
import { failedPrecondition, notFound } from '../errors';
import { LATENCY_BUCKETS } from '../latency';
import { OPERATIONS, OperationStats, type VolumeStats } from '../volume/metrics-device';
import type { ReplicatedVolumes } from './cluster-volumes';
import type { OperationCounters, VolumeCounters, VolumeStatsResponse } from './messages';
import { checkExportName } from './validate';

/** Where the counters are kept: the daemon's VolumeMetrics. */
export interface VolumeStatsSource {
  volumeNames(): string[];
  forVolume(name: string): VolumeStats;
}

/** A source with no counters: a node without a metrics layer (weftd --metrics-port off). */
export const NO_STATS: VolumeStatsSource = {
  volumeNames: () => [],
  forVolume: () => {
    throw new Error('this API has no volume counters');
  },
};

export async function volumeStats(source: VolumeStatsSource, cluster: ReplicatedVolumes, name: string): Promise<VolumeStatsResponse> {
  // A bad or unknown name is told as such first, whether or not this node counts I/O.
  const wanted = name ? checkExportName('name', name) : undefined;
  const names = source.volumeNames();
  const counted = new Set(names);
  if (wanted !== undefined && !counted.has(wanted)) await checkExists(cluster, wanted);
  // Zeros would read as a volume with no I/O.
  if (source === NO_STATS) throw failedPrecondition('this node counts no I/O: its weftd runs with --metrics-port off');
  let volumes: VolumeCounters[];
  if (wanted === undefined) {
    volumes = names.map((volume) => countersOf(volume, source.forVolume(volume)));
  } else {
    // A known volume without counters here (a replicated volume with no copy on this node) reads as zeros.
    volumes = [countersOf(wanted, counted.has(wanted) ? source.forVolume(wanted) : undefined)];
  }
  return { monotonicSeconds: performance.now() / 1000, latencyBucketBounds: [...LATENCY_BUCKETS], volumes };
}

/**
 * Throws NOT_FOUND unless the volume, or VOL@SNAP, exists; a replicated volume's, anywhere in the
 * cluster (a node without a copy serves its snapshots too, through the primary).
 */
async function checkExists(cluster: ReplicatedVolumes, name: string): Promise<void> {
  const at = name.indexOf('@');
  if (at < 0) {
    cluster.info(name);
    return;
  }
  const [volume, snapshot] = [name.slice(0, at), name.slice(at + 1)];
  if (!(await cluster.listSnapshots(volume)).some((s) => s.name === snapshot)) throw notFound(`snapshot ${name} does not exist`);
}

function countersOf(volume: string, stats: VolumeStats | undefined): VolumeCounters {
  const operations = OPERATIONS.map((operation) => operationCounters(operation, stats?.[operation] ?? new OperationStats()));
  return { volume, operations, inFlight: operations.reduce((sum, o) => sum + o.inFlight, 0) };
}

function operationCounters(operation: string, stats: OperationStats): OperationCounters {
  // The layer counts no bucket for a latency above the last bound: that is what is left over.
  const inBounds = stats.buckets.reduce((sum, n) => sum + n, 0);
  return {
    operation,
    count: stats.operations,
    errors: stats.errors,
    bytes: stats.bytes,
    secondsSum: stats.secondsSum,
    bucketCounts: [...stats.buckets, stats.operations - inBounds],
    inFlight: stats.inFlight,
  };
}
