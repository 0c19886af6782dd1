// A real weftd and its pool files: a member file deleted or replaced while weftd runs stops FLUSH
// (and so FUA) from being acknowledged, and a start that cannot use a recorded member is refused
// by name without touching it.

import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { cleanupAll, makeTempDir, run, startWeftd, WEFTD_BIN, type RunResult, type WeftdHandle } from '../helpers/weftd';

afterAll(cleanupAll);

const FREE_PORTS = ['--nbd-port', '0', '--api-port', '0', '--metrics-port', '0', '--listen', '127.0.0.1'];

/** qemu-io with a write-back cache: writes go without FUA, so that only FLUSH asks for durability. */
function qemuIo(uri: string, ...commands: string[]): Promise<RunResult> {
  return run('qemu-io', ['-f', 'raw', '-t', 'writeback', ...commands.flatMap((command) => ['-c', command]), uri]);
}

/** A weftd with volume v1 in a pool member in its own dir; returns the member's file. */
async function weftdWithVolume(): Promise<{ node: WeftdHandle; poolDir: string; poolFile: string }> {
  const poolDir = makeTempDir('weft-pool-files-');
  const node = await startWeftd({ pools: [`default:${poolDir}:64MiB`] });
  expect(await node.weft(['volume', 'create', 'v1', '--size', '16MiB'])).toMatchObject({ code: 0 });
  return { node, poolDir, poolFile: path.join(poolDir, 'weft-pool-default.img') };
}

function sha256(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

test.each([
  ['deleted', (file: string) => fs.rmSync(file)],
  ['replaced by a copy', (file: string) => {
    fs.copyFileSync(file, `${file}.copy`);
    fs.renameSync(`${file}.copy`, file);
  }],
])('a pool file %s while weftd runs makes FLUSH fail, says why, and refuses writes from then on', async (_what, change) => {
  const { node, poolFile } = await weftdWithVolume();
  expect(await qemuIo(node.nbdUri('v1'), 'write -P 0x11 0 64k', 'flush')).toMatchObject({ code: 0 });
  change(poolFile);

  const flushed = await qemuIo(node.nbdUri('v1'), 'write -P 0x22 64k 64k', 'flush');
  expect(flushed.code).not.toBe(0);
  expect(flushed.stdout).toMatch(/^wrote 65536\/65536 bytes at offset 65536$/m); // acknowledged, not yet durable
  expect(node.logs()).toMatch(/"command":"FLUSH",.*"error":5,/); // EIO (qemu-io's flush prints nothing)
  const written = await qemuIo(node.nbdUri('v1'), 'write -P 0x33 128k 64k');
  expect(written.code).not.toBe(0);
  expect(written.stdout + written.stderr).toMatch(/write failed: Input\/output error/);
  expect(node.logs()).toContain(`pool default: member ${poolFile} was`);
  expect(node.logs()).toMatch(/while weftd ran; its volumes refuse writes and flushes from now on/);
  // A control operation is refused as the disk's failure (UNAVAILABLE, exit 1), not as weftd's own
  // (INTERNAL), and makes nothing.
  const snapshot = await node.weft(['snapshot', 'create', 'v1', 's1']);
  expect(snapshot.code).toBe(1);
  expect(snapshot.stderr).toMatch(/could not be made durable: pool default: member .* while weftd ran.*nothing changed/);
  expect(node.logs()).not.toMatch(/"msg":"request failed"/);
  expect((await node.weft(['snapshot', 'list', 'v1'])).stdout).not.toContain('s1');
  await node.kill9();
});

/** The member's superblock (JSON in its first 4 KiB) with change applied. */
function rewriteSuperblock(file: string, change: (superblock: { blocks: number }) => void): void {
  const fd = fs.openSync(file, 'r+');
  const head = Buffer.alloc(4096);
  fs.readSync(fd, head, 0, head.length, 0);
  const superblock = JSON.parse(head.subarray(0, head.indexOf(0)).toString()) as { blocks: number };
  change(superblock);
  const rewritten = Buffer.alloc(4096);
  rewritten.write(JSON.stringify(superblock));
  fs.writeSync(fd, rewritten, 0, rewritten.length, 0);
  fs.closeSync(fd);
}

test.each([
  ['whose superblock was zeroed', /its first MiB holds only zeroes/, (file: string) => fs.writeFileSync(file, Buffer.alloc(4096), { flag: 'r+' })],
  // Read past its end, its blocks would be zeroes taken for data; the recovery of unsynced writes would roll them back.
  ['cut short', /is 33554432 bytes, but its superblock names 16128 blocks .*: it was cut short, or its superblock is damaged/, (file: string) => fs.truncateSync(file, 32 * 1024 * 1024)],
  // Every later member's blocks would be read from the wrong place, and new ones written over live data.
  ['whose superblock names fewer blocks', /names 16000 blocks in its superblock, but the data dir records 16128: its superblock was changed or damaged/, (file: string) => rewriteSuperblock(file, (superblock) => (superblock.blocks = 16000))],
])('a pool file %s is refused at start by name, and stays as it was', async (_what, why, damage) => {
  const { node, poolDir, poolFile } = await weftdWithVolume();
  expect(await qemuIo(node.nbdUri('v1'), 'write -P 0x11 0 64k', 'flush')).toMatchObject({ code: 0 });
  expect(await node.stop()).toBe(0);
  damage(poolFile);
  const before = { sha256: sha256(poolFile), stat: fs.statSync(poolFile) };

  const refused = await run(WEFTD_BIN, ['--data-dir', node.dataDir, '--pool', `default:${poolDir}:64MiB`, ...FREE_PORTS], { timeoutMs: 15_000 });
  expect(refused.code).toBe(1);
  expect(refused.stderr).toContain(poolFile);
  expect(refused.stderr).toMatch(why);
  expect(refused.stderr).toMatch(/weftd has written nothing to it/);
  expect(sha256(poolFile)).toBe(before.sha256);
  const after = fs.statSync(poolFile);
  expect([after.size, after.mtimeMs]).toEqual([before.stat.size, before.stat.mtimeMs]);
});

test('a deleted pool file is refused at start by name, and not created again', async () => {
  const { node, poolDir, poolFile } = await weftdWithVolume();
  expect(await node.stop()).toBe(0);
  fs.rmSync(poolFile);

  const refused = await run(WEFTD_BIN, ['--data-dir', node.dataDir, '--pool', `default:${poolDir}:64MiB`, ...FREE_PORTS], { timeoutMs: 15_000 });
  expect(refused.code).toBe(1);
  expect(refused.stderr).toContain(`${poolFile} is pool member`);
  expect(refused.stderr).toMatch(/but it does not exist/);
  expect(fs.readdirSync(poolDir)).toEqual([]);
});

/** Overwrites every 4 KiB block of file that holds only byte `from` with byte `to`; how many. */
function overwriteBlocksOf(file: string, from: number, to: number): number {
  const data = fs.readFileSync(file);
  const block = 4096;
  const wanted = Buffer.alloc(block, from);
  let count = 0;
  for (let at = 0; at + block <= data.length; at += block) {
    if (data.subarray(at, at + block).equals(wanted)) {
      data.fill(to, at, at + block);
      count++;
    }
  }
  fs.writeFileSync(file, data);
  return count;
}

test('a lost pool fails its own volumes\' flushes, not the other pool\'s; its unsynced writes are still checked at the next start', async () => {
  const [dirA, dirB] = [makeTempDir('weft-pool-a-'), makeTempDir('weft-pool-b-')];
  // No background sync: only the FLUSHes below make writes durable.
  const node = await startWeftd({ pools: [`a:${dirA}:64MiB`, `b:${dirB}:64MiB`], extraArgs: ['--sync-interval', '0'] });
  for (const [name, poolClass] of [['va', 'a'], ['vb', 'b']]) {
    expect(await node.weft(['volume', 'create', name, '--size', '16MiB', '--class', poolClass])).toMatchObject({ code: 0 });
  }
  expect(await qemuIo(node.nbdUri('va'), 'write -P 0x11 0 64k', 'flush')).toMatchObject({ code: 0 });
  const fileA = path.join(dirA, 'weft-pool-a.img');
  const kept = path.join(dirA, 'kept.img');
  fs.linkSync(fileA, kept); // the same file, out of weftd's sight: weftd takes it for deleted
  fs.rmSync(fileA);

  // weftd finds out at the flush: the write was acknowledged, not made durable.
  const own = await qemuIo(node.nbdUri('va'), 'write -P 0x22 64k 64k', 'flush');
  expect(own.code).not.toBe(0);
  expect(own.stdout).toMatch(/^wrote 65536\/65536 bytes at offset 65536$/m);
  expect(node.logs()).toContain(`pool a: member ${fileA} was`);
  expect(await qemuIo(node.nbdUri('vb'), 'write -P 0x33 0 64k', 'flush')).toMatchObject({ code: 0 });
  await node.kill9();

  // va's unsynced write did not reach the disk: a SYNC record must not have vouched for it.
  expect(overwriteBlocksOf(kept, 0x22, 0x44)).toBe(16);
  fs.renameSync(kept, fileA);
  await node.start();
  expect(node.logs()).toMatch(/"rolledBack":16\b/);
  expect(await qemuIo(node.nbdUri('va'), 'read -P 0x11 0 64k', 'read -P 0 64k 64k')).toMatchObject({ code: 0 });
  expect(await qemuIo(node.nbdUri('vb'), 'read -P 0x33 0 64k')).toMatchObject({ code: 0 });
  await node.stop();
});
