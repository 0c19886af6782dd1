// A metric family computed from the node's telemetry each time the registry is scraped: prom-client
// formats it like its own metrics, while the I/O path keeps counting in plain numbers.

import type { Metric, Registry } from 'prom-client';
import { LATENCY_BUCKETS } from '../../fabric/telemetry';

export type Labels = Record<string, string | number>;

/** One series of a family, as prom-client's registry formats it. */
export interface Sample {
  /** For a histogram's or summary's _bucket, _sum and _count series. */
  metricName?: string;
  labels: Labels;
  value: number;
}

export type FamilyType = 'counter' | 'gauge' | 'histogram' | 'summary';

export class ScrapedFamily {
  readonly aggregator = 'sum';

  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: FamilyType,
    private readonly samples: () => Sample[],
  ) {}

  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: Sample[] }> {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.samples() };
  }

  /** Registry.resetMetrics(): these counts belong to the node and are never reset. */
  reset(): void {}
}

/** One value per series: a counter or a gauge. */
export function simple(name: string, help: string, type: 'counter' | 'gauge', series: () => { labels: Labels; value: number }[]): ScrapedFamily {
  return new ScrapedFamily(name, help, type, series);
}

/** Plain latency counts: non-cumulative buckets over LATENCY_BUCKETS. */
export interface LatencySource {
  count: number;
  secondsSum: number;
  buckets: readonly number[];
}

/** A histogram in seconds over LATENCY_BUCKETS (50 us to 10 s) of each labelled source. */
export function latencyHistogram(name: string, help: string, series: () => { labels: Labels; latency: LatencySource }[]): ScrapedFamily {
  return new ScrapedFamily(name, help, 'histogram', () => series().flatMap(({ labels, latency }) => histogramSamples(name, labels, latency)));
}

/** Cumulative buckets, +Inf, _sum and _count. */
function histogramSamples(name: string, labels: Labels, latency: LatencySource): Sample[] {
  let cumulative = 0;
  return [
    ...LATENCY_BUCKETS.map((le, i) => ({ metricName: `${name}_bucket`, labels: { le, ...labels }, value: (cumulative += latency.buckets[i]) })),
    { metricName: `${name}_bucket`, labels: { le: '+Inf', ...labels }, value: latency.count },
    { metricName: `${name}_sum`, labels, value: latency.secondsSum },
    { metricName: `${name}_count`, labels, value: latency.count },
  ];
}

export function register(registry: Registry, families: ScrapedFamily[]): void {
  // The registry takes any object shaped like its metrics (name, help, type, get, reset); its
  // types only name prom-client's own classes.
  for (const family of families) registry.registerMetric(family as unknown as Metric);
}
