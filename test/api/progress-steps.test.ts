// Unit tests of how VerifyVolume thins the engine's per-block progress to one message per percent.

import { percentSteps } from '../../fabric/api/volume-service';

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
});
