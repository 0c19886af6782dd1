// A resync whose read of the primary's own copy fails: the fault is the primary's, not the copy's
// being brought back. A block that fails its checksum here is taken from an in-sync peer (and
// rewritten here), so the resync goes through; with no peer to give it, the resync fails saying
// why, and goes through once a client rewrote the range. A disk that fails reads hands the volume
// over. Before, each of these failed the resync as the returning copy's fault: it was dropped,
// tried again, and replaced after --replica-timeout, over and over.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { ChecksumError, IoError } from '../../fabric/errors';
import { DirtyMap } from '../../fabric/replication/dirty-map';
import { LocalCopyFault, ReplicatedDevice } from '../../fabric/replication/replicated-device';
import type { LocalEngine } from '../../fabric/volume/local-engine';
import type { LocalReplica } from '../../fabric/volume/local-replica';
import { corruptInFile, corruptOnDisk } from '../api/api-fixture';
import { FailingPoolReads } from '../helpers/failing-reads';
import { MemoryInSyncSet } from '../helpers/memory-in-sync-set';
import { ReplicaNode } from '../helpers/replica-node';
import { cleanupAll, makeTempDir } from '../helpers/weftd';
import { openPrimaryVolume } from './primary-volume';

const MiB = 1024 * 1024;
const VOLUME_BYTES = 8 * MiB;
const AT = 3 * MiB; // where the block the tests damage lies

let engine: LocalEngine | undefined;
let local: LocalReplica;
let nodes: ReplicaNode[] = [];
let device: ReplicatedDevice | undefined;
let reads: FailingPoolReads | undefined;

afterEach(async () => {
  reads?.uninstall();
  reads = undefined;
  device?.close();
  device = undefined;
  for (const node of nodes) node.closeClients();
  nodes = [];
  await engine?.close();
  engine = undefined;
  await cleanupAll();
});

/** A primary and replicas r1..rN all in sync, a distinct block at AT written through the replication. */
async function inSyncVolume(replicas: number, onLocalFailure?: (reason: string) => Promise<void>): Promise<Buffer> {
  ({ engine, local } = await openPrimaryVolume(makeTempDir('weft-primary-'), 'vol', VOLUME_BYTES));
  nodes = await Promise.all(Array.from({ length: replicas }, (_, i) => ReplicaNode.start(`r${i + 1}`, 'vol', VOLUME_BYTES)));
  device = await ReplicatedDevice.open(
    local,
    nodes.map((n) => n.remote(1)),
    new MemoryInSyncSet([]),
    { onLocalFailure },
  );
  for (const node of nodes) await device.resync(node.id, 'full');
  const block = randomBytes(4096);
  await device.write(AT, block, true);
  return block;
}

/** The pool file of a replica node's weftd (its default pool, under its data dir). */
function poolFileOf(node: ReplicaNode): string {
  const files = (fs.readdirSync(node.node.dataDir, { recursive: true }) as string[]).filter((file) => /weft-pool-.*\.img$/.test(file));
  expect(files).toHaveLength(1);
  return path.join(node.node.dataDir, files[0]);
}

/** Takes the last replica out, owing the 4 MiB extent around AT (as its activity log would name it). */
async function lastReplicaOwesTheBlock(): Promise<ReplicaNode> {
  const away = nodes[nodes.length - 1];
  const owed = new DirtyMap();
  owed.mark(0, 4 * MiB);
  await device!.owes(away.id, owed, 'away while the block was written');
  expect(device!.status().find((r) => r.id === away.id)?.state).toBe('out');
  return away;
}

test('a block failing its checksum on the primary is taken from an in-sync peer, and the resync brings the copy back', async () => {
  const block = await inSyncVolume(2);
  const away = await lastReplicaOwesTheBlock();
  corruptOnDisk(engine!, block);
  await expect(local.read(AT, 4096)).rejects.toBeInstanceOf(ChecksumError);

  expect(await device!.resync(away.id)).toBe(4 * MiB);
  expect(device!.status().map((r) => r.state)).toEqual(['in-sync', 'in-sync']);
  expect((await away.readAll(1, 4 * MiB)).subarray(AT, AT + 4096).equals(block)).toBe(true);
  expect((await local.read(AT, 4096)).equals(block)).toBe(true); // rewritten here too
});

test('a run with a damaged block here and another on the in-sync peer is repaired block by block, and the resync goes through', async () => {
  const block = await inSyncVolume(2);
  const other = randomBytes(4096);
  await device!.write(AT + 8192, other, true); // in the same 1 MiB run as AT
  const away = await lastReplicaOwesTheBlock();
  corruptOnDisk(engine!, block); // here: the block at AT
  corruptInFile(poolFileOf(nodes[0]), other); // on r1, the in-sync peer: the block two further on

  expect(await device!.resync(away.id)).toBe(4 * MiB);
  expect(device!.status().map((r) => r.state)).toEqual(['in-sync', 'in-sync']);
  const copied = (await away.readAll(1, 4 * MiB)).subarray(AT, AT + 12288);
  expect([copied.subarray(0, 4096).equals(block), copied.subarray(8192).equals(other)]).toEqual([true, true]);
  expect((await local.read(AT, 4096)).equals(block)).toBe(true); // rewritten here
});

test('with no in-sync peer to give the block, the resync fails saying so, and goes through once a client rewrote it', async () => {
  await inSyncVolume(1);
  const away = await lastReplicaOwesTheBlock();
  const block = (await local.read(AT, 4096)) as Buffer;
  corruptOnDisk(engine!, block);

  const failed = await device!.resync(away.id).catch((err: unknown) => err);
  expect(failed).toBeInstanceOf(LocalCopyFault); // not the copy's fault: it is not replaced for it
  expect((failed as Error).message).toMatch(/own copy fails its checksum at .*no in-sync copy could give the data/);
  expect(device!.status()[0]).toMatchObject({ state: 'out' });

  const rewritten = randomBytes(4096);
  await device!.write(AT, rewritten, true);
  await device!.resync(away.id);
  expect(device!.status()[0]).toMatchObject({ state: 'in-sync', behindBytes: 0 });
  expect((await away.readAll(1, 4 * MiB)).subarray(AT, AT + 4096).equals(rewritten)).toBe(true);
});

test('a primary whose disk fails the resync reads hands the volume over to the in-sync peers', async () => {
  const handedOver: string[] = [];
  await inSyncVolume(2, async (reason) => {
    handedOver.push(reason);
  });
  const away = await lastReplicaOwesTheBlock();
  reads = new FailingPoolReads().install();
  reads.failing = true;

  const failed = await device!.resync(away.id).catch((err: unknown) => err);
  expect(failed).toBeInstanceOf(LocalCopyFault);
  expect((failed as IoError).message).toMatch(/own copy could not be read at .* so replica r2 was not resynced/);
  expect(handedOver).toEqual([expect.stringMatching(/its own copy failed a request the others could serve/)]);
});
