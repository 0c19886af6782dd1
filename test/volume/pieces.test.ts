// A write's data in pieces (as it came off the socket): slicing and copying them, checksumming
// 4 KiB blocks that span pieces, and writing them to a pool whose members split the run.

import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { randomBytes } from 'crypto';
import pino from 'pino';
import { copyPieces, slicePieces, totalBytes } from '../../fabric/pieces';
import { crc32cBlocks, crc32cPieces } from '../../fabric/store/checksum';
import { Pool } from '../../fabric/store/pool';
import { DATA_OFFSET_BYTES } from '../../fabric/store/pool-member';
import { emptyCatalog } from '../../fabric/volume/catalog';
import type { PoolSpec } from '../../fabric/volume/local-engine';
import { MembersMade, openPools } from '../../fabric/volume/pool-opening';

const B = 4096;

/** data cut at the given offsets (sorted, may repeat: empty pieces) into views of it. */
function cut(data: Buffer, at: number[]): Buffer[] {
  const bounds = [0, ...at, data.length];
  return bounds.slice(1).map((end, i) => data.subarray(bounds[i], end));
}

function blockCrcs(data: Buffer): Uint32Array {
  const out = new Uint32Array(data.length / B);
  crc32cBlocks(data, B, out);
  return out;
}

function pieceCrcs(pieces: Buffer[], blocks: number): Uint32Array {
  const out = new Uint32Array(blocks);
  crc32cPieces(pieces, B, out);
  return out;
}

describe('slicePieces and copyPieces', () => {
  const data = randomBytes(10_000);
  const pieces = cut(data, [3000, 3000, 7000]); // one piece is empty

  test.each([
    [0, 10_000],
    [0, 3000],
    [3000, 7000],
    [2999, 3001],
    [100, 200],
    [6999, 10_000],
    [5000, 5000],
  ])('bytes [%i, %i) are the same bytes as in the concatenation', (from, to) => {
    const slice = slicePieces(pieces, from, to);
    expect(totalBytes(slice)).toBe(to - from);
    expect(Buffer.concat(slice).equals(data.subarray(from, to))).toBe(true);
    expect(slice.every((piece) => piece.length > 0)).toBe(true);
  });

  test('slices are views of the pieces, not copies', () => {
    const [view] = slicePieces(pieces, 10, 20);
    expect(view.buffer).toBe(data.buffer);
    expect(view.byteOffset).toBe(data.byteOffset + 10);
  });

  test('copyPieces lays the concatenation at an offset of the target', () => {
    const target = Buffer.alloc(10_100, 0xee);
    copyPieces(pieces, target, 50);
    expect(target.subarray(50, 10_050).equals(data)).toBe(true);
    expect(target.subarray(0, 50).every((b) => b === 0xee) && target.subarray(10_050).every((b) => b === 0xee)).toBe(true);
  });
});

describe('crc32cPieces', () => {
  const data = randomBytes(8 * B);
  const expected = blockCrcs(data);

  test.each([
    ['one piece', [] as number[]],
    ['pieces on block boundaries', [B, 5 * B]],
    ['a block split across two pieces', [B + 100]],
    ['a block spanning three pieces', [2 * B + 10, 2 * B + 20]],
    ['pieces that are not multiples of 4 KiB (socket chunks after a 28-byte header)', [65_508 % (8 * B), 20_000, 28_000]],
    ['empty pieces and 1-byte pieces', [0, 1, 1, 2, B - 1, B, B + 1]],
  ])('%s: the checksums of the concatenation', (_name, at) => {
    const cuts = [...at].sort((a, b) => a - b);
    expect(pieceCrcs(cut(data, cuts), 8)).toEqual(expected);
  });

  test('random cuts', () => {
    for (let round = 0; round < 200; round++) {
      const cuts = Array.from({ length: round % 12 }, () => Math.floor(Math.random() * data.length)).sort((a, b) => a - b);
      expect(pieceCrcs(cut(data, cuts), 8)).toEqual(expected);
    }
  });

  // (The native module's TypeError is not jest's TypeError: match the message.)
  test('refuses pieces that do not add up to whole blocks, or too small an output', () => {
    expect(() => pieceCrcs(cut(data.subarray(1), [B]), 8)).toThrow(/bad arguments/);
    expect(() => pieceCrcs(cut(data, [B + 1]), 7)).toThrow(/bad arguments/);
    expect(() => crc32cPieces([data, 'x' as unknown as Buffer], B, new Uint32Array(9))).toThrow(/bad arguments/);
  });
});

/** A new pool of the given members, as weftd opens it on a new data dir. */
function newPool(specs: PoolSpec[]): Pool {
  return openPools(specs, emptyCatalog(), new MembersMade(path.join(path.dirname(specs[0].path), 'members-made')), pino({ level: 'silent' })).pools.get('default')!;
}

describe('Pool.write of pieces', () => {
  let dir: string;
  let pool: Pool | undefined;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weft-pieces-'));
  });

  afterEach(() => {
    pool?.close();
    pool = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test.each([
    ['64 KiB (written on the event loop)', 16],
    ['1 MiB (written in the thread pool)', 256],
  ])('%s in more pieces than one pwritev takes (IOV_MAX 1024)', async (_name, blocks) => {
    fs.mkdirSync(path.join(dir, 'a'));
    pool = newPool([{ class: 'default', path: path.join(dir, 'a'), sizeBytes: 4 * 1024 * 1024 }]);
    const data = randomBytes(blocks * B);
    const cuts = Array.from({ length: 3000 }, (_, i) => Math.floor(((i + 1) * data.length) / 3001));
    await pool.write(5, cut(data, cuts));
    const back = Buffer.alloc(data.length);
    await pool.read(5, back);
    expect(back.equals(data)).toBe(true);
  });

  test('a run across two members is split at the member boundary, also inside a piece', async () => {
    const specs = ['a', 'b'].map((name) => {
      fs.mkdirSync(path.join(dir, name));
      return { class: 'default', path: path.join(dir, name), sizeBytes: 2 * 1024 * 1024 };
    });
    pool = newPool(specs);
    const firstMemberBlocks = pool.memberList()[0].blocks;
    const start = firstMemberBlocks - 3; // 3 blocks in member a, 5 in member b
    const data = randomBytes(8 * B);
    await pool.write(start, cut(data, [100, 3 * B - 7, 3 * B + 7, 6 * B]));
    const back = Buffer.alloc(8 * B);
    await pool.read(start, back);
    expect(back.equals(data)).toBe(true);
    // And on disk: the end of member a's file, the start of member b's.
    const onDisk = (member: number, block: number, blocks: number) => {
      const out = Buffer.alloc(blocks * B);
      const fd = fs.openSync(pool!.memberList()[member].path, 'r');
      fs.readSync(fd, out, 0, out.length, DATA_OFFSET_BYTES + block * B);
      fs.closeSync(fd);
      return out;
    };
    expect(onDisk(0, start, 3).equals(data.subarray(0, 3 * B))).toBe(true);
    expect(onDisk(1, 0, 5).equals(data.subarray(3 * B))).toBe(true);
  });
});
