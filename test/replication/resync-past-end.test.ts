// A delta resync of a volume whose size is not whole 4 MiB extents, owing the regions of an
// activity log (whole extents, so past the end of the volume): it copies what lies inside the
// volume and brings the copy in sync. It used to read past the end (EINVAL) and fail every time,
// leaving the volume degraded until the copy was replaced.

import { randomBytes } from 'node:crypto';
import { DirtyMap } from '../../fabric/replication/dirty-map';
import { ReplicatedDevice } from '../../fabric/replication/replicated-device';
import type { LocalEngine } from '../../fabric/volume/local-engine';
import type { LocalReplica } from '../../fabric/volume/local-replica';
import { MemoryInSyncSet } from '../helpers/memory-in-sync-set';
import { readInPieces, ReplicaNode } from '../helpers/replica-node';
import { cleanupAll, makeTempDir } from '../helpers/weftd';
import { openPrimaryVolume } from './primary-volume';

const MiB = 1024 * 1024;
const VOLUME_BYTES = 6 * MiB + 8192; // ends inside the second 4 MiB extent

let engine: LocalEngine | undefined;
let node: ReplicaNode | undefined;
let device: ReplicatedDevice | undefined;

afterEach(async () => {
  device?.close();
  node?.closeClients();
  await engine?.close();
  await cleanupAll();
});

test('a resync owing whole 4 MiB extents past the end of the volume copies what is inside and brings the copy in sync', async () => {
  let local: LocalReplica;
  ({ engine, local } = await openPrimaryVolume(makeTempDir('weft-primary-'), 'vol', VOLUME_BYTES));
  node = await ReplicaNode.start('r1', 'vol', VOLUME_BYTES);
  device = await ReplicatedDevice.open(local, [node.remote(1)], new MemoryInSyncSet([]));
  await device.resync('r1', 'full');
  await device.write(5 * MiB, randomBytes(MiB), false); // through the replication: r1 has it
  const lastExtent = new DirtyMap();
  lastExtent.mark(4 * MiB, 4 * MiB); // as an activity log's regions: the whole extent
  await device.owes('r1', lastExtent, 'the regions its last primary may have left unequal could not be compared');
  await local.write(6 * MiB, randomBytes(8192), false); // what r1 lacks, inside the volume

  expect(await device.resync('r1')).toBe(VOLUME_BYTES - 4 * MiB);
  expect(device.status()[0]).toMatchObject({ state: 'in-sync', behindBytes: 0 });
  const expected = await readInPieces((offset, length) => local.read(offset, length), VOLUME_BYTES);
  expect((await node.readAll(1, VOLUME_BYTES)).equals(expected)).toBe(true);
});
