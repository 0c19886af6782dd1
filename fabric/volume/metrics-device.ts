// The metrics layer: a BlockDevice that counts operations, bytes, errors and latency per volume and
// passes every call through to the device below; the counts reach Prometheus through a prom-client registry.

import { performance } from 'node:perf_hooks';
import { Counter, Gauge, type Metric, type Registry } from 'prom-client';
import { totalBytes, type Pieces } from '../pieces';
import type { Extent, VolumeLayer, WriteZeroesOptions } from './block-device';
import { PassThroughLayer } from './pass-through-device';
import type { PoolInfo, VolumeEngine } from './types';

export type Operation = 'read' | 'write' | 'flush' | 'trim' | 'write_zeroes' | 'block_status';
export const OPERATIONS: readonly Operation[] = ['read', 'write', 'flush', 'trim', 'write_zeroes', 'block_status'];

/** Upper bounds in seconds: from a cached 4k read to a stalled disk. */
export const LATENCY_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * Plain counts of one operation of one volume. The I/O path only adds to numbers here: prom-client's
 * labelled inc() and observe() hash their labels on every call (about 2 us per request together).
 */
export class OperationStats {
  operations = 0;
  /** Started and not yet completed (not counted in operations until they complete). */
  inFlight = 0;
  errors = 0;
  bytes = 0;
  secondsSum = 0;
  /** Not cumulative: buckets[i] counts latencies in (LATENCY_BUCKETS[i-1], LATENCY_BUCKETS[i]]. */
  readonly buckets = LATENCY_BUCKETS.map(() => 0);

  record(seconds: number, failed: boolean, bytes: number): void {
    this.operations++;
    this.secondsSum += seconds;
    let bucket = 0;
    while (bucket < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[bucket]) bucket++;
    if (bucket < LATENCY_BUCKETS.length) this.buckets[bucket]++;
    if (failed) this.errors++;
    else this.bytes += bytes;
  }
}

/** The counts of one volume (or VOL@SNAP export), shared by all its open devices. */
export type VolumeStats = Record<Operation, OperationStats>;

/** One series of a metric family, as prom-client's registry formats it. */
interface Sample {
  metricName?: string;
  labels: Record<string, string | number>;
  value: number;
}

/** A metric family computed from VolumeStats when the registry is scraped. */
class ScrapedFamily {
  readonly aggregator = 'sum';

  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'histogram',
    private readonly samples: () => Sample[],
  ) {}

  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: Sample[] }> {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.samples() };
  }

  /** Registry.resetMetrics(): these counts follow the volumes' I/O and are never reset. */
  reset(): void {}
}

/** The per-volume metric families of one registry, and the stats they report. */
export class VolumeMetrics {
  private readonly volumes = new Map<string, VolumeStats>();

  /**
   * liveExports names the volumes and snapshots that exist: the series of one deleted since the last
   * scrape are dropped (they would grow the output forever, and a new volume of the same name must
   * count from zero). Without it, series are kept.
   */
  constructor(registry: Registry, private readonly liveExports?: () => Iterable<string>) {
    const families = [
      this.counter('weft_volume_operations_total', 'Block operations served, by volume and operation.', (stats) => stats.operations),
      this.counter('weft_volume_errors_total', 'Block operations that failed, by volume and operation.', (stats) => stats.errors),
      new ScrapedFamily('weft_volume_bytes_total', 'Bytes read from and written to each volume.', 'counter', () => this.byteSamples()),
      new ScrapedFamily('weft_volume_operation_seconds', 'Time to complete a block operation, by volume and operation.', 'histogram', () =>
        this.latencySamples('weft_volume_operation_seconds'),
      ),
    ];
    // The registry takes any object shaped like its metrics (name, help, type, get, reset); its
    // types only name prom-client's own classes.
    for (const family of families) registry.registerMetric(family as unknown as Metric);
  }

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

  private counter(name: string, help: string, value: (stats: OperationStats) => number): ScrapedFamily {
    return new ScrapedFamily(name, help, 'counter', () =>
      this.each((volume, operation, stats) => [{ labels: { volume, operation }, value: value(stats) }]),
    );
  }

  private byteSamples(): Sample[] {
    const samples: Sample[] = [];
    for (const [volume, stats] of this.current()) {
      samples.push({ labels: { volume, direction: 'read' }, value: stats.read.bytes });
      samples.push({ labels: { volume, direction: 'write' }, value: stats.write.bytes });
    }
    return samples;
  }

  /** Cumulative buckets, +Inf, _sum and _count of every operation that has happened. */
  private latencySamples(name: string): Sample[] {
    return this.each((volume, operation, stats) => {
      if (stats.operations === 0) return [];
      let cumulative = 0;
      const buckets = LATENCY_BUCKETS.map((le, i) => ({ metricName: `${name}_bucket`, labels: { le, volume, operation }, value: (cumulative += stats.buckets[i]) }));
      const samples: Sample[] = [
        ...buckets,
        { metricName: `${name}_bucket`, labels: { le: '+Inf', volume, operation }, value: stats.operations },
        { metricName: `${name}_sum`, labels: { volume, operation }, value: stats.secondsSum },
        { metricName: `${name}_count`, labels: { volume, operation }, value: stats.operations },
      ];
      return samples;
    });
  }

  private each(samples: (volume: string, operation: Operation, stats: OperationStats) => Sample[]): Sample[] {
    return this.current().flatMap(([volume, stats]) => OPERATIONS.flatMap((operation) => samples(volume, operation, stats[operation])));
  }

  /** The stats of exports that still exist, after dropping the others. */
  private current(): [string, VolumeStats][] {
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

  override read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    return this.track(this.stats.read, performance.now(), this.below.read(offsetBytes, lengthBytes), lengthBytes);
  }

  override write(offsetBytes: number, data: Buffer | Pieces, fua: boolean): Promise<void> {
    const bytes = Buffer.isBuffer(data) ? data.length : totalBytes(data);
    return this.track(this.stats.write, performance.now(), this.below.write(offsetBytes, data, fua), bytes);
  }

  override flush(): Promise<void> {
    return this.track(this.stats.flush, performance.now(), this.below.flush());
  }

  override trim(offsetBytes: number, lengthBytes: number, fua: boolean): Promise<void> {
    return this.track(this.stats.trim, performance.now(), this.below.trim(offsetBytes, lengthBytes, fua));
  }

  override writeZeroes(offsetBytes: number, lengthBytes: number, options: WriteZeroesOptions): Promise<void> {
    return this.track(this.stats.write_zeroes, performance.now(), this.below.writeZeroes(offsetBytes, lengthBytes, options));
  }

  override blockStatus(offsetBytes: number, lengthBytes: number): Promise<Extent[]> {
    return this.track(this.stats.block_status, performance.now(), this.below.blockStatus(offsetBytes, lengthBytes));
  }

  /** startMs is taken by the caller before it calls the layer below, so no closure is needed. */
  private async track<T>(stats: OperationStats, startMs: number, pending: Promise<T>, bytes = 0): Promise<T> {
    let failed = true;
    stats.inFlight++;
    try {
      const result = await pending;
      failed = false;
      return result;
    } finally {
      stats.inFlight--;
      stats.record((performance.now() - startMs) / 1000, failed, bytes);
    }
  }
}

/** weft_pool_{capacity,used,provisioned}_bytes per service class, read from the engine on every scrape. */
export function registerPoolGauges(registry: Registry, engine: VolumeEngine): void {
  const gauge = (name: string, help: string, value: (pool: PoolInfo) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['class'],
      registers: [registry],
      collect(this: Gauge<'class'>) {
        this.reset();
        for (const pool of engine.listPools()) this.labels(pool.class).set(value(pool));
      },
    });
  gauge('weft_pool_capacity_bytes', 'Bytes of storage in the pools of each service class.', (pool) => pool.capacityBytes);
  gauge('weft_pool_used_bytes', 'Bytes of pool storage holding data, per service class.', (pool) => pool.usedBytes);
  gauge('weft_pool_provisioned_bytes', 'Sum of the sizes of the volumes in each service class (thin: may exceed capacity).', (pool) => pool.provisionedBytes);
}

/**
 * weft_volume_checksum_errors_total: blocks whose data failed its checksum, per volume and per
 * snapshot (volume="VOL@SNAP", as in the other per-export series), since weftd started.
 */
export function registerChecksumCounter(registry: Registry, engine: VolumeEngine): void {
  new Counter({
    name: 'weft_volume_checksum_errors_total',
    help: 'Blocks read or scrubbed whose data did not match its checksum, per volume or VOL@SNAP, since weftd started.',
    labelNames: ['volume'],
    registers: [registry],
    collect(this: Counter<'volume'>) {
      this.reset();
      for (const volume of engine.listVolumes()) this.labels(volume.name).inc(volume.checksumErrors);
      for (const snapshot of engine.listSnapshots()) this.labels(`${snapshot.volume}@${snapshot.name}`).inc(snapshot.checksumErrors);
    },
  });
}
