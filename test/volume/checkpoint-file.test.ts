// The checkpoint file's encoding at any size: written in segments and read back through a window,
// so that a node whose block maps pass 2 GiB encoded (about 680 GiB of mapped blocks) still starts.
// The sizes here are shrunk (segments and window of a few dozen bytes) so that every boundary is
// crossed; a file past 2 GiB is checked as a file, not as 180 million map entries.

import fs from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { writeFileAtomic } from '../../fabric/store/file-io';
import { BlockMap } from '../../fabric/volume/block-map';
import { emptyCatalog } from '../../fabric/volume/catalog';
import { checkpointPath, encodeCheckpoint, readCheckpoint, type CheckpointState } from '../../fabric/volume/checkpoint-file';
import { MetadataDamaged } from '../../fabric/volume/metadata-damaged';
import { Prng } from '../helpers/prng';
import { cleanupAll, makeTempDir } from '../helpers/weftd';

afterAll(cleanupAll);

function encoded(state: CheckpointState, segmentBytes: number): Buffer[] {
  const steps = encodeCheckpoint(state, segmentBytes);
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
  }
}

const entriesOf = (map: BlockMap) => {
  const entries: number[][] = [];
  map.forEach((block, value, crc) => entries.push([block, value, crc]));
  return entries;
};

test('a checkpoint encoded in small segments reads back whole through a small window, whatever the boundaries', () => {
  const prng = new Prng(7);
  const maps: [number, BlockMap][] = [];
  for (const id of [3, 9, 12]) {
    const map = new BlockMap();
    // Blocks far apart (other chunks), some past 2^31, values and crcs up to 2^32 - 1.
    for (let i = 0; i < 200; i++) map.set(prng.int(0, 2 ** 32 - 2), prng.int(0, 2 ** 32 - 2), prng.int(0, 2 ** 32 - 1));
    maps.push([id, map]);
  }
  maps.push([20, new BlockMap()]); // a layer with nothing mapped
  const catalog = { ...emptyCatalog(), nextLayerId: 21 };
  const state = { generation: 5, baseSeq: 2 ** 40 + 3, catalogJson: JSON.stringify(catalog), maps };
  const dir = makeTempDir('weft-checkpoint-file-');
  const pieces = encoded(state, 100);
  expect(pieces.length).toBeGreaterThan(60); // 7 KiB of entries in segments of at most 100 bytes
  expect(pieces.slice(1).every((piece) => piece.length <= 100)).toBe(true);
  writeFileAtomic(checkpointPath(dir), pieces, dir);

  // A window smaller than the catalog (it is read whole all the same) and not a multiple of an entry.
  const read = readCheckpoint(checkpointPath(dir), 50);
  expect([read.generation, read.baseSeq, read.catalog]).toEqual([5, 2 ** 40 + 3, catalog]);
  expect([...read.maps.keys()]).toEqual([3, 9, 12, 20]);
  for (const [id, map] of maps) expect({ id, entries: entriesOf(read.maps.get(id)!) }).toEqual({ id, entries: entriesOf(map) });
  // The same bytes as one piece: the segments change nothing in the file.
  expect(fs.readFileSync(checkpointPath(dir)).equals(Buffer.concat(encoded(state, 64 * 1024 * 1024)))).toBe(true);
});

test('a checkpoint file past 2 GiB is read (here: found damaged), not refused as too large for one read', () => {
  const file = path.join(makeTempDir('weft-checkpoint-file-'), 'checkpoint');
  fs.writeFileSync(file, 'WEFTCKP3');
  fs.truncateSync(file, 2 ** 31 + 4096); // sparse: zeroes after the magic, so the checksum fails
  try {
    expect(() => readCheckpoint(file)).toThrow(MetadataDamaged);
  } finally {
    fs.rmSync(file);
  }
});

test('a checkpoint whose layer counts run past its end is damage, even with a matching checksum', () => {
  const dir = makeTempDir('weft-checkpoint-file-');
  const map = new BlockMap();
  map.set(1, 2, 3);
  const pieces = encoded({ generation: 1, baseSeq: 1, catalogJson: JSON.stringify(emptyCatalog()), maps: [[1, map]] }, 1024);
  const whole = Buffer.concat(pieces);
  // The layer's entry count raised to 2, the checksum made again: well-formed but short.
  const countAt = whole.length - 4 - 12 - 4;
  whole.writeUInt32LE(2, countAt);
  whole.writeUInt32LE(crc32(whole.subarray(0, whole.length - 4)), whole.length - 4);
  fs.writeFileSync(checkpointPath(dir), whole);
  expect(() => readCheckpoint(checkpointPath(dir))).toThrow(MetadataDamaged);
});
