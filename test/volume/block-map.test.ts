// A block map's snapshot (what a checkpoint encodes while writes go on): it keeps the entries of its
// moment whatever either side changes later, chunk created, changed or emptied.

import { BlockMap, CHUNK_ENTRIES, FIRST_PHYSICAL, ZERO } from '../../fabric/volume/block-map';

function entries(map: BlockMap): [number, number, number][] {
  const out: [number, number, number][] = [];
  map.forEach((block, value, crc) => out.push([block, value, crc]));
  return out.sort((a, b) => a[0] - b[0]);
}

test('a snapshot keeps its entries while the map changes, and the map is not changed by the snapshot', () => {
  const map = new BlockMap();
  map.set(1, FIRST_PHYSICAL + 10, 0xaa);
  map.set(CHUNK_ENTRIES + 5, ZERO, 0);
  map.set(2 ** 32 - 1, FIRST_PHYSICAL + 11, 0xbb);
  const before = entries(map);
  const snapshot = map.snapshot();

  map.set(1, FIRST_PHYSICAL + 20, 0xcc); // changes a shared chunk
  map.set(CHUNK_ENTRIES + 5, 0, 0); // empties one (the map drops it)
  map.set(3 * CHUNK_ENTRIES, FIRST_PHYSICAL + 21, 0xdd); // a new chunk
  expect(entries(snapshot)).toEqual(before);
  expect(snapshot.physicalBlocks).toBe(2);
  expect(snapshot.size).toBe(3);

  const after = entries(map);
  snapshot.set(2 ** 32 - 1, 0, 0);
  expect(entries(map)).toEqual(after);
  expect(map.physicalBlocks).toBe(3);
  expect(map.value(1)).toBe(FIRST_PHYSICAL + 20);
});

test('a second snapshot sees the first one\'s later changes only', () => {
  const map = new BlockMap();
  map.set(0, FIRST_PHYSICAL, 1);
  const first = map.snapshot();
  map.set(0, FIRST_PHYSICAL + 1, 2);
  const second = map.snapshot();
  map.set(0, FIRST_PHYSICAL + 2, 3);
  expect([first.value(0), second.value(0), map.value(0)]).toEqual([FIRST_PHYSICAL, FIRST_PHYSICAL + 1, FIRST_PHYSICAL + 2]);
});
