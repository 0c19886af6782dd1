// Latency counted in plain numbers on hot paths (block I/O, API calls): a count, a sum and
// non-cumulative buckets that an exporter turns into a histogram when it is scraped.

/** Upper bounds in seconds: from a cached 4k read to a stalled disk. */
export const LATENCY_BUCKETS: readonly number[] = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Adds one latency to buckets (one slot per LATENCY_BUCKETS bound; beyond the last, none: only the count sees it). */
export function countLatency(buckets: number[], seconds: number): void {
  let bucket = 0;
  while (bucket < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[bucket]) bucket++;
  if (bucket < LATENCY_BUCKETS.length) buckets[bucket]++;
}

/** A count, a sum and the buckets of some latencies. */
export class LatencyCounts {
  count = 0;
  secondsSum = 0;
  /** Not cumulative: buckets[i] counts latencies in (LATENCY_BUCKETS[i-1], LATENCY_BUCKETS[i]]. */
  readonly buckets = LATENCY_BUCKETS.map(() => 0);

  record(seconds: number): void {
    this.count++;
    this.secondsSum += seconds;
    countLatency(this.buckets, seconds);
  }
}
