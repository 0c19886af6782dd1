// The dirty map on its own (fabric/replication/dirty-map.ts): what a replica lacks, as runs of
// blocks, across the chunk boundaries of its sparse bitmap (a chunk covers 128 MiB of volume).

import { DirtyMap } from '../../fabric/replication/dirty-map';

const KiB = 1024;
const MiB = 1024 * KiB;
const CHUNK_BYTES = 128 * MiB;

const runsOf = (map: DirtyMap, maxBytes?: number) => [...map.runs(maxBytes)].map((r) => [r.offsetBytes, r.lengthBytes]);

test('marks every block a byte range touches, once, across a chunk boundary', () => {
  const map = new DirtyMap();
  map.mark(CHUNK_BYTES - 6 * KiB, 8 * KiB); // blocks on both sides of the boundary
  map.mark(CHUNK_BYTES - 4 * KiB, 4 * KiB); // already dirty: not counted twice
  expect(map.blocks).toBe(3);
  expect(runsOf(map)).toEqual([[CHUNK_BYTES - 8 * KiB, 12 * KiB]]);
});

test('clears what it is told, keeps the rest, and clearing a clean range changes nothing', () => {
  const map = new DirtyMap();
  map.mark(0, 64 * KiB);
  map.clear(16 * KiB, 16 * KiB);
  map.clear(10 * CHUNK_BYTES, MiB);
  expect(map.bytes).toBe(48 * KiB);
  expect(runsOf(map)).toEqual([
    [0, 16 * KiB],
    [32 * KiB, 32 * KiB],
  ]);
});

test('runs come in volume order, cut at maxBytes; merge adds another map', () => {
  const map = new DirtyMap();
  map.mark(3 * CHUNK_BYTES, 12 * KiB);
  const other = new DirtyMap();
  other.mark(0, 8 * KiB);
  map.merge(other);
  expect(runsOf(map, 8 * KiB)).toEqual([
    [0, 8 * KiB],
    [3 * CHUNK_BYTES, 8 * KiB],
    [3 * CHUNK_BYTES + 8 * KiB, 4 * KiB],
  ]);
});

test('clearFrom clears every block from an offset on, in every chunk, and keeps those before it', () => {
  const map = new DirtyMap();
  map.mark(0, 8 * 1024 * 1024); // two whole 4 MiB extents, several chunks
  map.mark(1024 * 1024 * 1024, 4096); // far past
  map.clearFrom(6 * 1024 * 1024 + 8192);
  expect([...map.runs()].map((r) => [r.offsetBytes, r.lengthBytes])).toEqual([[0, 6 * 1024 * 1024 + 8192]]);
  map.clearFrom(0);
  expect(map.blocks).toBe(0);
});
