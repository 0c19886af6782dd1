// The class a request without one goes to, as the engine and CSI's capacity answers predict it.

import { defaultClass } from '../../fabric/volume/default-class';

test.each<[string[], string | undefined]>([
  [['ssd', 'default'], 'default'],
  [['ssd'], 'ssd'],
  [['ssd', 'ssd', 'ssd'], 'ssd'], // one pool per node, all of one class (GetCapacity said 0 for it)
  [['hdd', 'ssd'], undefined],
  [[], undefined],
])('%j: %s', (classes, chosen) => {
  expect(defaultClass(classes)).toBe(chosen);
});
