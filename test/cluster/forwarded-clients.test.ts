// The clients of a replicated volume on a node that holds no copy of it share one forwarder: their
// requests reach the primary down one connection, in order, as those of a node with a copy do. With
// one each (each fenced apart at the primary), a write of a client gone could still be read there
// after a newer one of the client that took its place, and land over it.

import { NbdClient } from '../../fabric/nbd/client';
import { allInSync } from '../chaos/cluster';
import { ownCluster } from '../helpers/shared-cluster';
import { waitFor } from '../helpers/wait-for';

jest.setTimeout(120_000);

const MiB = 1024 * 1024;
const startCluster = ownCluster();

/** weft_nbd_connections of a node, from its metrics. */
async function nbdConnections(metricsPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  return Number(/^weft_nbd_connections (\d+)$/m.exec(text)?.[1]);
}

test('two clients on a node without a copy: one connection to the primary, gone with the last of them; each reads what the other wrote', async () => {
  const cluster = await startCluster(3);
  const [n1] = cluster.nodes;
  await n1.api.createVolume({ name: 'w', sizeBytes: 16 * MiB, replicas: 2, locality: 'n1' });
  const shown = await cluster.waitForVolume('w', allInSync, 30_000, 'in sync');
  const holders = shown.replication!.replicas.map((r) => r.node);
  const outside = cluster.nodes.find((n) => !holders.includes(n.id))!;
  const baseline = await nbdConnections(n1.weftd.metricsPort);

  const connect = () => NbdClient.connect({ host: '127.0.0.1', port: outside.weftd.nbdPort, exportName: 'w' });
  const [first, second] = [await connect(), await connect()];
  await first.write(0, Buffer.alloc(4096, 0x11), true);
  await second.write(4096, Buffer.alloc(4096, 0x22), true);
  expect(await nbdConnections(n1.weftd.metricsPort)).toBe(baseline + 1);
  expect((await first.read(4096, 4096)).equals(Buffer.alloc(4096, 0x22))).toBe(true);
  expect((await second.read(0, 4096)).equals(Buffer.alloc(4096, 0x11))).toBe(true);

  await first.close();
  await second.write(0, Buffer.alloc(4096, 0x33), true); // the shared forwarder serves on for the other
  await second.close();
  await waitFor(async () => (await nbdConnections(n1.weftd.metricsPort)) === baseline, 10_000, 100);
  const again = await connect();
  try {
    expect((await again.read(0, 4096)).equals(Buffer.alloc(4096, 0x33))).toBe(true);
  } finally {
    await again.close();
  }
});
