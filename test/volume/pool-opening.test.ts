// Opening the pools at startup on real files: a member the data dir records must be there, with its
// superblock and uuid, or the start is refused with a message naming the file, and nothing is
// written, created or removed on the way. Only a path the data dir does not know becomes a new member.

import { createHash } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import pino from 'pino';
import { memberFileInDirectory } from '../../fabric/store/pool-member';
import { emptyCatalog } from '../../fabric/volume/catalog';
import { LocalEngine, type PoolSpec } from '../../fabric/volume/local-engine';
import { MembersMade, openPools } from '../../fabric/volume/pool-opening';
import { openExport } from '../helpers/open-devices';

const MiB = 1024 * 1024;
const logger = pino({ level: 'silent' });
let dir: string;
let engine: LocalEngine | undefined;

function openEngine(pools: PoolSpec[]): Promise<LocalEngine> {
  return LocalEngine.open({ dataDir: path.join(dir, 'data'), pools, logger }).then((opened) => (engine = opened));
}

/** A data dir that records one volume with flushed data in a pool member of each given dir. */
async function dataDirWithVolume(...pools: PoolSpec[]): Promise<void> {
  const e = await openEngine(pools);
  await e.createVolume({ name: 'v1', sizeBytes: MiB });
  const device = openExport(e, 'v1');
  await device.write(0, Buffer.alloc(4096, 0x5a), true);
  device.close();
  await e.close();
  engine = undefined;
}

/** What a refused start must leave unchanged: content, size and modification time. */
function fingerprint(file: string): { sha256: string; size: number; mtimeMs: number } {
  const stat = fs.statSync(file);
  return { sha256: createHash('sha256').update(fs.readFileSync(file)).digest('hex'), size: stat.size, mtimeMs: stat.mtimeMs };
}

function poolDir(name: string): string {
  const poolPath = path.join(dir, name);
  fs.mkdirSync(poolPath);
  return poolPath;
}

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weft-pool-opening-'));
});

afterEach(async () => {
  await engine?.close().catch(() => undefined);
  engine = undefined;
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('a refused start changes no pool member', () => {
  test('a member whose superblock was zeroed is refused by name, and stays as it was', async () => {
    const pool = { class: 'default', path: poolDir('pool'), sizeBytes: 64 * MiB };
    await dataDirWithVolume(pool);
    const file = memberFileInDirectory(pool.path, 'default');
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, Buffer.alloc(4096), 0, 4096, 0);
    fs.closeSync(fd);
    const before = fingerprint(file);

    const refused = openEngine([pool]);
    await expect(refused).rejects.toMatchObject({ kind: 'FAILED_PRECONDITION' });
    const message = (await refused.catch((err: Error) => err)) as Error;
    expect(message.message).toContain(file);
    expect(message.message).toMatch(/first MiB holds only zeroes/);
    expect(message.message).not.toMatch(/not given with --pool/);
    expect(fingerprint(file)).toEqual(before);
  });

  test('a deleted member file is refused by name and not created again', async () => {
    const pool = { class: 'default', path: poolDir('pool'), sizeBytes: 64 * MiB };
    await dataDirWithVolume(pool);
    const file = memberFileInDirectory(pool.path, 'default');
    fs.rmSync(file);

    await expect(openEngine([pool])).rejects.toMatchObject({
      kind: 'FAILED_PRECONDITION',
      message: expect.stringMatching(new RegExp(`${file} is pool member \\S+ in the data dir, but it does not exist`)),
    });
    expect(fs.readdirSync(pool.path)).toEqual([]);
  });

  test('a member replaced by another pool file is refused, and stays as it was', async () => {
    const pool = { class: 'default', path: poolDir('pool'), sizeBytes: 64 * MiB };
    await dataDirWithVolume(pool);
    const file = memberFileInDirectory(pool.path, 'default');
    const other = { class: 'default', path: poolDir('other'), sizeBytes: 64 * MiB };
    dir = path.join(dir, 'second');
    fs.mkdirSync(dir);
    await dataDirWithVolume(other); // a member of another data dir, with its own uuid
    dir = path.dirname(dir);
    fs.copyFileSync(memberFileInDirectory(other.path, 'default'), file);
    const before = fingerprint(file);

    await expect(openEngine([pool])).rejects.toMatchObject({
      kind: 'FAILED_PRECONDITION',
      message: expect.stringMatching(/holds pool member \S+, but the data dir records member \S+ at this path/),
    });
    expect(fingerprint(file)).toEqual(before);
  });

  test('a refused start does not initialize the new members given with it', async () => {
    const pool = { class: 'default', path: poolDir('pool'), sizeBytes: 64 * MiB };
    await dataDirWithVolume(pool);
    fs.rmSync(memberFileInDirectory(pool.path, 'default'));
    const fresh = { class: 'fast', path: poolDir('fresh'), sizeBytes: 64 * MiB };
    const zeroed = path.join(dir, 'zeroed.img');
    fs.writeFileSync(zeroed, Buffer.alloc(4 * MiB));
    const zeroedBefore = fingerprint(zeroed);

    await expect(openEngine([{ class: 'fast', path: zeroed }, fresh, pool])).rejects.toMatchObject({ kind: 'FAILED_PRECONDITION' });
    expect(fs.readdirSync(fresh.path)).toEqual([]);
    expect(fingerprint(zeroed)).toEqual(zeroedBefore);
  });

  test('a pool of more blocks than its maps can name (over 16 TiB) is refused before a member is created', async () => {
    const TiB = 1024 * 1024 * MiB;
    const halves = [poolDir('big-a'), poolDir('big-b')].map((poolPath) => ({ class: 'big', path: poolPath, sizeBytes: 9 * TiB }));
    await expect(openEngine(halves)).rejects.toMatchObject({
      kind: 'INVALID_ARGUMENT',
      message: expect.stringMatching(/pool big: its members hold \d+ blocks of 4 KiB, more than one pool can address/),
    });
    for (const half of halves) expect(fs.readdirSync(half.path)).toEqual([]);
  });

  test('a member of another data dir is refused, and stays as it was: that data dir still reads its volume', async () => {
    const pool = { class: 'default', path: poolDir('pool'), sizeBytes: 64 * MiB };
    await dataDirWithVolume(pool);
    const file = memberFileInDirectory(pool.path, 'default');
    const before = fingerprint(file);
    const other = LocalEngine.open({ dataDir: path.join(dir, 'other-data'), pools: [pool], logger });
    await expect(other).rejects.toMatchObject({ kind: 'FAILED_PRECONDITION', message: expect.stringMatching(/which this data dir does not record: it belongs to another data dir/) });
    expect(fingerprint(file)).toEqual(before);
    const e = await openEngine([pool]);
    const device = openExport(e, 'v1');
    expect((await device.read(0, 4096)).every((b) => b === 0x5a)).toBe(true);
    device.close();
  });

  test('a member this data dir made, on a first start stopped before its catalog recorded it, is still its own', () => {
    const spec = { class: 'default', path: poolDir('pool'), sizeBytes: 64 * MiB };
    const silent = pino({ level: 'silent' });
    const made = () => new MembersMade(path.join(dir, 'members-made'));
    const first = openPools([spec], emptyCatalog(), made(), silent).pools.get('default')!; // the member made, the catalog never written
    const uuid = first.memberList()[0].uuid;
    first.close();
    const before = fingerprint(memberFileInDirectory(spec.path, 'default'));
    const again = openPools([spec], emptyCatalog(), made(), silent).pools.get('default')!;
    expect(again.memberList().map((m) => m.uuid)).toEqual([uuid]);
    again.close();
    expect(fingerprint(memberFileInDirectory(spec.path, 'default'))).toEqual(before);
    // Another data dir, which did not make it, is refused it.
    expect(() => openPools([spec], emptyCatalog(), new MembersMade(path.join(dir, 'other-made')), silent)).toThrow(/belongs to another data dir/);
  });

  test('one file under two names (a symlink, a hard link) is given twice, refused before anything is written', async () => {
    const file = path.join(dir, 'member.img');
    fs.writeFileSync(file, Buffer.alloc(4 * MiB));
    fs.symlinkSync(file, path.join(dir, 'symlink.img'));
    fs.linkSync(file, path.join(dir, 'hardlink.img'));
    const before = fingerprint(file);
    for (const twin of ['symlink.img', 'hardlink.img']) {
      await expect(openEngine([{ class: 'default', path: file }, { class: 'default', path: path.join(dir, twin) }])).rejects.toMatchObject({
        kind: 'INVALID_ARGUMENT',
        message: expect.stringMatching(/is given twice/),
      });
    }
    expect(fingerprint(file)).toEqual(before);
  });

  test('a recorded class left out keeps its own error, and the volumes are back once it is given', async () => {
    const fast = { class: 'fast', path: poolDir('fast'), sizeBytes: 64 * MiB };
    await dataDirWithVolume(fast);
    const other = { class: 'default', path: poolDir('other'), sizeBytes: 64 * MiB };
    await expect(openEngine([other])).rejects.toMatchObject({
      kind: 'FAILED_PRECONDITION',
      message: expect.stringMatching(/^pool fast holds volumes but is not given with --pool/),
    });
    const e = await openEngine([fast]);
    const device = openExport(e, 'v1');
    expect((await device.read(0, 4096)).every((b) => b === 0x5a)).toBe(true);
    device.close();
  });
});

describe('members that may be opened', () => {
  test('a new data dir initializes a zeroed file and a directory, and finds them again by their uuid', async () => {
    const zeroed = path.join(dir, 'zeroed.img');
    fs.writeFileSync(zeroed, Buffer.alloc(4 * MiB));
    const pools = [{ class: 'default', path: zeroed }, { class: 'default', path: poolDir('pool'), sizeBytes: 64 * MiB }];
    let e = await openEngine(pools);
    const members = e.listPools()[0].members;
    expect(members.map((m) => m.path)).toEqual([zeroed, memberFileInDirectory(pools[1].path, 'default')]);
    await e.close();
    e = await openEngine([...pools].reverse()); // order on the command line does not matter
    expect(e.listPools()[0].members).toEqual(members);
  });
});
