// base:allocation descriptors from device extents: flags, merging, clipping to the request,
// REQ_ONE, and a truthful fallback when a device reports nothing usable.

import { allocationDescriptors } from '../../fabric/nbd/block-status';

const data = (lengthBytes: number) => ({ lengthBytes, hole: false, zero: false });
const hole = (lengthBytes: number) => ({ lengthBytes, hole: true, zero: true });
const zero = (lengthBytes: number) => ({ lengthBytes, hole: false, zero: true });

describe('allocationDescriptors', () => {
  test.each([
    ['one data extent', [data(4096)], 4096, false, [4096, 0]],
    ['hole and zero flags', [data(512), hole(512), zero(512)], 1536, false, [512, 0, 512, 3, 512, 2]],
    ['runs with the same state are merged', [data(512), data(512), hole(1024)], 2048, false, [1024, 0, 1024, 3]],
    ['the last extent is clipped to the request', [data(512), hole(8192)], 1024, false, [512, 0, 512, 3]],
    ['extents past the request are dropped', [data(1024), hole(1024)], 1024, false, [1024, 0]],
    ['REQ_ONE keeps only the first run', [data(512), data(512), hole(512)], 1536, true, [1024, 0]],
    ['REQ_ONE clips to the request', [hole(8192)], 4096, true, [4096, 3]],
    ['a zero-length extent ends the list', [data(512), data(0), hole(512)], 1024, false, [512, 0]],
    ['nothing usable: one unknown run of the whole request', [], 4096, false, [4096, 0]],
  ])('%s', (_name, extents, requested, reqOne, expected) => {
    expect(allocationDescriptors(extents, requested, reqOne)).toEqual(expected);
  });

  test('a long list is cut short but always starts at the request', () => {
    const extents = Array.from({ length: 40000 }, (_, i) => (i % 2 ? hole(512) : data(512)));
    const out = allocationDescriptors(extents, 40000 * 512, false);
    expect(out.length / 2).toBe(16384);
    expect(out.slice(0, 4)).toEqual([512, 0, 512, 3]);
  });
});
