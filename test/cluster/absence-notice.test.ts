// A primary tells the copies in step what a copy away lacks (TrackAbsence, node to node). Writes
// spread over a large volume make that map larger than gRPC's default message (4 MiB: 4 KiB per
// 128 MiB with a block to copy); a notice refused would take the copy told out of the in-sync set.
// The node takes a map of up to MAX_ABSENCE_MAP_BYTES as it is, and a larger one arrives as the
// need of a full copy (more to copy, never less). Two weftd on a real etcd, the node's own client.

import path from 'node:path';
import pino from 'pino';
import { WeftClient } from '../../fabric/api/client';
import { MAX_ABSENCE_MAP_BYTES } from '../../fabric/api/definition';
import { AbsenceLog } from '../../fabric/replication/absence-log';
import { DirtyMap } from '../../fabric/replication/dirty-map';
import type { VolumeInfo } from '../../fabric/volume/types';
import { startEtcd } from '../helpers/etcd';
import { settled, startNodes, weftJson } from '../helpers/replicas';
import { cleanupAll } from '../helpers/weftd';

jest.setTimeout(120_000);

const MiB = 1024 * 1024;
const CHUNK_BYTES = 128 * MiB; // what 4 KiB of a dirty map's bits cover

afterAll(cleanupAll);

/** One block dirty in each of `chunks` chunks: the largest map for the fewest blocks. */
function spread(chunks: number): DirtyMap {
  const map = new DirtyMap();
  for (let i = 0; i < chunks; i++) map.mark(i * CHUNK_BYTES, 4096);
  return map;
}

test("a copy in step records an absence map larger than gRPC's default message, and one past the limit as a full copy's need", async () => {
  const etcd = await startEtcd(1);
  const [n1, n2] = await startNodes(etcd, ['n1', 'n2'], 128 * MiB);
  await weftJson<VolumeInfo>(n1.weftd, ['volume', 'create', 'v', '--size', '64MiB', '--replicas', '2', '--locality', 'n1']);
  const epoch = (await settled(n1.weftd, 'v')).replication?.epoch as number;
  const large = spread(2000);
  expect(large.encode().length).toBeGreaterThan(4 * MiB);
  const tooLarge = spread(Math.ceil(MAX_ABSENCE_MAP_BYTES / (4096 + 4)) + 1);
  expect(tooLarge.encode().length).toBeGreaterThan(MAX_ABSENCE_MAP_BYTES);

  // As the primary n1 tells n2 of two copies away.
  const client = new WeftClient(`127.0.0.1:${n2.weftd.apiPort}`);
  try {
    await client.trackAbsence('v', epoch, 'away-a', { full: false, map: large });
    await client.trackAbsence('v', epoch, 'away-b', { full: false, map: tooLarge });
  } finally {
    client.close();
  }
  const log = AbsenceLog.load(path.join(n2.weftd.dataDir, 'replication', 'v.json'), pino({ level: 'silent' }));
  expect(log.absence('away-a')).toMatchObject({ full: false });
  expect(log.absence('away-a')?.map.blocks).toBe(2000);
  expect(log.absence('away-b')?.full).toBe(true);
});
