// The history checker's rule (history.ts) on hand-made histories: what it must accept and what it
// must report as lost. The chaos run itself is in chaos.test.ts.

import { BLOCK_BYTES, History, stampedBlock } from './history';

/** A history of block 7 from outcomes, in issue order: client 1, seq 1, 2, 3... */
function historyOf(outcomes: boolean[]): History {
  const history = new History();
  outcomes.forEach((acked, i) => history.settle(history.issue({ client: 1, seq: i + 1, block: 7 }), acked));
  return history;
}
const stamp = (seq: number, block = 7) => stampedBlock({ client: 1, seq, block });

test.each([
  ['its last acknowledged write', [true, true], stamp(2)],
  ['a failed write issued after the last acknowledged one', [true, false], stamp(2)],
  ['the last acknowledged write, a later failed one not landed', [true, false], stamp(1)],
  ['zeroes when nothing was acknowledged', [false], Buffer.alloc(BLOCK_BYTES)],
  ['a failed write when nothing was acknowledged', [false], stamp(1)],
])('accepted: %s', (_what, outcomes, data) => {
  expect(historyOf(outcomes).check(7, data)).toBeUndefined();
});

test.each([
  ['an acknowledged write overwritten by an older one', [true, true], stamp(1), /client 1 seq 1 block 7/],
  ['an acknowledged write lost to zeroes', [true], Buffer.alloc(BLOCK_BYTES), /zeroes/],
  ['an older failed write over a later acknowledged one', [false, true], stamp(1), /seq 1/],
  ['another block\'s stamp', [true], stamp(1, 8), /block 8/],
  ['a torn block', [true, true], Buffer.concat([stamp(1).subarray(0, 2048), stamp(2).subarray(2048)]), /not one stamp/],
])('lost: %s', (_what, outcomes, data, found) => {
  const violation = historyOf(outcomes).check(7, data);
  expect(violation?.found).toMatch(found);
  expect(violation?.history).toBe(outcomes.map((acked, i) => `c1#${i + 1}:${acked ? 'acked' : 'failed'}`).join(' '));
});

test('two writes of one block in flight at once are refused: the rule needs them ordered', () => {
  const history = new History();
  history.issue({ client: 1, seq: 1, block: 7 });
  expect(() => history.issue({ client: 1, seq: 2, block: 7 })).toThrow(/two writes in flight/);
});
