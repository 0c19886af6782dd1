// A block damaged on the primary's disk (behind weftd's back) fails its checksum there; the primary
// serves it from an in-sync replica and rewrites its own copy, so the client sees good data and a
// verify of the copies afterwards finds nothing to repair. Two weftd processes on a real etcd.

import type { VerifyReport, VolumeInfo } from '../../fabric/volume/types';
import { startEtcd } from '../helpers/etcd';
import { damageBlock, ok, qemuIo, startNodes, weftJson } from '../helpers/replicas';
import { waitFor } from '../helpers/wait-for';
import { cleanupAll } from '../helpers/weftd';

jest.setTimeout(120_000);

const MiB = 1024 * 1024;

afterAll(cleanupAll);

test('a block that fails its checksum on the primary is read from a replica and rewritten', async () => {
  const etcd = await startEtcd(1);
  const [n1, n2] = await startNodes(etcd, ['n1', 'n2'], 64 * MiB);
  await ok(n1.weftd.weft(['volume', 'create', 'v', '--size', '16MiB', '--replicas', '2', '--locality', 'n1']));
  await waitFor(async () => (await weftJson<VolumeInfo>(n1.weftd, ['volume', 'show', 'v'])).replication!.epoch === 1, 30_000, 200);
  await qemuIo(n2.weftd.nbdUri('v'), ['write -P 0x42 64k 4k', 'flush']);

  // Damage the primary's copy on disk; its own copy reads as an I/O error there.
  damageBlock(n1.poolDir, Buffer.alloc(4096, 0x42));
  await expect(qemuIo(n1.weftd.nbdUri('v~epoch=1'), ['read 64k 4k'], true)).rejects.toThrow(/error/i);
  const errorsBefore = (await weftJson<VolumeInfo>(n1.weftd, ['volume', 'show', 'v'])).checksumErrors;

  // Read through either node: good data, from the replica.
  await qemuIo(n1.weftd.nbdUri('v'), ['read -P 0x42 64k 4k'], true);
  await qemuIo(n2.weftd.nbdUri('v'), ['read -P 0x42 64k 4k'], true);
  // The read met the damage, and the primary's copy was rewritten: nothing is left to repair.
  expect((await weftJson<VolumeInfo>(n1.weftd, ['volume', 'show', 'v'])).checksumErrors).toBeGreaterThan(errorsBefore);
  await qemuIo(n1.weftd.nbdUri('v~epoch=1'), ['read -P 0x42 64k 4k'], true);
  const verified = await weftJson<VerifyReport>(n1.weftd, ['volume', 'verify', 'v']);
  expect(verified.badBlockOffsets).toEqual([]);
  expect(verified.replicas!.map((r) => r.checksumRepairedBlocks + r.mismatchRepairedBlocks)).toEqual([0, 0]);
});
