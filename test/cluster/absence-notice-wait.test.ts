// A write that takes a copy out waits until the other copies in sync are told what that copy
// misses (their absence logs). A copy whose node's control API does not answer is dropped after the
// short deadline of the calls on a write's path, as one that cannot record the activity log is.
// With the 30 s deadline of control calls, the write waited 30 s: a client attached through a node
// without the primary (forwarding) got EIO, its forwarder's budget spent. Three weftd on a real
// etcd; the links cut are TCP proxies the test holds.

import { allInSync, ChaosCluster } from '../chaos/cluster';
import { NbdClient } from '../../fabric/nbd/client';
import { cleanupAll } from '../helpers/weftd';

jest.setTimeout(120_000);

const MiB = 1024 * 1024;

let cluster: ChaosCluster | undefined;

afterAll(async () => {
  await cluster?.close();
  await cleanupAll();
});

test("a forwarded write that takes a copy out, while another copy's node does not answer its control API, is acknowledged, not failed", async () => {
  cluster = await ChaosCluster.start(3);
  const c = cluster;
  const [, n2, n3] = c.nodes;
  await c.createOnN1('v', 16 * MiB, 3);
  const client = await NbdClient.connect({ host: '127.0.0.1', port: n2.weftd.nbdPort, exportName: 'v', timeoutMs: 90_000 });
  try {
    await client.write(0, Buffer.alloc(4096, 0x11), false);
    n3.peerLinks[0].cut(); // n3's copy stops answering the primary: the next write takes it out
    n2.peerLinks[1].cut(); // and n2's control API, where the primary tells n2's log of n3's absence
    await client.write(0, Buffer.alloc(4096, 0x22), false); // EIO before, after 30 s
    expect((await client.read(0, 4096)).equals(Buffer.alloc(4096, 0x22))).toBe(true);
  } finally {
    client.close();
    n3.peerLinks[0].heal();
    n2.peerLinks[1].heal();
  }
  // Both copies taken out come back.
  await c.waitForVolume('v', allInSync, 60_000, 'in sync');
});
