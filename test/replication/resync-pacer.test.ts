// How a resync rests between its steps while clients do I/O (resync-pacer.ts): in proportion to the
// step, never after a step with no client request, and never longer than MAX_REST_MS, however long
// the step waited. On a clock the test moves, so that it asserts the rests asked for, not timings.

import { MAX_REST_MS, ResyncPacer } from '../../fabric/replication/resync-pacer';

/** A pacer on a test clock: each step's work takes the time given; the rests it asks for are recorded. */
function pacerOnTestClock(busyShare: number): { pacer: ResyncPacer; rests: number[]; step(workMs: number, clientsBusy: boolean): Promise<void> } {
  let nowMs = 0;
  const rests: number[] = [];
  const pacer = new ResyncPacer(busyShare, { now: () => nowMs, rest: async (ms) => void rests.push(ms) });
  const step = (workMs: number, clientsBusy: boolean) =>
    pacer.step(async () => {
      if (clientsBusy) pacer.clientRequest();
      nowMs += workMs;
    });
  return { pacer, rests, step };
}

test('rests (1 / busyShare - 1) times the step while clients are busy, and not at all when they are idle', async () => {
  const { rests, step } = pacerOnTestClock(0.25);
  await step(100, true);
  await step(100, false);
  await step(40, true);
  expect(rests).toEqual([300, 120]);
});

test('a step that waited long rests at most MAX_REST_MS, not minutes', async () => {
  const { rests, step } = pacerOnTestClock(0.01); // would rest 99 times the step: 29.7 s after 300 ms
  await step(300, true);
  expect(rests).toEqual([MAX_REST_MS]);
});

test('never rests with a busy share of 1', async () => {
  const { rests, step } = pacerOnTestClock(1);
  await step(1000, true);
  expect(rests).toEqual([]);
});
