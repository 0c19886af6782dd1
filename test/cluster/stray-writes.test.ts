// A primary that dies for good while a write of its is in flight: the write reached one copy and not
// the other, and was never acknowledged. Without anything more the copies in step would then differ
// there, the new primary serving its own version, and a later failover to the other copy would show
// the other version with no write in between. The primary has every copy record its activity log's
// extents before it sends a write there, so the copy promoted in its place makes the copies in step
// equal in those extents before it serves. Three weftd on a real etcd, the write held off one copy
// by a proxy that stops forwarding (the chaos cluster's), the primary killed with -9, never restarted.

import type { VolumeInfo } from '../../fabric/volume/types';
import { copyBytes, qemuIo } from '../helpers/replicas';
import { ownCluster } from '../helpers/shared-cluster';
import { waitFor } from '../helpers/wait-for';
import { run, type WeftdHandle } from '../helpers/weftd';

jest.setTimeout(120_000);

const MiB = 1024 * 1024;

const startCluster = ownCluster();

test('a primary killed with a write that reached one copy only: the new primary makes the copies in step equal before it serves', async () => {
  const cluster = await startCluster(3, 'v');
  const [n1, n2, n3] = cluster.nodes;
  await qemuIo(n1.weftd.nbdUri('v'), ['write -P 0x11 0 4M', 'flush']);

  // n1's writes to n3's copy stop on the way (its NBD port's proxy forwards nothing); the rest of
  // n3 (its API) stays reachable. A write of 1 MiB through n1 reaches n1's and n2's copies.
  n3.peerLinks[0].cut();
  const write = run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x55 0 1M', n1.weftd.nbdUri('v')], { timeoutMs: 60_000 });
  await waitFor(async () => (await copyBytes(n2.weftd, 'v', 1, 0, MiB)).every((b) => b === 0x55), 4000, 50);
  // Before n1 gives up on n3 (its replica timeout, 5 s), n1 dies: the write is never acknowledged.
  await cluster.kill9(n1);
  n3.peerLinks[0].heal();
  const result = await write;
  expect(result.code).not.toBe(0);

  const served = await cluster.waitForVolume('v', (v) => v.replication?.primary !== 'n1' && v.replication?.replicas.filter((r) => r.state === 'in-sync').length === 2, 60_000, 'served by n2 or n3');
  const epoch = (served.replication as NonNullable<VolumeInfo['replication']>).epoch;
  expect(epoch).toBe(2);

  // Whichever copy serves, the other holds the same there: 0x55 on both (n2's version) or 0x11 on both.
  // The record names the new primary before it serves: a read through it waits until it does.
  const primary = served.replication?.primary === 'n2' ? n2 : n3;
  await qemuIo(primary.weftd.nbdUri('v'), ['read 1M 4k'], true);
  const [onN2, onN3] = await Promise.all([copyBytes(n2.weftd, 'v', epoch, 0, 4 * MiB), copyBytes(n3.weftd, 'v', epoch, 0, 4 * MiB)]);
  expect(onN2.subarray(0, MiB).every((b) => b === onN2[0])).toBe(true);
  expect([0x55, 0x11]).toContain(onN2[0]);
  expect(onN3.equals(onN2)).toBe(true);
  // And the volume reads as its primary's copy.
  await qemuIo(primary.weftd.nbdUri('v'), [`read -P 0x${onN2[0].toString(16)} 0 1M`, 'read -P 0x11 1M 3M'], true);

  // The new primary compared the extent the write was in (4 MiB) by checksum, and copied only the
  // 1 MiB that differed, to the one other copy.
  expect(servingLine(primary.weftd, epoch).settled).toEqual({ comparedBytes: 4 * MiB, copiedBytes: MiB, uncomparedBytes: 0 });
});

/** The fields of node's log line "serving as primary" at epoch. */
function servingLine(node: WeftdHandle, epoch: number): { settled: unknown } {
  const lines = node
    .logs()
    .split('\n')
    .filter((line) => line.includes('"msg":"serving as primary"'))
    .map((line) => JSON.parse(line) as { epoch: number; settled: unknown });
  const line = lines.find((l) => l.epoch === epoch);
  if (!line) throw new Error(`no "serving as primary" line at epoch ${epoch} in ${node.dataDir}'s log`);
  return line;
}
