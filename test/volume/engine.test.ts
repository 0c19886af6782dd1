// The storage engine on real files: volumes, snapshots, clones, space accounting, checksums,
// restart. Data-path behaviour through real NBD clients is tested in test/e2e.

import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { randomBytes } from 'crypto';
import { spawn } from 'child_process';
import pino from 'pino';
import { LocalEngine } from '../../fabric/volume/local-engine';
import type { LocalReplica } from '../../fabric/volume/local-replica';
import { Metadata } from '../../fabric/volume/metadata';
import type { VolumeEngine } from '../../fabric/volume/types';
import { DATA_OFFSET_BYTES } from '../../fabric/store/pool-member';
import { openExport } from '../helpers/open-devices';
import { FailingPoolReads } from '../helpers/failing-reads';
import { FaultyFileOps, isPoolFile } from '../helpers/faulty-fs';
import { Prng } from '../helpers/prng';

const MiB = 1024 * 1024;
const logger = pino({ level: 'silent' });
let dir: string;
let engine: VolumeEngine | undefined;

async function openEngine(poolSize = 64 * MiB): Promise<VolumeEngine> {
  engine = await LocalEngine.open({
    dataDir: path.join(dir, 'data'),
    pools: [{ class: 'default', path: dir, sizeBytes: poolSize }],
    logger,
  });
  return engine;
}

async function reopen(): Promise<VolumeEngine> {
  await engine!.close();
  return openEngine();
}

async function writeFill(e: VolumeEngine, exportName: string, offset: number, length: number, byte: number): Promise<void> {
  const device = openExport(e, exportName);
  try {
    await device.write(offset, Buffer.alloc(length, byte), false);
    await device.flush();
  } finally {
    device.close();
  }
}

async function readAll(e: VolumeEngine, exportName: string, offset: number, length: number): Promise<Buffer> {
  const device = openExport(e, exportName);
  try {
    return await device.read(offset, length);
  } finally {
    device.close();
  }
}

function usedBytes(e: VolumeEngine): number {
  return e.listPools()[0].usedBytes;
}

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weft-engine-'));
});

afterEach(async () => {
  await engine?.close().catch(() => undefined);
  engine = undefined;
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('volumes', () => {
  test('create, list, show, resize and delete; space returns to the pool', async () => {
    const e = await openEngine();
    const created = await e.createVolume({ name: 'v1', sizeBytes: 10 * MiB + 1 });
    expect(created.sizeBytes).toBe(10 * MiB + 4096); // rounded up to whole blocks
    expect(e.listVolumes().map((v) => v.name)).toEqual(['v1']);
    await writeFill(e, 'v1', 0, 2 * MiB, 0x11);
    expect(e.getVolume('v1').allocatedBytes).toBe(2 * MiB);
    expect(usedBytes(e)).toBe(2 * MiB);
    const grown = await e.resizeVolume('v1', 20 * MiB);
    expect(grown.sizeBytes).toBe(20 * MiB);
    await e.deleteVolume('v1');
    expect(e.listVolumes()).toEqual([]);
    expect(usedBytes(e)).toBe(0);
  });

  test('bad requests get a clear error of the right kind and change nothing', async () => {
    const e = await openEngine();
    await e.createVolume({ name: 'v1', sizeBytes: MiB });
    await expect(e.createVolume({ name: 'v1', sizeBytes: MiB })).rejects.toMatchObject({ kind: 'ALREADY_EXISTS' });
    await expect(e.createVolume({ name: 'big', sizeBytes: 1024 * MiB })).rejects.toMatchObject({ kind: 'RESOURCE_EXHAUSTED' });
    await expect(e.createVolume({ name: 'bad@name', sizeBytes: MiB })).rejects.toMatchObject({ kind: 'INVALID_ARGUMENT' });
    await expect(e.createVolume({ name: 'zero', sizeBytes: 0 })).rejects.toMatchObject({ kind: 'INVALID_ARGUMENT' });
    // 16 TiB itself is past the limit: the message gives the limit in bytes, not as "16 TiB".
    await expect(e.createVolume({ name: 'huge', sizeBytes: 16 * 1024 ** 4 })).rejects.toMatchObject({
      kind: 'INVALID_ARGUMENT',
      message: 'size 17592186044416 is larger than a volume can be: at most 17592185978880 bytes (16 TiB less 64 KiB)',
    });
    await expect(e.createVolume({ name: 'x', sizeBytes: MiB, class: 'ssd' })).rejects.toMatchObject({ kind: 'INVALID_ARGUMENT' });
    await expect(e.resizeVolume('v1', 4096)).rejects.toMatchObject({ kind: 'INVALID_ARGUMENT' });
    await expect(e.resizeVolume('nope', MiB)).rejects.toMatchObject({ kind: 'NOT_FOUND' });
    await expect(e.createSnapshot('nope', 's')).rejects.toMatchObject({ kind: 'NOT_FOUND' });
    await expect(e.deleteSnapshot('v1', 'nope')).rejects.toMatchObject({ kind: 'NOT_FOUND' });
    expect(() => openExport(e, 'nope')).toThrow(expect.objectContaining({ kind: 'NOT_FOUND' }));
    expect(e.listVolumes().map((v) => [v.name, v.sizeBytes])).toEqual([['v1', MiB]]);
  });

  test('a connected volume is not deleted, and the refusal names who holds it', async () => {
    const e = await openEngine();
    await e.createVolume({ name: 'v1', sizeBytes: MiB });
    const device = e.openVolume('v1', { peer: '127.0.0.1:40022' });
    await expect(e.deleteVolume('v1')).rejects.toMatchObject({ kind: 'FAILED_PRECONDITION', message: expect.stringContaining('in use by 1 connection(s): NBD client 127.0.0.1:40022 since 20') });
    device.close();
    await e.deleteVolume('v1');
    expect(e.listVolumes()).toEqual([]);
  });

  test('a volume being verified is not deleted under the verify', async () => {
    const e = await openEngine();
    await e.createVolume({ name: 'v1', sizeBytes: 32 * MiB });
    await writeFill(e, 'v1', 0, 32 * MiB, 0x11);
    const verifying = e.verifyVolume('v1');
    await expect(e.deleteVolume('v1')).rejects.toMatchObject({ kind: 'FAILED_PRECONDITION', message: expect.stringMatching(/verify/) });
    expect((await verifying).badBlockOffsets).toEqual([]);
    await e.deleteVolume('v1');
  });

  test('snapshots outlive their volume: readable, clonable, and their space is freed when they go', async () => {
    const e = await openEngine();
    await e.createVolume({ name: 'v1', sizeBytes: MiB });
    await writeFill(e, 'v1', 0, MiB, 0xaa);
    await e.createSnapshot('v1', 's1');
    await writeFill(e, 'v1', 0, MiB / 2, 0xbb); // only the head holds these
    await e.deleteVolume('v1');
    expect(usedBytes(e)).toBe(MiB); // the head's half is freed, the snapshot's MiB stays
    expect(e.listSnapshots('v1').map((s) => s.name)).toEqual(['s1']);
    expect((await readAll(e, 'v1@s1', 0, MiB)).every((b) => b === 0xaa)).toBe(true);
    await expect(e.createVolume({ name: 'v1', sizeBytes: MiB })).rejects.toMatchObject({ kind: 'ALREADY_EXISTS', message: expect.stringMatching(/s1/) });

    await e.cloneVolume({ name: 'c1', volume: 'v1', snapshot: 's1' });
    openExport(e, 'c1').close();
    await reopen();
    await engine!.deleteSnapshot('v1', 's1'); // the clone still reads through it
    expect((await readAll(engine!, 'c1', 0, MiB)).every((b) => b === 0xaa)).toBe(true);
    await engine!.deleteVolume('c1');
    expect(usedBytes(engine!)).toBe(0);
    expect(engine!.listSnapshots()).toEqual([]);
    await engine!.createVolume({ name: 'v1', sizeBytes: MiB }); // the name is free again
  });

  test('writes past the end are refused', async () => {
    const e = await openEngine();
    await e.createVolume({ name: 'v1', sizeBytes: MiB });
    const device = openExport(e, 'v1');
    await expect(device.write(MiB - 1, Buffer.alloc(2), false)).rejects.toMatchObject({ errno: 'ENOSPC' });
    await expect(device.read(MiB, 1)).rejects.toMatchObject({ errno: 'EINVAL' });
    device.close();
  });

  test('unaligned writes merge with existing data', async () => {
    const e = await openEngine();
    await e.createVolume({ name: 'v1', sizeBytes: MiB });
    await writeFill(e, 'v1', 0, 16384, 0xaa);
    await writeFill(e, 'v1', 4000, 200, 0xbb);
    const data = await readAll(e, 'v1', 0, 16384);
    expect(data.subarray(0, 4000).every((b) => b === 0xaa)).toBe(true);
    expect(data.subarray(4000, 4200).every((b) => b === 0xbb)).toBe(true);
    expect(data.subarray(4200).every((b) => b === 0xaa)).toBe(true);
  });
});

describe('snapshots and clones', () => {
  test('a snapshot keeps the data of its moment; later writes do not reach it', async () => {
    const e = await openEngine();
    await e.createVolume({ name: 'v1', sizeBytes: 4 * MiB });
    await writeFill(e, 'v1', 0, MiB, 0xaa);
    await e.createSnapshot('v1', 's1');
    await writeFill(e, 'v1', 0, 4096, 0xbb);
    const snap = await readAll(e, 'v1@s1', 0, MiB);
    expect(snap.every((b) => b === 0xaa)).toBe(true);
    expect((await readAll(e, 'v1', 0, 1))[0]).toBe(0xbb);
    const device = openExport(e, 'v1@s1');
    expect(device.readOnly).toBe(true);
    await expect(device.write(0, Buffer.alloc(1), false)).rejects.toMatchObject({ errno: 'EPERM' });
    device.close();
  });

  test('a clone is independent of its snapshot and of the source volume', async () => {
    const e = await openEngine();
    await e.createVolume({ name: 'v1', sizeBytes: 4 * MiB });
    await writeFill(e, 'v1', 0, MiB, 0xaa);
    await e.createSnapshot('v1', 's1');
    const clone = await e.cloneVolume({ name: 'c1', volume: 'v1', snapshot: 's1', sizeBytes: 8 * MiB });
    expect(clone).toMatchObject({ sizeBytes: 8 * MiB, sourceSnapshot: 'v1@s1', allocatedBytes: 0 });
    await writeFill(e, 'c1', 0, 4096, 0xcc);
    await writeFill(e, 'v1', 8192, 4096, 0xdd);
    expect((await readAll(e, 'c1', 0, 1))[0]).toBe(0xcc);
    expect((await readAll(e, 'c1', 8192, 1))[0]).toBe(0xaa);
    expect((await readAll(e, 'v1', 0, 1))[0]).toBe(0xaa);
    expect((await readAll(e, 'v1@s1', 8192, 1))[0]).toBe(0xaa);
    // The clone outlives the snapshot: deleting it keeps the data the clone reads through it.
    await e.deleteSnapshot('v1', 's1');
    expect((await readAll(e, 'c1', 8192, 1))[0]).toBe(0xaa);
    expect((await readAll(e, 'c1', 4096, 1))[0]).toBe(0xaa);
  });

  test('deleting a snapshot frees only what nothing else references', async () => {
    const e = await openEngine();
    await e.createVolume({ name: 'v1', sizeBytes: 4 * MiB });
    await writeFill(e, 'v1', 0, MiB, 0xaa);
    await e.createSnapshot('v1', 's1');
    await writeFill(e, 'v1', 0, 256 * 1024, 0xbb); // overwrite a quarter
    expect(usedBytes(e)).toBe(MiB + 256 * 1024);
    expect(e.listSnapshots('v1')[0].exclusiveBytes).toBe(MiB);
    await e.deleteSnapshot('v1', 's1');
    expect(usedBytes(e)).toBe(MiB); // the overwritten quarter is freed, the rest still backs v1
    const data = await readAll(e, 'v1', 0, MiB);
    expect(data.subarray(0, 256 * 1024).every((b) => b === 0xbb)).toBe(true);
    expect(data.subarray(256 * 1024).every((b) => b === 0xaa)).toBe(true);
  });

  // Every entry a merge moves goes into one journal record, which must fit in the journal: a
  // snapshot of a large volume, much of it rewritten since, made every write of the node fail.
  test('a snapshot whose merge would not fit in one metadata record stays as a hidden layer: deleted all the same, the volume intact and writable, its blocks freed with the volume', async () => {
    const lines: string[] = [];
    const warnings = pino({ level: 'warn' }, { write: (line: string) => void lines.push(line) });
    const e = (engine = await LocalEngine.open({ dataDir: path.join(dir, 'data'), pools: [{ class: 'default', path: dir, sizeBytes: 64 * MiB }], logger: warnings, maxMergeEntries: 100 }));
    await e.createVolume({ name: 'v1', sizeBytes: 4 * MiB });
    await writeFill(e, 'v1', 0, MiB, 0xaa);
    await e.createSnapshot('v1', 's1');
    await writeFill(e, 'v1', 0, 512 * 1024, 0xbb); // 128 blocks rewritten: more than 100 to move
    await e.deleteSnapshot('v1', 's1');
    expect(e.listSnapshots('v1')).toEqual([]);
    expect(lines.join('')).toMatch(/the deleted snapshot stays as a hidden layer/);
    expect(usedBytes(e)).toBe(MiB + 512 * 1024); // the rewritten half is not freed yet
    await writeFill(e, 'v1', MiB, 4096, 0xcc);

    const reopened = await reopen();
    const data = await readAll(reopened, 'v1', 0, MiB + 4096);
    expect(data.subarray(0, 512 * 1024).every((b) => b === 0xbb)).toBe(true);
    expect(data.subarray(512 * 1024, MiB).every((b) => b === 0xaa)).toBe(true);
    expect(data.subarray(MiB).every((b) => b === 0xcc)).toBe(true);
    await reopened.deleteVolume('v1');
    expect(usedBytes(reopened)).toBe(0);
  });

  test('revert returns a volume to a snapshot', async () => {
    const e = await openEngine();
    await e.createVolume({ name: 'v1', sizeBytes: 4 * MiB });
    await writeFill(e, 'v1', 0, MiB, 0xaa);
    await e.createSnapshot('v1', 's1');
    await writeFill(e, 'v1', 0, 2 * MiB, 0xbb);
    await e.resizeVolume('v1', 8 * MiB);
    const reverted = await e.revertVolume('v1', 's1');
    expect(reverted.sizeBytes).toBe(4 * MiB);
    const data = await readAll(e, 'v1', 0, 2 * MiB);
    expect(data.subarray(0, MiB).every((b) => b === 0xaa)).toBe(true);
    expect(data.subarray(MiB).every((b) => b === 0)).toBe(true);
    expect(usedBytes(e)).toBe(MiB);
  });
});

describe('trim, zeroes and allocation status', () => {
  test('trim frees space and reads back zeroes; block status shows the hole', async () => {
    const e = await openEngine();
    await e.createVolume({ name: 'v1', sizeBytes: 4 * MiB });
    await writeFill(e, 'v1', 0, 2 * MiB, 0xaa);
    const device = openExport(e, 'v1');
    await device.trim(0, MiB, false);
    await device.writeZeroes(MiB, 4096, { fua: true, noHole: true });
    expect((await device.read(0, MiB)).every((b) => b === 0)).toBe(true);
    expect(await device.blockStatus(0, 4 * MiB)).toEqual([
      { lengthBytes: MiB, hole: true, zero: true },
      { lengthBytes: MiB, hole: false, zero: false },
      { lengthBytes: 2 * MiB, hole: true, zero: true },
    ]);
    device.close();
    expect(usedBytes(e)).toBe(MiB);
  });

  test('a hole between two physically adjacent blocks reads as zeroes, and the block after it as written', async () => {
    // Blocks 0 and 2 are written one after the other, so the allocator puts them side by side on
    // disk; block 1 stays a hole. One read across all three must not treat them as one disk run.
    const e = await openEngine();
    await e.createVolume({ name: 'v1', sizeBytes: MiB });
    await writeFill(e, 'v1', 0, 4096, 0xaa);
    await writeFill(e, 'v1', 2 * 4096, 4096, 0xbb);
    const data = await readAll(e, 'v1', 0, 3 * 4096);
    expect(data.subarray(0, 4096).every((b) => b === 0xaa)).toBe(true);
    expect(data.subarray(4096, 2 * 4096).every((b) => b === 0)).toBe(true);
    expect(data.subarray(2 * 4096).every((b) => b === 0xbb)).toBe(true);
  });

  test('trim in a clone hides the snapshot data without touching it', async () => {
    const e = await openEngine();
    await e.createVolume({ name: 'v1', sizeBytes: MiB });
    await writeFill(e, 'v1', 0, MiB, 0xaa);
    await e.createSnapshot('v1', 's1');
    await e.cloneVolume({ name: 'c1', volume: 'v1', snapshot: 's1' });
    const device = openExport(e, 'c1');
    await device.trim(0, MiB, false);
    expect((await device.read(0, MiB)).every((b) => b === 0)).toBe(true);
    device.close();
    expect((await readAll(e, 'v1@s1', 0, MiB)).every((b) => b === 0xaa)).toBe(true);
  });
});

describe('writes in pieces (a payload as it came off the socket)', () => {
  const B = 4096;

  /** data cut at the given offsets into views of it. */
  function cut(data: Buffer, at: number[]): Buffer[] {
    const bounds = [0, ...at, data.length];
    return bounds.slice(1).map((end, i) => data.subarray(bounds[i], end));
  }

  async function writePieces(e: VolumeEngine, offset: number, pieces: Buffer[]): Promise<void> {
    const device = openExport(e, 'v1');
    try {
      await device.write(offset, pieces, false);
      await device.flush();
    } finally {
      device.close();
    }
  }

  /** What the volume holds, read now and again after a restart; verify finds no bad block. */
  async function expectContents(offset: number, expected: Buffer): Promise<void> {
    expect((await readAll(engine!, 'v1', offset, expected.length)).equals(expected)).toBe(true);
    const e = await reopen();
    expect((await readAll(e, 'v1', offset, expected.length)).equals(expected)).toBe(true);
    expect((await e.verifyVolume('v1')).badBlockOffsets).toEqual([]);
  }

  test.each([
    ['one piece', [] as number[]],
    ['a block split across two pieces', [B + 100]],
    ['pieces that are not multiples of 4 KiB', [28, 65_536 + 28, 2 * 65_536 + 28]],
    ['a block spanning three pieces, and 1-byte pieces', [3 * B + 1, 3 * B + 2, 3 * B + 3, 4 * B - 1]],
  ])('an aligned write: %s', async (_name, at) => {
    const e = await openEngine();
    await e.createVolume({ name: 'v1', sizeBytes: MiB });
    const data = randomBytes(48 * B);
    await writePieces(e, 8 * B, cut(data, at));
    await expectContents(8 * B, data);
  });

  test('unaligned writes in pieces merge with existing data (read-modify-write of the end blocks)', async () => {
    const e = await openEngine();
    await e.createVolume({ name: 'v1', sizeBytes: MiB });
    const before = randomBytes(8 * B);
    await writePieces(e, 0, [before]);
    const expected = Buffer.from(before);
    // Starts inside block 1 and ends inside block 5, with piece boundaries inside both end blocks.
    const data = randomBytes(4 * B + 1000);
    data.copy(expected, B + 500);
    await writePieces(e, B + 500, cut(data, [10, B, 4 * B + 900]));
    // Inside one block, in two pieces.
    const small = randomBytes(300);
    small.copy(expected, 6 * B + 100);
    await writePieces(e, 6 * B + 100, cut(small, [150]));
    await expectContents(0, expected);
  });

  test('a write over blocks that are physically apart is cut into runs across pieces', async () => {
    const e = await openEngine();
    await e.createVolume({ name: 'v1', sizeBytes: MiB });
    // Blocks 1 and 3 get physical blocks first; a later write of 0..5 then has runs 0, 1, 2, 3, 4..5.
    await writeFill(e, 'v1', 3 * B, B, 0x33);
    await writeFill(e, 'v1', B, B, 0x11);
    const data = randomBytes(6 * B);
    await writePieces(e, 0, cut(data, [B - 1, B + 1, 3 * B + 2000, 5 * B]));
    await expectContents(0, data);
  });
});

describe('checksums', () => {
  test('bytes altered on disk read back as an I/O error, are counted, and verify lists them', async () => {
    const e = await openEngine();
    await e.createVolume({ name: 'v1', sizeBytes: MiB });
    const device = openExport(e, 'v1');
    const block = Buffer.alloc(4096, 0x5a);
    block.write('weft-corruption-target');
    await device.write(8192, block, true);
    device.close();
    await e.close();
    engine = undefined;
    const poolFile = path.join(dir, 'weft-pool-default.img');
    const image = fs.readFileSync(poolFile);
    const at = image.indexOf('weft-corruption-target', DATA_OFFSET_BYTES);
    expect(at).toBeGreaterThan(0);
    const fd = fs.openSync(poolFile, 'r+');
    fs.writeSync(fd, Buffer.from('X'), 0, 1, at + 100);
    fs.closeSync(fd);

    const e2 = await openEngine();
    const again = openExport(e2, 'v1');
    await expect(again.read(8192, 4096)).rejects.toMatchObject({ errno: 'EIO' });
    await expect(again.read(0, 4096)).resolves.toHaveLength(4096); // other blocks are fine
    again.close();
    expect(e2.getVolume('v1').checksumErrors).toBe(1);
    const report = await e2.verifyVolume('v1');
    expect(report).toEqual({ volume: 'v1', checkedBlocks: 1, badBlockOffsets: [8192] });
  });
});

describe('verify on a disk that cannot read some blocks', () => {
  let reads: FailingPoolReads | undefined;
  afterEach(() => {
    reads?.uninstall();
    reads = undefined;
  });

  test('lists each unreadable block as bad and checks the rest', async () => {
    const e = await openEngine();
    await e.createVolume({ name: 'v1', sizeBytes: MiB });
    const device = openExport(e, 'v1');
    for (const block of [0, 1, 2, 3]) await device.write(block * 4096, Buffer.alloc(4096, `weft-block-${block}-`), true);
    device.close();
    const image = fs.readFileSync(path.join(dir, 'weft-pool-default.img'));
    const bad = [1, 3].map((block) => image.indexOf(`weft-block-${block}-`, DATA_OFFSET_BYTES));
    expect(bad.every((at) => at > 0 && (at - DATA_OFFSET_BYTES) % 4096 === 0)).toBe(true);
    reads = new FailingPoolReads().install();
    reads.badRanges = bad.map((at) => [at, at + 4096]);
    expect(await e.verifyVolume('v1')).toEqual({ volume: 'v1', checkedBlocks: 4, badBlockOffsets: [4096, 3 * 4096] });
    expect(reads.failed).toBe(2);
    expect(e.getVolume('v1').checksumErrors).toBe(0); // unreadable, not damaged
  });
});

describe('a write in place (the pool full) that the disk fails part way', () => {
  let faults: FaultyFileOps | undefined;
  afterEach(() => {
    faults?.uninstall();
    faults = undefined;
  });

  test('each block reads back what the disk holds, old or new, with no checksum error, also after a restart', async () => {
    const e = await openEngine(2 * MiB);
    const capacity = e.listPools()[0].capacityBytes;
    await e.createVolume({ name: 'v', sizeBytes: capacity });
    await writeFill(e, 'v', 0, capacity, 0xaa); // every block of the pool in use: a rewrite goes in place
    faults = new FaultyFileOps(new Prng(1)).install();
    faults.affects = isPoolFile;
    faults.tearNext = 1; // its first block lands, then EIO
    const device = openExport(e, 'v');
    await expect(device.write(0, Buffer.alloc(2 * 4096, 0xbb), false)).rejects.toMatchObject({ errno: 'EIO' });
    expect(faults.injected).toBe(1); // the write did go in place, and was torn
    const expected = Buffer.concat([Buffer.alloc(4096, 0xbb), Buffer.alloc(4096, 0xaa)]);
    expect((await device.read(0, 2 * 4096)).equals(expected)).toBe(true);
    await device.flush();
    device.close();
    expect(e.getVolume('v').checksumErrors).toBe(0);
    expect(await e.verifyVolume('v')).toMatchObject({ badBlockOffsets: [] });

    const again = await reopen();
    expect((await readAll(again, 'v', 0, 2 * 4096)).equals(expected)).toBe(true);
    expect(await again.verifyVolume('v')).toMatchObject({ badBlockOffsets: [] });
  });
});

describe('persistence', () => {
  test.each([
    [1000, 0],
    [0, 1],
  ])('with a sync interval of %i ms, %i journal record(s) of a write without FLUSH stay unsynced 2.5 s later', async (syncIntervalMs, unsyncedAfter) => {
    engine = await LocalEngine.open({ dataDir: path.join(dir, 'data'), pools: [{ class: 'default', path: dir, sizeBytes: 64 * MiB }], logger, syncIntervalMs });
    await engine.createVolume({ name: 'v1', sizeBytes: MiB });
    const device = openExport(engine, 'v1');
    await device.write(0, Buffer.alloc(4096, 1), false);
    device.close();
    await new Promise((resolve) => setTimeout(resolve, 2500)); // the interval, and the background task's own period
    // What recovery would find if the machine died now: journal records no SYNC covers.
    const { metadata, unsynced } = Metadata.open(path.join(dir, 'data', 'meta'));
    metadata.close();
    expect(unsynced.length).toBe(unsyncedAfter);
  });

  test('a trim without FLUSH is synced in the background too, and the space it frees returns to the pool', async () => {
    engine = await LocalEngine.open({ dataDir: path.join(dir, 'data'), pools: [{ class: 'default', path: dir, sizeBytes: 64 * MiB }], logger, syncIntervalMs: 1000 });
    await engine.createVolume({ name: 'v1', sizeBytes: MiB });
    const device = openExport(engine, 'v1');
    await device.write(0, Buffer.alloc(64 * 1024, 1), true);
    const written = usedBytes(engine);
    await device.trim(0, 64 * 1024, false);
    device.close();
    await new Promise((resolve) => setTimeout(resolve, 2500)); // the interval, and the background task's own period
    expect(usedBytes(engine)).toBe(written - 64 * 1024);
    const { metadata, unsynced } = Metadata.open(path.join(dir, 'data', 'meta'));
    metadata.close();
    expect(unsynced.length).toBe(0);
  });

  test('a flush still syncing the journal when the engine closes completes, and its write persists', async () => {
    const e = await openEngine();
    await e.createVolume({ name: 'v1', sizeBytes: MiB });
    // A slow disk: the first journal sync takes 50 ms, so close() starts while that flush is inside it.
    const metadata = (e as unknown as { metadata: { sync(): Promise<void> } }).metadata;
    const sync = metadata.sync.bind(metadata);
    let slowed = false;
    metadata.sync = async () => {
      if (!slowed) {
        slowed = true;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      return sync();
    };
    const device = openExport(e, 'v1');
    await device.write(0, Buffer.alloc(4096, 0x5a), false);
    const flushed = device.flush();
    await new Promise((resolve) => setImmediate(resolve)); // the flush is now waiting in the slow sync
    device.close();
    await e.close();
    await expect(flushed).resolves.toBeUndefined();
    await expect(device.flush()).rejects.toMatchObject({ errno: 'ESHUTDOWN' });
    const reopened = await openEngine();
    expect((await readAll(reopened, 'v1', 0, 4096)).every((b) => b === 0x5a)).toBe(true);
  });

  test('volumes, snapshots and data survive a restart; space is accounted exactly', async () => {
    let e = await openEngine();
    await e.createVolume({ name: 'v1', sizeBytes: 4 * MiB });
    await writeFill(e, 'v1', 0, MiB, 0xaa);
    await e.createSnapshot('v1', 's1');
    await writeFill(e, 'v1', 0, 4096, 0xbb);
    const used = usedBytes(e);
    e = await reopen();
    expect(e.listVolumes().map((v) => v.name)).toEqual(['v1']);
    expect(e.listSnapshots().map((s) => `${s.volume}@${s.name}`)).toEqual(['v1@s1']);
    expect(usedBytes(e)).toBe(used);
    expect((await readAll(e, 'v1', 0, 1))[0]).toBe(0xbb);
    expect((await readAll(e, 'v1@s1', 0, 1))[0]).toBe(0xaa);
  });

  test('blocks past 8 TiB in a large pool survive a restart', async () => {
    // Block numbers from 2^31 on are past the sign bit of JavaScript's 32-bit shifts; the block
    // map once listed them as negative numbers, and the checkpoint at close could not be written.
    const TiB = 1024 * 1024 * MiB;
    let e = await openEngine(8 * TiB + 64 * MiB); // a sparse file
    await e.createVolume({ name: 'big', sizeBytes: 8 * TiB + 8 * MiB });
    await writeFill(e, 'big', 8 * TiB + 4096, 4096, 0xcd);
    e = await reopen(); // the backing file keeps its size
    expect((await readAll(e, 'big', 8 * TiB + 4096, 4096)).every((b) => b === 0xcd)).toBe(true);
    expect(usedBytes(e)).toBe(4096);
  });

  test('a data dir of another format version is refused and left alone', async () => {
    const e = await openEngine();
    await e.close();
    engine = undefined;
    const formatFile = path.join(dir, 'data', 'FORMAT');
    fs.writeFileSync(formatFile, JSON.stringify({ format: 99 }));
    await expect(openEngine()).rejects.toMatchObject({ kind: 'FAILED_PRECONDITION', message: expect.stringMatching(/format 99/) });
    engine = undefined;
    expect(JSON.parse(fs.readFileSync(formatFile, 'utf8'))).toEqual({ format: 99 });
  });

  test('a data dir in use is refused with the pid that holds it, and free again once closed', async () => {
    const first = await openEngine();
    await expect(
      LocalEngine.open({ dataDir: path.join(dir, 'data'), pools: [{ class: 'default', path: dir }], logger }),
    ).rejects.toMatchObject({ kind: 'FAILED_PRECONDITION', message: expect.stringMatching(new RegExp(`in use by another weftd \\(pid ${process.pid}\\)`)) });
    await first.close();
    await openEngine();
  });

  test('a LOCK file naming a live process that holds no lock (a reused pid) does not block the data dir', async () => {
    const e = await openEngine();
    await e.close();
    engine = undefined;
    const other = spawn('sleep', ['30']);
    try {
      fs.writeFileSync(path.join(dir, 'data', 'LOCK'), `${other.pid}\n`);
      await openEngine();
    } finally {
      other.kill('SIGKILL');
    }
  });
});

describe('a request that waits at the volume gate while a control operation moves the end', () => {
  test('a write queued during a revert that shrinks the volume is refused, and nothing lands past the new end', async () => {
    const e = (await openEngine()) as LocalEngine;
    await e.createVolume({ name: 'v', sizeBytes: 8 * MiB });
    await e.createSnapshot('v', 's');
    await e.resizeVolume('v', 16 * MiB);
    const device = e.openVolume('v', { epoch: 0 }); // a replication handle: a revert goes on with it open
    // The volume's own range lock, held as an earlier request would: the revert's pause waits for the
    // write stuck behind it, and the next write waits at the closed gate.
    const replica = (e as unknown as { registry: { entry(name: string): { volume: { replica: LocalReplica } } } }).registry.entry('v').volume.replica;
    const release = replica.lock.acquire(0, 1, true) as () => void;
    const stuck = device.write(0, Buffer.alloc(4096, 1), false);
    const reverting = e.revertVolume('v', 's');
    while (!replica.quiesce.paused) await new Promise((resolve) => setImmediate(resolve));
    const queued = device.write(12 * MiB, Buffer.alloc(4096, 0xab), false);
    release();
    await stuck;
    await reverting;
    await expect(queued).rejects.toMatchObject({ errno: 'ENOSPC' });
    device.close();
    expect(e.getVolume('v')).toMatchObject({ sizeBytes: 8 * MiB, allocatedBytes: 0 });
    await e.resizeVolume('v', 16 * MiB);
    expect((await readAll(e, 'v', 12 * MiB, 4096)).every((b) => b === 0)).toBe(true);
  });
});
