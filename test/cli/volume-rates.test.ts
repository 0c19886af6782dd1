// Unit tests of what `weft volume stats` computes from two samples: the latency quantile estimated
// from bucket counts (as Prometheus' histogram_quantile does), rates over the interval, and the
// parsing of --interval and the latency format.

import type { OperationCounters, VolumeCounters } from '../../fabric/api/messages';
import { CliError } from '../../fabric/cli/errors';
import { histogramQuantile, volumeRates } from '../../fabric/cli/volume-rates';
import { formatLatency } from '../../fabric/cli/output';
import { intervalArg } from '../../fabric/cli/volume-stats-command';

const BOUNDS = [0.001, 0.01, 0.1];

describe('histogramQuantile', () => {
  // counts are per bucket: (0, 1ms], (1ms, 10ms], (10ms, 100ms], (100ms, +Inf)
  it.each([
    ['all in one bucket: interpolates inside it', 0.5, [0, 10, 0, 0], 0.001 + 0.009 * 0.5],
    ['the p99 of the same', 0.99, [0, 10, 0, 0], 0.001 + 0.009 * 0.99],
    ['the first bucket starts at 0', 0.5, [4, 0, 0, 0], 0.0005],
    ['a rank at the top of a bucket is its bound', 0.5, [50, 40, 10, 0], 0.001],
    ['p99 of a spread: 9 of the 10 in the third bucket', 0.99, [50, 40, 10, 0], 0.01 + 0.09 * 0.9],
    ['empty buckets below are skipped', 0.5, [0, 0, 2, 0], 0.01 + 0.09 * 0.5],
    ['a rank above the last bound is the last bound', 0.5, [1, 0, 0, 99], 0.1],
  ])('%s', (_what, q, counts, expected) => {
    expect(histogramQuantile(q, BOUNDS, counts)).toBeCloseTo(expected, 12);
  });

  it('is null when nothing was counted', () => {
    expect(histogramQuantile(0.5, BOUNDS, [0, 0, 0, 0])).toBeNull();
    expect(histogramQuantile(0.99, BOUNDS, [])).toBeNull();
  });
});

function counters(operation: string, count: number, bytes: number, bucketCounts: number[], inFlight = 0): OperationCounters {
  return { operation, count, errors: 0, bytes, secondsSum: 0, bucketCounts, inFlight };
}

function volume(operations: OperationCounters[]): VolumeCounters {
  return { volume: 'data', operations, inFlight: operations.reduce((sum, o) => sum + o.inFlight, 0) };
}

describe('volumeRates', () => {
  it('turns the difference of two samples into per-second rates and percentiles', () => {
    const before = volume([counters('read', 100, 409600, [100, 0, 0, 0]), counters('write', 10, 40960, [0, 10, 0, 0])]);
    const after = volume([counters('read', 100, 409600, [100, 0, 0, 0]), counters('write', 410, 40960 + 400 * 4096, [0, 410, 0, 0], 2), counters('flush', 3, 0, [3, 0, 0, 0], 1)]);
    expect(volumeRates(before, after, 2, BOUNDS)).toEqual({
      volume: 'data',
      intervalSeconds: 2,
      readIops: 0,
      writeIops: 200,
      readBytesPerSecond: 0,
      writeBytesPerSecond: 200 * 4096,
      readLatencyP50Seconds: null,
      readLatencyP99Seconds: null,
      // Only the 400 writes of the interval: all in (1ms, 10ms].
      writeLatencyP50Seconds: expect.closeTo(0.001 + 0.009 * 0.5, 12),
      writeLatencyP99Seconds: expect.closeTo(0.001 + 0.009 * 0.99, 12),
      inFlight: 3,
    });
  });

  it('counts a volume new since the first sample, or whose counters went down (made again), from zero', () => {
    const after = volume([counters('write', 50, 50 * 4096, [50, 0, 0, 0])]);
    expect(volumeRates(undefined, after, 1, BOUNDS).writeIops).toBe(50);
    const before = volume([counters('write', 900, 900 * 4096, [900, 0, 0, 0])]);
    expect(volumeRates(before, after, 1, BOUNDS)).toMatchObject({ writeIops: 50, writeBytesPerSecond: 50 * 4096 });
  });
});

describe('--interval', () => {
  it.each([
    ['1', 1000],
    ['2s', 2000],
    ['500ms', 500],
    ['0.5', 500],
    ['1.5s', 1500],
  ])('%s is %d ms', (text, ms) => expect(intervalArg(text)).toBe(ms));

  it.each(['0', '50ms', 'fast', '1m', '-1', '', '3601s'])('"%s" is a usage error', (text) => {
    expect(() => intervalArg(text)).toThrow(CliError);
    expect(() => intervalArg(text)).toThrow(/--interval .* is invalid: use a duration such as 500ms, 2s or 1 \(seconds\)/);
  });
});

it('formats latencies in the unit that reads best', () => {
  expect([null, 0.000075, 0.00412, 0.5, 2.5].map(formatLatency)).toEqual(['-', '75us', '4.12ms', '500ms', '2.5s']);
});
