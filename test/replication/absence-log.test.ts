// The absence log (fabric/replication/absence-log.ts): what each copy keeps, on disk, of the
// changes an absent copy missed, so that a primary restarted (or another copy promoted) resyncs a
// returning copy with only those. On its own first, then under a real ReplicatedDevice whose
// replicas are real weftd processes: their logs are told over the API, the primary's is reloaded
// from its file as a restarted primary's would be.

import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { WeftClient } from '../../fabric/api/client';
import { AbsenceLog, AbsenceTrackingLayer } from '../../fabric/replication/absence-log';
import { DirtyMap } from '../../fabric/replication/dirty-map';
import { ReplicatedDevice, type AbsenceNotices } from '../../fabric/replication/replicated-device';
import { MemoryInSyncSet } from '../helpers/memory-in-sync-set';
import { Prng } from '../helpers/prng';
import { readInPieces, ReplicaNode } from '../helpers/replica-node';
import { waitFor } from '../helpers/wait-for';
import { cleanupAll, makeTempDir } from '../helpers/weftd';
import { openPrimaryVolume } from './primary-volume';

const KiB = 1024;
const MiB = 1024 * KiB;
const BLOCK = 4096;
const silent = pino({ level: 'silent' });

afterAll(cleanupAll);

const mapOf = (...ranges: [number, number][]) => {
  const map = new DirtyMap();
  for (const [offset, length] of ranges) map.mark(offset, length);
  return map;
};
const runsOf = (map: DirtyMap | undefined) => [...(map?.runs() ?? [])].map((r) => [r.offsetBytes, r.lengthBytes]);

describe('on its own', () => {
  let file: string;
  beforeEach(() => (file = path.join(makeTempDir('weft-absence-'), 'replication', 'vol.json')));

  test('logs what each tracked copy misses, and reads back from its file what it had saved', async () => {
    const log = AbsenceLog.load(file, silent);
    expect(log.record(0, BLOCK)).toBeUndefined(); // nobody away: nothing to log, nothing to wait for
    await log.track('n2', { full: false, map: mapOf([0, 8 * KiB]) });
    await log.track('n3', { full: true, map: new DirtyMap() });
    await log.record(1 * MiB, 12 * KiB);
    expect(log.record(1 * MiB, 4 * KiB)).toBeUndefined(); // logged already: no save to wait for
    // Tracked again (a later primary's word): merged, never narrowed.
    await log.track('n2', { full: false, map: mapOf([2 * MiB, BLOCK]) });

    const reloaded = AbsenceLog.load(file, silent);
    expect(reloaded.tracked().sort()).toEqual(['n2', 'n3']);
    expect(runsOf(reloaded.absence('n2')?.map)).toEqual([
      [0, 8 * KiB],
      [1 * MiB, 12 * KiB],
      [2 * MiB, BLOCK],
    ]);
    expect(reloaded.absence('n3')).toMatchObject({ full: true });
    expect(reloaded.absence('n3')?.map.blocks).toBe(0); // a full copy is owed: blocks are not counted

    await reloaded.forget('n2');
    expect(AbsenceLog.load(file, silent).tracked()).toEqual(['n3']);
    await reloaded.remove();
    expect(fs.existsSync(file)).toBe(false);
  });

  test('an entry whose map grows past the cap becomes one of a full copy, on disk too', async () => {
    const file = path.join(makeTempDir('weft-absences-'), 'vol.json');
    const CHUNK_SPAN = 128 * MiB; // one chunk of the map: 4 KiB of bits, 4100 bytes encoded
    const log = AbsenceLog.load(file, silent, 2 * 4100);
    await log.track('n2', { full: false, map: new DirtyMap() });
    await log.record(0, BLOCK);
    await log.record(CHUNK_SPAN, BLOCK);
    expect(log.absence('n2')).toMatchObject({ full: false });
    expect(log.absence('n2')?.map.blocks).toBe(2);
    await log.record(2 * CHUNK_SPAN, BLOCK); // a third chunk
    expect(log.absence('n2')).toMatchObject({ full: true });
    expect(log.absence('n2')?.map.blocks).toBe(0);
    expect(log.record(3 * CHUNK_SPAN, BLOCK)).toBeUndefined(); // nothing more to save for it
    expect(AbsenceLog.load(file, silent).absence('n2')).toMatchObject({ full: true });
  });

  test('a damaged file reads as an empty log (the copies away then get full copies), and says so', () => {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, '{"absences": {"n2": {"full": false, "map": "AAAA"}}}'); // 3 bytes of map: not whole chunks
    const warnings: unknown[] = [];
    const logger = { warn: (...args: unknown[]) => warnings.push(args) } as unknown as pino.Logger;
    expect(AbsenceLog.load(file, logger).tracked()).toEqual([]);
    expect(warnings).toHaveLength(1);
  });

  test('a change waits for its mark to be on disk, and fails when the mark cannot be saved', async () => {
    const log = AbsenceLog.load(file, silent);
    await log.track('n2', { full: false, map: new DirtyMap() });
    fs.rmSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(path.dirname(file), 'a file where the log directory should be');
    await expect(log.record(0, BLOCK)).rejects.toThrow();
    // The same block again: marked already, but not on disk, so it waits for a save again (and fails).
    await expect(log.record(0, BLOCK)).rejects.toThrow();
    fs.rmSync(path.dirname(file));
    await log.record(0, BLOCK); // the disk works again: saved now
    expect(runsOf(AbsenceLog.load(file, silent).absence('n2')?.map)).toEqual([[0, BLOCK]]);
    expect(log.record(0, BLOCK)).toBeUndefined();
  });

  test('a change to a range whose mark is still being saved waits for that save: a crash before it would lose the mark', async () => {
    const log = AbsenceLog.load(file, silent);
    await log.track('n2', { full: false, map: new DirtyMap() });
    let firstSaved = false;
    const first = log.record(0, BLOCK)!.then(() => (firstSaved = true));
    const second = log.record(0, BLOCK); // the same block, before the first mark is on disk
    expect(second).toBeDefined();
    await second;
    expect(firstSaved).toBe(true);
    expect(runsOf(AbsenceLog.load(file, silent).absence('n2')?.map)).toEqual([[0, BLOCK]]);
    await first;
  });
});

describe('under the primary replication', () => {
  const VOLUME_BYTES = 64 * MiB;

  /**
   * A primary over two real replica nodes r1 and r2, its absence log in a file; each copy of away
   * killed in turn, and 200 random blocks written after each kill. awayBytes: what the first one
   * missed.
   */
  async function primaryWith(away: string[] = ['r1']) {
    const dir = makeTempDir('weft-primary-');
    const { engine, local } = await openPrimaryVolume(dir, 'vol', VOLUME_BYTES);
    const nodes = await Promise.all(['r1', 'r2'].map((id) => ReplicaNode.start(id, 'vol', VOLUME_BYTES)));
    const inSync = new MemoryInSyncSet(['r1', 'r2']);
    const logFile = path.join(dir, 'absences.json');
    const notices: AbsenceNotices = {
      track: (to, absent, absence) => withClient(to, (c) => c.trackAbsence('vol', 1, absent, absence)),
      forget: (to, absent) => withClient(to, (c) => c.trackAbsence('vol', 1, absent, null)),
    };
    async function withClient(id: string, call: (client: WeftClient) => Promise<void>): Promise<void> {
      const node = nodes.find((n) => n.id === id) as ReplicaNode;
      const client = new WeftClient(`127.0.0.1:${node.node.apiPort}`);
      try {
        await call(client);
      } finally {
        client.close();
      }
    }
    const openPrimary = () => {
      const log = AbsenceLog.load(logFile, silent);
      return ReplicatedDevice.open(new AbsenceTrackingLayer(local, log), nodes.map((n) => n.remote(1)), inSync, { absences: { log, notices } });
    };
    const cleanup = async () => {
      for (const node of nodes) node.closeClients();
      await engine.close();
    };
    try {
      const device = await openPrimary();
      await device.write(0, randomBytes(8 * MiB), false);
      await device.flush();
      const prng = new Prng(23);
      const missed = new Set<number>();
      for (const id of away) {
        await (nodes.find((n) => n.id === id) as ReplicaNode).node.kill9();
        for (let i = 0; i < 200; i++) {
          const block = prng.int(0, VOLUME_BYTES / BLOCK - 1);
          missed.add(block);
          await device.write(block * BLOCK, randomBytes(BLOCK), i % 10 === 0);
        }
      }
      const r2LogFile = path.join(nodes[1].node.dataDir, 'replication', 'vol.json');
      return { local, nodes, inSync, logFile, r2LogFile, openPrimary, device, notices, awayBytes: missed.size * BLOCK, cleanup };
    } catch (err) {
      await cleanup();
      throw err;
    }
  }

  test('a primary restarted while a replica is away knows what it lacks, and so does the copy in step; the resync copies only that', async () => {
    const away = await primaryWith();
    const { local, nodes, inSync, logFile, r2LogFile, openPrimary, awayBytes, cleanup } = away;
    let device = away.device;
    try {
      // The copy in step logged every block r1 missed, on its own disk.
      const r2Log = AbsenceLog.load(r2LogFile, silent);
      expect(r2Log.absence('r1')).toMatchObject({ full: false });
      expect(r2Log.absence('r1')?.map.bytes).toBe(awayBytes);

      // The primary "restarts": its memory is gone; its log is read back from the file.
      device.close();
      device = await openPrimary();
      expect(device.status().find((r) => r.id === 'r1')).toMatchObject({ state: 'out', behindBytes: awayBytes, needsFullCopy: false });

      await nodes[0].node.start();
      const copied = await device.resync('r1');
      expect(copied).toBe(awayBytes);
      expect(inSync.members()).toContain('r1');
      // Back in step: no copy logs for it any more.
      expect(AbsenceLog.load(logFile, silent).tracked()).toEqual([]);
      expect(AbsenceLog.load(r2LogFile, silent).tracked()).toEqual([]);
      const expected = await readInPieces((o, l) => local.read(o, l), VOLUME_BYTES);
      for (const node of nodes) expect((await node.readAll(1, VOLUME_BYTES)).equals(expected)).toBe(true);
      device.close();
    } finally {
      await cleanup();
    }
  });

  test('a resync whose return to the in-sync set is refused leaves the absence logged: after a restart of the primary, the next resync is still a delta', async () => {
    const away = await primaryWith();
    const { nodes, inSync, logFile, r2LogFile, openPrimary, awayBytes, cleanup } = away;
    let device = away.device;
    try {
      await nodes[0].node.start();
      // The store refuses the add (a primary that lost its lease), as a crash just before it would leave things.
      inSync.refuse = new Error('the primary lost its lease');
      await expect(device.resync('r1')).rejects.toThrow(/lost its lease/);
      expect(inSync.members()).toEqual(['r2']);
      expect(AbsenceLog.load(logFile, silent).absence('r1')).toMatchObject({ full: false });
      expect(AbsenceLog.load(r2LogFile, silent).absence('r1')).toMatchObject({ full: false });

      device.close();
      inSync.refuse = undefined;
      device = await openPrimary();
      expect(device.status().find((r) => r.id === 'r1')).toMatchObject({ state: 'out', needsFullCopy: false });
      const copied = await device.resync('r1');
      expect(copied).toBe(awayBytes);
      expect(inSync.members()).toContain('r1');
      expect(AbsenceLog.load(logFile, silent).tracked()).toEqual([]);
      expect(AbsenceLog.load(r2LogFile, silent).tracked()).toEqual([]);
      device.close();
    } finally {
      await cleanup();
    }
  });

  test('a copy that comes back while another is being resynced is told of that one too: if the primary dies then, whichever is promoted resyncs the other with a delta', async () => {
    const { nodes, inSync, r2LogFile, device, cleanup } = await primaryWith(['r2', 'r1']); // r2 leaves while r1 is in step: r2 is told of no absence
    try {
      await Promise.all(nodes.map((n) => n.node.start()));
      let release!: () => void;
      inSync.holdAdds = new Promise((resolve) => (release = resolve));
      const r1Back = device.resync('r1');
      await waitFor(() => inSync.addCalls === 1); // r1 copied, resyncing, not yet back in the set
      const r2Back = device.resync('r2');
      await waitFor(() => inSync.addCalls === 2);
      // r2 logs what r1 misses from now on: promoted now, it would owe r1 only that.
      expect(AbsenceLog.load(r2LogFile, silent).absence('r1')).toMatchObject({ full: false });
      release();
      await Promise.all([r1Back, r2Back]);
      expect([...inSync.members()].sort()).toEqual(['r1', 'r2']);
      expect(AbsenceLog.load(r2LogFile, silent).tracked()).toEqual([]);
      device.close();
    } finally {
      await cleanup();
    }
  });

  test('a copy that was told of another before it went away itself, which came back meanwhile, stops logging for it once it is back', async () => {
    const { nodes, inSync, r2LogFile, device, cleanup } = await primaryWith(['r1', 'r2']); // r2 told of r1, then away too
    try {
      expect(AbsenceLog.load(r2LogFile, silent).absence('r1')).toMatchObject({ full: false });
      await Promise.all(nodes.map((n) => n.node.start()));
      await device.resync('r1'); // its forget goes to the targets: r2 is not one
      expect(AbsenceLog.load(r2LogFile, silent).tracked()).toEqual(['r1']);
      await device.resync('r2');
      expect([...inSync.members()].sort()).toEqual(['r1', 'r2']);
      // It logged for r1 for good: every write to a new block a save of its whole log.
      await waitFor(() => AbsenceLog.load(r2LogFile, silent).tracked().length === 0, 5_000, 50);
      device.close();
    } finally {
      await cleanup();
    }
  });

  test('a copy told of another being resynced, which comes back in step before this one is a target, stops logging for it', async () => {
    const { nodes, inSync, r2LogFile, device, notices, cleanup } = await primaryWith(['r2', 'r1']);
    try {
      await Promise.all(nodes.map((n) => n.node.start()));
      let release!: () => void;
      inSync.holdAdds = new Promise((resolve) => (release = resolve));
      const r1Back = device.resync('r1');
      await waitFor(() => inSync.addCalls === 1); // r1 copied, resyncing
      // r2 is told of r1, and held there, before it is a target.
      let told!: () => void;
      let goOn!: () => void;
      const toldOfR1 = new Promise<void>((resolve) => (told = resolve));
      const held = new Promise<void>((resolve) => (goOn = resolve));
      const track = notices.track;
      notices.track = async (to, absent, absence) => {
        await track(to, absent, absence);
        if (to !== 'r2' || absent !== 'r1') return;
        told();
        await held;
      };
      const r2Back = device.resync('r2');
      await toldOfR1;
      expect(AbsenceLog.load(r2LogFile, silent).absence('r1')).toMatchObject({ full: false });
      release(); // r1 back in step: its forget goes to the targets, not yet r2
      await r1Back;
      goOn();
      await r2Back;
      await waitFor(() => AbsenceLog.load(r2LogFile, silent).absence('r1') === undefined, 5_000, 50);
      device.close();
    } finally {
      await cleanup();
    }
  });
});
