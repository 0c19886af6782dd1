// Unit tests of how VerifyVolume thins the engine's per-block progress to one message per percent,
// with one at least every PROGRESS_HEARTBEAT_MS while the verify moves.

import { PROGRESS_HEARTBEAT_MS, percentSteps } from '../../fabric/api/volume-service';

describe('percentSteps', () => {
  it('passes on one step per whole percent, including the first and the last', () => {
    const sent: number[] = [];
    const onProgress = percentSteps(({ doneBlocks }) => sent.push(doneBlocks));
    for (let done = 0; done <= 10000; done++) onProgress(done, 10000);
    expect(sent).toHaveLength(101);
    expect(sent[0]).toBe(0);
    expect(sent[50]).toBe(5000);
    expect(sent[100]).toBe(10000);
  });

  it('passes on every step of a small volume and copes with zero blocks', () => {
    const sent: Array<[number, number]> = [];
    const onProgress = percentSteps(({ doneBlocks, totalBlocks }) => sent.push([doneBlocks, totalBlocks]));
    onProgress(0, 0);
    expect(sent).toEqual([[0, 0]]);
  });

  it('also passes on a step once PROGRESS_HEARTBEAT_MS went by without one, though the percent is the same', () => {
    let clock = 1_000_000;
    const sent: number[] = [];
    const onProgress = percentSteps(({ doneBlocks }) => sent.push(doneBlocks), () => clock);
    onProgress(0, 1_000_000);
    for (let done = 1; done <= 100; done++) {
      clock += PROGRESS_HEARTBEAT_MS / 4;
      onProgress(done, 1_000_000); // all within the first percent
    }
    expect(sent).toEqual([0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60, 64, 68, 72, 76, 80, 84, 88, 92, 96, 100]);
  });
});
