// A block damaged on the primary's disk (behind weftd's back) fails its checksum there; the primary
// serves it from an in-sync replica and rewrites its own copy, so the client sees good data and a
// verify of the copies afterwards finds nothing to repair; also for a read of part of a block, and a
// read over blocks damaged on different copies. Two weftd processes on a real etcd.

import fs from 'node:fs';
import path from 'node:path';
import type { VerifyReport, VolumeInfo } from '../../fabric/volume/types';
import { startEtcd } from '../helpers/etcd';
import { damageBlock, ok, qemuIo, startNodes, weftJson } from '../helpers/replicas';
import { waitFor } from '../helpers/wait-for';
import { cleanupAll, makeTempDir, run } from '../helpers/weftd';

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

test('a read of part of a damaged block, and one over blocks damaged on different copies, are served from the good copies; each copy is rewritten', async () => {
  const etcd = await startEtcd(1);
  const [n1, n2] = await startNodes(etcd, ['n1', 'n2'], 64 * MiB);
  await ok(n1.weftd.weft(['volume', 'create', 'w', '--size', '16MiB', '--replicas', '2', '--locality', 'n1']));
  await waitFor(async () => (await weftJson<VolumeInfo>(n1.weftd, ['volume', 'show', 'w'])).replication!.epoch === 1, 30_000, 200);
  await qemuIo(n2.weftd.nbdUri('w'), ['write -P 0x43 128k 4k', 'write -P 0x44 256k 4k', 'write -P 0x45 260k 4k', 'flush']);
  const ownCopy = (node: typeof n1) => node.weftd.nbdUri('w~epoch=1');

  // 512 bytes in the middle of a block damaged on the primary: a rewrite of part of the block would
  // read the damaged block first.
  damageBlock(n1.poolDir, Buffer.alloc(4096, 0x43));
  await qemuIo(n1.weftd.nbdUri('w'), ['read -P 0x43 129k 512'], true);
  await qemuIo(ownCopy(n1), ['read -P 0x43 128k 4k'], true);

  // Two neighbouring blocks, the first damaged on the primary, the second on the replica: no copy
  // reads the two good, yet each block has a good copy. nbdcopy reads the data there in one request.
  damageBlock(n1.poolDir, Buffer.alloc(4096, 0x44));
  damageBlock(n2.poolDir, Buffer.alloc(4096, 0x45));
  const image = path.join(makeTempDir('weft-repair-'), 'w.img');
  await ok(run('nbdcopy', [n1.weftd.nbdUri('w'), image]));
  const read = fs.readFileSync(image);
  expect(read.subarray(256 * 1024, 260 * 1024).equals(Buffer.alloc(4096, 0x44))).toBe(true);
  expect(read.subarray(260 * 1024, 264 * 1024).equals(Buffer.alloc(4096, 0x45))).toBe(true);
  // The primary's damaged block was rewritten; the replica's is found and repaired by a verify.
  await qemuIo(ownCopy(n1), ['read -P 0x44 256k 4k'], true);
  const verified = await weftJson<VerifyReport>(n1.weftd, ['volume', 'verify', 'w']);
  expect(verified.replicas!.map((r) => [r.node, r.checksumRepairedBlocks])).toEqual([['n1', 0], ['n2', 1]]);
  await qemuIo(ownCopy(n2), ['read -P 0x44 256k 4k', 'read -P 0x45 260k 4k'], true);
});
