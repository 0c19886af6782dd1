// A primary whose own disk fails while its replicas are healthy hands the volume over (issue 9,
// "a full or failing disk"): its pool fills up for real (another volume takes the room), a client
// writing through the primary's own node sees no error, and the copy that had room serves every
// acknowledged write from then on. Two weftd on a real etcd; n1's pool is small, n2's is not.

import type { VolumeInfo } from '../../fabric/volume/types';
import { startEtcd } from '../helpers/etcd';
import { copyUri, qemuIo, settled, weftJson } from '../helpers/replicas';
import { waitFor } from '../helpers/wait-for';
import { cleanupAll, makeTempDir, startWeftd, type WeftdHandle } from '../helpers/weftd';

jest.setTimeout(120_000);

const MiB = 1024 * 1024;

afterAll(cleanupAll);

async function startNode(storeSpec: string, id: string, poolBytes: number): Promise<WeftdHandle> {
  const pool = `ssd:${makeTempDir(`weft-pool-${id}-`)}:${poolBytes}`;
  return startWeftd({ pools: [pool], extraArgs: ['--store', storeSpec, '--node-id', id, '--advertise', '127.0.0.1'] });
}

test('the primary\'s pool full: the volume moves to the replica with room, the client sees no error, nothing acknowledged is lost', async () => {
  const etcd = await startEtcd(1);
  const n1 = await startNode(etcd.storeSpec, 'n1', 64 * MiB);
  const n2 = await startNode(etcd.storeSpec, 'n2', 256 * MiB);
  await weftJson<VolumeInfo>(n1, ['volume', 'create', 'v', '--size', '48MiB', '--replicas', '2', '--locality', 'n1']);
  expect((await settled(n1, 'v')).replication?.primary).toBe('n1');
  await qemuIo(n1.nbdUri('v'), ['write -P 0x11 0 4M', 'flush']);

  // A volume of n1 alone takes most of what is left in its pool.
  await weftJson<VolumeInfo>(n1, ['volume', 'create', 'filler', '--size', '56MiB']);
  await qemuIo(n1.nbdUri('filler'), ['write -P 0x22 0 52M', 'flush']);

  // More than n1 has room for: without the hand-over this fails with "No space left on device".
  await qemuIo(n1.nbdUri('v'), ['write -P 0x33 4M 24M', 'flush']);

  const after = await weftJson<VolumeInfo>(n2, ['volume', 'show', 'v']);
  expect(after.replication?.primary).toBe('n2');
  expect(after.replication?.epoch).toBe(2);
  const n1Copy = after.replication?.replicas.find((r) => r.node === 'n1');
  expect(n1Copy?.state).not.toBe('in-sync');

  // Every acknowledged write, through both nodes, and on n2's own copy below the routing.
  const expected = ['read -P 0x11 0 4M', 'read -P 0x33 4M 24M', 'read -P 0 28M 20M'];
  await qemuIo(n1.nbdUri('v'), expected, true);
  await qemuIo(n2.nbdUri('v'), expected, true);
  await qemuIo(await copyUri(n2, 'v'), expected, true);
  // Writes go on, to the new primary.
  await qemuIo(n1.nbdUri('v'), ['write -P 0x44 28M 1M', 'flush', 'read -P 0x44 28M 1M']);

  // Room again on n1: the volume's own copy there is brought back with a full copy.
  await n1.weft(['volume', 'delete', 'filler']);
  await waitFor(async () => (await weftJson<VolumeInfo>(n2, ['volume', 'show', 'v'])).replication?.replicas.every((r) => r.state === 'in-sync') === true, 60_000, 250);
  await qemuIo(await copyUri(n1, 'v'), [...expected.slice(0, 2), 'read -P 0x44 28M 1M'], true);
});
