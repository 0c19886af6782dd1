// A full resync from the primary's replication layer to a real weftd replica that is outside the
// in-sync set: it copies only what the local copy has allocated, zeroes the rest there (stale data
// included), goes on while a client writes, and survives the replica's death half way.

import { randomBytes } from 'node:crypto';
import { ReplicatedDevice, type ReplicaStatus } from '../../fabric/replication/replicated-device';
import type { RemoteReplica } from '../../fabric/replication/remote-replica';
import type { LocalEngine } from '../../fabric/volume/local-engine';
import type { LocalReplica } from '../../fabric/volume/local-replica';
import { MemoryInSyncSet } from '../helpers/memory-in-sync-set';
import { Prng } from '../helpers/prng';
import { readInPieces, ReplicaNode } from '../helpers/replica-node';
import { cleanupAll, makeTempDir } from '../helpers/weftd';
import { openPrimaryVolume } from './primary-volume';

const MiB = 1024 * 1024;
const VOLUME_BYTES = 64 * MiB;
const BLOCK = 4096;
/** Where the replica holds data from an older life that the local copy does not have. */
const STALE_AT = 40 * MiB;
const STALE_BYTES = 8 * MiB;

let engine: LocalEngine;
let local: LocalReplica;
let node: ReplicaNode;
let inSync: MemoryInSyncSet;
let device: ReplicatedDevice;

beforeEach(async () => {
  ({ engine, local } = await openPrimaryVolume(makeTempDir('weft-primary-'), 'vol', VOLUME_BYTES));
  node = await ReplicaNode.start('r1', 'vol', VOLUME_BYTES);
  const stale = await node.connect(1);
  await stale.write(STALE_AT, Buffer.alloc(STALE_BYTES, 0xee), true);
  stale.close();
  inSync = new MemoryInSyncSet([]);
});

afterEach(async () => {
  device?.close(); // undefined if the test failed before it opened one
  node.closeClients();
  await engine.close();
  await cleanupAll();
});

/** Opens the replicated device over the local copy, with r1 (outside the in-sync set) reached through remote. */
async function open(remote: RemoteReplica = node.remote(1)): Promise<ReplicatedDevice> {
  device = await ReplicatedDevice.open(local, [remote], inSync);
  return device;
}

function r1(): ReplicaStatus {
  return device.status()[0];
}

/** Writes 1 MiB of random data at each offset. */
async function writeMiBs(offsets: number[]): Promise<void> {
  for (const offset of offsets) await device.write(offset, randomBytes(MiB), false);
}

/** The replica reads back exactly what the local copy has, over the whole volume. */
async function expectIdentical(): Promise<void> {
  const expected = await readInPieces((offset, length) => local.read(offset, length), VOLUME_BYTES);
  expect((await node.readAll(1, VOLUME_BYTES)).equals(expected)).toBe(true);
}

/** r1 as the primary reaches it, each of its connections' `call` calling before(args) first. */
function spied(call: 'write' | 'writeZeroes', before: (args: unknown[]) => unknown): RemoteReplica {
  return {
    id: node.id,
    connect: async () => {
      const client = await node.connect(1, 2000);
      const original = client[call].bind(client) as (...args: unknown[]) => Promise<void>;
      client[call] = async (...args: unknown[]) => {
        await before(args);
        return original(...args);
      };
      return client;
    },
  };
}

/**
 * r1 as the primary reaches it, except that the first time a connection is asked for `call`, hook
 * runs first (to read the status at that moment, or to kill the replica's node).
 */
function hooked(call: 'write' | 'writeZeroes', hook: () => unknown): RemoteReplica {
  let fired = false;
  return spied(call, () => {
    if (fired) return;
    fired = true;
    return hook();
  });
}

it('copies in full to a replica outside the in-sync set only what is allocated, and zeroes its stale data', async () => {
  let duringCopy: ReplicaStatus | undefined;
  await open(hooked('write', () => (duringCopy = r1())));
  expect(r1()).toMatchObject({ state: 'out', needsFullCopy: true, resyncTotalBytes: 0 });
  await writeMiBs([0, 10 * MiB, 30 * MiB + BLOCK, 63 * MiB]); // 4 MiB allocated of 64
  expect(inSync.removeCalls).toBe(0); // it was never a member: nothing to take out

  const copied = await device.resync('r1', 'full');

  expect(copied).toBe(4 * MiB);
  expect(duringCopy).toMatchObject({ state: 'resyncing', needsFullCopy: false, resyncTotalBytes: 4 * MiB, behindBytes: 4 * MiB });
  expect(r1()).toMatchObject({ state: 'in-sync', needsFullCopy: false, behindBytes: 0, resyncTotalBytes: 0, resyncCopiedBytes: 4 * MiB });
  expect(inSync.log).toEqual(['add r1']);
  expect((await node.readAll(1, VOLUME_BYTES)).subarray(STALE_AT, STALE_AT + STALE_BYTES).equals(Buffer.alloc(STALE_BYTES))).toBe(true);
  await expectIdentical();
  // In sync now: a write goes there too.
  await device.write(STALE_AT, Buffer.alloc(BLOCK, 0x11), true);
  await expectIdentical();
});

it('replaces the dirty map of an out replica with everything allocated when asked for a full resync', async () => {
  inSync = new MemoryInSyncSet(['r1']);
  await open();
  await writeMiBs([0, 8 * MiB]);
  await device.flush();
  await node.node.kill9();
  await writeMiBs([16 * MiB]);
  expect(r1()).toMatchObject({ state: 'out', behindBytes: MiB, needsFullCopy: false });
  await node.node.start();
  expect(await device.resync('r1', 'full')).toBe(3 * MiB);
  await expectIdentical();
});

it('a copy resynced, then away again with no flush between, is behind by what it missed since, not by what its resync copied', async () => {
  await open();
  await writeMiBs([0, 10 * MiB, 30 * MiB, 63 * MiB]);
  expect(await device.resync('r1', 'full')).toBe(4 * MiB);
  // No client flush since the resync: its own last flush made what it copied durable there.
  await node.node.kill9();
  await device.write(20 * MiB, randomBytes(BLOCK), false);
  expect(r1()).toMatchObject({ state: 'out', behindBytes: BLOCK });
  await node.node.start();
  expect(await device.resync('r1')).toBe(BLOCK);
  await expectIdentical();
});

it('a delta resync sends ranges trimmed or zeroed while the copy was away as zeroes, not as data: holes stay holes, reserved zeroes stay reserved', async () => {
  inSync = new MemoryInSyncSet(['r1']);
  let dataBytes = 0;
  await open(spied('write', (args) => (dataBytes += (args[1] as Buffer).length)));
  await writeMiBs([0, MiB, 2 * MiB, 3 * MiB]);
  await device.flush();
  await node.node.kill9();
  await device.trim(0, 4 * MiB, false);
  await device.writeZeroes(8 * MiB, MiB, { fua: false, noHole: true }); // space reserved, reading as zeroes
  expect(r1()).toMatchObject({ state: 'out', behindBytes: 5 * MiB });
  await node.node.start();
  dataBytes = 0;
  expect(await device.resync('r1')).toBe(5 * MiB);
  expect(dataBytes).toBe(0);
  // On the copy, both ranges read as zeroes; the trimmed one is a hole again, the reserved one is
  // allocated, beside the fixture's stale blocks (this copy counted as in sync from the start, so
  // nothing zeroed them).
  expect((await node.readAll(1, 9 * MiB)).equals(Buffer.alloc(9 * MiB))).toBe(true);
  expect((await node.show()).allocatedBytes).toBe(STALE_BYTES + MiB);
});

it('ends byte for byte equal when a client writes, trims and zeroes all through a full resync', async () => {
  await open();
  await device.write(0, randomBytes(16 * MiB), false);
  const prng = new Prng(23);
  let resyncing = true;
  let writesDuring = 0;
  const client = async () => {
    while (resyncing) {
      const offset = prng.int(0, VOLUME_BYTES / BLOCK - 16) * BLOCK;
      const kind = prng.int(0, 9);
      if (kind === 0) await device.trim(offset, 16 * BLOCK, false);
      else if (kind === 1) await device.writeZeroes(offset, 4 * BLOCK, { fua: false, noHole: false });
      else await device.write(offset, randomBytes(BLOCK), kind === 2);
      writesDuring++;
    }
  };
  const clients = Array.from({ length: 8 }, client);
  const copied = await device.resync('r1', 'full');
  resyncing = false;
  await Promise.all(clients);

  expect(writesDuring).toBeGreaterThan(0);
  expect(copied).toBeGreaterThanOrEqual(15 * MiB); // the 16 MiB, less what the client trimmed first
  expect(copied).toBeLessThan(VOLUME_BYTES / 2);
  expect(r1()).toMatchObject({ state: 'in-sync', behindBytes: 0 });
  await device.flush();
  await expectIdentical();
});

it('takes a replica killed during the copy out again; the next resync brings it back', async () => {
  await open(hooked('write', () => node.node.kill9()));
  await writeMiBs([0, 20 * MiB, 21 * MiB, 50 * MiB]);
  await expect(device.resync('r1', 'full')).rejects.toThrow();
  expect(r1()).toMatchObject({ state: 'out', needsFullCopy: false, behindBytes: 4 * MiB, resyncTotalBytes: 0 });
  expect(inSync.members()).toEqual([]);

  await node.node.start();
  // Its stale data was zeroed (durably) before the copy began: a delta resync is enough, and thin.
  expect(await device.resync('r1')).toBe(4 * MiB);
  expect(inSync.log).toEqual(['add r1']);
  await expectIdentical();
});

it('keeps needing a full copy when the replica dies while its stale data is being zeroed', async () => {
  await open(hooked('writeZeroes', () => node.node.kill9()));
  await writeMiBs([0, 33 * MiB]);
  await expect(device.resync('r1', 'full')).rejects.toThrow();
  expect(r1()).toMatchObject({ state: 'out', needsFullCopy: true });

  await node.node.start();
  expect(await device.resync('r1')).toBe(2 * MiB); // asked for a delta, given the full copy it needs
  expect(r1()).toMatchObject({ state: 'in-sync', needsFullCopy: false });
  await expectIdentical();
});

it('a resync under way when the device closes stops: it does not connect again, copy on, or put the copy in sync', async () => {
  await open();
  await writeMiBs([0, 20 * MiB, 21 * MiB, 50 * MiB]);
  const resync = device.resync('r1', 'full');
  device.close(); // as when the node stops serving the volume: before the resync has connected
  await expect(resync).rejects.toThrow(/closed/);
  expect(inSync.log).toEqual([]);
  expect(r1()).toMatchObject({ state: 'out', needsFullCopy: true, resyncCopiedBytes: 0 });
});
