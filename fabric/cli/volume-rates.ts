// What `weft volume stats` shows of one volume over one interval: rates and latency percentiles
// from the difference of two samples of weftd's cumulative counters (VolumeService.VolumeStats).

import type { OperationCounters, VolumeCounters } from '../api/messages';

/** One volume over one interval, in base units: operations/s, bytes/s, seconds. */
export interface VolumeRates {
  volume: string;
  intervalSeconds: number;
  readIops: number;
  writeIops: number;
  readBytesPerSecond: number;
  writeBytesPerSecond: number;
  /** null when no operation of that direction completed in the interval. */
  readLatencyP50Seconds: number | null;
  readLatencyP99Seconds: number | null;
  writeLatencyP50Seconds: number | null;
  writeLatencyP99Seconds: number | null;
  /** Operations started and not completed at the end of the interval. */
  inFlight: number;
}

/**
 * The rates of `after` since `before` (undefined: a volume new since the first sample, counted
 * from zero). bounds are the latency buckets' upper bounds, in seconds.
 */
export function volumeRates(before: VolumeCounters | undefined, after: VolumeCounters, intervalSeconds: number, bounds: number[]): VolumeRates {
  const read = operationDelta(before, after, 'read');
  const write = operationDelta(before, after, 'write');
  const perSecond = (n: number) => n / intervalSeconds;
  return {
    volume: after.volume,
    intervalSeconds,
    readIops: perSecond(read.count),
    writeIops: perSecond(write.count),
    readBytesPerSecond: perSecond(read.bytes),
    writeBytesPerSecond: perSecond(write.bytes),
    readLatencyP50Seconds: histogramQuantile(0.5, bounds, read.bucketCounts),
    readLatencyP99Seconds: histogramQuantile(0.99, bounds, read.bucketCounts),
    writeLatencyP50Seconds: histogramQuantile(0.5, bounds, write.bucketCounts),
    writeLatencyP99Seconds: histogramQuantile(0.99, bounds, write.bucketCounts),
    inFlight: after.inFlight,
  };
}

type Delta = Pick<OperationCounters, 'count' | 'bytes' | 'bucketCounts'>;

/** What one operation did between the samples. Counters that went down were reset (the volume was deleted and made again): all of after is new. */
function operationDelta(before: VolumeCounters | undefined, after: VolumeCounters, operation: string): Delta {
  const now = after.operations.find((o) => o.operation === operation);
  if (!now) return { count: 0, bytes: 0, bucketCounts: [] };
  const then = before?.operations.find((o) => o.operation === operation);
  if (!then || then.count > now.count) return now;
  return { count: now.count - then.count, bytes: now.bytes - then.bytes, bucketCounts: now.bucketCounts.map((n, i) => n - (then.bucketCounts[i] ?? 0)) };
}

/**
 * The q-quantile of the latencies counted in buckets (counts per bucket, not cumulative; one more
 * count than bounds: those above the last bound), estimated as Prometheus' histogram_quantile does:
 * linear interpolation inside the bucket that holds the rank, the first bucket starting at 0, and
 * the last bound for a rank that falls above it. null when the buckets are empty.
 */
export function histogramQuantile(q: number, bounds: number[], counts: number[]): number | null {
  const total = counts.reduce((sum, n) => sum + n, 0);
  if (total === 0) return null;
  const rank = q * total;
  let below = 0;
  for (let i = 0; i < bounds.length; i++) {
    if (below + counts[i] >= rank && counts[i] > 0) {
      const start = i === 0 ? 0 : bounds[i - 1];
      return start + (bounds[i] - start) * ((rank - below) / counts[i]);
    }
    below += counts[i];
  }
  return bounds[bounds.length - 1];
}
