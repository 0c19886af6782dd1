// A pool on its own (fabric/store/pool.ts, pool-member.ts): two members of unequal size, checked by
// reading their files with fs; syncs of dirty members only; and fail-stop once a member's file is
// deleted or replaced, or an fdatasync failed.

import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import pino from 'pino';
import { IoError } from '../../fabric/errors';
import { BLOCK_BYTES } from '../../fabric/store/block-size';
import { setFileOps, type FileOps } from '../../fabric/store/file-io';
import { Pool } from '../../fabric/store/pool';
import {
  checkInitializable,
  DATA_OFFSET_BYTES,
  initializeMember,
  locateMember,
  MAX_POOL_BLOCKS,
  readMember,
  warnIfOvercommitted,
  type OpenMember,
} from '../../fabric/store/pool-member';
import { FaultyFileOps, isPoolFile } from '../helpers/faulty-fs';
import { FileOpsLayer } from '../helpers/file-ops-layer';
import { totalBytes, type Pieces } from '../../fabric/pieces';
import { FileOpsRecorder } from '../helpers/file-ops-recorder';
import { Prng } from '../helpers/prng';
import { waitFor } from '../helpers/wait-for';

/** Data blocks of the two members: unequal, and large enough for writes past 128 KiB on each side. */
const BLOCKS = [40, 72];

let dir: string;
let pool: Pool | undefined;
let members: OpenMember[];
let faults: FaultyFileOps | undefined;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weft-pool-'));
  members = BLOCKS.map((blocks, i) => newMember(path.join(dir, `disk${i}`), blocks));
  pool = new Pool('default', members, pino({ level: 'silent' }));
});

afterEach(() => {
  faults?.uninstall();
  faults = undefined;
  pool?.close();
  pool = undefined;
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A member file created in its own directory, as weftd does for a --pool directory. */
function newMember(memberDir: string, blocks: number): OpenMember {
  fs.mkdirSync(memberDir);
  const location = locateMember(memberDir, 'default', DATA_OFFSET_BYTES + blocks * BLOCK_BYTES);
  return initializeMember(location, undefined);
}

/** count blocks, block i filled with the byte (seed + i), split into pieces that do not follow block bounds. */
function blocksData(count: number, seed: number): Buffer[] {
  const data = Buffer.alloc(count * BLOCK_BYTES);
  for (let i = 0; i < count; i++) data.fill((seed + i) & 0xff, i * BLOCK_BYTES, (i + 1) * BLOCK_BYTES);
  const cut = Math.floor(data.length / 3) + 7;
  return [data.subarray(0, cut), data.subarray(cut, 2 * cut), data.subarray(2 * cut)];
}

/** Expects equal bytes (jest's toEqual walks a large Buffer byte by byte: seconds for 280 KiB). */
function expectBytes(actual: Buffer, expected: Buffer): void {
  expect(actual.length).toBe(expected.length);
  expect(actual.equals(expected)).toBe(true);
}

/** Bytes of a member's data blocks, read from its file. */
function memberBytes(m: OpenMember, block: number, count: number): Buffer {
  const fd = fs.openSync(m.path, 'r');
  const buf = Buffer.alloc(count * BLOCK_BYTES);
  fs.readSync(fd, buf, 0, buf.length, DATA_OFFSET_BYTES + block * BLOCK_BYTES);
  fs.closeSync(fd);
  return buf;
}

describe('addressing', () => {
  test('the pool has the blocks of both members, member 0 first', () => {
    expect(pool!.totalBlocks).toBe(BLOCKS[0] + BLOCKS[1]);
    expect(pool!.memberList().map((m) => m.blocks)).toEqual(BLOCKS);
    expect(pool!.memberList().map((m) => m.path)).toEqual(members.map((m) => m.path));
  });

  // 4 blocks go through the synchronous path, 70 (280 KiB) through the asynchronous one.
  test.each([4, 70])('a write of %i blocks across the member boundary lands in both files at the right offsets', async (count) => {
    const inFirst = Math.min(count / 2, BLOCKS[0]);
    const start = BLOCKS[0] - inFirst;
    const pieces = blocksData(count, 0x21);
    const all = Buffer.concat(pieces);
    await pool!.write(start, pieces);

    expectBytes(memberBytes(members[0], start, inFirst), all.subarray(0, inFirst * BLOCK_BYTES));
    expectBytes(memberBytes(members[1], 0, count - inFirst), all.subarray(inFirst * BLOCK_BYTES));
    // Nothing around the write was touched.
    expect(memberBytes(members[0], start - 1, 1).every((b) => b === 0)).toBe(true);
    expect(memberBytes(members[1], count - inFirst, 1).every((b) => b === 0)).toBe(true);

    const back = Buffer.alloc(all.length);
    await pool!.read(start, back);
    expectBytes(back, all);
  });

  test('a write inside the second member lands at its own offset, not the pool-wide one', async () => {
    await pool!.write(BLOCKS[0] + 5, blocksData(2, 0x40));
    expectBytes(memberBytes(members[1], 5, 2), Buffer.concat(blocksData(2, 0x40)));
    expect(memberBytes(members[0], 0, BLOCKS[0]).every((b) => b === 0)).toBe(true);
  });

  test('blocks never written read as zeroes, also past the end of a sparse file', async () => {
    const back = Buffer.alloc(8 * BLOCK_BYTES, 0xff);
    await pool!.read(BLOCKS[0] + BLOCKS[1] - 8, back);
    expect(back.every((b) => b === 0)).toBe(true);
  });
});

describe('sync', () => {
  test('syncs only the members written since the last sync', async () => {
    await pool!.sync(); // members start dirty: writes of a previous process may be in the page cache
    const recorder = FileOpsRecorder.install();
    try {
      await pool!.write(BLOCKS[0] + 1, blocksData(1, 1));
      await pool!.sync();
      expect(recorder.since(0, 'fdatasync', () => true).map((e) => e.file)).toEqual([members[1].path]);
      const mark = recorder.events.length;
      await pool!.sync();
      expect(recorder.since(mark, 'fdatasync', () => true)).toEqual([]);
      await pool!.write(BLOCKS[0] - 1, blocksData(2, 1));
      await pool!.sync();
      expect(recorder.since(mark, 'fdatasync', () => true).map((e) => e.file).sort()).toEqual(members.map((m) => m.path).sort());
    } finally {
      recorder.uninstall();
    }
  });

  test('a sync called while another is under way resolves only once that one has made the writes durable', async () => {
    await pool!.sync();
    const recorder = FileOpsRecorder.install();
    try {
      await pool!.write(BLOCKS[0] + 1, blocksData(1, 2));
      const gate = recorder.hold((call) => call === 'fdatasync');
      const first = pool!.sync();
      await gate.whenHeld(1);
      // Nothing was written since the first began, so the second has no fdatasync of its own to make:
      // it must still wait for the first's, which covers the write above.
      let secondDone = false;
      const second = pool!.sync().then(() => (secondDone = true));
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(secondDone).toBe(false);
      gate.release();
      await Promise.all([first, second]);
      expect(recorder.since(0, 'fdatasync', () => true).filter((e) => e.phase === 'done').map((e) => e.file)).toEqual([members[1].path]);
    } finally {
      recorder.uninstall();
    }
  });
});

describe('fail-stop', () => {
  test('a sync that overlaps a failed one fails too: Linux reports a writeback error to one fdatasync only', async () => {
    await pool!.sync();
    await pool!.write(BLOCKS[0] + 1, blocksData(1, 2)); // member 1 only
    const held: ((err: NodeJS.ErrnoException | null) => void)[] = [];
    const below = setFileOps({} as FileOps);
    setFileOps({ ...below, fdatasync: (_fd, done) => held.push(done) });
    let drain: NodeJS.Timeout | undefined;
    try {
      const first = pool!.sync().catch((err: unknown) => err);
      await waitFor(async () => held.length === 1, 2000, 5);
      await pool!.write(BLOCKS[0] + 2, blocksData(1, 3)); // the member is dirty again: the next sync has its own fdatasync
      const second = pool!.sync().catch((err: unknown) => err);
      await new Promise((resolve) => setTimeout(resolve, 20));
      // As the kernel does: the first call to check gets the error, any other one (overlapping it, or
      // later) gets none.
      held.shift()!(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
      drain = setInterval(() => held.splice(0).forEach((done) => done(null)), 5);
      const [firstError, secondError] = await Promise.all([first, second]);
      expect(firstError).toMatchObject({ errno: 'EIO', message: expect.stringMatching(/could not be synced/) });
      expect(secondError).toBe(firstError);
    } finally {
      clearInterval(drain);
      setFileOps(below);
    }
  });


  async function expectLost(problem: RegExp): Promise<void> {
    const error = await pool!.sync().catch((err: unknown) => err);
    expect(error).toBeInstanceOf(IoError);
    expect(error).toMatchObject({ errno: 'EIO', message: expect.stringMatching(problem) });
    // From then on every write and sync fails the same way, on either member.
    await expect(pool!.write(0, blocksData(1, 9))).rejects.toBe(error);
    await expect(pool!.write(BLOCKS[0], blocksData(1, 9))).rejects.toBe(error);
    await expect(pool!.sync()).rejects.toBe(error);
    expect(memberBytes(members[0], 0, 1).every((b) => b === 0)).toBe(true);
  }

  test('a member file deleted while open', async () => {
    fs.rmSync(members[1].path);
    await expectLost(/disk1\/weft-pool-default\.img was deleted/);
  });

  test('a member file replaced by a copy while open', async () => {
    const moved = path.join(dir, 'moved.img');
    fs.renameSync(members[0].path, moved);
    fs.copyFileSync(moved, members[0].path);
    await expectLost(/disk0\/weft-pool-default\.img was replaced by another file/);
  });

  test('a member file cut short while open', async () => {
    fs.truncateSync(members[1].path, 1024 * 1024 + 4096);
    await expectLost(/disk1\/weft-pool-default\.img was cut short to 1052672 bytes \(it holds \d+\)/);
  });

  test('a member file moved away while open', async () => {
    fs.renameSync(members[1].path, path.join(dir, 'moved.img'));
    await expectLost(/was moved or deleted \(ENOENT\)/);
  });

  test('a failed fdatasync: the pool refuses later writes and syncs, even once the disk works', async () => {
    faults = new FaultyFileOps(new Prng(1)).install();
    faults.affects = isPoolFile;
    faults.calls = new Set(['sync']);
    faults.failNext('EIO');
    await pool!.write(3, blocksData(1, 3));
    const error = await pool!.sync().catch((err: unknown) => err);
    expect(error).toMatchObject({ errno: 'EIO', message: expect.stringMatching(/could not be synced \(EIO: i\/o error/) });
    faults.heal();
    await expect(pool!.write(BLOCKS[0], blocksData(1, 4))).rejects.toBe(error);
    await expect(pool!.sync()).rejects.toBe(error);
    expect(memberBytes(members[1], 0, 1).every((b) => b === 0)).toBe(true);
  });

  test.each([4, 70])('a failed write of %i blocks across the boundary rejects once both parts are done, and does not stop the pool', async (count) => {
    faults = new FaultyFileOps(new Prng(1)).install();
    faults.affects = (f) => f === members[1].path;
    faults.failNext('ENOSPC');
    const start = BLOCKS[0] - count / 2;
    await expect(pool!.write(start, blocksData(count, 5))).rejects.toMatchObject({ code: 'ENOSPC' });
    // The first member's part was written all the same.
    expectBytes(memberBytes(members[0], start, count / 2), Buffer.concat(blocksData(count, 5)).subarray(0, (count / 2) * BLOCK_BYTES));
    await pool!.write(start, blocksData(count, 6));
    await pool!.sync();
    expectBytes(memberBytes(members[1], 0, count / 2), Buffer.concat(blocksData(count, 6)).subarray((count / 2) * BLOCK_BYTES));
  });
});

describe('small writes of one turn', () => {
  /** Writes of one block each, all asked for in one turn (as the requests of one socket read are), settled. */
  function writeInOneTurn(blocks: number[], seed: number): Promise<PromiseSettledResult<void>[]> {
    return Promise.allSettled(blocks.map((block, i) => pool!.write(block, [Buffer.alloc(BLOCK_BYTES, seed + i)])));
  }

  test('blocks next to each other in the file go out in one call per 16 KiB; the others each in their own', async () => {
    const recorder = FileOpsRecorder.install();
    try {
      const blocks = [0, 1, 2, 3, 4, 5, 20, 30, 31];
      const outcomes = await writeInOneTurn(blocks, 1);
      expect(outcomes.map((o) => o.status)).toEqual(blocks.map(() => 'fulfilled'));
      const calls = recorder.since(0, 'write', () => true).map((e) => [(e.position! - DATA_OFFSET_BYTES) / BLOCK_BYTES, e.bytes! / BLOCK_BYTES]);
      expect(calls).toEqual([
        [0, 4],
        [4, 2],
        [20, 1],
        [30, 2],
      ]);
      blocks.forEach((block, i) => expect(memberBytes(members[0], block, 1).every((b) => b === 1 + i)).toBe(true));
    } finally {
      recorder.uninstall();
    }
  });

  test('a call that fails fails the writes it carried, and only those', async () => {
    faults = new FaultyFileOps(new Prng(1)).install();
    faults.affects = (f) => f === members[0].path;
    faults.failNext('EIO'); // the first call: block 25's, alone
    const outcomes = await writeInOneTurn([25, 8, 9, 10, 11], 7);
    expect(outcomes.map((o) => o.status)).toEqual(['rejected', 'fulfilled', 'fulfilled', 'fulfilled', 'fulfilled']);
    expect((outcomes[0] as PromiseRejectedResult).reason).toMatchObject({ code: 'EIO' });
    [8, 9, 10, 11].forEach((block, i) => expect(memberBytes(members[0], block, 1).every((b) => b === 8 + i)).toBe(true));
    // The pool goes on: the failed block can be written again.
    expect((await writeInOneTurn([25], 40)).map((o) => o.status)).toEqual(['fulfilled']);
    expect(memberBytes(members[0], 25, 1).every((b) => b === 40)).toBe(true);
  });

  test('a call that fails part way fails only the writes that did not reach the file: the others are written again alone', async () => {
    // Blocks 40-44 are one run, two calls (16 KiB spans); the call that covers block 44 fails, every time.
    const badPosition = DATA_OFFSET_BYTES + (44 - BLOCKS[0]) * BLOCK_BYTES;
    const badSpot = new FailWritesAt(members[1].path, badPosition).install();
    const outcomes = await writeInOneTurn([40, 41, 42, 43, 44], 3).finally(() => badSpot.uninstall());
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'rejected']);
    [40, 41, 42, 43].forEach((block, i) => expect(memberBytes(members[1], block - BLOCKS[0], 1).every((b) => b === 3 + i)).toBe(true));
  });

  test('a gathered write is made durable by the next sync, also when a sync was asked for before it went out', async () => {
    await pool!.sync();
    const recorder = FileOpsRecorder.install();
    try {
      const written = writeInOneTurn([BLOCKS[0] + 3], 9);
      const synced = pool!.sync(); // the member is clean: this sync has nothing to do
      await written;
      await synced;
      await pool!.sync();
      const writtenAt = recorder.find(0, 'write', members[1].path);
      expect(writtenAt).toBeGreaterThanOrEqual(0);
      expect(recorder.find(writtenAt, 'fdatasync', members[1].path, 'start')).toBeGreaterThan(writtenAt);
    } finally {
      recorder.uninstall();
    }
  });
});

describe('pool members', () => {
  test('a member is reopened with the superblock it was created with', () => {
    const reopened = readMember(members[1].path, 'default');
    try {
      expect(reopened.superblock).toEqual(members[1].superblock);
      expect(reopened.sizeBytes).toBe(DATA_OFFSET_BYTES + BLOCKS[1] * BLOCK_BYTES);
      expect(reopened.emptyHead).toBe(false);
    } finally {
      fs.closeSync(reopened.fd);
    }
  });

  test('a member of another pool class is refused', () => {
    expect(() => readMember(members[0].path, 'fast')).toThrow(/belongs to pool class "default", not "fast"/);
  });

  test('a file with data in its first MiB is not made a member; an empty one is', () => {
    const file = path.join(dir, 'existing.img');
    fs.writeFileSync(file, Buffer.alloc(DATA_OFFSET_BYTES + 32 * BLOCK_BYTES));
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, Buffer.from('precious'), 0, 8, 4096);
    fs.closeSync(fd);
    const used = readMember(file, 'default');
    fs.closeSync(used.fd);
    expect(() => checkInitializable(used, 'default')).toThrow(/first MiB is not empty; refusing to overwrite it/);

    fs.writeFileSync(file, Buffer.alloc(DATA_OFFSET_BYTES + 32 * BLOCK_BYTES));
    const empty = readMember(file, 'default');
    checkInitializable(empty, 'default');
    const member = initializeMember(locateMember(file, 'default', undefined), empty);
    fs.closeSync(member.fd);
    expect(member.superblock.blocks).toBe(32);
  });

  test('a new member file is synced, then its directory: after a power cut the catalog never names a file that is gone', () => {
    const memberDir = path.join(dir, 'new-member');
    fs.mkdirSync(memberDir);
    const recorder = FileOpsRecorder.install();
    try {
      const member = initializeMember(locateMember(memberDir, 'default', DATA_OFFSET_BYTES + 32 * BLOCK_BYTES), undefined);
      fs.closeSync(member.fd);
      expect(recorder.since(0, 'fsync', () => true).map((e) => e.file)).toEqual([member.path, memberDir]);
    } finally {
      recorder.uninstall();
    }
  });

  test('a member too small, or a size given for a file, is refused', () => {
    const small = path.join(dir, 'small');
    fs.mkdirSync(small);
    expect(() => locateMember(small, 'default', DATA_OFFSET_BYTES + 15 * BLOCK_BYTES)).toThrow(/too small/);
    expect(() => locateMember(members[0].path, 'default', DATA_OFFSET_BYTES + 64 * BLOCK_BYTES)).toThrow(/a size is only allowed when/);
  });
});

test('a pool larger than its block maps can address (made before that was refused) works on with the blocks past the limit unused', () => {
  const TiB = 1024 ** 4;
  const lines: string[] = [];
  // Two sparse 9 TiB members, recorded as an earlier version would have: 18 TiB in one pool.
  const large = [0, 1].map((i) => newMember(path.join(dir, `large${i}`), Math.floor((9 * TiB) / BLOCK_BYTES)));
  const big = new Pool('default', large, pino({ level: 'warn' }, { write: (line: string) => void lines.push(line) }));
  try {
    expect(big.totalBlocks).toBe(MAX_POOL_BLOCKS);
    expect(lines.join('')).toMatch(/larger than its block maps can address/);
  } finally {
    big.close();
  }
});

test("member files on one file system that together can grow past its free space are said at start, with the remedy; those within it are not", () => {
  const lines: string[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(line) });
  const fsStat = fs.statfsSync(dir);
  const free = fsStat.bavail * fsStat.bsize;
  // Each within the free space, the two together past it.
  const halves = [0, 1].map((i) => newMember(path.join(dir, `half${i}`), Math.ceil((free / 2 + 1024 ** 3) / BLOCK_BYTES)));
  const small = newMember(path.join(dir, 'small'), 16);
  try {
    for (const [group, warned] of [[halves, true], [[halves[0]], false], [[small], false]] as const) {
      lines.length = 0;
      warnIfOvercommitted(group, logger);
      const said = /half0\/weft-pool-default\.img, .*half1\/weft-pool-default\.img can still grow by [\d.]+ [KMGT]iB in all, but their file system has [\d.]+ [KMGT]?i?B free: writes will fail with ENOSPC before the pools are full.*give the members smaller sizes or disks of their own/;
      expect(said.test(lines.join(''))).toBe(warned);
      expect(lines.some((line) => line.includes('can still grow by'))).toBe(warned);
    }
  } finally {
    for (const member of [...halves, small]) fs.closeSync(member.fd);
  }
});

/** Fails every write of one file that covers position (EIO), as a bad spot on its disk would. */
class FailWritesAt extends FileOpsLayer {
  constructor(private readonly file: string, private readonly position: number) {
    super();
  }

  override writevSync(fd: number, pieces: Pieces, position: number): number {
    if (fs.readlinkSync(`/proc/self/fd/${fd}`) === this.file && position <= this.position && this.position < position + totalBytes(pieces)) {
      throw Object.assign(new Error('EIO: i/o error (injected)'), { code: 'EIO' });
    }
    return super.writevSync(fd, pieces, position);
  }
}
