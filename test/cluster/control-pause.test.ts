// A snapshot (resize, revert) of a replicated volume pauses changes, then applies to every copy: the
// same point of the write stream on each. A write already on its way when the pause began may fail
// on a copy while the pause waits for it, and be acknowledged without it once that copy is out of
// the in-sync set: the copy then lacks it, and a snapshot made there would too. Two weftd on a real
// etcd; the write held off the copy by a proxy that stops forwarding its NBD port (its API stays
// reachable, so nothing but the check stops the snapshot there).

import { copyBytes, qemuIo, settled, weftJson } from '../helpers/replicas';
import { ownCluster } from '../helpers/shared-cluster';
import { waitFor } from '../helpers/wait-for';
import { run } from '../helpers/weftd';

jest.setTimeout(120_000);

const MiB = 1024 * 1024;

const startCluster = ownCluster();

test('a snapshot asked while a write on its way takes a copy out is refused, and made on no copy', async () => {
  const cluster = await startCluster(2, 'v');
  const [n1, n2] = cluster.nodes;
  await qemuIo(n1.weftd.nbdUri('v'), ['write -P 0x11 0 4M', 'flush']);

  n2.peerLinks[0].cut(); // n1's write waits for n2 (its replica timeout, 5 s), then takes it out
  const write = run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x99 1M 64k', n1.weftd.nbdUri('v')], { timeoutMs: 60_000 });
  // On its way: on n1's own copy already, waiting for n2.
  await waitFor(async () => (await copyBytes(n1.weftd, 'v', 1, MiB, 4096)).every((b) => b === 0x99), 4000, 50);
  const snapshot = n1.weftd.weft(['snapshot', 'create', 'v', 's2']); // its pause waits for the write
  expect((await write).code).toBe(0);
  const refused = await snapshot;
  expect(refused.code).not.toBe(0);
  expect(refused.stderr).toMatch(/volume v: a snapshot needs every copy in sync; n2 fell out of sync as it began/);
  n2.peerLinks[0].heal();

  // Made on n2, its s2 would lack the write that n1's s2 has. Once n2 is back in sync, a snapshot is
  // the same on both.
  for (const node of [n1, n2]) expect(await weftJson<unknown[]>(node.weftd, ['snapshot', 'list', 'v'])).toEqual([]);
  await settled(n1.weftd, 'v');
  expect((await n1.weftd.weft(['snapshot', 'create', 'v', 's2'])).code).toBe(0);
  for (const node of [n1, n2]) await qemuIo(node.weftd.nbdUri('v@s2'), ['read -P 0x99 1M 64k', 'read -P 0x11 0 1M'], true);
});
