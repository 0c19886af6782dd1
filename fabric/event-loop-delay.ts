// How late the event loop runs its timers: a delay here delays every NBD reply and API call of the
// node. Node's monitor measures the time between ticks of a timer; its period is subtracted here.

import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';

const RESOLUTION_MS = 10;

/** Delays in seconds: quantiles of the window since the previous read, totals since the start. */
export interface EventLoopDelayReport {
  p50Seconds: number;
  p99Seconds: number;
  maxSeconds: number;
  /** Ticks measured and the sum of their delays, since the monitor started. */
  count: number;
  sumSeconds: number;
}

export class EventLoopDelay {
  private readonly histogram: IntervalHistogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  private count = 0;
  private sumSeconds = 0;

  constructor() {
    this.histogram.enable();
  }

  /** The quantiles of the ticks since the previous read (then a new window starts). */
  read(): EventLoopDelayReport {
    const delay = (nanoseconds: number) => Math.max(0, nanoseconds / 1e9 - RESOLUTION_MS / 1000);
    const { histogram } = this;
    if (histogram.count > 0) {
      this.count += histogram.count;
      this.sumSeconds += delay(histogram.mean) * histogram.count;
    }
    // An empty window reads 0 for these (its mean alone is NaN).
    const report = {
      p50Seconds: delay(histogram.percentile(50)),
      p99Seconds: delay(histogram.percentile(99)),
      maxSeconds: delay(histogram.max),
      count: this.count,
      sumSeconds: this.sumSeconds,
    };
    histogram.reset();
    return report;
  }

  stop(): void {
    this.histogram.disable();
  }
}
