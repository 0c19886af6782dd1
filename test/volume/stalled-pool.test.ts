// A pool whose disk stops answering its cache flushes (fdatasync hangs; the page cache still takes
// writes): the node's other pools go on. Their FLUSH and FUA writes and their control operations
// end, the SYNC records that vouch for them leave the stalled pool out, and a kill -9 meanwhile
// loses none of what they acknowledged. The stalled pool's own FLUSH waits until its disk answers,
// and once it has, its frees become free space without a full flush. Its snapshots wait a while,
// then are refused, nothing changed: they do not hold the node's control operations for as long as
// the disk hangs.

import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import pino from 'pino';
import { withDeadline } from '../../fabric/deadline';
import { LocalEngine } from '../../fabric/volume/local-engine';
import type { OpenDevice, PoolInfo } from '../../fabric/volume/types';
import { startStallingDevice, type StallingDevice } from '../helpers/nbdkit-device';
import { cleanupAll, run, startWeftd, type WeftdHandle } from '../helpers/weftd';

jest.setTimeout(120_000);

const MiB = 1024 * 1024;
const KiB = 1024;
/** Long enough for a FLUSH that does not wait for the stalled disk, even on a loaded machine; it is no timing claim. */
const ENDS_WITHIN_MS = 20_000;
/**
 * Long enough for a control operation that gives up on a stalled disk: its write-back waits 10 s at
 * most, then its turn 5 s for the I/O in flight and 5 s for its commit's syncs; it is no timing claim.
 */
const REFUSED_WITHIN_MS = 45_000;

let dirs: { dir: string; device: StallingDevice }[] = [];

afterEach(async () => {
  for (const { device } of dirs) {
    device.stallIo(false);
    device.stall(false);
  }
  await cleanupAll(); // weftd first: it holds the device's file open
  for (const { dir, device } of dirs) {
    await device.unmount();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  dirs = [];
});

/** A new dir (removed after the test) holding a stalling disk. */
async function dirWithStallingDevice(): Promise<{ dir: string; device: StallingDevice }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weft-stalled-pool-'));
  const device = await startStallingDevice(dir, 64 * MiB);
  dirs.push({ dir, device });
  return { dir, device };
}

/** promise's outcome, or a rejection naming what did not end within ms. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return withDeadline(promise, ms, () => new Error(`${what} did not end within ${ms} ms`));
}

/** Whether promise has settled by the time the event loop has turned once more. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  promise.then(
    () => (done = true),
    () => (done = true),
  );
  await new Promise((resolve) => setImmediate(resolve));
  return done;
}

/**
 * An engine (in this process) with pool a in a directory and pool s on a stalling disk, volume va
 * in a and vs in s, opened; background syncs only when asked.
 */
async function engineWithStallingPool(options: { checkpointJournalBytes?: number; logger?: pino.Logger } = {}) {
  const { dir, device } = await dirWithStallingDevice();
  fs.mkdirSync(path.join(dir, 'a'));
  const engine = await LocalEngine.open({
    dataDir: path.join(dir, 'data'),
    pools: [
      { class: 'a', path: path.join(dir, 'a'), sizeBytes: 64 * MiB },
      { class: 's', path: device.file },
    ],
    logger: options.logger ?? pino({ level: 'silent' }),
    syncIntervalMs: 0,
    checkpointJournalBytes: options.checkpointJournalBytes,
  });
  await engine.createVolume({ name: 'va', sizeBytes: 16 * MiB, class: 'a' });
  await engine.createVolume({ name: 'vs', sizeBytes: 16 * MiB, class: 's' });
  return { device, engine, va: engine.openVolume('va'), vs: engine.openVolume('vs') };
}

/**
 * Stops the disk's flushes, reads and writes, with a write of vs not yet flushed, and FLUSHes vs:
 * once its fdatasync has hung a while, the member is stalled. Returns that FLUSH (in an object, so
 * that awaiting this does not wait for it).
 */
async function stallMember(device: StallingDevice, vs: OpenDevice): Promise<{ stalledFlush: Promise<void> }> {
  await vs.write(0, Buffer.alloc(4 * KiB, 1), false); // not flushed: the member has a sync to do
  device.stall(true);
  device.stallIo(true);
  const stalledFlush = vs.flush();
  await new Promise((resolve) => setTimeout(resolve, 1500));
  return { stalledFlush };
}

test("a pool whose disk stops answering flushes holds up its own volumes' FLUSHes and snapshots only; once it answers, its frees become free space", async () => {
  const { device, engine, va, vs } = await engineWithStallingPool();
  try {
    const usedInS = () => engine.listPools().find((p) => p.class === 's')!.usedBytes;
    await vs.write(0, Buffer.alloc(4 * KiB, 1), false);
    await engine.createSnapshot('vs', 'early');
    await vs.write(0, Buffer.alloc(4 * KiB, 1), false);
    await vs.flush();
    const usedBefore = usedInS();

    device.stall(true);
    // Each overwrite takes a new block; the old one is free once a SYNC record covering pool s is durable.
    for (let i = 2; i < 6; i++) await vs.write(0, Buffer.alloc(4 * KiB, i), false);
    const stalledFlush = vs.flush();
    const usedWhenFlushed = stalledFlush.then(usedInS); // at once, before anything else frees them
    for (let i = 0; i < 4; i++) {
      await va.write(i * MiB, Buffer.alloc(MiB, 0x10 + i), false);
      await within(va.flush(), ENDS_WITHIN_MS, `FLUSH of a volume in pool a, round ${i}`);
    }
    await within(va.write(4 * MiB, Buffer.alloc(64 * KiB, 0x20), true), ENDS_WITHIN_MS, 'a FUA write to a volume in pool a');
    // A snapshot of vs waits for its pool (its data must be durable), for a while, then is refused;
    // operations on pool a's volumes do not wait for it, nor does a create in pool s (an empty layer
    // needs no data durable).
    const stalledSnapshot = engine.createSnapshot('vs', 'before');
    const others = (async () => {
      await engine.createVolume({ name: 'vc', sizeBytes: 4 * MiB, class: 'a' });
      await engine.createSnapshot('va', 'kept');
      await engine.cloneVolume({ volume: 'va', snapshot: 'kept', name: 'vclone' });
      await engine.deleteVolume('vc');
      await engine.createVolume({ name: 'vd', sizeBytes: 4 * MiB, class: 's' });
      // A snapshot's data was made durable when it was taken: a clone of it needs no sync.
      await engine.cloneVolume({ volume: 'vs', snapshot: 'early', name: 'vsclone', class: 'a' });
    })();
    await within(others, ENDS_WITHIN_MS, 'control operations on pool a, a create in pool s and a clone of its snapshot');
    await expect(within(stalledSnapshot, REFUSED_WITHIN_MS, "the snapshot of the stalled pool's volume")).rejects.toThrow(
      "pool s: its disk has not finished a sync for over 5 s (it may have stopped answering); nothing changed, try again later",
    );
    expect(engine.listSnapshots().some((snap) => snap.name === 'before')).toBe(false);
    expect(await settled(stalledFlush)).toBe(false);
    expect(usedInS()).toBe(usedBefore + 4 * 4 * KiB); // the four old blocks are not free yet

    device.stall(false);
    await within(stalledFlush, ENDS_WITHIN_MS, 'the FLUSH of the stalled pool, once its disk answers');
    await within(engine.createSnapshot('vs', 'before'), ENDS_WITHIN_MS, "the snapshot of the stalled pool's volume, once its disk answers");
    expect(engine.listSnapshots().map((snap) => `${snap.volume}@${snap.name}`).sort()).toEqual(['va@kept', 'vs@before', 'vs@early']);
    expect(engine.listVolumes().map((v) => v.name).sort()).toEqual(['va', 'vclone', 'vd', 'vs', 'vsclone']);
    // The stalled pool's own SYNC record, once its sync ended, freed them before its FLUSH ended (a
    // write that waits for a flush to find room must find it).
    expect(await usedWhenFlushed).toBe(usedBefore);
    expect((await vs.read(0, 4 * KiB)).equals(Buffer.alloc(4 * KiB, 5))).toBe(true);
    expect((await va.read(3 * MiB, MiB)).equals(Buffer.alloc(MiB, 0x13))).toBe(true);
    va.close();
    vs.close();
  } finally {
    device.stall(false);
    await engine.close();
  }
});

test('a disk that stops answering reads and writes too: at most two of its calls wait on threads, none on the event loop; the other pool goes on', async () => {
  // This process's thread pool has libuv's default 4 threads: a stalled disk holding them all
  // would hold up pool a's fdatasyncs and the journal's. A checkpoint is soon due: its cut pauses
  // every volume until its writes in flight end, which the stalled disk's would not.
  const { device, engine, va, vs } = await engineWithStallingPool({ checkpointJournalBytes: 2 * KiB });
  try {
    const { stalledFlush } = await stallMember(device, vs);
    const stalledWrites = Array.from({ length: 12 }, (_, i) => vs.write((i + 1) * 64 * KiB, Buffer.alloc(4 * KiB, 0x40 + i), false));
    // Each MiB of new blocks journals 256 checksums, past the 2 KiB that makes a checkpoint due; the
    // engine's background work looks once a second.
    for (let i = 0; i < 6; i++) {
      await va.write(i * MiB, Buffer.alloc(MiB, 0x10 + i), false);
      await within(va.flush(), ENDS_WITHIN_MS, `FLUSH of a volume in pool a, round ${i}`);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    expect(await settled(Promise.race(stalledWrites))).toBe(false);
    expect(await settled(stalledFlush)).toBe(false);

    device.stallIo(false);
    device.stall(false);
    await within(Promise.all([stalledFlush, ...stalledWrites]), ENDS_WITHIN_MS, 'the stalled pool\'s writes and FLUSH, once its disk answers');
    await vs.flush();
    for (let i = 0; i < 12; i++) expect((await vs.read((i + 1) * 64 * KiB, 4 * KiB)).equals(Buffer.alloc(4 * KiB, 0x40 + i))).toBe(true);
    va.close();
    vs.close();
  } finally {
    device.stallIo(false);
    device.stall(false);
    await engine.close();
  }
});

test("a node whose only pool's disk stops answering flushes still creates volumes (an empty layer needs no sync), and refuses a snapshot in time", async () => {
  const { dir, device } = await dirWithStallingDevice();
  const engine = await LocalEngine.open({ dataDir: path.join(dir, 'data'), pools: [{ class: 's', path: device.file }], logger: pino({ level: 'silent' }), syncIntervalMs: 0 });
  try {
    await engine.createVolume({ name: 'vs', sizeBytes: 16 * MiB });
    const vs = engine.openVolume('vs');
    await vs.write(0, Buffer.alloc(4 * KiB, 1), false);
    device.stall(true);
    // A snapshot needs its data durable: its write-back, then its commit, wait a while for the disk
    // (no FLUSH has found it slow yet), then it gives up.
    await expect(within(engine.createSnapshot('vs', 'late'), REFUSED_WITHIN_MS, 'a snapshot of the stalled pool')).rejects.toThrow(
      /^could not be made durable: pool s: its disk has not finished a sync within 5 s \(it may have stopped answering; try again later\); the operation was undone, nothing changed$/,
    );
    expect(engine.listSnapshots()).toEqual([]);
    const stalledFlush = vs.flush();
    await within(engine.createVolume({ name: 'other', sizeBytes: 4 * MiB }), ENDS_WITHIN_MS, 'a create beside a stalled FLUSH');
    expect(await settled(stalledFlush)).toBe(false);
    device.stall(false);
    await within(stalledFlush, ENDS_WITHIN_MS, 'the FLUSH, once the disk answers');
    expect(engine.listVolumes().map((v) => v.name).sort()).toEqual(['other', 'vs']);
    vs.close();
  } finally {
    device.stall(false);
    await engine.close();
  }
});

test("a volume's write that hangs on its disk: a snapshot of it and a raise of its epoch give up on it rather than wait for ever, and hold up the other volumes' control operations for a while only", async () => {
  const { device, engine, va, vs } = await engineWithStallingPool();
  // A primary's replication connection writes through the volume's fence, which a raise closes.
  const fenced = engine.openVolume('vs', { epoch: 0 });
  try {
    const { stalledFlush } = await stallMember(device, vs);
    const hung = fenced.write(64 * KiB, Buffer.alloc(4 * KiB, 0x33), false);
    const stalledSnapshot = engine.createSnapshot('vs', 'hung');
    // Its write-back gives up after 10 s; then it has its turn, waiting for vs's write in flight.
    // A snapshot of va asked for meanwhile waits for it to give up.
    await new Promise((resolve) => setTimeout(resolve, 11_500));
    const other = engine.createSnapshot('va', 'kept');
    await expect(within(stalledSnapshot, REFUSED_WITHIN_MS, 'a snapshot of the volume whose write hangs')).rejects.toThrow(
      "volume vs: I/O in flight has not ended within 5 s (its pool's disk may have stopped answering); nothing changed, try again later",
    );
    await within(other, ENDS_WITHIN_MS, 'a snapshot of a volume in the other pool');
    await expect(within(engine.raiseEpoch('vs', 1), REFUSED_WITHIN_MS, 'a raise of the epoch of the volume whose write hangs')).rejects.toThrow(
      "volume vs: writes in flight have not ended within 5 s (its pool's disk may have stopped answering); the epoch is not raised, try again later",
    );
    await within(
      (async () => {
        await va.write(0, Buffer.alloc(MiB, 0x10), false);
        await va.flush();
      })(),
      ENDS_WITHIN_MS,
      'a write and FLUSH of a volume in the other pool',
    );
    expect(engine.listSnapshots().map((snap) => `${snap.volume}@${snap.name}`)).toEqual(['va@kept']);
    expect(engine.listVolumes().find((v) => v.name === 'vs')!.epoch).toBe(0);
    expect(await settled(hung)).toBe(false);

    device.stallIo(false);
    device.stall(false);
    await within(Promise.all([hung, stalledFlush]), ENDS_WITHIN_MS, 'the hung write and FLUSH, once the disk answers');
    await within(engine.createSnapshot('vs', 'hung'), ENDS_WITHIN_MS, 'a snapshot of vs, once its disk answers');
    await within(engine.raiseEpoch('vs', 1), ENDS_WITHIN_MS, 'a raise of the epoch of vs, once its disk answers');
    expect((await vs.read(64 * KiB, 4 * KiB)).equals(Buffer.alloc(4 * KiB, 0x33))).toBe(true);
    expect((await va.read(0, MiB)).equals(Buffer.alloc(MiB, 0x10))).toBe(true);
    va.close();
    vs.close();
  } finally {
    fenced.close();
    device.stallIo(false);
    device.stall(false);
    await engine.close();
  }
});

test("a large write that hangs on its disk, before anything can tell: it holds one thread, and a checkpoint's cut gives up on it rather than pause every volume for ever", async () => {
  const logged: { msg: string; err?: { message: string } }[] = [];
  const logger = pino({ level: 'error' }, { write: (line: string) => void logged.push(JSON.parse(line)) });
  // A checkpoint is soon due: its cut pauses every volume until their I/O in flight has ended.
  const { device, engine, va, vs } = await engineWithStallingPool({ checkpointJournalBytes: 2 * KiB, logger });
  try {
    device.stallIo(true);
    // Past the size written inline: on libuv's threads (this process has 4), where it hangs.
    const hung = vs.write(0, Buffer.alloc(MiB, 0x33), false);
    // Each MiB of new blocks journals 256 checksums, past the 2 KiB that makes a checkpoint due; the
    // engine's background work looks once a second, and the cut then waits for vs's write.
    await within(va.write(0, Buffer.alloc(MiB, 0x10), false), ENDS_WITHIN_MS, 'a 1 MiB write to a volume in the other pool');
    const checkpointFailed = () => logged.find((l) => l.msg === 'checkpoint failed');
    await within(
      (async () => {
        while (!checkpointFailed()) await new Promise((resolve) => setTimeout(resolve, 100));
      })(),
      ENDS_WITHIN_MS,
      "the checkpoint's cut giving up on the hung write",
    );
    expect(checkpointFailed()!.err!.message).toBe("volume vs: I/O in flight has not ended within 5 s (its pool's disk may have stopped answering); nothing changed, try again later");
    // va's I/O, held at its gate by the cut, goes on.
    await within(
      (async () => {
        await va.write(MiB, Buffer.alloc(MiB, 0x11), false);
        await va.flush();
      })(),
      ENDS_WITHIN_MS,
      'a write and FLUSH of a volume in the other pool',
    );
    expect(await settled(hung)).toBe(false);

    device.stallIo(false);
    await within(hung, ENDS_WITHIN_MS, 'the hung write, once its disk answers');
    expect((await vs.read(0, MiB)).equals(Buffer.alloc(MiB, 0x33))).toBe(true);
    expect((await va.read(0, 2 * MiB)).equals(Buffer.concat([Buffer.alloc(MiB, 0x10), Buffer.alloc(MiB, 0x11)]))).toBe(true);
    va.close();
    vs.close();
  } finally {
    device.stallIo(false);
    await engine.close();
  }
});

function qemuIo(node: WeftdHandle, exportName: string, ...commands: string[]) {
  return run('qemu-io', ['-f', 'raw', ...commands.flatMap((c) => ['-c', c]), node.nbdUri(exportName)], { timeoutMs: 60_000 });
}

test("a burst of large writes to a disk that stops answering holds four of weftd's eight threads: the other pool's writes and FLUSHes go on; the pool shows stalled, then ok", async () => {
  const { dir, device } = await dirWithStallingDevice();
  const node = await startWeftd({ pools: [`a:${dir}:64MiB`, `s:${device.file}`] });
  for (const [name, poolClass] of [['va', 'a'], ['vs', 's']]) expect((await node.weft(['volume', 'create', name, '--size', '16MiB', '--class', poolClass])).stderr).toBe('');

  device.stallIo(true);
  // Eight 1 MiB writes at once: before the cap, their 16 KiB pieces took every thread in an instant.
  const burst = qemuIo(node, 'vs', ...Array.from({ length: 8 }, (_, i) => `aio_write -P 0x4${i} ${i}M 1M`), 'aio_flush');
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const other = await within(qemuIo(node, 'va', 'write -P 0x11 0 1M', 'flush', 'write -f -P 0x12 1M 64k'), ENDS_WITHIN_MS, "the other pool's writes and FLUSH");
  expect(other.stderr).toBe('');
  expect(other.code).toBe(0);
  // No progress for 5 s: the pool is stalled, as `weft pool list` and the metrics say.
  const states = async () => (JSON.parse((await node.weft(['--output', 'json', 'pool', 'list'])).stdout) as PoolInfo[]).map((p) => `${p.class}:${p.state}`).sort();
  await within(
    (async () => {
      while (!(await states()).includes('s:stalled')) await new Promise((resolve) => setTimeout(resolve, 250));
    })(),
    ENDS_WITHIN_MS,
    'pool s shown stalled',
  );
  expect(await states()).toEqual(['a:ok', 's:stalled']);
  const metrics = await (await fetch(`http://127.0.0.1:${node.metricsPort}/metrics`)).text();
  expect(metrics).toMatch(/^weft_pool_state\{class="s",state="stalled"\} 1$/m);
  expect(metrics).toMatch(/^weft_pool_state\{class="s",state="ok"\} 0$/m);
  expect(metrics).toMatch(/^weft_pool_state\{class="a",state="ok"\} 1$/m);

  device.stallIo(false);
  const burstDone = await burst;
  expect(burstDone.stderr).toBe('');
  expect(burstDone.code).toBe(0);
  expect(await states()).toEqual(['a:ok', 's:ok']);
  const readBack = await qemuIo(node, 'vs', ...Array.from({ length: 8 }, (_, i) => `read -P 0x4${i} ${i}M 1M`));
  expect(readBack.stdout).not.toMatch(/Pattern verification failed/);
  expect(readBack.code).toBe(0);
});

test('kill -9 while a pool is stalled: what the other pool acknowledged survives; so does what the stalled pool acknowledged once its disk answered', async () => {
  const { dir, device } = await dirWithStallingDevice();
  const dataDir = path.join(dir, 'data');
  const node = await startWeftd({ dataDir, pools: [`a:${dir}:64MiB`, `s:${device.file}`] });
  for (const [name, poolClass] of [['va', 'a'], ['vs', 's']]) expect((await node.weft(['volume', 'create', name, '--size', '16MiB', '--class', poolClass])).stderr).toBe('');
  expect((await qemuIo(node, 'vs', 'write -P 0x01 0 64k', 'flush')).code).toBe(0);

  device.stall(true);
  let stalledDone = false;
  const stalled = qemuIo(node, 'vs', 'write -P 0x02 64k 64k', 'flush').finally(() => (stalledDone = true));
  await new Promise((resolve) => setTimeout(resolve, 1000)); // its FLUSH waits on the disk
  const other = await qemuIo(node, 'va', 'write -P 0x11 0 1M', 'flush', 'write -f -P 0x12 1M 64k');
  expect(other.stderr).toBe('');
  expect(other.code).toBe(0);
  expect(stalledDone).toBe(false);

  // A thread of weftd's is in an fdatasync on the stalled disk, which the kill waits for (as for a
  // hung disk's): weftd runs no more code from the kill on, and is gone once the disk answers.
  const killed = node.kill9();
  await new Promise((resolve) => setTimeout(resolve, 500));
  device.stall(false);
  await killed;
  await stalled;
  await node.start();
  const readBack = await qemuIo(node, 'va', 'read -P 0x11 0 1M', 'read -P 0x12 1M 64k');
  expect(readBack.stdout).not.toMatch(/Pattern verification failed/);
  expect(readBack.code).toBe(0);
  // The stalled pool's write was never acknowledged as durable: either contents, never an error.
  const stalledRead = await qemuIo(node, 'vs', 'read -P 0x01 0 64k', 'read -v 64k 16');
  expect(stalledRead.stdout).not.toMatch(/Pattern verification failed/);
  expect(stalledRead.stdout).toMatch(/^00010000:  (00|02) /m);

  // Stalled again, then answering: a FLUSH that waited for the disk survives a kill -9 after it.
  device.stall(true);
  const waited = qemuIo(node, 'vs', 'write -P 0x03 128k 64k', 'flush');
  await new Promise((resolve) => setTimeout(resolve, 1000));
  device.stall(false);
  expect((await waited).code).toBe(0);
  await node.kill9();
  await node.start();
  const after = await qemuIo(node, 'vs', 'read -P 0x03 128k 64k', 'read -P 0x01 0 64k');
  expect(after.stdout).not.toMatch(/Pattern verification failed/);
  expect(after.code).toBe(0);
});
