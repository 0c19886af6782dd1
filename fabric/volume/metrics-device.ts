// The metrics layer: a BlockDevice that counts operations, bytes, errors, in-flight requests and
// latency per volume in plain numbers and passes every call through to the device below. Exporters
// (exporters/prometheus) read the counts through fabric/telemetry.ts when they are scraped.

import { performance } from 'node:perf_hooks';
import { ChecksumError, IoError } from '../errors';
import { countLatency, LATENCY_BUCKETS } from '../latency';
import { totalBytes, type Pieces } from '../pieces';
import type { Extent, RequestOwner, VolumeLayer, WriteZeroesOptions } from './block-device';
import { PassThroughLayer } from './pass-through-device';

export type Operation = 'read' | 'write' | 'flush' | 'trim' | 'write_zeroes' | 'block_status';
export const OPERATIONS: readonly Operation[] = ['read', 'write', 'flush', 'trim', 'write_zeroes', 'block_status'];

/**
 * What failed, as the NBD client sees it (its errno, lower case), with checksum failures apart and
 * "other" for what is not an I/O error (the client sees EIO): a fixed set, so a label of bounded cardinality.
 */
export const ERROR_KINDS = ['eio', 'checksum', 'eperm', 'enospc', 'einval', 'enomem', 'eoverflow', 'enotsup', 'eshutdown', 'other'] as const;
export type ErrorKind = (typeof ERROR_KINDS)[number];

export function errorKind(error: unknown): ErrorKind {
  if (error instanceof ChecksumError) return 'checksum';
  if (!(error instanceof IoError)) return 'other';
  const kind = error.errno.toLowerCase() as ErrorKind;
  return ERROR_KINDS.includes(kind) ? kind : 'other';
}

/**
 * Plain counts of one operation of one volume. The I/O path only adds to numbers here: prom-client's
 * labelled inc() and observe() hash their labels on every call (about 2 us per request together).
 */
export class OperationStats {
  operations = 0;
  errors = 0;
  bytes = 0;
  secondsSum = 0;
  /** Not cumulative: buckets[i] counts latencies in (LATENCY_BUCKETS[i-1], LATENCY_BUCKETS[i]]. */
  readonly buckets = LATENCY_BUCKETS.map(() => 0);
  /** Requests begun and not yet completed. */
  inFlight = 0;
  /** errorsByKind[i] counts the errors of kind ERROR_KINDS[i]; they add up to errors. */
  readonly errorsByKind = ERROR_KINDS.map(() => 0);

  record(seconds: number, failed: boolean, bytes: number): void {
    this.operations++;
    this.secondsSum += seconds;
    countLatency(this.buckets, seconds);
    if (failed) this.errors++;
    else this.bytes += bytes;
  }
}

/** The counts of one volume (or VOL@SNAP export), shared by all its open devices. */
export type VolumeStats = Record<Operation, OperationStats>;

/** The stats of every volume of a node, by export name. */
export class VolumeMetrics {
  private readonly volumes = new Map<string, VolumeStats>();

  /**
   * liveExports names the volumes and snapshots that exist: the stats of one deleted since the last
   * look are dropped (they would grow the output forever, and a new volume of the same name must
   * count from zero). Without it, stats are kept.
   */
  constructor(private readonly liveExports?: () => Iterable<string>) {}

  /** The volumes and VOL@SNAP exports that have stats, less those that no longer exist. */
  volumeNames(): string[] {
    return this.current().map(([volume]) => volume);
  }

  /** The stats of a volume or VOL@SNAP export; created on first use. */
  forVolume(volume: string): VolumeStats {
    let stats = this.volumes.get(volume);
    if (!stats) {
      stats = Object.fromEntries(OPERATIONS.map((operation) => [operation, new OperationStats()])) as VolumeStats;
      this.volumes.set(volume, stats);
    }
    return stats;
  }

  /** The stats of exports that still exist, after dropping the others. */
  current(): [string, VolumeStats][] {
    if (this.liveExports) {
      const live = new Set(this.liveExports());
      for (const volume of this.volumes.keys()) if (!live.has(volume)) this.volumes.delete(volume);
    }
    return [...this.volumes];
  }
}

/** Counts every I/O call into a volume's stats and passes it on unchanged. */
export class MetricsDevice extends PassThroughLayer {
  constructor(below: VolumeLayer, private readonly stats: VolumeStats) {
    super(below);
  }

  override read(offsetBytes: number, lengthBytes: number, owner?: RequestOwner): Promise<Buffer> {
    return this.track(this.stats.read, performance.now(), this.below.read(offsetBytes, lengthBytes, owner), lengthBytes);
  }

  override write(offsetBytes: number, data: Buffer | Pieces, fua: boolean, owner?: RequestOwner): Promise<void> {
    const bytes = Buffer.isBuffer(data) ? data.length : totalBytes(data);
    return this.track(this.stats.write, performance.now(), this.below.write(offsetBytes, data, fua, owner), bytes);
  }

  override flush(owner?: RequestOwner): Promise<void> {
    return this.track(this.stats.flush, performance.now(), this.below.flush(owner));
  }

  override trim(offsetBytes: number, lengthBytes: number, fua: boolean, owner?: RequestOwner): Promise<void> {
    return this.track(this.stats.trim, performance.now(), this.below.trim(offsetBytes, lengthBytes, fua, owner));
  }

  override writeZeroes(offsetBytes: number, lengthBytes: number, options: WriteZeroesOptions, owner?: RequestOwner): Promise<void> {
    return this.track(this.stats.write_zeroes, performance.now(), this.below.writeZeroes(offsetBytes, lengthBytes, options, owner));
  }

  override blockStatus(offsetBytes: number, lengthBytes: number, owner?: RequestOwner): Promise<Extent[]> {
    return this.track(this.stats.block_status, performance.now(), this.below.blockStatus(offsetBytes, lengthBytes, owner));
  }

  /** startMs is taken by the caller before it calls the layer below, so no closure is needed. */
  private async track<T>(stats: OperationStats, startMs: number, pending: Promise<T>, bytes = 0): Promise<T> {
    stats.inFlight++;
    try {
      const result = await pending;
      stats.record((performance.now() - startMs) / 1000, false, bytes);
      return result;
    } catch (error) {
      stats.record((performance.now() - startMs) / 1000, true, bytes);
      stats.errorsByKind[ERROR_KINDS.indexOf(errorKind(error))]++;
      throw error;
    } finally {
      stats.inFlight--;
    }
  }
}
