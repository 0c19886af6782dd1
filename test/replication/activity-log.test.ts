// The primary's activity log (fabric/replication/activity-log.ts): the extents where the copies
// may differ if the primary died now, on disk before a write is sent, free to leave once a flush
// that began after their last write completed everywhere, the most recently written kept; and, under a real ReplicatedDevice with a real
// replica, a primary restarted after a crash makes its copies equal there before it serves (copying
// only the blocks whose checksums differ, when the copies can give them), and a workload that never
// flushes does not grow the log past its cap.

import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { WeftClient } from '../../fabric/api/client';
import { AbsenceLog, AbsenceTrackingLayer } from '../../fabric/replication/absence-log';
import { ActivityLog } from '../../fabric/replication/activity-log';
import type { Pieces } from '../../fabric/pieces';
import { DirtyMap } from '../../fabric/replication/dirty-map';
import { PeerActivity } from '../../fabric/replication/peer-activity';
import type { RemoteReplica } from '../../fabric/replication/remote-replica';
import { ReplicatedDevice, type AbsenceNotices } from '../../fabric/replication/replicated-device';
import { FaultyFileOps, isPoolFile } from '../helpers/faulty-fs';
import { FileOpsLayer } from '../helpers/file-ops-layer';
import { Prng } from '../helpers/prng';
import { waitFor } from '../helpers/wait-for';
import { MemoryInSyncSet } from '../helpers/memory-in-sync-set';
import { ReplicaNode } from '../helpers/replica-node';
import { cleanupAll, makeTempDir } from '../helpers/weftd';
import { openPrimaryVolume } from './primary-volume';

const MiB = 1024 * 1024;
const EXTENT = 4 * MiB;

afterAll(cleanupAll);

const runsOf = (log: ActivityLog) => [...log.regions().runs()].map((r) => [r.offsetBytes / MiB, r.lengthBytes / MiB]);
const byteRunsOf = (map: DirtyMap | undefined) => [...(map?.runs() ?? [])].map((r) => [r.offsetBytes, r.lengthBytes]);
const silent = pino({ level: 'silent' });

describe('on its own', () => {
  let file: string;
  beforeEach(() => (file = path.join(makeTempDir('weft-activity-'), 'vol.activity')));

  test('names a write\'s extents on disk before the write may be sent', async () => {
    const log = ActivityLog.load(file);
    await log.reset(7);
    await log.enter(EXTENT - 4096, 8192); // straddles two extents
    expect(runsOf(ActivityLog.load(file))).toEqual([[0, 8]]);
    expect(ActivityLog.load(file).epoch).toBe(7);
    expect(log.enter(0, 4096)).toBeUndefined(); // on disk already: nothing to wait for
  });

  test('an extent leaves once a flush begun after its last write completes; one written meanwhile, or still in flight, stays', async () => {
    const log = ActivityLog.load(file, 0); // none kept for being hot
    await log.enter(0, 4096);
    await log.enter(EXTENT, 4096);
    await log.enter(2 * EXTENT, 4096);
    log.leave(0, 4096);
    log.leave(EXTENT, 4096); // extent 2's write is still in flight
    const flush = log.flushStarted();
    await log.enter(EXTENT + 8192, 4096); // extent 1 written again while the flush runs
    log.leave(EXTENT + 8192, 4096);
    log.flushed(flush);
    expect(runsOf(log)).toEqual([[4, 8]]);
    // A flush that fails (flushed not called) removes nothing; the next one that completes does.
    log.leave(2 * EXTENT, 4096);
    log.flushed(log.flushStarted());
    expect(runsOf(log)).toEqual([]);
    // Saved lazily: the file still names them (a superset costs only copying) until the next save,
    // which a write to a new extent waits for.
    expect(log.enter(0, 1)).toBeUndefined();
    await log.enter(5 * EXTENT, 1);
    expect(runsOf(ActivityLog.load(file))).toEqual([[0, 4], [20, 4]]);
  });

  test('after a save whose sync failed (the file may hold either record), a write to an extent only the older one named is saved again before it is sent', async () => {
    const log = ActivityLog.load(file, 0);
    await log.reset(3);
    await log.enter(0, 4096);
    await log.enter(EXTENT, 4096);
    log.leave(0, 4096);
    log.leave(EXTENT, 4096);
    const faults = new FaultyFileOps(new Prng(7)).install();
    faults.affects = (f) => f === file;
    faults.calls = new Set(['sync']);
    try {
      faults.failNext('EIO');
      log.flushed(log.flushStarted()); // both leave; the save of the empty log is written, its sync fails
      await waitFor(() => faults.injected === 1, 5000, 5);
      expect(runsOf(ActivityLog.load(file))).toEqual([]); // what a restart reads now
      await log.enter(0, 4096); // extent 0 again
    } finally {
      faults.uninstall();
    }
    expect(runsOf(ActivityLog.load(file))).toEqual([[0, 4]]);
  });

  test('an extent written again soon after it left is hot: flushes keep it, so that a write and flush loop waits for no save', async () => {
    const log = ActivityLog.load(file, 2);
    const write = async (extent: number) => {
      await log.enter(extent * EXTENT, 4096);
      log.leave(extent * EXTENT, 4096);
    };
    for (const extent of [0, 1, 2, 3]) await write(extent);
    log.flushed(log.flushStarted());
    expect(log.list()).toEqual([]); // written once, flushed: gone, as a bulk write's
    for (const extent of [0, 1, 2]) await write(extent); // back soon after: hot
    await write(0); // the most recently written
    await write(9); // new
    log.flushed(log.flushStarted());
    expect(log.list().sort()).toEqual([0, 2]); // the two most recently written hot ones
    // A commit loop on a hot extent: every flush covers it, it stays, no write waits for a save.
    const revision = log.revision;
    for (let i = 1; i <= 5; i++) {
      expect(log.enter(2 * EXTENT + i * 4096, 4096)).toBeUndefined();
      log.leave(2 * EXTENT + i * 4096, 4096);
      log.flushed(log.flushStarted());
    }
    expect(log.revision).toBe(revision);
    expect(log.list().sort()).toEqual([0, 2]);
    // A flush that began before a write does not cover it, hot or not.
    const flush = log.flushStarted();
    await write(5);
    log.flushed(flush);
    expect(log.list().sort()).toEqual([0, 2, 5]);
    // A new epoch starts afresh, nothing hot.
    await log.reset(3);
    await write(0);
    log.flushed(log.flushStarted());
    expect(log.list()).toEqual([]);
  });

  test('counts its changes: an extent is named as of the revision that added it, until it leaves', async () => {
    const log = ActivityLog.load(file, 0);
    await log.enter(0, 4096);
    const first = log.revision;
    expect(log.namedAsOf(0, 4096, first)).toBe(true);
    expect(log.namedAsOf(0, 4096, first - 1)).toBe(false);
    expect(log.enter(4096, 4096)).toBeUndefined(); // the same extent: no change
    expect(log.revision).toBe(first);
    await log.enter(EXTENT, 4096);
    expect(log.namedAsOf(0, EXTENT + 4096, first)).toBe(false); // the second extent came later
    expect(log.list().sort()).toEqual([0, 1]);
    log.leave(0, 4096);
    log.leave(4096, 4096);
    log.leave(EXTENT, 4096);
    log.flushed(log.flushStarted());
    expect(log.list()).toEqual([]);
    await log.enter(0, 4096); // back in, at a new revision: what was told of it before no longer counts
    expect(log.namedAsOf(0, 4096, first)).toBe(false);
    expect(log.namedAsOf(0, 4096, log.revision)).toBe(true);
  });

  test('a copy\'s record of the primary\'s log: on disk, an older notice changes nothing, a newer epoch replaces it', async () => {
    const peerFile = path.join(path.dirname(file), 'vol.peer-activity');
    const record = PeerActivity.load(peerFile);
    expect([record.epoch, [...record.regions().runs()]]).toEqual([0, []]);
    await record.record(3, 5, [2]);
    await record.record(3, 4, [7]); // overtaken on the way: older than what it holds
    await record.record(2, 9, [7]); // an older primary's
    const loaded = PeerActivity.load(peerFile);
    expect([loaded.epoch, [...loaded.regions().runs()].map((r) => [r.offsetBytes / MiB, r.lengthBytes / MiB])]).toEqual([3, [[8, 4]]]);
    await loaded.record(4, 0, []);
    expect([PeerActivity.load(peerFile).epoch, [...PeerActivity.load(peerFile).regions().runs()]]).toEqual([4, []]);
    fs.writeFileSync(peerFile, 'not a record');
    expect(PeerActivity.load(peerFile).epoch).toBe(0);
  });

  test("volume X's log keeps its hands off the absence log of a volume named X.activity (its file is X.activity.json, the old name of X's log)", async () => {
    const absences = '{"absences":{"n2":{"full":false,"map":""}}}';
    fs.writeFileSync(`${file}.json`, absences);
    const log = ActivityLog.load(file);
    expect([log.epoch, runsOf(log)]).toEqual([0, []]);
    await log.enter(0, 4096); // the first save, which removes an earlier version's file
    expect(fs.readFileSync(`${file}.json`, 'utf8')).toBe(absences);
  });

  test('a damaged file reads as no log (epoch 0): a former primary then gets a full copy', async () => {
    const log = ActivityLog.load(file);
    await log.reset(3);
    await log.enter(0, 4096);
    fs.writeFileSync(file, 'damaged');
    expect([ActivityLog.load(file).epoch, runsOf(ActivityLog.load(file))]).toEqual([0, []]);
  });

  test('a log an earlier version kept as FILE.json is read, and removed at the first save', async () => {
    fs.writeFileSync(`${file}.json`, '{"epoch": 3, "extents": [2]}');
    const log = ActivityLog.load(file);
    expect([log.epoch, runsOf(log)]).toEqual([3, [[8, 4]]]);
    await log.enter(0, 4096);
    expect(fs.existsSync(`${file}.json`)).toBe(false);
    expect(runsOf(ActivityLog.load(file))).toEqual([[0, 4], [8, 4]]);
    fs.writeFileSync(`${file}.json`, '{"epoch": 3, "extents": [1, -2]}'); // damaged, and older than the file: not read
    expect(ActivityLog.load(file).epoch).toBe(3);
  });
});

test('a primary restarted with extents in its log copies them to the copies in step before it serves, then starts afresh', async () => {
  const VOLUME_BYTES = 64 * MiB;
  const dir = makeTempDir('weft-primary-');
  const { engine, local } = await openPrimaryVolume(dir, 'vol', VOLUME_BYTES);
  const [replica] = await Promise.all([ReplicaNode.start('r1', 'vol', VOLUME_BYTES)]);
  try {
    // What a crash left: a write that reached the primary's copy and not the replica's, in an extent the log names.
    const lost = randomBytes(64 * 1024);
    await local.write(8 * MiB + 4096, lost, true);
    const log = ActivityLog.load(path.join(dir, 'vol.activity'));
    await log.enter(8 * MiB + 4096, lost.length);
    expect((await replica.readAll(1, 9 * MiB)).subarray(8 * MiB + 4096, 8 * MiB + 4096 + lost.length).equals(lost)).toBe(false);

    // Logged at epoch 0 and opened at 2: this node may have claimed epoch 1 and stopped before it
    // served, so the copies may still differ where the log of epoch 0 names: copied too.
    const late = await ReplicatedDevice.open(local, [replica.remote(2)], new MemoryInSyncSet(['r1']), { activity: { log: ActivityLog.load(log.file), epoch: 2 } });
    late.close();
    expect((await replica.readAll(2, 9 * MiB)).subarray(8 * MiB + 4096, 8 * MiB + 4096 + lost.length).equals(lost)).toBe(true);
    const lostAgain = randomBytes(64 * 1024);
    await local.write(8 * MiB + 4096, lostAgain, true);
    await log.reset(2);
    await log.enter(8 * MiB + 4096, lostAgain.length);

    // The primary of epoch 2 back at epoch 3: it copies what its log names before it serves.
    const device = await ReplicatedDevice.open(local, [replica.remote(3)], new MemoryInSyncSet(['r1']), { activity: { log: ActivityLog.load(log.file), epoch: 3 } });
    expect((await replica.readAll(3, 9 * MiB)).subarray(8 * MiB + 4096, 8 * MiB + 4096 + lostAgain.length).equals(lostAgain)).toBe(true);
    const after = ActivityLog.load(log.file);
    expect([after.epoch, runsOf(after)]).toEqual([3, []]);
    device.close();
  } finally {
    replica.closeClients();
    await engine.close();
  }
});

test("what the log names reaches the absence log of the copies out before the log starts afresh: a save that fails fails the open and leaves the log; a later open owes it to them", async () => {
  const dir = makeTempDir('weft-primary-');
  const { engine, local } = await openPrimaryVolume(dir, 'vol', 64 * MiB);
  const replica = await ReplicaNode.start('r1', 'vol', 64 * MiB);
  const away: RemoteReplica = { id: 'r2', connect: () => Promise.reject(new Error('r2 is down')) };
  const absenceFile = path.join(dir, 'absences.json');
  const logFile = path.join(dir, 'vol.activity');
  // r1's own absence log is not what this test looks at: told nothing.
  const notices: AbsenceNotices = { track: () => Promise.resolve(), forget: () => Promise.resolve() };
  const open = (epoch: number) => {
    const absences = AbsenceLog.load(absenceFile, silent);
    return ReplicatedDevice.open(new AbsenceTrackingLayer(local, absences), [replica.remote(epoch), away], new MemoryInSyncSet(['r1']), {
      absences: { log: absences, notices },
      activity: { log: ActivityLog.load(logFile), epoch },
    });
  };
  try {
    // r2 is away, known to lack nothing yet; a write in flight at a crash (the primary of epoch 1's)
    // reached this copy only, in an extent its activity log names, and not r2's absence entry.
    await AbsenceLog.load(absenceFile, silent).track('r2', { full: false, map: new DirtyMap() });
    await local.write(8 * MiB, randomBytes(64 * 1024), true);
    const log = ActivityLog.load(logFile);
    await log.reset(1);
    await log.enter(8 * MiB, 64 * 1024);

    // Promoted again at epoch 2, its absence log cannot be saved (its disk fails): it does not
    // serve, and its activity log still names the extent (a crash there would leave the same).
    fs.mkdirSync(`${absenceFile}.tmp`);
    await expect(open(2)).rejects.toThrow(/EISDIR/);
    const kept = ActivityLog.load(logFile);
    expect([kept.epoch, runsOf(kept)]).toEqual([1, [[8, 4]]]);
    fs.rmdirSync(`${absenceFile}.tmp`);

    // At epoch 3 (2 was claimed, never served): r2 owes the extent, on disk, and the log starts afresh.
    const device = await open(3);
    expect(device.status().find((r) => r.id === 'r2')).toMatchObject({ state: 'out', behindBytes: EXTENT });
    expect(byteRunsOf(AbsenceLog.load(absenceFile, silent).absence('r2')?.map)).toEqual([[8 * MiB, EXTENT]]);
    const fresh = ActivityLog.load(logFile);
    expect([fresh.epoch, runsOf(fresh)]).toEqual([3, []]);
    device.close();
  } finally {
    replica.closeClients();
    await engine.close();
  }
});

test('a primary whose own copy fails a read while it makes the copies equal does not serve; the copies stay in the in-sync set', async () => {
  const dir = makeTempDir('weft-primary-');
  const { engine, local } = await openPrimaryVolume(dir, 'vol', 64 * MiB);
  const replica = await ReplicaNode.start('r1', 'vol', 64 * MiB);
  const disk = new FailingReads().install();
  try {
    await local.write(8 * MiB, randomBytes(64 * 1024), true); // in flight at a crash: on this copy only
    const log = ActivityLog.load(path.join(dir, 'vol.activity'));
    await log.reset(2);
    await log.enter(8 * MiB, 64 * 1024);
    disk.failing = true;
    const inSync = new MemoryInSyncSet(['r1']);
    await expect(ReplicatedDevice.open(local, [replica.remote(3)], inSync, { activity: { log, epoch: 3 } })).rejects.toMatchObject({ code: 'EIO' });
    expect([inSync.members(), inSync.removeCalls]).toEqual([['r1'], 0]);
    disk.failing = false;
    expect(ActivityLog.load(log.file).epoch).toBe(2); // still names what the next primary must make equal
  } finally {
    disk.uninstall();
    replica.closeClients();
    await engine.close();
  }
});

test('... also when one copy is being made equal as the read for another fails: both stay in the in-sync set', async () => {
  const dir = makeTempDir('weft-primary-');
  const { engine, local } = await openPrimaryVolume(dir, 'vol', 64 * MiB);
  const replicas = [await ReplicaNode.start('r1', 'vol', 64 * MiB), await ReplicaNode.start('r2', 'vol', 64 * MiB)];
  const disk = new FailingReads().install();
  try {
    await local.write(8 * MiB, randomBytes(64 * 1024), true);
    const log = ActivityLog.load(path.join(dir, 'vol.activity'));
    await log.reset(2);
    await log.enter(8 * MiB, 64 * 1024);
    disk.failAfter = 1; // the first copy's read of the extent succeeds (its write goes out), the second's fails
    const inSync = new MemoryInSyncSet(['r1', 'r2']);
    await expect(ReplicatedDevice.open(local, replicas.map((r) => r.remote(3)), inSync, { activity: { log, epoch: 3 } })).rejects.toMatchObject({ code: 'EIO' });
    expect(disk.reads).toBeGreaterThan(1);
    expect([inSync.members(), inSync.removeCalls]).toEqual([['r1', 'r2'], 0]);
  } finally {
    disk.uninstall();
    for (const replica of replicas) replica.closeClients();
    await engine.close();
  }
});

/** The engine's reads of its files fail with EIO while failing is set (a disk that cannot read). */
class FailingReads extends FileOpsLayer {
  failing = false;
  /** Once set: that many more reads succeed, then every one fails. */
  failAfter?: number;
  reads = 0;

  private count(): void {
    if (this.failAfter !== undefined && this.reads++ >= this.failAfter) this.failing = true;
  }

  override read(fd: number, buf: Buffer, offset: number, length: number, position: number, done: (err: NodeJS.ErrnoException | null, read: number) => void): void {
    this.count();
    if (!this.failing) return this.below.read(fd, buf, offset, length, position, done);
    process.nextTick(() => done(readError(), 0));
  }

  override readSync(fd: number, buf: Buffer, offset: number, length: number, position: number): number {
    this.count();
    if (this.failing) throw readError();
    return this.below.readSync(fd, buf, offset, length, position);
  }
}

function readError(): NodeJS.ErrnoException {
  return Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO', errno: -5 });
}

test('with the copies\' block checksums, the logged extents are compared and only the blocks that differ are copied', async () => {
  const VOLUME_BYTES = 64 * MiB;
  const dir = makeTempDir('weft-primary-');
  const { engine, local } = await openPrimaryVolume(dir, 'vol', VOLUME_BYTES);
  const replica = await ReplicaNode.start('r1', 'vol', VOLUME_BYTES);
  const api = new WeftClient(`127.0.0.1:${replica.node.apiPort}`);
  try {
    // Equal on both copies: 1 MiB at 8 MiB; 64 KiB of zeroes written on the replica where the
    // primary's copy has a hole (they read the same). Unequal: 64 KiB at 8 MiB + 4 KiB, written on
    // the primary's copy only (a write in flight when it crashed).
    const common = randomBytes(MiB);
    const lost = randomBytes(64 * 1024);
    const client = await replica.connect(2);
    await client.write(8 * MiB, common, false);
    await client.write(12 * MiB, Buffer.alloc(64 * 1024), true);
    await local.write(8 * MiB, common, false);
    await local.write(8 * MiB + 4096, lost, true);
    const log = ActivityLog.load(path.join(dir, 'vol.activity'));
    await log.reset(2);
    await log.enter(8 * MiB, 8 * MiB); // extents 2 and 3

    const checksums = {
      local: (offsetBytes: number, lengthBytes: number) => engine.blockChecksums('vol', offsetBytes, lengthBytes),
      remote: (_id: string, offsetBytes: number, lengthBytes: number) => api.blockChecksums('vol', 3, offsetBytes, lengthBytes),
    };
    const device = await ReplicatedDevice.open(local, [replica.remote(3)], new MemoryInSyncSet(['r1']), { activity: { log, epoch: 3, checksums } });
    expect(device.settled).toEqual({ comparedBytes: 8 * MiB, copiedBytes: lost.length, uncomparedBytes: 0 });
    const copy = await replica.readAll(3, 16 * MiB);
    expect(copy.subarray(8 * MiB, 16 * MiB).equals(await local.read(8 * MiB, 8 * MiB))).toBe(true);
    device.close();

    // The copy answers only a primary at its own epoch, for a whole-block range within the volume.
    await expect(api.blockChecksums('vol', 2, 0, 4096)).rejects.toMatchObject({ code: grpc.status.FAILED_PRECONDITION, message: expect.stringContaining('at epoch 3') });
    await expect(api.blockChecksums('vol', 3, 100, 4096)).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    await expect(api.blockChecksums('vol', 3, VOLUME_BYTES - 4096, 8192)).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    await expect(api.blockChecksums('nothing', 3, 0, 4096)).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    expect(await api.blockChecksums('vol', 3, 8 * MiB, 8192)).toEqual(await engine.blockChecksums('vol', 8 * MiB, 8192));

    // A copy that cannot give its checksums (a node of an older version) gets the extents whole.
    await log.reset(3);
    await log.enter(8 * MiB, 4096);
    const whole = await ReplicatedDevice.open(local, [replica.remote(4)], new MemoryInSyncSet(['r1']), {
      activity: { log, epoch: 4, checksums: { ...checksums, remote: () => Promise.reject(new Error('unimplemented')) } },
    });
    expect(whole.settled).toEqual({ comparedBytes: EXTENT, copiedBytes: EXTENT, uncomparedBytes: EXTENT });
    whole.close();
  } finally {
    api.close();
    replica.closeClients();
    await engine.close();
  }
});

test('a flush that a member out of the targets did not take (its removal not committed) leaves the extents in the log', async () => {
  const dir = makeTempDir('weft-primary-');
  const { engine, local } = await openPrimaryVolume(dir, 'vol', 64 * MiB);
  const [r1, r2] = await Promise.all([ReplicaNode.start('r1', 'vol', 64 * MiB), ReplicaNode.start('r2', 'vol', 64 * MiB)]);
  const inSync = new MemoryInSyncSet(['r1', 'r2']);
  // The two flushes the client's flush reaches (the primary's copy and r1), each signalling its end.
  const ended: Promise<void>[] = [];
  const signalling = <T extends { flush(): Promise<void> }>(target: T): T => {
    const flush = target.flush.bind(target);
    let done!: () => void;
    ended.push(new Promise<void>((resolve) => (done = resolve)));
    target.flush = () => flush().then(done);
    return target;
  };
  const log = ActivityLog.load(path.join(dir, 'vol.activity'));
  const r1Remote = { id: 'r1', connect: async () => signalling(await r1.connect(1)) };
  const device = await ReplicatedDevice.open(signalling(local), [r1Remote, r2.remote(1)], inSync, { activity: { log, epoch: 1 } });
  try {
    await device.write(0, randomBytes(4096), false); // extent 0, on every copy, flushed nowhere
    await r2.node.kill9();
    inSync.hold = new Promise<void>(() => undefined); // the store does not commit r2's removal
    void device.write(8 * MiB, randomBytes(4096), false).catch(() => undefined); // fails on r2: its removal begins
    await waitFor(() => inSync.removeCalls === 1, 10_000, 10);
    void device.flush().catch(() => undefined); // reaches the primary's copy and r1, not r2
    await Promise.all(ended);
    await new Promise((resolve) => setImmediate(resolve));
    // r2 is still in the in-sync set, so it may be promoted, and it may lack extent 0's write: the log
    // keeps it, so that whoever is promoted makes the copies equal there.
    expect(runsOf(log)).toEqual([[0, 4], [8, 4]]);
  } finally {
    device.close();
    r1.closeClients();
    r2.closeClients();
    await engine.close();
  }
});

test('writes that are never flushed do not grow the log past its cap: the primary flushes every copy itself', async () => {
  const CAP = 16; // weftd's is 1024 (4 GiB)
  const extents = 4 * CAP;
  const VOLUME_BYTES = extents * EXTENT;
  const dir = makeTempDir('weft-primary-');
  const { engine, local } = await openPrimaryVolume(dir, 'vol', VOLUME_BYTES);
  const replica = await ReplicaNode.start('r1', 'vol', VOLUME_BYTES);
  try {
    const log = ActivityLog.load(path.join(dir, 'vol.activity'));
    const device = await ReplicatedDevice.open(local, [replica.remote(1)], new MemoryInSyncSet(['r1']), { activity: { log, epoch: 1, capExtents: CAP } });
    let most = 0;
    for (let extent = 0; extent < extents; extent++) {
      await device.write(extent * EXTENT, randomBytes(4096), false);
      most = Math.max(most, log.extents);
    }
    // Each flush it starts covers what was written before it began; one runs at a time.
    await waitFor(() => log.extents <= CAP, 10_000, 20);
    expect(most).toBeLessThan(extents);
    expect(device.status().map((r) => r.state)).toEqual(['in-sync']);
    device.close();
  } finally {
    replica.closeClients();
    await engine.close();
  }
});

test('with notices, a copy has recorded a write\'s extent before the write reaches it; one that cannot record is taken out, the write acknowledged', async () => {
  const VOLUME_BYTES = 64 * MiB;
  const dir = makeTempDir('weft-primary-');
  const { engine, local } = await openPrimaryVolume(dir, 'vol', VOLUME_BYTES);
  const replica = await ReplicaNode.start('r1', 'vol', VOLUME_BYTES);
  try {
    const log = ActivityLog.load(path.join(dir, 'vol.activity'));
    const told: string[] = [];
    let failing = false;
    const notices = {
      async track(to: string, revision: number, extents: readonly number[]) {
        // What the copy holds of extent 5 when it is told: the write there has not reached it yet.
        const held = (await replica.readAll(1, 6 * EXTENT)).subarray(5 * EXTENT, 5 * EXTENT + 4096);
        told.push(`${to} r${revision} [${[...extents].sort().join(',')}] ${held[0]}`);
        if (failing) throw new Error('its disk is failing');
      },
    };
    const inSync = new MemoryInSyncSet(['r1']);
    const device = await ReplicatedDevice.open(local, [replica.remote(1)], inSync, { activity: { log, epoch: 1, notices } });
    await device.write(5 * EXTENT, Buffer.alloc(4096, 0x77), false);
    await device.write(5 * EXTENT + 4096, Buffer.alloc(4096, 0x78), false); // the same extent: nothing more to tell
    expect(told).toEqual([`r1 r${log.revision} [5] 0`]);

    failing = true;
    await device.write(9 * EXTENT, Buffer.alloc(4096, 0x79), false);
    expect(inSync.log).toEqual(['remove r1']);
    expect(device.status().map((r) => r.state)).toEqual(['out']);
    expect((await local.read(9 * EXTENT, 4096))[0]).toBe(0x79);
    device.close();
  } finally {
    replica.closeClients();
    await engine.close();
  }
});

/** Activity notices that only record what each copy was told: "r1 [0,9]". */
function recordingNotices() {
  const told: string[] = [];
  const notices = {
    async track(to: string, _revision: number, extents: readonly number[]) {
      told.push(`${to} [${[...extents].sort((a, b) => a - b).join(',')}]`);
    },
  };
  return { told, notices };
}

// A member out (its write failed) and not yet removed may still be promoted, and what it recorded of
// the log lacks what is told after it went out. A write to a new extent sent to the others
// meanwhile (never acknowledged: it waits for that removal) would stay on them and not on it, should
// this primary die before the removal commits and it be promoted: copies in the in-sync set unequal
// where none looks. So such a write waits for the removal before it is told or sent anywhere.
test('a write to a new extent is sent nowhere while a member out of the targets is not yet removed; once it is, the write goes on', async () => {
  const VOLUME_BYTES = 64 * MiB;
  const dir = makeTempDir('weft-primary-');
  const { engine, local } = await openPrimaryVolume(dir, 'vol', VOLUME_BYTES);
  const [r1, r2] = await Promise.all([ReplicaNode.start('r1', 'vol', VOLUME_BYTES), ReplicaNode.start('r2', 'vol', VOLUME_BYTES)]);
  try {
    const log = ActivityLog.load(path.join(dir, 'vol.activity'));
    const { told, notices } = recordingNotices();
    const inSync = new MemoryInSyncSet(['r1', 'r2']);
    const device = await ReplicatedDevice.open(local, [r1.remote(1), r2.remote(1)], inSync, { activity: { log, epoch: 1, notices } });
    await device.write(0, Buffer.alloc(4096, 0x11), false);
    await r2.node.kill9();
    let commit!: () => void;
    inSync.hold = new Promise((resolve) => (commit = resolve)); // the store has yet to commit r2's removal
    const missed = device.write(4096, Buffer.alloc(4096, 0x22), false); // fails on r2: its removal begins
    await waitFor(() => inSync.removeCalls === 1, 10_000, 10);
    told.length = 0;
    let acknowledged = false;
    const written = device.write(9 * EXTENT, Buffer.alloc(4096, 0x33), false).then(() => (acknowledged = true));
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(told).toEqual([]);
    expect((await r1.readAll(1, 10 * EXTENT))[9 * EXTENT]).toBe(0);
    expect((await local.read(9 * EXTENT, 4096))[0]).toBe(0);
    expect(acknowledged).toBe(false);

    commit();
    await Promise.all([missed, written]);
    expect(inSync.log).toEqual(['remove r2']);
    expect(told).toEqual(['r1 [0,9]']);
    expect((await r1.readAll(1, 10 * EXTENT))[9 * EXTENT]).toBe(0x33);
    device.close();
  } finally {
    r1.closeClients();
    r2.closeClients();
    await engine.close();
  }
});

// The same for a member that goes out while the round waits for another's removal: not told either,
// it too must be out of the in-sync set before the write is told or sent anywhere.
test('... also a member that goes out while that removal is under way', async () => {
  const VOLUME_BYTES = 64 * MiB;
  const dir = makeTempDir('weft-primary-');
  const { engine, local } = await openPrimaryVolume(dir, 'vol', VOLUME_BYTES);
  const [r1, r2, r3] = await Promise.all(['r1', 'r2', 'r3'].map((id) => ReplicaNode.start(id, 'vol', VOLUME_BYTES)));
  try {
    const log = ActivityLog.load(path.join(dir, 'vol.activity'));
    const { told, notices } = recordingNotices();
    const inSync = new MemoryInSyncSet(['r1', 'r2', 'r3']);
    const device = await ReplicatedDevice.open(local, [r1.remote(1), r2.remote(1), r3.remote(1)], inSync, { activity: { log, epoch: 1, notices } });
    await device.write(0, Buffer.alloc(4096, 0x11), false);
    await r2.node.kill9();
    let commitR2!: () => void;
    inSync.hold = new Promise((resolve) => (commitR2 = resolve)); // r2's removal waits for this
    const missedByR2 = device.write(4096, Buffer.alloc(4096, 0x22), false);
    await waitFor(() => inSync.removeCalls === 1, 10_000, 10);
    told.length = 0;
    let acknowledged = false;
    const written = device.write(9 * EXTENT, Buffer.alloc(4096, 0x33), false).then(() => (acknowledged = true));
    // While the round waits for r2's removal, r3 goes out (a write to a told extent fails on it).
    await r3.node.kill9();
    let commitR3!: () => void;
    inSync.hold = new Promise((resolve) => (commitR3 = resolve)); // r3's removal waits for this
    const missedByR3 = device.write(8192, Buffer.alloc(4096, 0x44), false);
    await waitFor(() => inSync.removeCalls === 2, 10_000, 10);
    commitR2();
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(inSync.log).toEqual(['remove r2']);
    expect(told).toEqual([]); // not told to r1 alone (nor the write sent to it) while r3 is still a member
    expect((await r1.readAll(1, 10 * EXTENT))[9 * EXTENT]).toBe(0);
    expect(acknowledged).toBe(false);

    commitR3();
    await Promise.all([missedByR2, missedByR3, written]);
    expect(inSync.log).toEqual(['remove r2', 'remove r3']);
    expect(told).toEqual(['r1 [0,9]']);
    expect((await r1.readAll(1, 10 * EXTENT))[9 * EXTENT]).toBe(0x33);
    device.close();
  } finally {
    for (const r of [r1, r2, r3]) r.closeClients();
    await engine.close();
  }
});

// A copy about to be a target is told the log again until the log stays as told. Writes streaming
// into new extents change it during every telling (a call and an fdatasync on the copy): the resync
// never began, and the volume stayed with one copy fewer for as long as the writes went on.
test('a copy that returns while writes keep adding extents is told a bounded number of times, then resynced', async () => {
  const VOLUME_BYTES = 1024 * MiB; // 256 extents: room for a new one at every telling
  const dir = makeTempDir('weft-primary-');
  const { engine, local } = await openPrimaryVolume(dir, 'vol', VOLUME_BYTES);
  const replica = await ReplicaNode.start('r1', 'vol', VOLUME_BYTES);
  try {
    const log = ActivityLog.load(path.join(dir, 'vol.activity'));
    let device: ReplicatedDevice | undefined;
    let tellings = 0;
    const streamed: Promise<void>[] = [];
    const notices = {
      async track() {
        // Each telling before it is a target takes a while, and a write to a new extent comes meanwhile.
        if ((device as ReplicatedDevice).status()[0].state !== 'out') return;
        tellings += 1;
        if (tellings < 200) streamed.push((device as ReplicatedDevice).write(tellings * EXTENT, Buffer.alloc(4096, tellings % 251), false));
        await new Promise((resolve) => setTimeout(resolve, 5));
      },
    };
    device = await ReplicatedDevice.open(local, [replica.remote(1)], new MemoryInSyncSet([]), { activity: { log, epoch: 1, notices } });
    await device.write(0, Buffer.alloc(4096, 0xee), false);
    await device.resync('r1', 'full');
    expect(tellings).toBeLessThanOrEqual(4);
    await Promise.all(streamed);
    expect(device.status()[0]).toMatchObject({ state: 'in-sync', behindBytes: 0 });
    // Every write, those that came while it was told included, is on the copy.
    const copy = await replica.readAll(1, 5 * EXTENT);
    for (let extent = 1; extent < 5; extent++) expect(copy[extent * EXTENT]).toBe(extent <= tellings ? extent % 251 : 0);
    expect(copy[0]).toBe(0xee);
    device.close();
  } finally {
    replica.closeClients();
    await engine.close();
  }
});

/** Async writes of pool files (those past 128 KiB) are held, unanswered, while `holding` is set. */
class HeldPoolWrites extends FileOpsLayer {
  holding = false;
  private readonly held: (() => void)[] = [];

  override writev(fd: number, pieces: Pieces, position: number, done: (err: NodeJS.ErrnoException | null, written: number) => void): void {
    if (!this.holding || !isPoolFile(fs.readlinkSync(`/proc/self/fd/${fd}`))) return this.below.writev(fd, pieces, position, done);
    this.held.push(() => this.below.writev(fd, pieces, position, done));
  }

  get heldCount(): number {
    return this.held.length;
  }

  release(): void {
    this.holding = false;
    for (const write of this.held.splice(0)) write();
  }
}

// The last telling holds new changes until those in flight end. One that does not end soon (a write
// waiting on a slow disk, or on the store to take a copy out) would hold every write behind it: the
// telling gives up after a second instead, the resync fails (not the copy's fault) and is tried again.
test("a copy's last telling does not hold writes behind one in flight that does not end: the resync fails, and succeeds once it has ended", async () => {
  const VOLUME_BYTES = 1024 * MiB;
  const dir = makeTempDir('weft-primary-');
  const { engine, local } = await openPrimaryVolume(dir, 'vol', VOLUME_BYTES);
  const replica = await ReplicaNode.start('r1', 'vol', VOLUME_BYTES);
  const writes = new HeldPoolWrites().install();
  try {
    const log = ActivityLog.load(path.join(dir, 'vol.activity'));
    let device: ReplicatedDevice | undefined;
    let tellings = 0;
    let stuck: Promise<void> | undefined;
    const streamed: Promise<void>[] = [];
    const notices = {
      async track() {
        const d = device as ReplicatedDevice;
        if (d.status()[0].state !== 'out') return;
        tellings += 1;
        if (tellings <= 3) streamed.push(d.write(tellings * EXTENT, Buffer.alloc(4096, tellings), false));
        if (tellings === 3) {
          writes.holding = true;
          stuck = d.write(100 * EXTENT, Buffer.alloc(MiB, 0x5c), false); // reaches the pool on the thread pool: held
          await waitFor(() => writes.heldCount > 0, 5000, 5);
        }
        await new Promise((resolve) => setTimeout(resolve, 5));
      },
    };
    device = await ReplicatedDevice.open(local, [replica.remote(1)], new MemoryInSyncSet([]), { activity: { log, epoch: 1, notices } });
    await expect(device.resync('r1', 'full')).rejects.toMatchObject({ name: 'LocalCopyFault', message: expect.stringMatching(/the writes in flight did not end within 1000 ms/) });
    expect(device.status()[0].state).toBe('out');
    // Writes go on meanwhile, the held one aside.
    await device.write(200 * EXTENT, Buffer.alloc(4096, 0x77), false);
    writes.release();
    await Promise.all([stuck, ...streamed]);
    expect(await device.resync('r1', 'full')).toBeGreaterThan(0);
    expect(device.status()[0]).toMatchObject({ state: 'in-sync', behindBytes: 0 });
    const copy = await replica.readAll(1, 201 * EXTENT);
    expect(copy[100 * EXTENT]).toBe(0x5c);
    expect(copy[200 * EXTENT]).toBe(0x77);
    device.close();
  } finally {
    writes.release();
    writes.uninstall();
    replica.closeClients();
    await engine.close();
  }
});
